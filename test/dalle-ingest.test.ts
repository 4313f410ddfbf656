import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobs } from '../pipelines/index.js';
import { loadConfig } from '../src/config/load-config.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { FileStore } from '../src/stores/file-store.js';
import { readAllTarMembers, readJson } from './helpers/read-output.js';
import { repoRoot, runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/** One sample as the Dalle3-1M tars hold it: a json record and at most one image member. */
interface DalleSample {
  key: string;
  image?: { ext: 'jpg' | 'jpeg' | 'png'; bytes: Uint8Array };
  json: Record<string, unknown>;
}

const hex = (algo: string, b: Uint8Array | string) => createHash(algo).update(b).digest('hex');

/** A json record with every field of the dataset, its hashes taken from the image it describes. */
function dalleJson(key: string, ext: string, bytes: Uint8Array, width: number, height: number, short: string, long: string): Record<string, unknown> {
  return {
    image_name: `${key}.${ext}`,
    md5_pil_hash: hex('md5', `pil:${key}`),
    md5_file_hash: hex('md5', bytes),
    sha512_hash: hex('sha512', bytes),
    short_caption: short,
    long_caption: long,
    resolution: `${width}x${height}`,
    url: `https://files.oaiusercontent.com/file-${key}/${key}.${ext}`,
    width,
    height,
    source: 'dalle3-discord',
    original_prompt: `prompt for ${short.toLowerCase()}`,
    short_caption2: [`${short}, second take`],
    long_caption2: [`${long} Another captioner saw it this way.`, `${long} And a third.`],
  };
}

async function drawn(width: number, height: number, colour: string, format: 'jpeg' | 'png'): Promise<Uint8Array> {
  const img = sharp({ create: { width, height, channels: 3, background: colour } })
    .composite([{ input: { create: { width: Math.floor(width / 3), height: Math.floor(height / 3), channels: 3, background: '#f0e020' } }, left: 10, top: 10 }]);
  return new Uint8Array(format === 'png' ? await img.png().toBuffer() : await img.jpeg({ quality: 90 }).toBuffer());
}

/** Writes a tar with the project's TarWriter: json first, then the image, as the dataset lays them out. */
async function writeDalleTar(path: string, samples: DalleSample[]): Promise<void> {
  const chunks: Uint8Array[] = [];
  const tar = new TarWriter({ write: async (c) => void chunks.push(Buffer.from(c)) });
  for (const s of samples) {
    const files: Record<string, Uint8Array | string> = { json: JSON.stringify(s.json) };
    if (s.image) files[s.image.ext] = s.image.bytes;
    await tar.addSample(s.key, files);
  }
  await tar.finish();
  await writeFile(path, Buffer.concat(chunks));
}

let duckInstance: DuckDBInstance;
let duck: DuckDBConnection;

beforeAll(async () => {
  duckInstance = await DuckDBInstance.create();
  duck = await duckInstance.connect();
});

afterAll(() => {
  duck?.closeSync();
  duckInstance?.closeSync();
});

const sqlList = (paths: string[]) => `[${paths.map((p) => `'${p.replace(/'/g, "''")}'`).join(', ')}]`;

