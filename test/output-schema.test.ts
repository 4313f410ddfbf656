import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTarEntries } from '../src/formats/tar-read.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { ColumnNames, parseSidecarJson, sidecarJson, toRecord, webDatasetMembers } from '../src/records.js';
import { newSample } from '../src/sample.js';
import { encodeLatentShard, writeLatentManifest } from '../src/formats/latent-shards.js';
import { emptyFunnel } from '../src/stats.js';
import { openStore } from '../src/stores/open-store.js';
import { UnitOutputs } from '../src/units/unit-outputs.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { unionColumns } from '../stages/mix/column-types.js';
import { mixColumnNames } from '../stages/mix/selection.js';
import { webDatasetSource } from '../stages/sources/webdataset-source.js';
import { duckRows } from './helpers/duckdb.js';
import { startFaultImageServer, type FaultImageServer } from './helpers/fault-image-server.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { VllmChatServer } from './helpers/vllm-chat-server.js';

/**
 * Issue 15, provenance and output schemas, through the CLI: laion-filter → recaption → pre-encode
 * over a LAION parquet written by DuckDB with LAION's types (WIDTH/HEIGHT/hash BIGINT,
 * similarity DOUBLE). Upstream source_file/source_row survive every hop; LAION's WIDTH/HEIGHT are
 * written as source_WIDTH/source_HEIGHT beside bitprep's width/height; hash is BIGINT and
 * similarity DOUBLE in every file; no file has two names equal ignoring case.
 */

const MODEL = 'Qwen/Qwen2.5-VL-7B-Instruct';
const SIZE = 64;
const LONG =
  'A flat swatch of a single colour fills the whole frame under even light. Its surface shows no texture, pattern or object of any kind. ' +
  'The edges are clean and the tone does not change from corner to corner.';

/** LAION rows: [name, WIDTH, HEIGHT, similarity, hash]. Unit 0 (rows 0-1) has only whole similarities; row 2 is too narrow. */
const ROWS: [string, number, number, number, bigint][] = [
  ['p0', 320, 240, 0, -8452310284123998101n],
  ['p1', 300, 300, 1, 12345n],
  ['p2', 200, 150, 0.31, 7234567890123456789n],
  ['p3', 400, 256, 0.28, -1n],
];

let dir: string;
let images: FaultImageServer;
let chat: VllmChatServer;
let laionInput: string;

async function photo(i: number, w: number, h: number): Promise<Buffer> {
  return sharp({ create: { width: w, height: h, channels: 3, background: { r: 40 * i + 20, g: 180 - 30 * i, b: 90 } } }).jpeg({ quality: 90 }).toBuffer();
}

async function run(name: string, cfg: Record<string, unknown>) {
  const r = await runCli(['run', await writeConfig(dir, `${name}.json`, cfg), '--progress', 'off']);
  expect(r.code, `${name}: ${r.stderr}`).toBe(0);
}

/** Every Parquet file the three jobs wrote, as a DuckDB list of globs (set once `dir` exists). */
let ALL = '';

/** Parquet type of `column` in each of `files` (a DuckDB list of globs), as {file: type}. */
async function typesOf(files: string, column: string): Promise<Record<string, string>> {
  const rows = await duckRows(`SELECT file_name, type, converted_type FROM parquet_schema(${files}) WHERE name = '${column}'`);
  return Object.fromEntries(rows.map((r) => [String(r.file_name).slice(dir.length + 1), `${r.type}${r.converted_type ? `/${r.converted_type}` : ''}`]));
}

