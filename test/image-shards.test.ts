import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { pack } from 'tar-stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { silentLogger } from '../src/log.js';
import { FileStore } from '../src/stores/file-store.js';
import { generateDemoData, type DemoData } from '../pipelines/demo-data.js';
import { jobs } from '../pipelines/index.js';
import { readAllRecords, readAllTarMembers } from './helpers/read-output.js';
import { tempDir } from './helpers/temp-dir.js';

async function runJob(cfg: Record<string, unknown>) {
  const { job, config } = validateConfig(cfg, 'test', jobs);
  const units = await job.plan(config, silentLogger);
  const store = new FileStore(config.output);
  const summary = await executeLocal(job, config, units, { output: store, log: silentLogger, progress: 'off' });
  return { summary, store, units };
}

describe('image-shards job on a LAION-schema parquet of local paths', () => {
  let dir: string;
  let data: DemoData;
  let result: Awaited<ReturnType<typeof runJob>>;

  beforeAll(async () => {
    dir = await tempDir('job');
    data = await generateDemoData(join(dir, 'data'), 80);
    result = await runJob({
      job: 'image-shards',
      output: join(dir, 'out'),
      input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 16 },
      image: { size: 128, min_edge: 100, max_pixels: 50_000_000 },
    });
  });

  it('records every input row exactly once and the funnel adds up', async () => {
    const { summary, store } = result;
    expect(summary.funnel.rows_in).toBe(data.rows);
    expect(summary.funnel_balances).toBe(true);
    expect(summary.funnel.written).toBe(data.rows - 5 - data.planted.too_small);
    const records = await readAllRecords(store);
    expect(records.length).toBe(data.rows);
    expect(new Set(records.map((r) => r.key)).size).toBe(data.rows);
    expect(new Set(records.map((r) => Number(r.source_row)))).toEqual(new Set(Array.from({ length: data.rows }, (_, i) => i)));
    expect(records.filter((r) => r.status === 'ok').length).toBe(summary.funnel.written);
  });

  it('fails each broken input with a clear reason while the run goes on', async () => {
    const records = await readAllRecords(result.store);
    const byUrl = (u: string) => records.find((r) => r.url === `../images/${u}`)!;
    expect(byUrl('does-not-exist.jpg')).toMatchObject({ status: 'failed', failed_stage: 'read', error_code: 'not_found' });
    expect(byUrl('broken-truncated.jpg')).toMatchObject({ status: 'failed', failed_stage: 'decode-resize', error_code: 'truncated' });
    expect(byUrl('broken-empty.jpg')).toMatchObject({ status: 'failed', error_code: 'empty' });
    expect(byUrl('broken-text.jpg')).toMatchObject({ status: 'failed', error_code: 'unsupported_format' });
    expect(byUrl('broken-bomb.png')).toMatchObject({ status: 'failed', error_code: 'pixel_limit' });
    for (const u of ['broken-truncated.jpg', 'broken-text.jpg', 'broken-bomb.png']) expect(String(byUrl(u).error).length).toBeGreaterThan(10);
    const small = records.filter((r) => r.status === 'dropped');
    expect(small.length).toBe(data.planted.too_small);
    for (const r of small) {
      expect(r.dropped_by).toBe('min_edge');
      expect(Number(JSON.parse(String(r.dropped_value)))).toBeLessThan(100);
    }
    expect(result.summary.funnel.failed).toMatchObject({ 'read:not_found': 1, 'decode-resize:truncated': 1, 'decode-resize:empty': 1, 'decode-resize:unsupported_format': 1, 'decode-resize:pixel_limit': 1 });
    expect(result.summary.this_run?.units_failed).toEqual([]);
  });

  it('writes WebDataset shards of resized images with captions and metadata', async () => {
    const members = await readAllTarMembers(result.store);
    const records = await readAllRecords(result.store);
    const ok = records.filter((r) => r.status === 'ok');
    expect(members.size).toBe(ok.length * 3);
    for (const r of ok.slice(0, 10)) {
      const jpg = members.get(`${r.key}.jpg`)!;
      const meta = await sharp(jpg).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 128, 128]);
      expect(new TextDecoder().decode(members.get(`${r.key}.txt`))).toBe(r.caption);
      const json = JSON.parse(new TextDecoder().decode(members.get(`${r.key}.json`)));
      expect(json).toMatchObject({ key: r.key, url: r.url, source_WIDTH: Number(r.source_WIDTH), width: 128, height: 128 });
    }
  });

  it('writes a done marker whose sizes and SHA-256s match the outputs', async () => {
    const { store, units } = result;
    for (const u of units) {
      const marker = JSON.parse(new TextDecoder().decode(await store.get(`${u.id}.done.json`)));
      expect(marker.outputs.map((o: { name: string }) => o.name)).toEqual([`${u.id}.parquet`, `${u.id}.stats.json`, `${u.id}.tar`]);
      for (const o of marker.outputs) {
        const bytes = await store.get(o.name);
        expect(bytes.length).toBe(o.bytes);
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(o.sha256);
      }
    }
  });

  it('skips done units on rerun and refuses an output planned differently', async () => {
    const again = await runJob({
      job: 'image-shards',
      output: join(dir, 'out'),
      input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 16 },
      image: { size: 128, min_edge: 100, max_pixels: 50_000_000 },
    });
    expect(again.summary.this_run).toMatchObject({ units_completed: 0, units_already_done: result.units.length, rows: 0 });
    expect(again.summary.funnel).toEqual(result.summary.funnel);
    await expect(runJob({
      job: 'image-shards',
      output: join(dir, 'out'),
      input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 32 },
    })).rejects.toThrow(/different plan/);
  });
});

