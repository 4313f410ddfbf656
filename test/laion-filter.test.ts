import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';
import { FileStore } from '../src/stores/file-store.js';
import { seededRandom } from '../src/seeded-random.js';
import { readAllRecords, readAllTarMembers } from './helpers/read-output.js';
import { startFaultImageServer, type FaultImageServer } from './helpers/fault-image-server.js';
import { runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LAION_SCHEMA: ColumnSpec[] = [
  { name: 'URL', type: 'STRING' },
  { name: 'TEXT', type: 'STRING' },
  { name: 'WIDTH', type: 'INT64' },
  { name: 'HEIGHT', type: 'INT64' },
  { name: 'similarity', type: 'DOUBLE' },
  { name: 'punsafe', type: 'DOUBLE' },
  { name: 'pwatermark', type: 'DOUBLE' },
];

/** A photo-like JPEG: gradient, a disc and grain, distinct per seed. */
async function photo(seed: number, w: number, h: number, orientation?: number): Promise<Buffer> {
  const r = seededRandom(seed);
  const c = () => Math.floor(r() * 255);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><defs><linearGradient id="g"><stop offset="0" stop-color="rgb(${c()},${c()},${c()})"/><stop offset="1" stop-color="rgb(${c()},${c()},${c()})"/></linearGradient></defs><rect width="${w}" height="${h}" fill="url(#g)"/><circle cx="${Math.floor(r() * w)}" cy="${Math.floor(r() * h)}" r="${Math.floor(h / 4)}" fill="rgb(${c()},${c()},${c()})"/></svg>`;
  const img = sharp(Buffer.from(svg)).jpeg({ quality: 85 });
  return orientation ? img.withMetadata({ orientation }).toBuffer() : img.toBuffer();
}

interface Row {
  URL: string;
  TEXT: string;
  WIDTH: bigint;
  HEIGHT: bigint;
  similarity: number;
  punsafe: number;
  pwatermark: number;
}

const row = (url: string, text: string, extra: Partial<Row> = {}): Row => ({ URL: url, TEXT: text, WIDTH: 320n, HEIGHT: 240n, similarity: 0.31, punsafe: 0.02, pwatermark: 0.1, ...extra });

/** [path on the fault server or full URL, expected status, expected reason (dropped_by or stage:code)]. */
type Expect = [string, 'ok' | 'dropped' | 'failed', string?];

describe('laion-filter against a faulty image host', () => {
  let dir: string;
  let server: FaultImageServer;
  let config: string;
  const images = new Map<string, Buffer>();
  const cases: Expect[] = [];

  beforeAll(async () => {
    dir = await tempDir('laion');
    for (let i = 0; i < 14; i++) images.set(`p${i}.jpg`, await photo(i, 320 + 8 * i, 240));
    images.set('rotated.jpg', await photo(100, 320, 240, 6));
    images.set('tiny.jpg', await photo(101, 80, 60));
    images.set('panorama.jpg', await photo(102, 1200, 200));
    images.set('copy-of-p0.jpg', images.get('p0.jpg')!);
    const whole = await photo(103, 320, 240);
    images.set('cut.jpg', whole.subarray(0, Math.floor(whole.length / 2)));
    server = await startFaultImageServer(images, { bigBytes: 600_000 });

    // Units of 8 rows; the duplicate sits in p0's unit (dedup is per unit).
    cases.push(
      ['/img/p0.jpg', 'ok'],
      ['/404/gone.jpg', 'failed', 'fetch:http_404'],
      ['/img/copy-of-p0.jpg', 'dropped', 'duplicate'],
      ['/flaky/p1.jpg', 'ok'],
      ['/slow/p2.jpg', 'failed', 'fetch:timeout'],
      ['/truncated/p3.jpg', 'failed', 'fetch:truncated'],
      ['/html/p4.jpg', 'failed', 'fetch:not_an_image'],
      ['/loop/p5.jpg', 'failed', 'fetch:redirect_loop'],
      ['/to-private/p6.jpg', 'failed', 'fetch:blocked_address'],
      ['/to-metadata/p6.jpg', 'failed', 'fetch:blocked_address'],
      ['/big/p7.jpg', 'failed', 'fetch:too_large'],
      ['/optout/p8.jpg', 'dropped', 'robots'],
      ['/img/p9.jpg', 'dropped', 'watermark'],
      ['/img/p10.jpg', 'dropped', 'nsfw'],
      ['/img/tiny.jpg', 'dropped', 'min_edge'],
      ['/img/panorama.jpg', 'dropped', 'max_aspect_ratio'],
      ['/img/cut.jpg', 'failed', 'decode-resize:truncated'],
      ['/img/rotated.jpg', 'ok'],
      ['http://10.1.2.3/private.jpg', 'failed', 'fetch:blocked_address'],
      ['/img/p11.jpg', 'ok'],
      ['/img/p12.jpg', 'ok'],
      ['/img/p13.jpg', 'ok'],
      ['/slow/p12.jpg', 'failed', 'fetch:timeout'],
    );
    const rows = cases.map(([p], i) => {
      const url = p.startsWith('/') ? server.url + p : p;
      if (p === '/img/p9.jpg') return row(url, `caption ${i}`, { pwatermark: 0.93 });
      if (p === '/img/p10.jpg') return row(url, `caption ${i}`, { punsafe: 0.97 });
      return row(url, `caption ${i}`);
    });
    await mkdir(join(dir, 'in'));
    await writeFile(join(dir, 'in', 'part-00000.parquet'), writeParquet(rows as unknown as Record<string, unknown>[], { schema: LAION_SCHEMA, compression: 'SNAPPY', rowGroupSize: 5 }));
    config = await writeConfig(dir, 'job.json', {
      job: 'laion-filter',
      output: join(dir, 'out'),
      input: { kind: 'parquet', paths: [join(dir, 'in')], unit_rows: 8 },
      filters: [
        { name: 'watermark', keep: 'pwatermark < 0.8' },
        { name: 'nsfw', keep: 'punsafe < 0.5' },
      ],
      fetch: { allow_addresses: ['127.0.0.1/32'], retries: 1, retry_delay_ms: 10, read_timeout_ms: 400, max_bytes: 300_000, concurrency: 8 },
      image: { size: 128, min_edge: 100, max_aspect_ratio: 3, quality: 90 },
    });
    const r = await runCli(['run', config, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
  });

  afterAll(async () => {
    await server?.close();
  });

  const reasonOf = (r: Record<string, unknown>) => (r.status === 'ok' ? undefined : r.status === 'dropped' ? r.dropped_by : `${r.failed_stage}:${r.error_code}`);

  it('records every row once with the right status and reason, and the funnel adds up', async () => {
    const store = new FileStore(join(dir, 'out'));
    const records = await readAllRecords(store);
    expect(records.length).toBe(cases.length);
    const byRow = [...records].sort((a, b) => Number(a.source_row) - Number(b.source_row));
    expect(byRow.map((r, i) => [cases[i][0], r.status, reasonOf(r)])).toEqual(cases.map(([p, st, why]) => [p, st, why]));
    for (const r of byRow) if (r.status === 'failed') expect(String(r.error).length, String(r.url)).toBeGreaterThan(5);

    // The original LAION columns travel with every record.
    expect(byRow[0]).toMatchObject({ caption: 'caption 0', similarity: 0.31, pwatermark: 0.1, source_WIDTH: 320n });
    expect(byRow[2].dropped_value).toBe(JSON.stringify({ of: byRow[0].key }));
    const rotated = byRow.find((r) => String(r.url).endsWith('rotated.jpg'))!;
    expect(rotated).toMatchObject({ original_width: 240n, original_height: 320n, exif_orientation: 6n, width: 128n, height: 128n });
    expect(rotated.original_sha256).toMatch(/^[0-9a-f]{64}$/);

    const summary = JSON.parse(await readFile(join(dir, 'out', 'run-summary.json'), 'utf8'));
    expect(summary.funnel_balances).toBe(true);
    expect(summary.funnel).toMatchObject({
      rows_in: cases.length,
      written: 6,
      dropped: { duplicate: 1, robots: 1, watermark: 1, nsfw: 1, min_edge: 1, max_aspect_ratio: 1 },
      failed: { 'fetch:http_404': 1, 'fetch:timeout': 2, 'fetch:truncated': 1, 'fetch:not_an_image': 1, 'fetch:redirect_loop': 1, 'fetch:blocked_address': 3, 'fetch:too_large': 1, 'decode-resize:truncated': 1 },
    });

    // Column filters ran before the download: filtered rows were never requested.
    expect(server.hits.get('/img/p9.jpg')).toBeUndefined();
    expect(server.hits.get('/img/p10.jpg')).toBeUndefined();
    expect(server.hits.get('/flaky/p1.jpg')).toBe(2);
    expect(server.hits.get('/404/gone.jpg')).toBe(1);

    const members = await readAllTarMembers(store);
    expect(members.size).toBe(6 * 3);
    const p0 = byRow[0];
    const meta = await sharp(members.get(`${p0.key}.jpg`)!).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 128, 128]);
    expect(new TextDecoder().decode(members.get(`${p0.key}.txt`))).toBe('caption 0');
  });

  it('retry-failed turns transient failures into successes and leaves every other record and member as it was', async () => {
    const out = join(dir, 'out');
    const store = new FileStore(out);
    const before = await readAllRecords(store);
    const membersBefore = await readAllTarMembers(store);
    const slowKey = String(before.find((r) => String(r.url).includes('/slow/p2'))!.key);
    const lateCopy = before.find((r) => String(r.url).includes('/slow/p12'))!;
    const p12 = before.find((r) => String(r.url).endsWith('/img/p12.jpg'))!;

    server.heal('slow');
    const r = await runCli(['retry-failed', out]);
    expect(r.code, r.stderr).toBe(0);
    // Transient: two timeouts and a truncation (the host still truncates, so that one fails
    // again); the second slow image turns out to copy one its unit already kept.
    expect(r.stdout).toContain('retried 3 row(s) in 2 unit(s): 1 recovered');

    const after = await readAllRecords(store);
    expect(after.length).toBe(before.length);
    const slow = after.find((r) => r.key === slowKey)!;
    expect(slow).toMatchObject({ status: 'ok', width: 128n, height: 128n });
    const truncated = after.find((r) => String(r.url).includes('/truncated/'))!;
    expect(truncated).toMatchObject({ status: 'failed', error_code: 'truncated' });
    expect(after.find((r) => r.key === lateCopy.key)).toMatchObject({ status: 'dropped', dropped_by: 'duplicate', dropped_value: JSON.stringify({ of: p12.key }) });
    for (const [i, rec] of after.entries()) {
      if (rec.key === slowKey || rec === truncated || rec.key === lateCopy.key) continue;
      expect(rec).toEqual(before[i]);
    }
    const membersAfter = await readAllTarMembers(store);
    expect(membersAfter.size).toBe(membersBefore.size + 3);
    for (const [name, bytes] of membersBefore) expect(Buffer.from(membersAfter.get(name)!).equals(Buffer.from(bytes)), name).toBe(true);
    expect(membersAfter.has(`${slowKey}.jpg`)).toBe(true);
    // Members stay in key order within the shard.
    const unit = slowKey.slice(0, 5);
    const { readTarEntries } = await import('../src/formats/tar-read.js');
    const order: string[] = [];
    for await (const e of readTarEntries(await store.getStream(`${unit}.tar`), { name: `${unit}.tar` })) order.push(e.path);
    expect(order).toEqual([...order].sort());

    const summary = JSON.parse(await readFile(join(out, 'run-summary.json'), 'utf8'));
    expect(summary.funnel).toMatchObject({ rows_in: cases.length, written: 7, dropped: { duplicate: 2 } });
    expect(summary.funnel_balances).toBe(true);
    const stats = JSON.parse(await readFile(join(out, `${unit}.stats.json`), 'utf8'));
    expect(stats.retries).toHaveLength(1);
    expect(stats.retries[0]).toMatchObject({ retried: 2, recovered: 1 });
    // The new done marker still lists the unit's untouched thumbnails sidecar, with its old hash.
    const marker = JSON.parse(await readFile(join(out, `${unit}.done.json`), 'utf8'));
    const thumbs = marker.outputs.find((o: { name: string }) => o.name === `${unit}.thumbs`);
    expect(thumbs).toBeDefined();
    expect(thumbs.sha256).toBe(createHash('sha256').update(await readFile(join(out, `${unit}.thumbs`))).digest('hex'));

    // Nothing left to retry but the still-truncated row; a second pass changes nothing else.
    const again = await runCli(['retry-failed', out, '--reasons', 'fetch:timeout']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('retried 0 row(s)');
  });
});

describe('laion-filter killed with SIGKILL and rerun', () => {
  let dir: string;
  let server: FaultImageServer;

  beforeAll(async () => {
    dir = await tempDir('laion-kill');
    const images = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) images.set(`p${i}.jpg`, await photo(200 + i, 300, 220));
    server = await startFaultImageServer(images);
    const r = seededRandom(5);
    const rows: Row[] = [];
    for (let i = 0; i < 150; i++) {
      const x = r();
      // Every image is served slowly enough that units take a while; some fail, some repeat.
      const path = x < 0.1 ? `/404/x${i}.jpg` : x < 0.15 ? `/html/p0.jpg` : `/delay/40/p${i % 12}.jpg`;
      rows.push(row(server.url + path, `row ${i}`, { pwatermark: Number(r().toFixed(3)) }));
    }
    await mkdir(join(dir, 'in'));
    await writeFile(join(dir, 'in', 'part-00000.parquet'), writeParquet(rows as unknown as Record<string, unknown>[], { schema: LAION_SCHEMA, compression: 'SNAPPY' }));
  });

  afterAll(async () => {
    await server?.close();
  });

  it('ends with exactly the records and shards of an unbroken run', async () => {
    const config = await writeConfig(dir, 'job.json', {
      job: 'laion-filter',
      output: join(dir, 'unused'),
      input: { kind: 'parquet', paths: [join(dir, 'in')], unit_rows: 6 },
      filters: [{ name: 'watermark', keep: 'pwatermark < 0.8' }],
      fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0, concurrency: 2 },
      image: { size: 96 },
    });
    const whole = await runCli(['run', config, '--output', join(dir, 'whole'), '--progress', 'off']);
    expect(whole.code, whole.stderr).toBe(0);

    const killedOut = join(dir, 'killed');
    const { child, done } = startCli(['run', config, '--output', killedOut, '--progress', 'off']);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const names = await readdir(killedOut).catch(() => [] as string[]);
      if (names.filter((n) => n.endsWith('.done.json')).length >= 4) break;
      await sleep(10);
    }
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    const afterKill = (await readdir(killedOut)).filter((n) => n.endsWith('.done.json')).length;
    expect(afterKill).toBeGreaterThanOrEqual(4);
    expect(afterKill).toBeLessThan(25);

    const rerun = await runCli(['run', config, '--output', killedOut, '--progress', 'off']);
    expect(rerun.code, rerun.stderr).toBe(0);

    const a = await readAllRecords(new FileStore(join(dir, 'whole')));
    const b = await readAllRecords(new FileStore(killedOut));
    expect(b.length).toBe(150);
    expect(new Set(b.map((r) => r.key)).size).toBe(150);
    const byKey = (rs: Record<string, unknown>[]) => [...rs].sort((x, y) => String(x.key).localeCompare(String(y.key)));
    expect(byKey(b)).toEqual(byKey(a));
    const shards = (await readdir(join(dir, 'whole'))).filter((n) => n.endsWith('.tar')).sort();
    expect((await readdir(killedOut)).filter((n) => n.endsWith('.tar')).sort()).toEqual(shards);
    for (const n of shards) expect((await readFile(join(killedOut, n))).equals(await readFile(join(dir, 'whole', n))), n).toBe(true);
    expect((await readdir(killedOut)).filter((n) => n.includes('.partial-'))).toEqual([]);
  });
});
