import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance as perfHooks } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { silentLogger } from '../src/log.js';
import { ChatClient } from '../src/models/openai-chat.js';
import { FileStore } from '../src/stores/file-store.js';
import { jobs } from '../pipelines/index.js';
import { captionRequest, requestImageUrl, type CaptionRequestOptions } from '../stages/recaption/caption-request.js';
import { VllmChatServer } from '../test/helpers/vllm-chat-server.js';
import type { BenchResult } from './harness.js';
import { makePhotos } from './photos.js';

// A forced GC makes heap readings mean live data; works without --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const eventLoopUtilization = perfHooks.eventLoopUtilization;

const WORK = join(import.meta.dirname, '.work', 'recaption');
const LATENCY_MS = 3000;
const IN_FLIGHT = 256;
const IMAGES = 4000;
const UNIT_IMAGES = 2000;
const RSS_BOUND_MB = 768;
const MODEL = 'Qwen/Qwen2.5-VL-7B-Instruct';
const ANSWER = JSON.stringify({
  long_caption: 'A wooden pier runs out over calm grey water toward a low line of hills. Mist hangs over the far shore, and the planks are wet and dark. Two posts at the end carry a rusted chain. The light is soft and even, as on an overcast morning.',
  short_caption: 'A wooden pier over calm water on a misty morning.',
});

// Child mode: the vLLM-shaped server in its own process (no image decoding), so its CPU time is not the client's.
// It samples how many requests it holds open, to tell whether the client kept it saturated.
if (process.env.BITPREP_BENCH_VLLM && process.send) {
  const srv = await VllmChatServer.start({ model: MODEL, structuredOutput: true, decodeImages: false, latencyMs: LATENCY_MS, reply: () => ({ text: ANSWER, prompt_tokens: 320, completion_tokens: 90 }) });
  let samples: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  process.on('message', (m: string) => {
    if (m === 'start') {
      samples = [];
      srv.maxOpen = 0;
      timer = setInterval(() => samples.push(srv.open), 50);
    } else {
      clearInterval(timer);
      // The steady state: between the first and the last moment the server held a full load.
      const first = samples.findIndex((v) => v >= IN_FLIGHT * 0.95);
      const last = samples.length - 1 - [...samples].reverse().findIndex((v) => v >= IN_FLIGHT * 0.95);
      const steady = first >= 0 ? samples.slice(first, last + 1) : samples;
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
      process.send!({ meanOpen: mean(samples), steadyMeanOpen: mean(steady), steadySeconds: (steady.length * 50) / 1000, maxOpen: srv.maxOpen, requests: srv.requests, rejected: srv.rejected.length });
    }
  });
  process.send(srv.baseUrl);
}

interface ServerView {
  meanOpen: number;
  steadyMeanOpen: number;
  steadySeconds: number;
  maxOpen: number;
  requests: number;
  rejected: number;
}

async function withServer<T>(fn: (baseUrl: string, measure: <R>(run: () => Promise<R>) => Promise<[R, ServerView]>) => Promise<T>): Promise<T> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], env: { ...process.env, BITPREP_BENCH_VLLM: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const [baseUrl] = (await once(child, 'message')) as [string];
    return await fn(baseUrl, async (run) => {
      child.send('start');
      const r = await run();
      child.send('stop');
      const [view] = (await once(child, 'message')) as [ServerView];
      return [r, view];
    });
  } finally {
    child.kill();
  }
}

/** Image shards as laion-filter writes them: 512-px JPEG photos, `UNIT_IMAGES` per tar, each image distinct. */
async function makeShards(dir: string): Promise<string[]> {
  const photos = await makePhotos(join(WORK, 'photos'), 200, [512, 512], [384, 512], 11);
  const bytes = await Promise.all(photos.map((p) => readFile(join(WORK, 'photos', p))));
  const images: Buffer[] = [];
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (let t = 0; t * UNIT_IMAGES < IMAGES; t++) {
    const out = createWriteStream(join(dir, `${String(t).padStart(5, '0')}.tar`));
    const w = new TarWriter({ write: (c) => new Promise<void>((r, j) => out.write(c, (e) => (e ? j(e) : r()))) });
    for (let i = t * UNIT_IMAGES; i < Math.min(IMAGES, (t + 1) * UNIT_IMAGES); i++) {
      // A JPEG comment makes every image's bytes (and cache key) distinct while the pixels repeat.
      const src = bytes[i % bytes.length];
      const img = Buffer.concat([src.subarray(0, 2), Buffer.from([0xff, 0xfe, 0x00, 0x0a]), Buffer.from(String(i).padStart(8, '0')), src.subarray(2)]);
      if (images.length < 300) images.push(img);
      const key = `img${String(i).padStart(6, '0')}`;
      await w.addSample(key, { jpg: img, json: JSON.stringify({ key, caption: `photo ${i}` }), txt: `photo ${i}` });
    }
    await w.finish();
    await new Promise<void>((r) => out.end(r));
  }
  return [dir];
}

