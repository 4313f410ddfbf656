import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarWriter } from '../src/formats/tar-write.js';
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { seededRandom } from '../src/seeded-random.js';
import { buildBitEncoderStandin, type BitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { decodeRgbAsPil } from '../src/images/pil-decode.js';
import { centreCrop, randomCrop } from '../src/images/train-crop.js';
import { drawView } from '../stages/encode-views.js';
import { repoRoot, runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { writeTorchStandin } from './helpers/torch-standin.js';
import { duckRows } from './helpers/duckdb.js';

const SIZE = 128;
const N = 9;
let dir: string;
let shards: string;
let standin: BitEncoderStandin;
let modelPath: string;
const images = new Map<string, Buffer>();

/** Image shards as the image jobs write them: drawn images of several sizes, one corrupt. */
async function makeShards(): Promise<void> {
  shards = join(dir, 'shards');
  await mkdir(shards, { recursive: true });
  const r = seededRandom(21);
  for (let t = 0; t < 2; t++) {
    const out = createWriteStream(join(shards, `0000${t}.tar`));
    const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
    for (let i = t * 5; i < Math.min(N + 1, (t + 1) * 5); i++) {
      const key = `k${String(i).padStart(3, '0')}`;
      const [w0, h0] = i % 3 === 0 ? [160, 120] : [SIZE, SIZE];
      const noise = Buffer.from(Uint8Array.from({ length: w0 * h0 * 3 }, () => Math.floor(r() * 256)));
      let bytes: Buffer = await sharp(noise, { raw: { width: w0, height: h0, channels: 3 } }).blur(1 + (i % 4)).png().toBuffer();
      if (i === 9) bytes = images.get('k001')!; // a duplicate image, for latents dedup
      if (i === 7) bytes = bytes.subarray(0, 40); // corrupt
      else images.set(key, bytes);
      await w.addSample(key, { png: bytes, json: JSON.stringify({ key, caption: `alt ${i}`, caption_long: `a long caption ${i}`, caption_short: `short ${i}`, aesthetic_score: 5 + i / 4, source: 'dalle3-json-source' }), txt: `alt ${i}` });
    }
    await w.finish();
    await new Promise<void>((ok) => out.end(ok));
  }
}

/**
 * The expected latent, computed here from the stand-in's raw weights in float64 (a direct
 * convolution over the same crop's pixels) and packed bit by bit into a hex string,
 * without bitprep's encoder input, batcher or packer.
 */
async function expectedLatent(png: Buffer, key: string, view?: number): Promise<{ hex: string; ambiguous: number[] }> {
  // The crops themselves are checked bit for bit against Pillow in train-crop.test.ts.
  const img = await decodeRgbAsPil(png);
  const { data } = view === undefined ? centreCrop(img, SIZE) : randomCrop(img, SIZE, drawView(0, key, view, img.width, img.height, SIZE));
  const [kh, kw] = standin.kernel;
  const bits: number[] = [];
  const ambiguous: number[] = [];
  for (let t = 0; t < 128; t++) {
    const row = Math.floor(t / 8), col = t % 8;
    for (let j = 0; j < 64; j++) {
      let acc = standin.bias[j];
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < kh; y++) {
          for (let x = 0; x < kw; x++) {
            const px = data[((row * kh + y) * SIZE + (col * kw + x)) * 3 + c] / 127.5 - 1;
            acc += standin.weights[((j * 3 + c) * kh + y) * kw + x] * px;
          }
        }
      }
      // Float32 inference against a float64 reference: the sign of a logit this close to 0 is rounding's call.
      if (Math.abs(acc) < 1e-5) ambiguous.push(bits.length);
      bits.push(acc > 0 ? 1 : 0);
    }
  }
  let hex = '';
  for (let b = 0; b < 1024; b++) {
    let v = 0;
    for (let k = 0; k < 8; k++) v = v * 2 + bits[b * 8 + k];
    hex += v.toString(16).padStart(2, '0');
  }
  return { hex: hex.toUpperCase(), ambiguous };
}


