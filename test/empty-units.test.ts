import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTarEntries } from '../src/formats/tar-read.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { duckRows } from './helpers/duckdb.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { VllmChatServer } from './helpers/vllm-chat-server.js';

/**
 * Issue 15, "empty is normal": a unit with nothing to write (an empty tar, or a tar whose every
 * image fails) is done like any other, with schema-complete empty outputs, and every downstream
 * job takes those outputs: recaption → pre-encode → training-mix, through the CLI.
 */

const MODEL = 'Qwen/Qwen2.5-VL-7B-Instruct';
const SIZE = 64;
const LONG =
  'A flat swatch of a single colour fills the whole frame under even light. Its surface shows no texture, pattern or object of any kind. ' +
  'The edges are clean and the tone does not change from corner to corner.';
const SHORT = 'A flat colour swatch on its own.';

let dir: string;
let server: VllmChatServer;
let modelPath: string;

async function swatch(i: number): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: { r: 30 * i + 10, g: 200 - 20 * i, b: (70 * i) % 256 } } }).png().toBuffer());
}

/** A tar written with the project's TarWriter; `samples` may be empty (just the end-of-archive marker). */
async function writeTar(path: string, samples: { key: string; png: Uint8Array }[]): Promise<void> {
  const chunks: Uint8Array[] = [];
  const tar = new TarWriter({ write: async (c) => void chunks.push(Buffer.from(c)) });
  for (const s of samples) await tar.addSample(s.key, { png: s.png, json: JSON.stringify({ key: s.key, caption: `alt ${s.key}`, url: `http://example.com/${s.key}.png` }), txt: `alt ${s.key}` });
  await tar.finish();
  await writeFile(path, Buffer.concat(chunks));
}

/** Column name → DuckDB type of one Parquet file. */
async function columnsOf(file: string): Promise<Record<string, string>> {
  const rows = await duckRows(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
  return Object.fromEntries(rows.map((r) => [String(r.column_name), String(r.column_type)]));
}

const count = async (file: string) => Number((await duckRows(`SELECT count(*) AS n FROM read_parquet('${file}')`))[0].n);

const STATUS = { key: 'VARCHAR', status: 'VARCHAR', dropped_by: 'VARCHAR', dropped_value: 'VARCHAR', failed_stage: 'VARCHAR', error_code: 'VARCHAR', error: 'VARCHAR' };

async function tarMembers(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of readTarEntries(createReadStream(path), { name: path })) names.push(e.path);
  return names;
}

async function run(name: string, cfg: Record<string, unknown>) {
  const r = await runCli(['run', await writeConfig(dir, `${name}.json`, cfg), '--progress', 'off']);
  expect(r.code, `${name}: ${r.stderr}`).toBe(0);
  return r;
}

const preEncode = (name: string, input: string, source: string) => ({ job: 'pre-encode', output: join(dir, name), input: { paths: [input] }, source, encoder: { model: { onnx: modelPath }, size: SIZE, batch_size: 4 } });

beforeAll(async () => {
  dir = await tempDir('empty-units');
  await mkdir(join(dir, 'in-a'));
  await mkdir(join(dir, 'in-b'));
  // Dataset A: an empty tar and a tar of three good images.
  await writeTar(join(dir, 'in-a', '00000.tar'), []);
  await writeTar(join(dir, 'in-a', '00001.tar'), await Promise.all([0, 1, 2].map(async (i) => ({ key: `a${i}`, png: await swatch(i) }))));
  // Dataset B: a tar whose every image is cut short (all fail to decode) and a tar of three good ones.
  await writeTar(join(dir, 'in-b', '00000.tar'), await Promise.all([3, 4, 5].map(async (i) => ({ key: `b${i}`, png: (await swatch(i)).subarray(0, 40) }))));
  await writeTar(join(dir, 'in-b', '00001.tar'), await Promise.all([6, 7, 8].map(async (i) => ({ key: `b${i}`, png: await swatch(i) }))));
  const standin = buildBitEncoderStandin(5, SIZE);
  modelPath = join(dir, 'bit_encoder.onnx');
  await writeFile(modelPath, standin.onnx);
  server = await VllmChatServer.start({ model: MODEL, structuredOutput: true, maxImageSide: 448, reply: () => ({ text: JSON.stringify({ long_caption: LONG, short_caption: SHORT }) }) });
});

afterAll(async () => server?.close());