describe('image-shards job on WebDataset tars', () => {
  it('refuses a tar with a ../ entry, naming it, and still completes the other units', async () => {
    const dir = await tempDir('wds');
    await mkdir(join(dir, 'tars'));
    const jpg = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#3366aa' } }).jpeg().toBuffer();
    const makeTar = async (entries: [string, Uint8Array | string][]) => {
      const p = pack();
      const chunks: Buffer[] = [];
      p.on('data', (c) => chunks.push(c as Buffer));
      const end = new Promise<void>((r) => p.on('end', () => r()));
      for (const [name, body] of entries) p.entry({ name }, Buffer.from(body));
      p.finalize();
      await end;
      return Buffer.concat(chunks);
    };
    await writeFile(join(dir, 'tars', 'a.tar'), await makeTar([['s1.jpg', jpg], ['s1.txt', 'a blue field'], ['s2.jpg', jpg], ['s2.json', '{"caption_x": 1}']]));
    await writeFile(join(dir, 'tars', 'b.tar'), await makeTar([['ok.jpg', jpg], ['../evil.jpg', jpg]]));
    await writeFile(join(dir, 'tars', 'c.tar'), await makeTar([['t1.jpg', jpg], ['t2.jpg', new Uint8Array([1, 2, 3])]]));
    const { summary, store } = await runJob({ job: 'image-shards', output: join(dir, 'out'), input: { kind: 'webdataset', paths: [join(dir, 'tars')], unit_rows: 100 }, image: { size: 64 } });
    expect(summary.this_run?.units_failed).toHaveLength(1);
    expect(summary.this_run?.units_failed[0].unit).toBe('00001');
    expect(summary.this_run?.units_failed[0].error).toContain('../evil.jpg');
    expect(summary.this_run?.units_failed[0].error).toContain('b.tar');
    expect(await store.exists('00001.done.json')).toBe(false);
    const records = await readAllRecords(store);
    expect(records.map((r) => [r.source_key, r.status, r.caption ?? null])).toEqual([
      ['s1', 'ok', 'a blue field'],
      ['s2', 'ok', null],
      ['t1', 'ok', null],
      ['t2', 'failed', null],
    ]);
    expect(summary.units).toMatchObject({ planned: 3, done: 2, pending: ['00001'] });
  });
});
