import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ChatClient } from '../src/models/openai-chat.js';
import { ImageClient } from '../src/models/openai-images.js';
import { FakeOpenAIServer } from '../test/helpers/fake-openai-server.js';
import type { BenchResult } from './harness.js';

const LATENCY_MS = 50;
const C = 32;
// A few requests beyond the server's limit wait in its queue, so a slot never idles while the
// client turns an answer into the next request: that is what keeping a server saturated means.
const IN_FLIGHT = C + 8;
const N = 2000;
const SIZE = '64x64';

// A forced GC makes heap readings comparable; works without --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMb = () => (gc(), process.memoryUsage().heapUsed / 2 ** 20);

// Child mode: serve the fake server in its own process, so its CPU time does not count as the client's.
if (process.env.BITPREP_BENCH_FAKE_SERVER && process.send) {
  const srv = await FakeOpenAIServer.start({ latencyMs: LATENCY_MS, concurrency: C });
  process.on('message', () => process.send!(srv.counters.maxOpen));
  process.send(srv.baseUrl);
}

interface Run {
  rps: number;
  heapGrowthMb: number;
  peakHeapMb: number;
  maxOpen: number;
  cpuUsPerReq: number;
}

interface Served {
  baseUrl: string;
  maxOpen(): Promise<number>;
}

async function drive(call: (i: number) => Promise<void>, srv: Served): Promise<Run> {
  await Promise.all(Array.from({ length: 500 }, (_, i) => call(-1 - i))); // warm sockets and JIT (both processes)
  const before = heapMb();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed / 2 ** 20)), 100);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: N }, (_, i) => call(i)));
  const cpu = process.cpuUsage(cpu0);
  const secs = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  return { rps: N / secs, heapGrowthMb: heapMb() - before, peakHeapMb: peak - before, maxOpen: await srv.maxOpen(), cpuUsPerReq: (cpu.user + cpu.system) / N };
}

async function withServer(fn: (srv: Served) => Promise<Run>): Promise<Run> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], env: { ...process.env, BITPREP_BENCH_FAKE_SERVER: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const [baseUrl] = (await once(child, 'message')) as [string];
    return await fn({ baseUrl, maxOpen: async () => (child.send('counters'), ((await once(child, 'message')) as [number])[0]) });
  } finally {
    child.kill();
  }
}

export default async function bench(): Promise<BenchResult> {
  const ideal = C / (LATENCY_MS / 1000);
  const client = (srv: Served) => ({ baseUrl: srv.baseUrl, model: 'm', apiKey: 'sk-bench', maxInFlight: IN_FLIGHT, timeoutMs: 10_000 });

  const chat = await withServer((srv) => {
    const c = new ChatClient(client(srv));
    return drive(async (i) => {
      const r = await c.complete({ messages: [{ role: 'user', content: `describe image id=${i}` }], maxTokens: 64 });
      if (!r.text.endsWith(`id=${i}`)) throw new Error(`answer for ${i} is ${r.text}`);
    }, srv);
  });
  const images = await withServer((srv) => {
    const c = new ImageClient(client(srv));
    return drive(async (i) => {
      const r = await c.generate({ prompt: `a red cube id=${i}`, size: SIZE });
      if (r.images.length !== 1) throw new Error(`request ${i}: ${r.images.length} images`);
    }, srv);
  });

  const note = (name: string, r: Run) =>
    `${name}: ${r.rps.toFixed(0)} req/s vs ideal ${ideal.toFixed(0)}; client process CPU ${r.cpuUsPerReq.toFixed(0)} µs/request (all threads: GC, tsx loader); server saw at most ${r.maxOpen} open; heap after GC +${r.heapGrowthMb.toFixed(1)} MB, peak +${r.peakHeapMb.toFixed(1)} MB over ${N} requests`;
  return {
    name: 'openai-clients',
    data: `${N} requests per client against the fake server in a child process: fixed latency ${LATENCY_MS} ms, concurrency ${C}, maxInFlight ${IN_FLIGHT}; images ${SIZE} PNG, n=1`,
    rows: [
      { label: 'ideal (C / latency)', value: ideal, unit: 'req/s' },
      { label: 'ChatClient.complete', value: chat.rps, unit: 'req/s' },
      { label: 'ImageClient.generate', value: images.rps, unit: 'req/s' },
    ],
    ratios: [
      { label: 'chat / ideal', value: chat.rps / ideal, goal: '≥ 0.95' },
      { label: 'images / ideal', value: images.rps / ideal, goal: '≥ 0.95' },
    ],
    notes: [note('chat', chat), note('images', images), 'closed loop: C answers come back together, so each cycle is L + timer overshoot + C × (server + client CPU); the ideal ignores all three',
      'with fetch instead of node:http, and the server in the same process, the chat ratio was ~0.71 (fetch ~2.5× the CPU per request)'],
  };
}