/**
 * The recaption job against a vLLM-shaped server with a fixed latency and no concurrency limit
 * (vLLM batches continuously), with 256 requests allowed in flight. Peers, side by side on the
 * same server: the ideal (256 / latency) and a bare ChatClient firing pre-built requests for the
 * same images with no job around it. Saturation: the server's own time-averaged count of open
 * requests. Memory: peak RSS against a bound.
 */
export default async function bench(): Promise<BenchResult> {
  process.stderr.write(`  preparing ${IMAGES} images in ${Math.ceil(IMAGES / UNIT_IMAGES)} shards …\n`);
  const paths = await makeShards(join(WORK, 'shards'));
  const ideal = IN_FLIGHT / (LATENCY_MS / 1000);
  return withServer(async (baseUrl, measure) => {
    // The job first, in a process that has done nothing else yet, so its memory is its own.
    const out = join(WORK, 'out');
    await rm(out, { recursive: true, force: true });
    const { job, config } = validateConfig({ job: 'recaption', output: out, parallel_units: 2, input: { paths }, server: { base_url: baseUrl, model: MODEL, max_in_flight: IN_FLIGHT }, concurrency: IN_FLIGHT }, 'bench', jobs);
    const units = await job.plan(config, silentLogger);
    const baseline = process.memoryUsage().rss;
    const samples: { rows: number; rss: number; heap?: number }[] = [];
    let rowsDone = 0;
    const sampler = setInterval(() => samples.push({ rows: rowsDone, rss: process.memoryUsage().rss, heap: undefined }), 100);
    // Live data: heap in use right after a full collection, every 2 s (each GC pauses the loop for a few ms).
    const gcSampler = setInterval(() => {
      gc();
      const m = process.memoryUsage();
      samples.push({ rows: rowsDone, rss: m.rss, heap: m.heapUsed + m.external });
    }, 2000);
    const cpu0 = process.cpuUsage();
    const elu0 = eventLoopUtilization();
    const t1 = performance.now();
    const [summary, jobView] = await measure(() => executeLocal(job, config, units, { output: new FileStore(out), log: silentLogger, progress: 'off', onRows: (n) => (rowsDone += n) }));
    const seconds = (performance.now() - t1) / 1000;
    const elu = eventLoopUtilization(elu0).utilization;
    const cpu = process.cpuUsage(cpu0);
    clearInterval(sampler);
    clearInterval(gcSampler);
    const f = summary.funnel;
    if (f.written !== IMAGES || jobView.rejected > 0) throw new Error(`recaption bench: funnel ${JSON.stringify(f)}, ${jobView.rejected} requests rejected`);
    const jobRate = IMAGES / seconds;
    const mb = (b: number) => b / 2 ** 20;
    // Live data (V8 heap in use + buffers outside it) tells whether the job holds more as it goes;
    // RSS also counts heap that V8 grows lazily and keeps, so it is compared with a bound only.
    const peakWhere = (lo: number, hi: number) => Math.max(...samples.filter((x) => x.heap !== undefined && x.rows >= lo * IMAGES && x.rows < hi * IMAGES).map((x) => x.heap!), 0);
    const early = peakWhere(0, 0.25);
    const late = peakWhere(0.5, 1.01);
    const peak = Math.max(...samples.map((x) => x.rss));
    if (mb(peak) > RSS_BOUND_MB) throw new Error(`recaption bench: peak RSS ${mb(peak).toFixed(0)} MB over the ${RSS_BOUND_MB} MB bound`);
    await rm(out, { recursive: true, force: true });

    // Bare client: the same number of requests, bodies built beforehand (from 200 distinct images).
    const o: CaptionRequestOptions = { model: MODEL, mode: 'json', prompts: { version: 'v1', json: 'Describe this image as JSON.', long: 'l', short: 's' }, max_tokens: 512, temperature: 0.3, seed: 0, extra: {}, max_side: 448, quality: 90 };
    const photos = await Promise.all((await makePhotos(join(WORK, 'photos'), 200, [512, 512], [384, 512], 11)).map(async (p) => requestImageUrl(await readFile(join(WORK, 'photos', p)), o)));
    const client = new ChatClient({ baseUrl, model: MODEL, maxInFlight: IN_FLIGHT, timeoutMs: 60_000 });
    const t0 = performance.now();
    const [, bareView] = await measure(() => Promise.all(Array.from({ length: IMAGES }, (_, i) => client.complete(captionRequest(photos[i % photos.length], 'both', 0, o)))));
    const bareRate = IMAGES / ((performance.now() - t0) / 1000);
    client.close();
    const stage = summary.stages.find((s) => s.name === 'recaption');
    return {
      name: 'recaption',
      data: `${IMAGES} distinct 512-px JPEG photos in ${units.length} image shards; vLLM-shaped server in a child process, fixed latency ${LATENCY_MS} ms, no concurrency limit; ${IN_FLIGHT} requests allowed in flight (server.max_in_flight = concurrency = ${IN_FLIGHT}, parallel_units 2); each image resized to 448 px and sent as a data URL, one JSON-schema request per image`,
      rows: [
        { label: `ideal (${IN_FLIGHT} / latency)`, value: ideal, unit: 'captions/s' },
        { label: 'bare ChatClient, pre-built requests', value: bareRate, unit: 'captions/s' },
        { label: 'recaption job (tar in, resize, cache, validate, tar + parquet out)', value: jobRate, unit: 'captions/s' },
        { label: 'server: mean open requests over the job run, steady state', value: jobView.steadyMeanOpen, unit: 'requests' },
        { label: 'job live memory after GC (heap used + external), peak over the first quarter of images', value: mb(early), unit: 'MB' },
        { label: 'job live memory after GC (heap used + external), peak over the second half of images', value: mb(late), unit: 'MB' },
        { label: 'job peak resident memory, whole run', value: mb(peak), unit: 'MB' },
      ],
      ratios: [
        { label: 'job / ideal', value: jobRate / ideal, goal: '≥ 0.9' },
        { label: 'job / bare client', value: jobRate / bareRate, goal: '≥ 0.95' },
        { label: `server open requests in steady state / ${IN_FLIGHT}`, value: jobView.steadyMeanOpen / IN_FLIGHT, goal: '≥ 0.97 (saturated)' },
        { label: 'peak live memory second half / first quarter', value: late / early, goal: '≤ 1.15 (flat)' },
        { label: `peak RSS / ${RSS_BOUND_MB} MB bound`, value: mb(peak) / RSS_BOUND_MB, goal: '< 1' },
      ],
      notes: [
        `server view of the job run: max open ${jobView.maxOpen}, mean open over the whole run ${jobView.meanOpen.toFixed(1)} (ramp-up and drain included), steady state ${jobView.steadySeconds.toFixed(1)} s of ${seconds.toFixed(1)} s; bare client: steady mean ${bareView.steadyMeanOpen.toFixed(1)}, max ${bareView.maxOpen}`,
        `job CPU ${(((cpu.user + cpu.system) / 1e6 / IMAGES) * 1000).toFixed(2)} ms per image (sha256, 448-px resize, JSON, tar, parquet), main-thread event loop busy ${(100 * elu).toFixed(0)}% of the run; RSS before the run ${mb(baseline).toFixed(0)} MB; stage units ${JSON.stringify(stage?.counts ?? {})}`,
        'the ideal ignores ramp-up (the first answers arrive one latency after the first request) and the drain at the end, each about one latency',
        'parallel_units 2 keeps a second unit\'s requests queued behind the first\'s; when units end together, the next ones refill 2 × 256 requests (tar read + resize on 2 cores, ~3 s), a dip measured at 0.905 steady saturation with 1000-image units; 10k-image shards make it ~1% of the time',
      ],
    };
  });
}
