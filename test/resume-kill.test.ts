import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FileStore } from '../src/stores/file-store.js';
import { generateDemoData } from '../pipelines/demo-data.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a run killed with SIGKILL and rerun', () => {
  let dir: string;
  let config: string;
  beforeAll(async () => {
    dir = await tempDir('kill');
    await generateDemoData(join(dir, 'data'), 240);
    config = await writeConfig(dir, 'job.json', {
      job: 'image-shards',
      output: join(dir, 'unused'),
      input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 12 },
      image: { size: 192, min_edge: 100, max_pixels: 50_000_000 },
      decode_concurrency: 1,
    });
  });

  it('ends with exactly the outputs and records of an unbroken run', async () => {
    const whole = await runCli(['run', config, '--output', join(dir, 'whole'), '--progress', 'off']);
    expect(whole.code, whole.stderr).toBe(0);

    const killedOut = join(dir, 'killed');
    const { child, done } = startCli(['run', config, '--output', killedOut, '--progress', 'off']);
    // Kill once a few units are committed and others are in flight.
    const deadline = Date.now() + 60_000;
    let doneMarkers = 0;
    while (Date.now() < deadline) {
      const names = await readdir(killedOut).catch(() => [] as string[]);
      doneMarkers = names.filter((n) => n.endsWith('.done.json')).length;
      if (doneMarkers >= 3) break;
      await sleep(10);
    }
    child.kill('SIGKILL');
    const killed = await done;
    expect(killed.signal).toBe('SIGKILL');
    const unitsTotal = (await readdir(join(dir, 'whole'))).filter((n) => n.endsWith('.done.json')).length;
    const afterKill = (await readdir(killedOut)).filter((n) => n.endsWith('.done.json')).length;
    expect(afterKill).toBeGreaterThanOrEqual(3);
    expect(afterKill).toBeLessThan(unitsTotal);

    const rerun = await runCli(['run', config, '--output', killedOut, '--progress', 'off']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toMatch(new RegExp(`${afterKill} unit\\(s\\) already done`));

    const a = new FileStore(join(dir, 'whole'));
    const b = new FileStore(killedOut);
    const strip = (rs: Record<string, unknown>[]): Record<string, unknown>[] => rs.map((r) => ({ ...r, source_file: null }));
    const recA = strip(await readAllRecords(a));
    const recB = strip(await readAllRecords(b));
    expect(recB.length).toBe(recA.length);
    expect(new Set(recB.map((r) => r.key)).size).toBe(recB.length);
    expect(recB).toEqual(recA);
    // Shards are byte-identical: same samples, same order, same encoded images.
    const tars = (await a.list()).filter((n) => n.endsWith('.tar'));
    expect((await b.list()).filter((n) => n.endsWith('.tar'))).toEqual(tars);
    for (const t of tars) expect(Buffer.compare(Buffer.from(await a.get(t)), Buffer.from(await b.get(t)))).toBe(0);
    // Nothing half-written is left behind.
    expect((await readdir(killedOut)).filter((n) => n.includes('.partial-'))).toEqual([]);
  });
});