function config(name: string, model: unknown, extra: Record<string, unknown> = {}) {
  return { job: 'pre-encode', output: join(dir, name), input: { paths: [shards] }, source: 'laion', encoder: { model, size: SIZE, batch_size: 4, crop: 'centre' }, ...extra };
}

let ambiguousSeen = 0;

/** Every latent equals the reference's bits, except bits whose reference logit is within 1e-5 of 0 (float32 rounding decides those). */
async function checkOutput(name: string, views = 0): Promise<void> {
  const out = join(dir, name);
  const rows = await duckRows(`select key, view, hex(latent) as hex, caption, caption_long, source, source_original, aesthetic_score from read_parquet('${out}/*.latents.parquet') order by key, view`);
  expect(rows.map((r) => `${r.key}/${r.view}`)).toEqual([...images.keys()].sort().flatMap((k) => Array.from({ length: Math.max(1, views) }, (_, v) => `${k}/${v}`)));
  for (const r of rows) {
    const want = await expectedLatent(images.get(String(r.key))!, String(r.key), views > 0 ? Number(r.view) : undefined);
    expect(want.ambiguous.length).toBeLessThan(8);
    const got = String(r.hex);
    const bit = (hex: string, i: number) => (parseInt(hex.slice((i >> 3) * 2, (i >> 3) * 2 + 2), 16) >> (7 - (i & 7))) & 1;
    const differ = Array.from({ length: 8192 }, (_, i) => i).filter((i) => bit(got, i) !== bit(want.hex, i));
    expect(differ.filter((i) => !want.ambiguous.includes(i)), String(r.key)).toEqual([]);
    ambiguousSeen += want.ambiguous.length;
    expect(r.source).toBe('laion');
    expect(r.source_original).toBe('dalle3-json-source');
  }
  const [schema] = await duckRows(`select type, type_length, repetition_type from parquet_schema('${out}/00000.latents.parquet') where name = 'latent'`);
  expect(schema).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', repetition_type: 'REQUIRED' });
  expect(Number(schema.type_length)).toBe(1024);
  const [codec] = await duckRows(`select distinct compression from parquet_metadata('${out}/00000.latents.parquet') where path_in_schema = 'latent'`);
  expect(String(codec.compression).toUpperCase()).toBe('ZSTD');
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
  expect(index).toMatchObject({ format: 'bitprep-latents', latent_bytes: 1024, tokens: 128, bits_per_token: 64, rows: N * Math.max(1, views), crop: views > 0 ? 'random' : 'centre', views: Math.max(1, views) });
  expect(index.shards.map((s: { name: string }) => s.name)).toEqual(['00000.latents.parquet', '00001.latents.parquet']);
  const records = await duckRows(`select key, status, failed_stage, error_code from read_parquet('${out}/0000?.parquet') order by key`);
  expect(records).toHaveLength(N + 1);
  expect(records.find((x) => x.key === 'k007')).toMatchObject({ status: 'failed', failed_stage: 'decode', error_code: 'decode_error' });
}

