import { execFileSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoImageServer } from '../pipelines/demo-server.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { duckRows } from './helpers/duckdb.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * `bitprep dedup --phash / --embeddings` over two laion-filter outputs whose pictures Pillow made:
 * 12 distinct pictures in A; in B, re-encoded, rescaled and brightened copies of 7 of them plus
 * 4 new pictures. The drop lists are checked against answers computed without bitprep (imagehash's
 * phash in numpy/scipy over the images in the tars, cosine similarities in numpy over the saved
 * embeddings), the views against the records (DuckDB), and pre-encode and training-mix take the
 * views as filters.
 */
let dir: string;
let server: Awaited<ReturnType<typeof startDemoImageServer>>;
const outA = () => join(dir, 'out-a');
const outB = () => join(dir, 'out-b');
/** B's copies: its file name → the A picture it copies. */
let copies: Record<string, string>;

const PICTURES = String.raw`
import json, sys, numpy as np
from PIL import Image, ImageEnhance
out = sys.argv[1]
def picture(seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:192, 0:256] / 64.0
    img = np.zeros((192, 256, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(-2, 2, 3)
            img[..., c] += np.sin(fx * x * 3 + fy * y * 3 + ph * 6)
        for _ in range(3):
            cx, cy, r = rng.uniform(0, 4), rng.uniform(0, 3), rng.uniform(0.2, 0.8)
            img[..., c] += 2 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r ** 2)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return Image.fromarray(img.astype('uint8'))
names_a = []
for i in range(12):
    picture(100 + i).save(f'{out}/a{i:02d}.png'); names_a.append(f'a{i:02d}.png')
copies = {}
for i in range(4):
    picture(100 + i).save(f'{out}/b-q{i}.jpg', quality=35); copies[f'b-q{i}.jpg'] = f'a{i:02d}.png'
for i in (4, 5):
    picture(100 + i).resize((200, 150), Image.BICUBIC).save(f'{out}/b-s{i}.png'); copies[f'b-s{i}.png'] = f'a{i:02d}.png'
ImageEnhance.Brightness(picture(106)).enhance(1.1).save(f'{out}/b-l6.png'); copies['b-l6.png'] = 'a06.png'
names_b = []
for i in range(4):
    picture(200 + i).save(f'{out}/n{i}.png'); names_b.append(f'n{i}.png')
# B interleaves new pictures and copies, so the copies are not all in one unit.
b = [names_b[0], 'b-q0.jpg', 'b-q1.jpg', names_b[1], 'b-s4.png', 'b-q2.jpg', names_b[2], 'b-s5.png', 'b-l6.png', 'b-q3.jpg', names_b[3]]
print(json.dumps({'a': names_a, 'b': b, 'copies': copies}))
`;

/** imagehash.phash of every image in an output's tars, computed with Pillow and scipy. */
const PHASHES = String.raw`
import glob, io, json, sys, tarfile, numpy as np, scipy.fftpack
from PIL import Image
out = {}
for t in sorted(glob.glob(sys.argv[1] + '/*.tar')):
    with tarfile.open(t) as tf:
        for m in tf.getmembers():
            if not m.name.endswith(('.jpg', '.webp', '.png')): continue
            im = Image.open(io.BytesIO(tf.extractfile(m).read())).convert('L').resize((32, 32), Image.LANCZOS)
            d = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(im), axis=0), axis=1)[:8, :8]
            out[m.name.rsplit('.', 1)[0]] = np.packbits((d > np.median(d)).flatten()).tobytes().hex()
print(json.dumps(out))
`;

/** Unit-length rows of every .img_emb.npy of an output, by unit (numpy). */
const EMBEDDINGS = String.raw`
import glob, json, os, sys, numpy as np
out = {}
for f in sorted(glob.glob(sys.argv[1] + '/*.img_emb.npy')):
    a = np.load(f).astype(np.float64)
    out[os.path.basename(f)[:-len('.img_emb.npy')]] = (a / np.linalg.norm(a, axis=1, keepdims=True)).tolist()
print(json.dumps(out))
`;

