import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarWriter } from '../src/formats/tar-write.js';
import { silentLogger, type Logger } from '../src/log.js';
import { KServeTensorModel } from '../src/models/kserve-client.js';
import { DEFAULT_MAX_REQUEST_BYTES, REQUEST_HEADER_HEADROOM_BYTES, requestBodyLimit, startKServeServer } from '../src/models/kserve-server.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { TensorModel } from '../src/models/tensor.js';
import { OutageError } from '../src/outage.js';
import { newSample, type Sample } from '../src/sample.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { seededRandom } from '../src/seeded-random.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { encodeStages } from '../stages/encode.js';
import { duckRows } from './helpers/duckdb.js';
import { runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const MiB = 1024 * 1024;
/** 128 px: one image is 3·128·128 float32 = 192 KiB, so a 1 MiB body limit takes 5 and refuses 8 or 12. */
const SIZE = 128;
const N = 12;

let dir: string;
let modelPath: string;
const pngs: Buffer[] = [];

async function makePngs(): Promise<void> {
  const r = seededRandom(15);
  for (let i = 0; i < N; i++) {
    const noise = Buffer.from(Uint8Array.from({ length: SIZE * SIZE * 3 }, () => Math.floor(r() * 256)));
    pngs.push(await sharp(noise, { raw: { width: SIZE, height: SIZE, channels: 3 } }).blur(1 + (i % 3)).png().toBuffer());
  }
}

async function makeShard(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
  const out = createWriteStream(join(path, '00000.tar'));
  const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
  for (let i = 0; i < N; i++) {
    const key = `k${String(i).padStart(3, '0')}`;
    await w.addSample(key, { png: pngs[i], json: JSON.stringify({ key, caption: `caption ${i}` }), txt: `caption ${i}` });
  }
  await w.finish();
  await new Promise<void>((ok) => out.end(ok));
}

/** Starts `bitprep serve` and resolves with its base URL and what it printed up to then. */
async function serve(args: string[]): Promise<{ cli: ReturnType<typeof startCli>; url: string; banner: string }> {
  const cli = startCli(['serve', ...args, '--port', '0']);
  let banner = '';
  const url = await new Promise<string>((resolve, reject) => {
    cli.child.stdout!.on('data', (d) => {
      banner += d;
      const m = /at (http:\/\/[^/\s]+)\/v2\/models\/bit_encoder\n.*request body limit.*\n/.exec(banner);
      if (m) resolve(m[1]);
    });
    cli.done.then((x) => reject(new Error(`serve exited (${x.code}): ${x.stderr}`)));
  });
  return { cli, url, banner };
}

async function stop(s: { cli: ReturnType<typeof startCli> } | undefined): Promise<void> {
  if (!s) return;
  s.cli.child.kill('SIGTERM');
  await s.cli.done;
}

describe('bitprep serve body limit vs the encoder batch size', () => {
  beforeAll(async () => {
    dir = await tempDir('serve-limits');
    await makePngs();
    await makeShard(join(dir, 'shards'));
    modelPath = join(dir, 'bit_encoder_128.onnx');
    await writeFile(modelPath, buildBitEncoderStandin(5, SIZE).onnx);
  });

  describe('a server whose explicit limit (1 MiB) is below one batch (12 images = 2.3 MiB)', () => {
    let server: Awaited<ReturnType<typeof serve>> | undefined;
    beforeAll(async () => {
      server = await serve(['--model', `bit_encoder=${modelPath}`, '--max-batch', '4', '--max-request-mb', '1']);
    });
    afterAll(() => stop(server));

    it('prints the explicit limit', () => {
      expect(server!.banner).toMatch(/bit_encoder: request body limit 1 MiB \(set explicitly\)/);
    });

    it('pre-encode splits refused batches: every row ok, latents byte-identical to a run with batch 1', async () => {
      const config = (name: string, batch: number) => ({ job: 'pre-encode', output: join(dir, name), input: { paths: [join(dir, 'shards')] }, source: 'laion', encoder: { model: { kserve: [server!.url], model: 'bit_encoder' }, size: SIZE, batch_size: batch, max_wait_ms: 1000 } });
      const big = await runCli(['run', await writeConfig(dir, 'big.json', config('big', N)), '--progress', 'off']);
      expect(big.code, big.stderr).toBe(0);
      expect(big.stderr).toMatch(new RegExp(`encode: ${server!.url.replace(/[.]/g, '\\.')} refused a request of 12 images for its size .*413.*sending at most \\d per request`));
      const one = await runCli(['run', await writeConfig(dir, 'one.json', config('one', 1)), '--progress', 'off']);
      expect(one.code, one.stderr).toBe(0);
      expect(one.stderr).not.toMatch(/refused a request/);

      const records = await duckRows(`select key, status from read_parquet('${join(dir, 'big')}/00000.parquet') order by key`);
      expect(records).toHaveLength(N);
      expect(records.every((r) => r.status === 'ok')).toBe(true);
      const latents = async (name: string) => duckRows(`select key, hex(latent) as hex from read_parquet('${join(dir, name)}/*.latents.parquet') order by key`);
      const a = await latents('big');
      const b = await latents('one');
      expect(a).toHaveLength(N);
      expect(a).toEqual(b);

      const stats = JSON.parse(await readFile(join(dir, 'big', '00000.stats.json'), 'utf8'));
      const units = stats.stages.find((s: { name: string }) => s.name === 'encode').counts;
      // 12 refused → 6 refused → 3 + 3 taken; the second 6 goes out pre-split, in 3s.
      expect(units.requests_split).toBe(2);
      expect(units.batches).toBe(1);
      expect(units.requests).toBe(4);
      expect(units.latents).toBe(N);
    }, 120_000);
  });

  it('one image refused for its size is an outage that stops the unit, not a failed row', async () => {
    const model = await OnnxTensorModel.load(modelPath, { name: 'bit_encoder' });
    // Below one 192 KiB image.
    const server = await startKServeServer({ bit_encoder: model }, { port: 0, maxRequestBytes: 100 * 1024 });
    try {
      const client = await KServeTensorModel.connect(server.url, 'bit_encoder');
      const pool = new ReplicaPool<TensorModel>([{ name: server.url, client }], { cooldownMs: 20, maxAttempts: 1 });
      const samples: Sample[] = pngs.slice(0, 4).map((png, i) => Object.assign(newSample(`s${i}`), { image: new Uint8Array(png) }));
      async function* source() {
        yield* samples;
      }
      const warnings: string[] = [];
      const log: Logger = { ...silentLogger, warn: (m) => warnings.push(m) };
      const stream = pipe(source(), encodeStages({ pool, size: SIZE, batchSize: 4, maxWaitMs: 1000, decodeConcurrency: 2 }), { unitId: 'u', stats: new StatsCollector(), log });
      let err: unknown;
      try {
        for await (const _ of stream) void _;
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OutageError);
      expect(err).toMatchObject({ target: server.url, reason: 'http_413_request_too_large' });
      expect((err as Error).message).toMatch(/single sample .*413.*--max-request-mb/);
      // 4 → 2 → 1 refused: two splits, then the outage.
      expect(warnings).toHaveLength(2);
      expect(samples.every((s) => s.status.kind === 'ok')).toBe(true);
    } finally {
      await server.close();
      await model.close();
    }
  });

  describe('defaults', () => {
    it('the limit follows the model and the max batch; dynamic H/W falls back to 64 MiB; explicit wins', () => {
      const fake = (shape: number[], dtype: 'FP32' | 'FP16' = 'FP32'): TensorModel => ({
        name: 'm', inputs: [{ name: 'image', dtype, shape }], outputs: [], infer: async () => ({}), close: async () => {},
      });
      const per = 3 * 512 * 512 * 4;
      const bit = requestBodyLimit(fake([-1, 3, 512, 512]), 32);
      expect(bit.perSampleBytes).toBe(per);
      expect(bit.bytes).toBe(32 * per + REQUEST_HEADER_HEADROOM_BYTES);
      expect(bit.reason).toMatch(/^97 MiB \(32 × 3 MiB per sample/);
      expect(requestBodyLimit(fake([-1, 3, 512, 512]), 8).bytes).toBe(DEFAULT_MAX_REQUEST_BYTES);
      expect(requestBodyLimit(fake([-1, 3, 512, 512], 'FP16'), 32).bytes).toBe(DEFAULT_MAX_REQUEST_BYTES);
      const dyn = requestBodyLimit(fake([-1, 3, -1, -1]), 32);
      expect(dyn.bytes).toBe(DEFAULT_MAX_REQUEST_BYTES);
      expect(dyn.dynamicInputs).toEqual(['image[?,3,?,?]']);
      expect(dyn.reason).toMatch(/dynamic dims besides the batch.*set the limit explicitly/);
      expect(requestBodyLimit(fake([-1, 3, 512, 512]), 32, 5 * MiB).bytes).toBe(5 * MiB);
    });

    it('`bitprep serve --max-batch 32` with no limit set takes a 32-image 512 px binary request (96 MiB of float32)', async () => {
      const path512 = join(dir, 'bit_encoder_512.onnx');
      await writeFile(path512, buildBitEncoderStandin(5, 512).onnx);
      const server = await serve(['--model', `bit_encoder=${path512}`, '--max-batch', '32']);
      try {
        expect(server.banner).toMatch(/bit_encoder: request body limit 97 MiB \(32 × 3 MiB per sample \+ 1 MiB header room = 97 MiB\)/);
        const client = await KServeTensorModel.connect(server.url, 'bit_encoder', { timeoutMs: 120_000 });
        const n = 32;
        const x = new Float32Array(n * 3 * 512 * 512);
        for (let i = 0; i < x.length; i += 97) x[i] = ((i % 200) - 100) / 100;
        const out = await client.infer({ image: { dtype: 'FP32', shape: [n, 3, 512, 512], data: x } }, { outputs: ['logits'] });
        expect(out.logits.shape).toEqual([n, 128, 64]);
        expect(client.stats.bytesSent).toBeGreaterThan(96 * MiB);
        expect(client.stats.bytesSent).toBeLessThan(97 * MiB);
      } finally {
        await stop(server);
      }
    }, 120_000);
  });
});