describe('pre-encode with a tiny encoder that has the real contract', () => {
  beforeAll(async () => {
    dir = await tempDir('pre-encode');
    await makeShards();
    standin = buildBitEncoderStandin(3, SIZE);
    modelPath = join(dir, 'bit_encoder.onnx');
    await writeFile(modelPath, standin.onnx);
  });

  it('in process: DuckDB reads latents equal to the reference computation, plus index.json and records', async () => {
    const cfg = await writeConfig(dir, 'local.json', config('local', { onnx: modelPath }));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    await checkOutput('local');
    expect(r.stdout).toMatch(/encode: .*latents 9/);
    expect(r.stdout).toMatch(/encoder_idle_seconds/);
    expect(r.stdout).toMatch(/decoded_wait_seconds/);
  });

  it('views: each image encoded from several seeded random crops as the reference trains, a row per view', async () => {
    const cfg = await writeConfig(dir, 'views.json', config('views', { onnx: modelPath }, { encoder: { model: { onnx: modelPath }, size: SIZE, batch_size: 4, views: 3 } }));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    await checkOutput('views', 3);
    expect(r.stdout).toMatch(/encode: .*latents 27/);
    // The views of an image differ (other crops, flips), and the same config draws the same ones.
    const [d] = await duckRows(`select count(distinct latent) as n from read_parquet('${join(dir, 'views')}/*.latents.parquet')`);
    expect(Number(d.n)).toBe(27);
    // The latents tools know views: dedup compares one latent per image, show picks a view.
    const dd = await runCli(['latents', 'dedup', join(dir, 'views'), '--threshold', '0']);
    expect(dd.code, dd.stderr).toBe(0);
    expect(dd.stdout).toMatch(/^9 latents/);
    const png = join(dir, 'k002-v2.png');
    expect((await runCli(['latents', 'show', join(dir, 'views'), 'k002', '--view', '2', '--out', png])).code).toBe(0);
    const shown = await sharp(png).raw().toBuffer();
    const [v2] = await duckRows(`select hex(latent) as hex from read_parquet('${join(dir, 'views')}/*.latents.parquet') where key = 'k002' and view = 2`);
    const bits = Array.from({ length: 8192 }, (_, i) => (parseInt(String(v2.hex).slice((i >> 3) * 2, (i >> 3) * 2 + 2), 16) >> (7 - (i & 7))) & 1);
    // 4 pixels per bit, one channel or more: sample each bit's top-left pixel.
    const channels = shown.length / (256 * 512);
    expect(bits.every((b, i) => (shown[((Math.floor(i / 64) * 4) * 256 + (i % 64) * 4) * channels] > 127 ? 1 : 0) === b)).toBe(true);
    const bad = await writeConfig(dir, 'views-centre.json', config('views-centre', { onnx: modelPath }, { encoder: { model: { onnx: modelPath }, size: SIZE, crop: 'centre', views: 2 } }));
    const p = await runCli(['plan', bad]);
    expect(p.code).not.toBe(0);
    expect(p.stderr).toMatch(/encoder\.views.*crop 'centre' makes one view per image/);
  });

  it('latents stats, show and dedup read the dataset', async () => {
    const out = join(dir, 'local');
    const st = await runCli(['latents', 'stats', out, '--json']);
    expect(st.code, st.stderr).toBe(0);
    const stats = JSON.parse(st.stdout);
    expect(stats.images).toBe(N);
    expect(stats.bitOnesFraction).toHaveLength(8192);
    expect(stats.verdict).toBe('insufficient');
    const png = join(dir, 'k002.png');
    const sh = await runCli(['latents', 'show', out, 'k002', '--out', png, '--scale', '2']);
    expect(sh.code, sh.stderr).toBe(0);
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([128, 256]);
    const report = join(dir, 'dedup.json');
    const dd = await runCli(['latents', 'dedup', out, '--threshold', '8', '--out', report]);
    expect(dd.code, dd.stderr).toBe(0);
    const r = JSON.parse(await readFile(report, 'utf8'));
    expect(r.clusters).toEqual([['k001', 'k009']]);
    expect(r.drop).toEqual(['k009']);
  });

  describe('through `bitprep serve`, two replicas', () => {
    const served: ReturnType<typeof startCli>[] = [];
    const urls: string[] = [];
    beforeAll(async () => {
      for (let k = 0; k < 2; k++) {
        const s = startCli(['serve', '--model', `bit_encoder=${modelPath}`, '--port', '0', '--max-batch', '8']);
        served.push(s);
        urls.push(await new Promise<string>((resolve, reject) => {
          let out = '';
          s.child.stdout!.on('data', (d) => {
            out += d;
            const m = /at (http:\/\/[^/\s]+)\/v2\/models\/bit_encoder/.exec(out);
            if (m) resolve(m[1]);
          });
          s.done.then((x) => reject(new Error(`serve exited: ${x.stderr}`)));
        }));
      }
    });
    afterAll(async () => {
      for (const s of served) s.child.kill('SIGTERM');
      await Promise.all(served.map((s) => s.done));
    });

    it('gives the same latents, spread over both replicas', async () => {
      const cfg = await writeConfig(dir, 'served.json', config('served', { kserve: urls, model: 'bit_encoder' }, { encoder: { model: { kserve: urls, model: 'bit_encoder' }, size: SIZE, batch_size: 2, crop: 'centre' } }));
      const r = await runCli(['run', cfg, '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
      await checkOutput('served');
      const stats = JSON.parse(await readFile(join(dir, 'served', '00000.stats.json'), 'utf8'));
      const encode = stats.stages.find((s: { name: string }) => s.name === 'encode');
      const replicas = Object.keys(encode.counts).filter((k) => k.startsWith('replica:') && k.endsWith(':batches'));
      expect(replicas).toHaveLength(2);
      // One count per model call: the batcher's `batches` (no second count by the stage), each on one replica; no request was split.
      expect(encode.counts.batches).toBe(replicas.reduce((a, k) => a + encode.counts[k], 0));
      expect(encode.counts.requests).toBe(encode.counts.batches);
      expect(encode.counts.samples).toBe(encode.ok);
    });
  });

  describe('through tools/serve_bit_encoder.py: the encoder in PyTorch (Debian python3-torch, CPU)', () => {
    const servers: { child: ChildProcess; url: string; log: () => string }[] = [];
    let located: string[];

    async function startTorch(dtype: string, extra: string[] = []): Promise<{ child: ChildProcess; url: string; log: () => string }> {
      const child = spawn('/usr/bin/python3', [join(repoRoot, 'tools', 'serve_bit_encoder.py'), ...located, '--device', 'cpu', '--dtype', dtype, '--port', '0', '--max-batch', '8', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      const url = await new Promise<string>((resolve, reject) => {
        const t = setInterval(() => {
          const m = /serving bit_encoder at (http:\/\/[^/\s]+)\/v2\/models\/bit_encoder/.exec(out);
          if (m) {
            clearInterval(t);
            resolve(m[1]);
          }
        }, 50);
        child.on('exit', (code) => {
          clearInterval(t);
          reject(new Error(`serve_bit_encoder.py exited ${code}: ${out}`));
        });
      });
      const s = { child, url, log: () => out };
      servers.push(s);
      return s;
    }

    beforeAll(async () => {
      located = await writeTorchStandin(dir, standin, SIZE);
    }, 60_000);
    afterAll(async () => {
      for (const s of servers) s.child.kill('SIGTERM');
      await Promise.all(servers.map((s) => new Promise((ok) => (s.child.exitCode !== null ? ok(null) : s.child.on('exit', ok)))));
    });

    it('float32: pre-encode gets the reference latents, its requests batched together on the server', async () => {
      const torch = await startTorch('float32', ['--max-wait-ms', '300']);
      const model = { kserve: [torch.url], model: 'bit_encoder' };
      const cfg = await writeConfig(dir, 'torch.json', config('torch', model, { encoder: { model, size: SIZE, batch_size: 2, max_batches_in_flight: 4, crop: 'centre' } }));
      const r = await runCli(['run', cfg, '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
      await checkOutput('torch');
      const units = await Promise.all(['00000', '00001'].map(async (u) => JSON.parse(await readFile(join(dir, 'torch', `${u}.stats.json`), 'utf8'))));
      const requests = units.reduce((a, st) => a + st.stages.find((x: { name: string }) => x.name === 'encode').counts.requests, 0);
      const stats = (await (await fetch(`${torch.url}/v2/models/bit_encoder/stats`)).json()) as { model_stats: { inference_count: number; execution_count: number }[] };
      expect(stats.model_stats[0].inference_count).toBe(N);
      // Requests in flight together ran as one forward pass.
      expect(stats.model_stats[0].execution_count).toBeLessThan(requests);
    });

    it('speaks the protocol: JSON and binary answers agree; a bad shape and another model get 400 and 404', async () => {
      const torch = servers[0];
      const x = Array.from({ length: 3 * SIZE * SIZE }, (_, i) => Math.sin(i) * 0.9);
      const json = await fetch(`${torch.url}/v2/models/bit_encoder/infer`, { method: 'POST', body: JSON.stringify({ id: 'q1', inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, SIZE, SIZE], data: x }] }) });
      expect(json.status).toBe(200);
      const j = (await json.json()) as { id: string; outputs: { name: string; datatype: string; shape: number[]; data: number[] }[] };
      expect(j.id).toBe('q1');
      expect(j.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: [1, 128, 64] });
      const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, SIZE, SIZE], parameters: { binary_data_size: x.length * 4 } }], outputs: [{ name: 'logits', parameters: { binary_data: true } }] }));
      const bin = await fetch(`${torch.url}/v2/models/bit_encoder/infer`, { method: 'POST', headers: { 'Inference-Header-Content-Length': String(head.length) }, body: Buffer.concat([head, Buffer.from(Float32Array.from(x).buffer)]) });
      expect(bin.status).toBe(200);
      const body = Buffer.from(await bin.arrayBuffer());
      const n = Number(bin.headers.get('inference-header-content-length'));
      const logits = new Float32Array(body.buffer.slice(body.byteOffset + n, body.byteOffset + body.length));
      expect(Array.from(logits)).toEqual(j.outputs[0].data.map((v) => Math.fround(v)));
      const bad = await fetch(`${torch.url}/v2/models/bit_encoder/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 8, 8], data: [] }] }) });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: string }).error).toMatch(/expected \[N, 3, 128, 128\]/);
      expect((await fetch(`${torch.url}/v2/models/other`)).status).toBe(404);
    });

    it('bfloat16, as the reference trains: nearly every bit as in float32; a body over the limit gets 413 and pre-encode splits the batch', async () => {
      // A body limit under a batch of 4 images (4 × 192 KiB): the server answers 413 and pre-encode sends halves.
      const torch = await startTorch('bfloat16', ['--max-body-mb', '0.5']);
      expect(torch.log()).toMatch(/bfloat16/);
      const model = { kserve: [torch.url], model: 'bit_encoder' };
      const cfg = await writeConfig(dir, 'torch-bf16.json', config('torch-bf16', model, { encoder: { model, size: SIZE, batch_size: 4, crop: 'centre' } }));
      const r = await runCli(['run', cfg, '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr + r.stdout).toMatch(/refused a request of 4 images for its size.*sending at most 2/);
      const rows = await duckRows(`select key, hex(latent) as hex from read_parquet('${join(dir, 'torch-bf16')}/*.latents.parquet') order by key`);
      expect(rows).toHaveLength(N);
      let same = 0;
      for (const row of rows) {
        const want = await expectedLatent(images.get(String(row.key))!, String(row.key));
        const a = Buffer.from(String(row.hex), 'hex');
        const b = Buffer.from(want.hex, 'hex');
        for (let i = 0; i < 1024; i++) for (let k = 0; k < 8; k++) same += ((a[i] ^ b[i]) >> k) & 1 ? 0 : 1;
      }
      // bfloat16 keeps 8 bits of mantissa: only logits near 0 change sign (measured: 99.95% of bits equal).

      expect(same / (N * 8192)).toBeGreaterThan(0.98);
    });
  });

  it('refuses an encoder whose outputs break the contract before reading any shard, naming the problem', async () => {
    const g = new OnnxGraphBuilder('bad-encoder', { opset: 17, dynamicDim: 'N' });
    const x = g.input('image', 'FP32', [-1, 3, SIZE, SIZE]);
    const pooled = g.reduce('Mean', x, [2, 3], false, 'logits');
    g.output(pooled, 'FP32', [-1, 3]);
    const bad = join(dir, 'bad.onnx');
    await writeFile(bad, g.build());
    const cfg = await writeConfig(dir, 'bad.json', config('bad', { onnx: bad }));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/logits/);
    expect(r.stderr).toMatch(/128/);
    expect(r.stderr).toMatch(/export_bit_encoder\.py/);
  });
});
