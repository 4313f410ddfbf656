import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { partialName } from '../src/write-file-atomic.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/** `bitprep run --log-file --metrics-file` on a small image-shards job, read back as a log shipper and Prometheus would. */
let dir: string;
let out: string;
let result: Awaited<ReturnType<typeof runCli>>;

beforeAll(async () => {
  dir = await tempDir('structured-logs');
  await generateDemoData(join(dir, 'data'), 20);
  out = join(dir, 'out');
  // A partial file an interrupted run left: the unit that owns it says so when it starts (a unit-scoped message).
  await mkdir(out, { recursive: true });
  await writeFile(partialName(join(out, '00001.tar')), 'half a tar');
  const cfg = await writeConfig(dir, 'job.json', { job: 'image-shards', output: out, input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 8 }, image: { size: 64, min_edge: 100 } });
  result = await runCli(['run', cfg, '--progress', 'off', '--log-file', join(dir, 'logs', 'run.jsonl'), '--metrics-file', join(dir, 'metrics', 'bitprep.prom')]);
}, 60_000);

describe('structured logs and metrics', () => {
  it('writes every message as a JSON line with its time, level, job and, where it has one, its unit', async () => {
    expect(result.code, result.stderr).toBe(0);
    const lines = (await readFile(join(dir, 'logs', 'run.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) {
      expect(Number.isNaN(Date.parse(l.time))).toBe(false);
      expect(['info', 'warn', 'error']).toContain(l.level);
      expect(l.job).toBe('image-shards');
      expect(typeof l.message).toBe('string');
    }
    expect(lines.find((l) => /^image-shards: \d+ unit\(s\) → /.test(l.message))).toBeDefined();
    expect(lines.find((l) => /removed 1 partial file/.test(l.message))).toMatchObject({ unit: '00001', level: 'info' });
    // The console still gets the messages.
    expect(result.stderr).toMatch(/removed 1 partial file/);
  });

  it("writes the run's counters in Prometheus' text format, equal to the run summary", async () => {
    const text = await readFile(join(dir, 'metrics', 'bitprep.prom'), 'utf8');
    const summary = JSON.parse(await readFile(join(out, 'run-summary.json'), 'utf8'));
    const samples = new Map<string, number>();
    for (const line of text.trim().split('\n')) {
      if (line.startsWith('#')) {
        expect(line).toMatch(/^# (HELP|TYPE) bitprep_[a-z_]+ /);
        continue;
      }
      const m = /^(bitprep_[a-z_]+)\{job="image-shards",output="([^"]+)"(?:,reason="([^"]+)")?\} (\d+(?:\.\d+)?)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(m![2]).toBe(out);
      samples.set(m![3] ? `${m![1]}:${m![3]}` : m![1], Number(m![4]));
    }
    const done = (await readdir(out)).filter((n) => n.endsWith('.done.json')).length;
    expect(done).toBeGreaterThan(2);
    expect(samples.get('bitprep_units_done_total')).toBe(done);
    expect(samples.get('bitprep_units_planned')).toBe(done);
    expect(samples.get('bitprep_units_failed_total')).toBe(0);
    expect(samples.get('bitprep_rows_in_total')).toBe(summary.funnel.rows_in);
    expect(samples.get('bitprep_rows_written_total')).toBe(summary.funnel.written);
    for (const [reason, n] of Object.entries(summary.funnel.failed)) expect(samples.get(`bitprep_rows_failed_total:${reason}`)).toBe(n);
    for (const [reason, n] of Object.entries(summary.funnel.dropped)) expect(samples.get(`bitprep_rows_dropped_total:${reason}`)).toBe(n);
    expect(samples.get('bitprep_last_unit_time_seconds')).toBeGreaterThan(1.7e9);
  });
});