async function query(sql: string): Promise<Record<string, unknown>[]> {
  return (await duck.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

describe('dalle-ingest on tars laid out like Dalle3-1M', () => {
  let dir: string;
  let out: string;
  let cfgPath: string;
  let first: Awaited<ReturnType<typeof runCli>>;
  const tarDir = () => join(dir, 'data');
  const tarA = () => join(tarDir(), 'data-000000.tar');
  const tarB = () => join(tarDir(), 'data-000001.tar');
  const parquets = () => [join(out, '00000.parquet'), join(out, '00001.parquet')];

  // Source keys of the planted samples; the tar key is what the dataset names its members by.
  const K = {
    jpg: '8b1f0c4e2a7d9350',
    png: '3e9a77c1d05b42f8',
    noImage: 'c40d9e1b7a2f6635',
    corrupt: '0f5b2ad8e1c97314',
    jpeg: 'a7e2c0493bd16f58',
    noCaption: '5d31f8a0c6e7b942',
    wide: 'e6c4b1f2093a7d85',
  };
  const caps: Record<string, { short: string; long: string }> = Object.fromEntries(
    Object.values(K).map((k, i) => [k, { short: `A red fox number ${i} in snow`, long: `A detailed illustration of red fox number ${i} standing in fresh snow under a pale winter sky.` }]),
  );

  beforeAll(async () => {
    dir = await tempDir('dalle');
    out = join(dir, 'out');
    await mkdir(tarDir());
    const jpg = await drawn(1024, 1024, '#3366aa', 'jpeg');
    const png = await drawn(1792, 1024, '#aa3344', 'png');
    const jpeg = await drawn(1024, 1792, '#22aa55', 'jpeg');
    const wide = await drawn(1792, 1024, '#884422', 'jpeg');
    const truncated = jpg.subarray(0, Math.floor(jpg.length / 2));
    const j = (key: string, ext: string, bytes: Uint8Array, w: number, h: number) => dalleJson(key, ext, bytes, w, h, caps[key].short, caps[key].long);
    await writeDalleTar(tarA(), [
      { key: K.jpg, image: { ext: 'jpg', bytes: jpg }, json: j(K.jpg, 'jpg', jpg, 1024, 1024) },
      { key: K.png, image: { ext: 'png', bytes: png }, json: j(K.png, 'png', png, 1792, 1024) },
      { key: K.noImage, json: j(K.noImage, 'png', png, 1792, 1024) },
      { key: K.corrupt, image: { ext: 'jpg', bytes: truncated }, json: j(K.corrupt, 'jpg', truncated, 1024, 1024) },
    ]);
    await writeDalleTar(tarB(), [
      { key: K.jpeg, image: { ext: 'jpeg', bytes: jpeg }, json: j(K.jpeg, 'jpeg', jpeg, 1024, 1792) },
      { key: K.noCaption, image: { ext: 'jpg', bytes: jpg }, json: { ...j(K.noCaption, 'jpg', jpg, 1024, 1024), short_caption: '', long_caption: null } },
      { key: K.wide, image: { ext: 'jpg', bytes: wide }, json: j(K.wide, 'jpg', wide, 1792, 1024) },
    ]);
    cfgPath = await writeConfig(dir, 'dalle.json', {
      job: 'dalle-ingest',
      output: out,
      input: { paths: [tarDir()] },
      image: { size: 64, mode: 'centre_crop', format: 'jpeg', quality: 90 },
      decode_concurrency: 4,
    });
    first = await runCli(['run', cfgPath, '--progress', 'off']);
  });

  it('streams its tars over HTTP(S): the same records as from local files', async () => {
    // A plain file server (BITPREP_ALLOW_HTTP=1: the test switch for http://), counting what it sends.
    let sent = 0;
    const server = http.createServer(async (req, res) => {
      try {
        const body = await readFile(join(tarDir(), decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1))));
        sent += req.method === 'HEAD' ? 0 : body.length;
        res.writeHead(200, { 'content-length': body.length }).end(req.method === 'HEAD' ? undefined : body);
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const remoteOut = join(dir, 'out-http');
      const cfg = await writeConfig(dir, 'dalle-http.json', { job: 'dalle-ingest', output: remoteOut, input: { paths: [`${base}/data-000000.tar`, `${base}/data-000001.tar`] }, image: { size: 64, mode: 'centre_crop', format: 'jpeg', quality: 90 }, decode_concurrency: 4 });
      const r = await runCli(['run', cfg, '--progress', 'off'], { env: { BITPREP_ALLOW_HTTP: '1', HTTP_PROXY: '' } });
      expect(r.code, r.stderr).toBe(0);
      const cols = 'key, source_key, status, error_code, caption';
      const local = await query(`select ${cols} from read_parquet(${sqlList(parquets())}, union_by_name = true) order by key`);
      const remote = await query(`select ${cols}, source_file from read_parquet(${sqlList([join(remoteOut, '00000.parquet'), join(remoteOut, '00001.parquet')])}, union_by_name = true) order by key`);
      expect(remote.map(({ source_file: _, ...x }) => x)).toEqual(local);
      expect(new Set(remote.map((x) => x.source_file))).toEqual(new Set([`${base}/data-000000.tar`, `${base}/data-000001.tar`]));
      expect(sent).toBe((await stat(tarA())).size + (await stat(tarB())).size);
    } finally {
      await new Promise((ok) => server.close(ok));
    }
  });

  it('runs one unit per tar and balances the funnel', async () => {
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/units: 2\/2 done; this run 2 completed, 0 already done, 0 failed/);
    const summary = await readJson(join(out, 'run-summary.json'));
    expect(summary.funnel).toEqual({
      rows_in: 7,
      written: 4,
      dropped: {},
      failed: { 'source:no_image': 1, 'decode-resize:truncated': 1, 'captions:no_caption': 1 },
    });
    expect(summary.funnel_balances).toBe(true);
    for (const u of ['00000', '00001']) {
      const marker = await readJson(join(out, `${u}.done.json`));
      expect(marker.outputs.map((o: { name: string }) => o.name)).toEqual([`${u}.parquet`, `${u}.stats.json`, `${u}.tar`]);
    }
  });

  it('records every sample exactly once with its status, read back by DuckDB', async () => {
    const rows = await query(`select key, source_key, source_file, status, failed_stage, error_code, error from read_parquet(${sqlList(parquets())}, union_by_name = true) order by key`);
    expect(rows.map((r) => [r.source_key, r.status])).toEqual([
      [K.jpg, 'ok'],
      [K.png, 'ok'],
      [K.noImage, 'failed'],
      [K.corrupt, 'failed'],
      [K.jpeg, 'ok'],
      [K.noCaption, 'failed'],
      [K.wide, 'ok'],
    ]);
    // Keys: unit id + five offset digits, since the default unit_rows leaves room for ~14.5k-sample tars.
    expect(rows.map((r) => r.key)).toEqual(['0000000000', '0000000001', '0000000002', '0000000003', '0000100000', '0000100001', '0000100002']);
    expect(rows.slice(0, 4).every((r) => r.source_file === tarA())).toBe(true);
    expect(rows.slice(4).every((r) => r.source_file === tarB())).toBe(true);

    const by = (k: string) => rows.find((r) => r.source_key === k)!;
    expect(by(K.noImage)).toMatchObject({ failed_stage: 'source', error_code: 'no_image' });
    expect(by(K.corrupt)).toMatchObject({ failed_stage: 'decode-resize', error_code: 'truncated' });
    expect(by(K.noCaption)).toMatchObject({ failed_stage: 'captions', error_code: 'no_caption' });
    for (const [k, tar] of [[K.noImage, tarA()], [K.corrupt, tarA()], [K.noCaption, tarB()]]) {
      expect(String(by(k).error)).toContain(tar);
      expect(String(by(k).error)).toContain(`sample ${k}`);
    }
  });

  it('maps the Dalle captions and keeps the json fields, lists as JSON DuckDB can query', async () => {
    const cols = (await query(`describe select * from read_parquet(${sqlList(parquets())}, union_by_name = true)`)).map((c) => String(c.column_name));
    expect(cols).toEqual(expect.arrayContaining(['caption', 'caption_long', 'caption_short', 'short_caption2', 'long_caption2', 'declared_width', 'declared_height', 'resolution', 'md5_file_hash', 'sha512_hash', 'original_prompt', 'image_name', 'url', 'source']));
    expect(cols).not.toContain('long_caption');
    expect(cols).not.toContain('short_caption');
    const rows = await query(`select source_key, status, caption, caption_short, caption_long, json_extract_string(long_caption2, '$[1]') as long2_second, json_array_length(short_caption2) as short2_count, declared_width, declared_height, width, height, original_width, original_format from read_parquet(${sqlList(parquets())}, union_by_name = true) order by key`);
    for (const r of rows) {
      const c = caps[String(r.source_key)];
      if (r.source_key === K.noCaption) {
        expect(r).toMatchObject({ caption: null, caption_short: null, caption_long: null });
        continue;
      }
      expect(r).toMatchObject({ caption: c.short, caption_short: c.short, caption_long: c.long, long2_second: `${c.long} And a third.` });
      expect(Number(r.short2_count)).toBe(1);
    }
    const png = rows.find((r) => r.source_key === K.png)!;
    // The json's size is the original's; width/height are the output's, as in every image shard.
    expect([png.declared_width, png.declared_height, png.original_width, png.original_format, png.width, png.height].map((v) => (typeof v === 'bigint' ? Number(v) : v))).toEqual([1792, 1024, 1792, 'png', 64, 64]);
    // A failed sample keeps the declared size and gets no output size.
    const missing = rows.find((r) => r.source_key === K.noImage)!;
    expect([missing.declared_width, missing.width].map((v) => (typeof v === 'bigint' ? Number(v) : v))).toEqual([1792, null]);
  });

  it('writes resized, re-encoded images with the captions in <key>.json and <key>.txt', async () => {
    const members = await readAllTarMembers(new FileStore(out));
    const ok = ['0000000000', '0000000001', '0000100000', '0000100002'];
    expect([...members.keys()].sort()).toEqual(ok.flatMap((k) => [`${k}.jpg`, `${k}.json`, `${k}.txt`]).sort());
    const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
    for (const key of ok) {
      const meta = await sharp(members.get(`${key}.jpg`)!).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 64, 64]);
      const json = JSON.parse(text(members.get(`${key}.json`)));
      const c = caps[json.source_key];
      expect(json).toMatchObject({ key, caption: c.short, caption_short: c.short, caption_long: c.long, width: 64, height: 64 });
      expect(json.long_caption2).toEqual([`${c.long} Another captioner saw it this way.`, `${c.long} And a third.`]);
      expect(json).not.toHaveProperty('long_caption');
      expect(text(members.get(`${key}.txt`))).toBe(c.short);
    }
    // The png sample (key 0000000001) comes out as a JPEG like the rest.
    expect(JSON.parse(text(members.get('0000000001.json')))).toMatchObject({ source_key: K.png, original_format: 'png', original_width: 1792, original_height: 1024, declared_width: 1792 });
  });

  it('skips done units on rerun, leaving their outputs untouched', async () => {
    const before = await Promise.all(['00000.tar', '00001.tar', '00000.done.json', '00001.done.json'].map(async (n) => [await readFile(join(out, n)), (await stat(join(out, n))).mtimeMs] as const));
    const again = await runCli(['run', cfgPath, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/this run 0 completed, 2 already done, 0 failed; 0 rows/);
    const after = await Promise.all(['00000.tar', '00001.tar', '00000.done.json', '00001.done.json'].map(async (n) => [await readFile(join(out, n)), (await stat(join(out, n))).mtimeMs] as const));
    after.forEach(([bytes, mtime], i) => {
      expect(bytes.equals(before[i][0])).toBe(true);
      expect(mtime).toBe(before[i][1]);
    });
    expect((await readJson(join(out, 'run-summary.json'))).funnel.rows_in).toBe(7);
  });
});