beforeAll(async () => {
  dir = await tempDir('output-schema');
  ALL = `[${['laion', 'recap', 'latents'].map((o) => `'${join(dir, o)}/*.parquet'`).join(', ')}]`;
  const served = new Map<string, Buffer>();
  for (const [i, [name, w, h]] of ROWS.entries()) served.set(`${name}.jpg`, await photo(i, w, h));
  images = await startFaultImageServer(served);
  chat = await VllmChatServer.start({ model: MODEL, structuredOutput: true, maxImageSide: 448, reply: () => ({ text: JSON.stringify({ long_caption: LONG, short_caption: 'A flat colour swatch on its own.' }) }) });
  await mkdir(join(dir, 'laion-in'));
  laionInput = join(dir, 'laion-in', 'part-00000.parquet');
  const values = ROWS.map(([name, w, h, sim, hash]) => `('${images.url}/img/${name}.jpg', 'caption ${name}', ${w}::BIGINT, ${h}::BIGINT, ${sim}::DOUBLE, ${hash}::BIGINT, 0.01::DOUBLE, 0.1::DOUBLE)`);
  await duckRows(`COPY (SELECT * FROM (VALUES ${values.join(', ')}) AS t(URL, TEXT, WIDTH, HEIGHT, similarity, hash, punsafe, pwatermark)) TO '${laionInput}' (FORMAT parquet)`);

  await run('laion', {
    job: 'laion-filter',
    output: join(dir, 'laion'),
    input: { kind: 'parquet', paths: [laionInput], unit_rows: 2 },
    // Filters read the input's own names: WIDTH is LAION's, before any rename.
    filters: [{ name: 'size', keep: 'WIDTH >= 256' }],
    fetch: { allow_addresses: ['127.0.0.1/32'] },
    image: { size: SIZE },
  });
});

// One CLI run per hook, each with the hook timeout to itself.
beforeAll(async () => {
  await run('recap', { job: 'recaption', output: join(dir, 'recap'), input: { paths: [join(dir, 'laion')] }, server: { base_url: chat.baseUrl, model: MODEL } });
});

beforeAll(async () => {
  const standin = buildBitEncoderStandin(9, SIZE);
  await writeFile(join(dir, 'bit_encoder.onnx'), standin.onnx);
  await run('latents', { job: 'pre-encode', output: join(dir, 'latents'), input: { paths: [join(dir, 'recap')] }, source: 'laion', encoder: { model: { onnx: join(dir, 'bit_encoder.onnx') }, size: SIZE, batch_size: 4 } });
});

afterAll(async () => {
  await images?.close();
  await chat?.close();
});

const records = (out: string) => `read_parquet('${join(dir, out)}/0000?.parquet', union_by_name = true)`;

describe('provenance is carried, never overwritten', () => {
  it('recaption and pre-encode keep the LAION row\'s source_file/source_row and name their own input shard_file/shard_key', async () => {
    const laion = await duckRows(`SELECT key, source_file, source_row FROM ${records('laion')} WHERE status = 'ok' ORDER BY key`);
    expect(laion.map((r) => [r.source_file, r.source_row])).toEqual([[laionInput, 0n], [laionInput, 1n], [laionInput, 3n]]);
    const keys = laion.map((r) => String(r.key));
    const unitOf = (key: string) => key.slice(0, 5);

    const recap = await duckRows(`SELECT key, source_file, source_row, shard_file, shard_key FROM ${records('recap')} ORDER BY key`);
    expect(recap).toEqual(keys.map((key, i) => ({ key, source_file: laionInput, source_row: laion[i].source_row, shard_file: join(dir, 'laion', `${unitOf(key)}.tar`), shard_key: key })));
    // A parquet row has no key in a tar: the recaption job did not invent one from its input tar.
    expect(await duckRows(`SELECT name FROM parquet_schema(${ALL}) WHERE name = 'source_key'`)).toEqual([]);

    for (const file of [`${join(dir, 'latents')}/0000?.parquet`, `${join(dir, 'latents')}/*.latents.parquet`]) {
      const rows = await duckRows(`SELECT key, source_file, source_row, shard_file, shard_key FROM read_parquet('${file}', union_by_name = true) ORDER BY key`);
      expect(rows, file).toEqual(keys.map((key, i) => ({ key, source_file: laionInput, source_row: laion[i].source_row, shard_file: join(dir, 'recap', `${unitOf(key)}.tar`), shard_key: key })));
    }
  });

  it('a raw tar without provenance is its own source: source_file/source_key name the tar, as shard_file/shard_key do', async () => {
    const tar = join(dir, 'raw.tar');
    const chunks: Uint8Array[] = [];
    const w = new TarWriter({ write: async (c) => void chunks.push(Buffer.from(c)) });
    await w.addSample('raw1', { jpg: new Uint8Array([1]), json: JSON.stringify({ key: 'raw1', caption: 'c' }) });
    await w.addSample('up1', { jpg: new Uint8Array([1]), json: JSON.stringify({ key: 'up1', source_file: 'in.parquet', source_row: 4, shard_file: 'old.tar', shard_key: 'old' }) });
    await w.finish();
    await writeFile(tar, Buffer.concat(chunks));
    const got = [];
    for await (const s of webDatasetSource({ id: '00000', inputs: [{ uri: tar }] }, { paths: [tar], unit_rows: 10, keep_keys: true })) got.push(s.fields);
    expect(got[0]).toMatchObject({ source_file: tar, source_key: 'raw1', shard_file: tar, shard_key: 'raw1' });
    expect(got[1]).toMatchObject({ source_file: 'in.parquet', source_row: 4, shard_file: tar, shard_key: 'up1' });
    expect(got[1]).not.toHaveProperty('source_key');
    expect(got[0]).not.toHaveProperty('key');
  });
});