/** Each output's embeddings by key: numpy's rows, DuckDB's key index. */
async function embeddingsByKey(output: string): Promise<Record<string, number[]>> {
  const byKey: Record<string, number[]> = {};
  for (const [unit, vectors] of Object.entries(python(EMBEDDINGS, output) as Record<string, number[][]>)) {
    const keys = await duckRows(`SELECT key FROM read_parquet('${join(output, `${unit}.img_emb.parquet`)}', file_row_number = true) ORDER BY file_row_number`);
    expect(keys.length).toBe(vectors.length);
    keys.forEach((k, i) => (byKey[String(k.key)] = vectors[i]));
  }
  return byKey;
}

const python = (code: string, ...args: string[]) => JSON.parse(execFileSync('/usr/bin/python3', ['-c', code, ...args], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 }));

beforeAll(async () => {
  dir = await tempDir('near-dedup');
  const images = join(dir, 'images');
  await mkdir(images, { recursive: true });
  const made = python(PICTURES, images) as { a: string[]; b: string[]; copies: Record<string, string> };
  copies = made.copies;
  server = await startDemoImageServer(images);
  await mkdir(join(dir, 'models'));
  await writeFile(join(dir, 'models', 'clip.onnx'), buildClipStandinModel(7));
  await writeAestheticHead(join(dir, 'models', 'head.safetensors'), randomAestheticLayers(7));
  await writeFile(join(dir, 'encoder.onnx'), buildBitEncoderStandin(3, 32).onnx);
  for (const [name, files] of [['a', made.a], ['b', made.b]] as const) {
    const values = files.map((f) => `('${server.url}/${f}', 'picture ${f}')`).join(', ');
    await duckRows(`COPY (SELECT * FROM (VALUES ${values}) t(URL, TEXT)) TO '${join(dir, `${name}.parquet`)}' (FORMAT PARQUET)`);
    await filter(name, `out-${name}`);
  }
}, 120_000);

/** laion-filter of one input table, saving the CLIP embeddings it scores with. */
async function filter(input: string, output: string, image: Record<string, unknown> = {}): Promise<void> {
  const cfg = await writeConfig(dir, `${output}.json`, {
    job: 'laion-filter',
    output: join(dir, output),
    input: { kind: 'parquet', paths: [join(dir, `${input}.parquet`)], unit_rows: 4 },
    fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0, respect_robots: false },
    image: { size: 64, min_edge: 32, max_pixels: 50_000_000, ...image },
    aesthetic: { head: join(dir, 'models', 'head.safetensors'), clip: { model: { onnx: join(dir, 'models', 'clip.onnx') } } },
    embeddings: { dtype: 'float32' },
  });
  const r = await runCli(['run', cfg, '--progress', 'off']);
  expect(r.code, r.stderr).toBe(0);
}

afterAll(async () => {
  await server?.close();
});

/** Ok rows of both outputs in dedup order (output, unit file, row), with their URL's file name. */
async function okRows(): Promise<{ output: string; key: string; file: string }[]> {
  const recs = (o: string, i: number) => `SELECT ${i} AS oi, '${o}' AS output, key, url, filename, file_row_number FROM read_parquet('${o}/[0-9]*[0-9].parquet', filename = true, file_row_number = true, union_by_name = true) WHERE status = 'ok'`;
  const rows = await duckRows(`SELECT output, key, url FROM (${recs(outA(), 0)} UNION ALL ${recs(outB(), 1)}) ORDER BY oi, filename, file_row_number`);
  return rows.map((r) => ({ output: String(r.output), key: String(r.key), file: String(r.url).split('/').pop()! }));
}