describe('empty units finish with schema-complete empty outputs', () => {
  it('recaption over an empty tar writes an empty tar and typed records of no rows', async () => {
    await run('recap', { job: 'recaption', output: join(dir, 'recap'), input: { paths: [join(dir, 'in-a')] }, server: { base_url: server.baseUrl, model: MODEL } });
    const out = join(dir, 'recap');
    const done = JSON.parse(await readFile(join(out, '00000.done.json'), 'utf8'));
    expect(done.funnel).toMatchObject({ rows_in: 0, written: 0 });
    expect(done.outputs.map((o: { name: string }) => o.name)).toEqual(expect.arrayContaining(['00000.tar', '00000.parquet']));
    expect(await tarMembers(join(out, '00000.tar'))).toEqual([]);
    expect(await count(join(out, '00000.parquet'))).toBe(0);
    const empty = await columnsOf(join(out, '00000.parquet'));
    expect(empty).toMatchObject({
      ...STATUS,
      url: 'VARCHAR',
      caption: 'VARCHAR',
      source_file: 'VARCHAR',
      shard_file: 'VARCHAR',
      shard_key: 'VARCHAR',
      caption_long: 'VARCHAR',
      caption_short: 'VARCHAR',
      caption_model: 'VARCHAR',
      caption_seed: 'BIGINT',
      caption_attempts: 'BIGINT',
    });
    expect(Object.keys(empty).slice(0, 7)).toEqual(Object.keys(STATUS));
    // The unit with rows types every column the empty one has the same way.
    const full = await columnsOf(join(out, '00001.parquet'));
    for (const [name, type] of Object.entries(empty)) expect(full[name], name).toBe(type);
    expect(await count(join(out, '00001.parquet'))).toBe(3);
  });

  it('pre-encode over an output holding an empty tar: an empty latent shard with the fixed columns, listed in index.json', async () => {
    await run('lat-a', preEncode('lat-a', join(dir, 'recap'), 'set-a'));
    const out = join(dir, 'lat-a');
    const shard = join(out, '00000.latents.parquet');
    expect(await count(shard)).toBe(0);
    const schema = await duckRows(`SELECT name, type, type_length, repetition_type FROM parquet_schema('${shard}') WHERE name <> 'root'`);
    const byName = new Map(schema.map((r) => [String(r.name), r]));
    expect([...byName.keys()].slice(0, 5)).toEqual(['key', 'latent', 'source', 'caption', 'url']);
    expect(byName.get('latent')).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', repetition_type: 'REQUIRED' });
    expect(Number(byName.get('latent')!.type_length)).toBe(1024);
    expect(byName.get('key')).toMatchObject({ type: 'BYTE_ARRAY', repetition_type: 'REQUIRED' });
    expect(await columnsOf(shard)).toMatchObject({ key: 'VARCHAR', latent: 'BLOB', source: 'VARCHAR', caption: 'VARCHAR', source_file: 'VARCHAR', shard_file: 'VARCHAR', shard_key: 'VARCHAR' });
    expect(await columnsOf(join(out, '00000.parquet'))).toMatchObject({ ...STATUS, source: 'VARCHAR', shard_file: 'VARCHAR' });
    expect(await count(join(out, '00000.parquet'))).toBe(0);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.rows).toBe(3);
    expect(index.shards.map((s: { name: string; rows: number }) => [s.name, s.rows])).toEqual([['00000.latents.parquet', 0], ['00001.latents.parquet', 3]]);
    // The shards read together, by name, as one table.
    const rows = await duckRows(`SELECT key, source, caption_long FROM read_parquet('${out}/*.latents.parquet', union_by_name = true) ORDER BY key`);
    expect(rows).toEqual([0, 1, 2].map((i) => ({ key: `a${i}`, source: 'set-a', caption_long: LONG })));
  });

  it('pre-encode over a tar whose every image fails: records of every row, an empty latent shard, index.json lists it', async () => {
    await run('lat-b', preEncode('lat-b', join(dir, 'in-b'), 'set-b'));
    const out = join(dir, 'lat-b');
    const records = await duckRows(`SELECT key, status, failed_stage FROM read_parquet('${out}/00000.parquet') ORDER BY key`);
    expect(records).toEqual(['b3', 'b4', 'b5'].map((key) => ({ key, status: 'failed', failed_stage: 'decode' })));
    const shard = join(out, '00000.latents.parquet');
    expect(await count(shard)).toBe(0);
    expect(await columnsOf(shard)).toMatchObject({ key: 'VARCHAR', latent: 'BLOB', source: 'VARCHAR', caption: 'VARCHAR' });
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.shards.map((s: { name: string; rows: number }) => [s.name, s.rows])).toEqual([['00000.latents.parquet', 0], ['00001.latents.parquet', 3]]);
    const summary = JSON.parse(await readFile(join(out, 'run-summary.json'), 'utf8'));
    expect(summary.funnel).toMatchObject({ rows_in: 6, written: 3 });
  });

  it('training-mix and `bitprep latents` take latent datasets with empty shards', async () => {
    const out = join(dir, 'mix');
    await run('mix', {
      job: 'training-mix',
      output: out,
      sets: [
        { name: 'a', paths: [join(dir, 'lat-a')], weight: 1 },
        { name: 'b', paths: [join(dir, 'lat-b')], weight: 1 },
      ],
      world_size: 1,
      global_batch: 2,
      shard_size: 4,
      // One scatter unit per input shard: the empty shards are scatter units of their own.
      shuffle: { scatter_rows: 1 },
    });
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.rows).toBe(6);
    const rows = await duckRows(`SELECT key, source, mix_set FROM read_parquet('${out}/*.latents.parquet') ORDER BY key`);
    expect(rows.map((r) => r.key)).toEqual(['a0', 'a1', 'a2', 'b6', 'b7', 'b8']);
    // The scatter units of the empty input shards recorded no rows, in files with the records' columns.
    const scatter = (await readdir(out)).filter((n) => /^scatter-\d+\.parquet$/.test(n)).sort();
    expect(scatter).toHaveLength(4);
    const counts = await Promise.all(scatter.map((n) => count(join(out, n))));
    expect(counts).toEqual([0, 3, 0, 3]);
    for (const n of scatter) expect(await columnsOf(join(out, n))).toMatchObject({ ...STATUS, source: 'VARCHAR', mix_set: 'VARCHAR', dataset: 'VARCHAR', input_shard: 'VARCHAR', copies: 'BIGINT' });

    const st = await runCli(['latents', 'stats', join(dir, 'lat-b'), '--json']);
    expect(st.code, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout).images).toBe(3);
  });
});