describe('output schemas', () => {
  it('SELECT width, source_WIDTH gives the output size and LAION\'s in records and latents', async () => {
    const want = [[SIZE, 320, SIZE, 240], [SIZE, 300, SIZE, 300], [SIZE, 400, SIZE, 256]].map((r) => r.map(BigInt));
    for (const from of [records('laion'), records('recap'), records('latents'), `read_parquet('${join(dir, 'latents')}/*.latents.parquet')`]) {
      const rows = await duckRows(`SELECT width, source_WIDTH, height, source_HEIGHT FROM ${from} WHERE width IS NOT NULL ORDER BY source_row`);
      expect(rows.map((r) => [r.width, r.source_WIDTH, r.height, r.source_HEIGHT]), from).toEqual(want);
    }
    // The narrow row was dropped by the filter on LAION's WIDTH, and its record says so under the new name.
    const [dropped] = await duckRows(`SELECT status, dropped_by, source_WIDTH FROM ${records('laion')} WHERE source_row = 2`);
    expect(dropped).toEqual({ status: 'dropped', dropped_by: 'size', source_WIDTH: 200n });
  });

  it('the tar .json sidecars use the same names and write int64 exactly', async () => {
    const texts: string[] = [];
    for (const unit of ['00000', '00001']) {
      for await (const e of readTarEntries(createReadStream(join(dir, 'laion', `${unit}.tar`)), { name: unit })) if (e.path.endsWith('.json')) texts.push(new TextDecoder().decode(e.data));
    }
    expect(texts).toHaveLength(3);
    for (const t of texts) {
      const j = parseSidecarJson(t) as Record<string, unknown>;
      expect(Object.keys(j)).toEqual(expect.arrayContaining(['width', 'height', 'source_WIDTH', 'source_HEIGHT']));
      expect(Object.keys(j)).not.toContain('WIDTH');
    }
    expect(texts[0]).toContain('"hash":-8452310284123998101');
    expect((parseSidecarJson(texts[0]) as { hash: unknown }).hash).toBe(-8452310284123998101n);
  });

  it('hash is INT64 and similarity DOUBLE in every file of every job, with the exact values', async () => {
    const hash = await typesOf(ALL, 'hash');
    expect(Object.keys(hash)).toHaveLength(2 + 2 + 4);
    expect(new Set(Object.values(hash))).toEqual(new Set(['INT64']));
    const similarity = await typesOf(ALL, 'similarity');
    expect(Object.keys(similarity)).toHaveLength(8);
    // laion/00000.parquet holds only whole similarities (0 and 1): DOUBLE all the same.
    expect(new Set(Object.values(similarity))).toEqual(new Set(['DOUBLE']));
    const latents = await duckRows(`SELECT source_row, hash, similarity FROM read_parquet('${join(dir, 'latents')}/*.latents.parquet') ORDER BY source_row`);
    expect(latents).toEqual([0, 1, 3].map((i) => ({ source_row: BigInt(i), hash: ROWS[i][4], similarity: ROWS[i][3] })));
  });

  it('no Parquet file of any job has two column names equal ignoring case', async () => {
    const dupes = await duckRows(`SELECT file_name, lower(name) AS lname, count(*) AS n FROM parquet_schema(${ALL}) GROUP BY ALL HAVING count(*) > 1`);
    expect(dupes).toEqual([]);
    const files = await duckRows(`SELECT DISTINCT file_name FROM parquet_schema(${ALL})`);
    expect(files).toHaveLength(8);
  });

  it('a source column whose source_ rename collides too fails the unit with an error naming both', async () => {
    await mkdir(join(dir, 'clash-in'));
    const input = join(dir, 'clash-in', 'part-00000.parquet');
    await duckRows(`COPY (SELECT '${images.url}/img/p0.jpg' AS URL, 'c' AS TEXT, 320::BIGINT AS WIDTH, 99::BIGINT AS source_width) TO '${input}' (FORMAT parquet)`);
    const cfg = await writeConfig(dir, 'clash.json', { job: 'laion-filter', output: join(dir, 'clash'), input: { kind: 'parquet', paths: [input], unit_rows: 10 }, fetch: { allow_addresses: ['127.0.0.1/32'] }, image: { size: SIZE } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/"WIDTH".*"source_WIDTH".*"source_width"/s);
  });
});

describe('training-mix', () => {
  it('writes one source_WIDTH for an older dataset\'s WIDTH (beside width) and a newer one\'s source_WIDTH', async () => {
    const make = async (name: string, rows: Record<string, unknown>[]) => {
      const store = openStore(join(dir, name));
      const out = new UnitOutputs(store, 'pre-encode', '00000');
      // encodeLatentShard writes names as given: the older dataset's file holds WIDTH and width, as bitprep wrote them before.
      await out.put('.latents.parquet', encodeLatentShard(rows));
      const now = new Date().toISOString();
      await out.commit({ job: 'pre-encode', unit: '00000', started_at: now, finished_at: now, seconds: 0, funnel: { ...emptyFunnel(), rows_in: rows.length, written: rows.length }, stages: [], rows_per_second: 0 });
      await writeLatentManifest(store, 'pre-encode', ['00000']);
    };
    const latent = (i: number) => new Uint8Array(1024).fill(i);
    await make('mix-old', [0, 1].map((i) => ({ key: `o${i}`, latent: latent(i), source: 'old', WIDTH: 320 + i, width: 64, caption: `old ${i}` })));
    await make('mix-new', [2, 3].map((i) => ({ key: `n${i}`, latent: latent(i), source: 'new', source_WIDTH: 500 + i, width: 64, caption: `new ${i}` })));
    const out = join(dir, 'mix');
    await run('mix', { job: 'training-mix', output: out, sets: [{ name: 'old', paths: [join(dir, 'mix-old')], weight: 1 }, { name: 'new', paths: [join(dir, 'mix-new')], weight: 1 }], world_size: 1, global_batch: 2, shard_size: 4 });
    const rows = await duckRows(`SELECT key, width, source_WIDTH FROM read_parquet('${out}/*.latents.parquet') ORDER BY key`);
    expect(rows).toEqual([['n2', 502], ['n3', 503], ['o0', 320], ['o1', 321]].map(([key, w]) => ({ key, width: 64n, source_WIDTH: BigInt(w) })));
    const dupes = await duckRows(`SELECT file_name, lower(name) AS lname FROM parquet_schema('${out}/*.parquet') GROUP BY ALL HAVING count(*) > 1`);
    expect(dupes).toEqual([]);
  });

  it('mixColumnNames renames like a job does, and unionColumns takes no type from a shard of no rows', () => {
    const named = mixColumnNames([['WIDTH', 'INT64'], ['width', 'INT64'], ['source_WIDTH', 'DOUBLE'], ['Caption2', 'STRING'], ['CAPTION2', 'STRING']]);
    expect(named).toEqual({ columns: [['width', 'INT64'], ['source_WIDTH', 'DOUBLE'], ['Caption2', 'STRING'], ['source_CAPTION2', 'STRING']], renamed: { WIDTH: 'source_WIDTH', CAPTION2: 'source_CAPTION2' } });
    expect(() => mixColumnNames([['WIDTH', 'INT64'], ['SOURCE_width', 'INT64']])).toThrow(/"WIDTH".*"source_WIDTH".*"SOURCE_width"/);
    expect(unionColumns([[['a', 'INT64']]], [[['a', 'STRING'], ['b', 'DOUBLE']]])).toEqual([['a', 'INT64'], ['b', 'DOUBLE']]);
  });
});

describe('column names and int64 sidecars, directly', () => {
  it('renames a carried column equal to a bitprep column or an earlier carried one ignoring case, the same in every row', () => {
    const names = new ColumnNames();
    expect(names.rename({ WIDTH: 320, width: 64, Caption2: 'a', CAPTION2: 'b' })).toEqual({ source_WIDTH: 320, width: 64, Caption2: 'a', source_CAPTION2: 'b' });
    // Sticky: a later row without width still writes WIDTH as source_WIDTH.
    expect(names.rename({ WIDTH: 100 })).toEqual({ source_WIDTH: 100 });
    expect(names.renamed()).toEqual({ WIDTH: 'source_WIDTH', CAPTION2: 'source_CAPTION2' });
    // Field order within a row does not matter.
    expect(() => new ColumnNames().rename({ source_width: 1, WIDTH: 2 })).toThrow(/"WIDTH".*"source_WIDTH".*"source_width"/);
    expect(() => new ColumnNames().rename({ WIDTH: 2, source_width: 1 })).toThrow(/"WIDTH".*"source_WIDTH".*"source_width"/);
  });

  it('records and tar sidecars of one sample agree and never hold a status column twice', () => {
    const names = new ColumnNames();
    const s = newSample('k1', { key: 'upstream', HEIGHT: 240, height: 64, hash: 2n ** 63n - 1n });
    s.image = new Uint8Array([1, 2, 3]);
    s.imageExt = 'jpg';
    const rec = toRecord(s, names);
    expect(rec).toMatchObject({ key: 'k1', source_HEIGHT: 240, height: 64, hash: 2n ** 63n - 1n });
    const json = webDatasetMembers(s, names).json as string;
    expect(json).toBe('{"key":"k1","source_HEIGHT":240,"height":64,"hash":9223372036854775807}');
  });

  it('int64 survives the JSON sidecar both ways; other values are JSON.parse\'s', () => {
    const v = { a: -(2n ** 63n), b: 2n ** 53n + 1n, c: 7n, d: 'x 12345678901234567890 "y"', e: [1.5, 1e21, -0], f: null };
    const text = sidecarJson(v);
    expect(text).toBe('{"a":-9223372036854775808,"b":9007199254740993,"c":7,"d":"x 12345678901234567890 \\"y\\"","e":[1.5,1e+21,0],"f":null}');
    expect(parseSidecarJson(text)).toEqual({ a: -(2n ** 63n), b: 2n ** 53n + 1n, c: 7, d: 'x 12345678901234567890 "y"', e: [1.5, 1e21, 0], f: null });
  });
});