describe('dalle-ingest sizing and config', () => {
  it('takes a tar of 14,500 samples with the default unit_rows', async () => {
    const dir = await tempDir('dalle-big');
    const tiny = await drawn(16, 16, '#336699', 'png');
    // One sample in 100 has its image: decoding 14,500 would only test sharp, at a minute a run.
    const samples: DalleSample[] = Array.from({ length: 14_500 }, (_, i) => {
      const key = `img${String(i).padStart(6, '0')}`;
      return { key, image: i % 100 === 0 ? { ext: 'png', bytes: tiny } : undefined, json: dalleJson(key, 'png', tiny, 16, 16, `tile ${i}`, `a blue tile, number ${i}`) };
    });
    await writeDalleTar(join(dir, 'data-000000.tar'), samples);
    const cfg = await writeConfig(dir, 'big.json', { job: 'dalle-ingest', output: join(dir, 'out'), input: { paths: [join(dir, 'data-000000.tar')] }, image: { size: 8 } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    expect((await readJson(join(dir, 'out', 'run-summary.json'))).funnel).toEqual({ rows_in: 14_500, written: 145, dropped: {}, failed: { 'source:no_image': 14_355 } });
    const keys = await query(`select min(key) as lo, max(key) as hi, count(distinct key) as n from read_parquet(${sqlList([join(dir, 'out', '00000.parquet')])})`);
    expect(keys[0]).toMatchObject({ lo: '0000000000', hi: '0000014499' });
    expect(Number(keys[0].n)).toBe(14_500);
  });

  it('ships a valid configs/dalle-ingest.yaml', async () => {
    const { job, config } = await loadConfig(join(repoRoot, 'configs', 'dalle-ingest.yaml'), jobs);
    expect(job.name).toBe('dalle-ingest');
    expect(config).toMatchObject({ primary_caption: 'short', input: { unit_rows: 100_000 }, image: { size: 512, format: 'jpeg' } });
  });

  it('names a misspelt key of the config', async () => {
    const dir = await tempDir('dalle-cfg');
    const p = await writeConfig(dir, 'bad.json', { job: 'dalle-ingest', output: join(dir, 'o'), input: { paths: ['x'], kind: 'webdataset' }, primary_caption: 'medium' });
    await expect(loadConfig(p, jobs)).rejects.toThrow(/input: .*kind.*[\s\S]*primary_caption: /);
  });
});
