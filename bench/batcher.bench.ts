import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { modelBatchStage } from '../src/models/batcher.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import { silentLogger } from '../src/log.js';
import { newSample, type Sample } from '../src/sample.js';
import { StatsCollector } from '../src/stats.js';
import { timeMedian, type BenchResult } from './harness.js';

const SAMPLES = 2000;
const BATCH = 16;
const FEATURES = 256;
const LATENCY_MS = 40;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A model server that, like one GPU, runs one batch at a time: rows of FP32 in, one FP32 per row out. */
async function startReplica(): Promise<{ url: string; server: Server }> {
  let turn: Promise<unknown> = Promise.resolve();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const x = new Float32Array(body.buffer, body.byteOffset, body.byteLength / 4);
      turn = turn.then(async () => {
        await sleep(LATENCY_MS);
        const rows = x.length / FEATURES;
        const y = new Float32Array(rows);
        for (let r = 0; r < rows; r++) for (let j = 0; j < FEATURES; j++) y[r] += x[r * FEATURES + j];
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from(y.buffer));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/infer`, server };
}

async function infer(url: string, inputs: Float32Array[]): Promise<number[]> {
  const body = new Float32Array(inputs.length * FEATURES);
  inputs.forEach((x, i) => body.set(x, i * FEATURES));
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status} from ${url}`), { status: res.status });
  return Array.from(new Float32Array(await res.arrayBuffer()));
}

async function throughput(urls: string[]): Promise<number> {
  const pool = new ReplicaPool(urls.map((url, i) => ({ name: `r${i}`, client: url })));
  const stage = modelBatchStage({
    name: 'score', pool, batchSize: BATCH, maxWaitMs: 20,
    // Ordered output stalls behind the slowest batch in flight; a window of a few batches per replica hides it.
    maxBatchesInFlight: 4 * urls.length,
    prepare: (s) => new Float32Array(FEATURES).fill(s.fields.i as number),
    call: (url, inputs) => infer(url, inputs),
    apply: (s, y) => { s.fields.score = y; },
  });
  const seconds = await timeMedian(async () => {
    async function* source(): AsyncGenerator<Sample> {
      for (let i = 0; i < SAMPLES; i++) yield newSample(`s${i}`, { i });
    }
    let ok = 0;
    for await (const s of stage(source(), { unitId: 'bench', stats: new StatsCollector(), log: silentLogger })) {
      if (s.status.kind === 'ok' && s.fields.score === (s.fields.i as number) * FEATURES) ok++;
    }
    if (ok !== SAMPLES) throw new Error(`batcher bench: ${ok} of ${SAMPLES} samples scored correctly`);
  }, 3, 1);
  return SAMPLES / seconds;
}

/** modelBatchStage over 1 and 4 local HTTP replicas that each serve one batch at a time. */
export default async function bench(): Promise<BenchResult> {
  const replicas = await Promise.all(Array.from({ length: 4 }, startReplica));
  try {
    const one = await throughput(replicas.slice(0, 1).map((r) => r.url));
    const four = await throughput(replicas.map((r) => r.url));
    return {
      name: 'model batch stage over replicas',
      data: `${SAMPLES} samples of ${FEATURES} FP32, batches of ${BATCH}, HTTP replicas on 127.0.0.1 with ${LATENCY_MS} ms per batch, one batch at a time`,
      rows: [
        { label: '1 replica', value: one, unit: 'samples/s' },
        { label: '4 replicas', value: four, unit: 'samples/s' },
      ],
      ratios: [{ label: '4 replicas / 1 replica', value: four / one, goal: '≥ 3.6' }],
      notes: [`ideal: ${((BATCH * 1000) / LATENCY_MS).toFixed(0)} samples/s per replica`],
    };
  } finally {
    for (const r of replicas) {
      r.server.closeAllConnections();
      r.server.close();
    }
  }
}