/** For each row, the earliest earlier row `near` says it copies; rows with none are kept. */
function earliest<T>(rows: T[], near: (a: T, b: T) => boolean): Map<number, number> {
  const out = new Map<number, number>();
  for (let j = 0; j < rows.length; j++) {
    for (let i = 0; i < j; i++) {
      if (near(rows[i], rows[j])) {
        out.set(j, i);
        break;
      }
    }
  }
  return out;
}

const bitsApart = (a: string, b: string) => {
  let d = 0;
  for (let i = 0; i < a.length; i += 2) {
    let x = parseInt(a.slice(i, i + 2), 16) ^ parseInt(b.slice(i, i + 2), 16);
    for (; x; x &= x - 1) d++;
  }
  return d;
};

async function drops(out: string): Promise<Map<string, Record<string, unknown>>> {
  return new Map((await duckRows(`SELECT * FROM read_parquet('${out}/drops/*.parquet')`)).map((r) => [`${r.output}|${r.key}`, r]));
}

describe('bitprep dedup near duplicates', () => {
  it('--phash drops exactly the rows imagehash says are within the bits of an earlier one: the copies', async () => {
    const rows = await okRows();
    expect(rows.length).toBe(23);
    // Keys repeat across outputs: each row is its output and key.
    const hashes: Record<string, string> = {};
    for (const o of [outA(), outB()]) for (const [k, h] of Object.entries(python(PHASHES, o) as Record<string, string>)) hashes[`${o}|${k}`] = h;
    const h = (x: { output: string; key: string }) => hashes[`${x.output}|${x.key}`];
    const want = earliest(rows, (a, b) => bitsApart(h(a), h(b)) <= 8);
    // The pictures themselves: every copy, and nothing else, is within 8 bits of an earlier row (its original).
    expect([...want.keys()].map((j) => rows[j].file).sort()).toEqual(Object.keys(copies).sort());
    for (const [j, i] of want) expect(rows[i].file).toBe(copies[rows[j].file]);

    const out = join(dir, 'dedup-phash');
    const r = await runCli(['dedup', outA(), outB(), '--out', out, '--phash', '8', '--partitions', '3', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.total_near_duplicates).toBe(want.size);
    expect(s.near_duplicates).toEqual([0, want.size]);
    const got = await drops(out);
    expect(got.size).toBe(want.size);
    for (const [j, i] of want) {
      const d = got.get(`${rows[j].output}|${rows[j].key}`);
      expect(d, rows[j].file).toBeDefined();
      expect(d!.method).toBe('phash');
      expect(d!.reason).toBe('near_duplicate');
      expect(d!.kept_key).toBe(rows[i].key);
      expect(d!.kept_output).toBe(rows[i].output);
      expect(d!.distance).toBe(bitsApart(h(rows[i]), h(rows[j])));
    }

    // The view: every record row once, the dropped ones now dropped near_duplicate naming the kept copy.
    const view = await duckRows(`SELECT v.key, v.status, v.dropped_by, v.dropped_value, v.previous_status, r.status AS record_status FROM read_parquet('${out}/view/1/*.parquet') v FULL JOIN read_parquet('${outB()}/[0-9]*[0-9].parquet', union_by_name = true) r USING (key)`);
    expect(view.every((x) => x.previous_status === x.record_status)).toBe(true);
    const changed = view.filter((x) => x.status !== x.previous_status);
    expect(changed.map((x) => String(x.key)).sort()).toEqual([...want.keys()].map((j) => rows[j].key).sort());
    for (const x of changed) expect([x.dropped_by, String(x.dropped_value).startsWith(`${outA()}/`)]).toEqual(['near_duplicate', true]);
    expect((await duckRows(`SELECT count(*) AS n FROM read_parquet('${out}/view/0/*.parquet') WHERE status <> previous_status`))[0].n).toBe(0n);

    // Rerun into the same folder with other partitions: the same answer; a dedup of A alone there leaves no view of B behind.
    const again = await runCli(['dedup', outA(), outB(), '--out', out, '--phash', '8', '--partitions', '1', '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect([...(await drops(out)).entries()].map(([k, d]) => [k, d.kept_key, d.distance]).sort()).toEqual([...got.entries()].map(([k, d]) => [k, d.kept_key, d.distance]).sort());
    const scratch = join(dir, 'dedup-a-only');
    await runCli(['dedup', outA(), outB(), '--out', scratch, '--phash', '8']);
    const alone = await runCli(['dedup', outA(), '--out', scratch, '--phash', '8']);
    expect(alone.code, alone.stderr).toBe(0);
    const files = (await readdir(join(scratch, 'view'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.parentPath);
    expect(new Set(files)).toEqual(new Set([join(scratch, 'view', '0')]));
  });

  it('--embeddings drops exactly the rows numpy finds at the cosine threshold of an earlier one (one cluster: every pair), and a subset with clusters', async () => {
    const rows = await okRows();
    const vectors: Record<string, number[]> = {};
    for (const o of [outA(), outB()]) for (const [k, v] of Object.entries(await embeddingsByKey(o))) vectors[`${o}|${k}`] = v;
    const v = (x: { output: string; key: string }) => vectors[`${x.output}|${x.key}`];
    const cos = (a: number[], b: number[]) => a.reduce((s, x, k) => s + x * b[k], 0);
    const threshold = 0.995;
    const want = earliest(rows, (a, b) => cos(v(a), v(b)) >= threshold);
    // The stand-in CLIP still tells pictures apart: what is found is copies of their originals (the brightened one sits below 0.995).
    for (const [j, i] of want) expect(rows[i].file).toBe(copies[rows[j].file]);
    expect(want.size).toBeGreaterThanOrEqual(5);
    const out = join(dir, 'dedup-emb');
    const r = await runCli(['dedup', outA(), outB(), '--out', out, '--embeddings', String(threshold), '--clusters', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const got = await drops(out);
    expect([...got.keys()].sort()).toEqual([...want.keys()].map((j) => `${rows[j].output}|${rows[j].key}`).sort());
    for (const [j, i] of want) expect(got.get(`${rows[j].output}|${rows[j].key}`)!.kept_key).toBe(rows[i].key);

    const clustered = join(dir, 'dedup-emb-3');
    const r3 = await runCli(['dedup', outA(), outB(), '--out', clustered, '--embeddings', String(threshold), '--clusters', '3', '--json']);
    expect(r3.code, r3.stderr).toBe(0);
    expect(JSON.parse(r3.stdout).methods.embeddings.clusters).toBe(3);
    for (const k of (await drops(clustered)).keys()) expect(got.has(k), k).toBe(true);
  });

  it('--clip computes the embeddings from the stored images: the same answer as the saved ones when the shards keep the originals', async () => {
    await filter('a', 'orig-a', { keep_original: 'only' });
    await filter('b', 'orig-b', { keep_original: 'only' });
    const outs = [join(dir, 'orig-a'), join(dir, 'orig-b')];
    const saved = join(dir, 'dedup-saved');
    const computed = join(dir, 'dedup-computed');
    const a = await runCli(['dedup', ...outs, '--out', saved, '--embeddings', '0.995', '--clusters', '1', '--json']);
    expect(a.code, a.stderr).toBe(0);
    const b = await runCli(['dedup', ...outs, '--out', computed, '--embeddings', '0.995', '--clusters', '1', '--clip', join(dir, 'models', 'clip.onnx'), '--json']);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).methods.embeddings.source).toBe(join(dir, 'models', 'clip.onnx'));
    const [x, y] = [await drops(saved), await drops(computed)];
    expect(x.size).toBeGreaterThanOrEqual(5);
    expect([...y.keys()].sort()).toEqual([...x.keys()].sort());
    for (const [k, d] of x) {
      expect(y.get(k)!.kept_key).toBe(d.kept_key);
      expect(Math.abs(Number(y.get(k)!.distance) - Number(d.distance))).toBeLessThan(1e-5);
    }
    // A model that is not a CLIP image tower fails the dedup before any pass.
    const bad = await runCli(['dedup', ...outs, '--out', join(dir, 'dedup-bad'), '--embeddings', '0.9', '--clip', join(dir, 'encoder.onnx')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/a CLIP image tower takes "pixel_values" and gives "image_embeds"/);
  });

  it('pre-encode and training-mix leave out what the view drops', async () => {
    const dedup = join(dir, 'dedup-phash');
    const model = join(dir, 'encoder.onnx');
    const encode = async (name: string, exclude: string[]) => {
      const cfg = await writeConfig(dir, `${name}.json`, { job: 'pre-encode', output: join(dir, name), input: { paths: [outB()], exclude }, source: 'b', encoder: { model: { onnx: model }, size: 32, crop: 'centre' } });
      const r = await runCli(['run', cfg, '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
    };
    await encode('latents-b-excluded', [dedup]);
    await encode('latents-b', []);
    const dropped = [...(await drops(dedup)).values()].map((x) => String(x.key)).sort();
    const rec = await duckRows(`SELECT key, dropped_by, dropped_value FROM read_parquet('${join(dir, 'latents-b-excluded')}/[0-9]*[0-9].parquet', union_by_name = true) WHERE status = 'dropped'`);
    expect(rec.map((x) => String(x.key)).sort()).toEqual(dropped);
    for (const x of rec) expect([x.dropped_by, String(x.dropped_value).includes(`${outA()}/`)]).toEqual(['near_duplicate', true]);

    // training-mix over the latents encoded whole, with the dedup as a filter.
    const mix = join(dir, 'mix');
    const cfg = await writeConfig(dir, 'mix.json', { job: 'training-mix', output: mix, sets: [{ name: 'b', paths: [join(dir, 'latents-b')], weight: 1 }], dedup: { exclude: [dedup] }, world_size: 1, global_batch: 1, shard_size: 4 });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    const mixed = (await duckRows(`SELECT key FROM read_parquet('${mix}/*.latents.parquet')`)).map((x) => String(x.key));
    const all = (await duckRows(`SELECT key FROM read_parquet('${join(dir, 'latents-b')}/*.latents.parquet')`)).map((x) => String(x.key));
    expect(mixed.sort()).toEqual(all.filter((k) => !dropped.includes(k)).sort());
    const fates = await duckRows(`SELECT key, dropped_by FROM read_parquet('${mix}/[0-9s]*.parquet', union_by_name = true) WHERE status = 'dropped'`);
    expect(fates.filter((x) => x.dropped_by === 'dedup_excluded').map((x) => String(x.key)).sort()).toEqual(dropped);

    // A dedup that never saw B's units is refused at plan time by both, naming the output.
    const onlyA = join(dir, 'dedup-only-a');
    expect((await runCli(['dedup', outA(), '--out', onlyA])).code).toBe(0);
    const pe = await writeConfig(dir, 'pe-bad.json', { job: 'pre-encode', output: join(dir, 'never-pe'), input: { paths: [outB()], exclude: [onlyA] }, source: 'b', encoder: { model: { onnx: model }, size: 32, crop: 'centre' } });
    const mx = await writeConfig(dir, 'mix-bad.json', { job: 'training-mix', output: join(dir, 'never-mix'), sets: [{ name: 'b', paths: [join(dir, 'latents-b')], weight: 1 }], dedup: { exclude: [onlyA] }, world_size: 1, global_batch: 1 });
    for (const cfgFile of [pe, mx]) {
      const bad = await runCli(['plan', cfgFile]);
      expect(bad.code, cfgFile).not.toBe(0);
      expect(bad.stderr).toContain(`${outB()} is not among the outputs of ${onlyA}`);
    }
  });
});
