/**
 * Seconds per image of an OpenAI-compatible image endpoint (`POST /v1/images/generations`), for
 * Table 3's "sec/img" column.
 *
 * One run = one batch of B images, timed from sending to the last image received:
 * - batch mode `n` (default): one request asking for `n = B` images, which is how a server that
 *   batches inside the sampler is measured;
 * - batch mode `concurrent`: B requests of n = 1 sent together, for servers that only accept
 *   n = 1 and batch across requests.
 * At B = 1 the two are the same request. sec_per_img = median over runs of (run wall time / B);
 * mean, p90, min, max, a bootstrap 95% interval of the mean and every run's time are recorded.
 * Untimed warm-up runs come first (weights loading, compilation, caches).
 *
 * What is measured is the served endpoint, not the bare sampler: the time includes the server's
 * PNG encode and base64, HTTP, and the client's base64 decode and image-header check
 * (ImageClient). It is an upper bound on the sampler's time, close to it when sampling dominates.
 *
 * The paper's Table 3 (Instella-T2I) reports seconds per image at 20 and 50 steps (Diffusion BIT:
 * 0.38 s and 1.32 s on one AMD MI300X; SDv1.5 and PixArt-alpha on one A100), sampling Alg. 2 with
 * alpha 4.0, tau 0.6. Comparable numbers need the same steps, one GPU and batch 1.
 */
import { ImageClient } from '../../src/models/openai-images.js';
import { bootstrapMean, DEFAULT_BOOTSTRAP, mean, percentile, type BootstrapCi, type BootstrapOptions } from '../metrics/bootstrap.js';

/** How B images make one timed run. */
export type BatchMode = 'n' | 'concurrent';

/** What the paper's speed numbers assume, recorded beside ours. */
export const PAPER_SPEED_CONDITION =
  'Instella-T2I Table 3: seconds per image on one GPU (Diffusion BIT on AMD MI300X: 0.38 s at 20 steps, 1.32 s at 50; SDv1.5 and PixArt-alpha on A100), ' +
  'sampling Alg. 2 (alpha 4.0, tau 0.6), batch 1; compare at the same steps, batch 1, one GPU';

/** A few neutral prompts, used in turn when no prompt file is given. */
export const DEFAULT_SPEED_PROMPTS = [
  'a photo of a red apple on a wooden table',
  'a mountain lake at sunrise, reflections on calm water',
  'a city street at night with lights and rain',
  'a portrait of an old man wearing a hat',
  'a bowl of fruit in the style of a still life painting',
  'a small boat on the sea under a cloudy sky',
];

export interface SpeedOptions {
  /** Base URL up to and including `/v1`. */
  endpoint: string;
  model: string;
  /** Sampling steps: recorded, and sent as `stepsField` unless `params` sets that field. */
  steps: number;
  /** Request field carrying the steps (default `steps`); null sends none (give it in `params`). */
  stepsField?: string | null;
  /** Free-form request fields (guidance, sampler, …); they win over the steps field. */
  params?: Record<string, unknown>;
  /** Images per timed run (default 1). */
  batchSize?: number;
  batchMode?: BatchMode;
  /** "WIDTHxHEIGHT" (default 1024x1024). */
  size?: string;
  /** Untimed runs first (default 2). */
  warmup?: number;
  /** Timed runs (default 10). */
  runs?: number;
  /** Prompts used in turn (default DEFAULT_SPEED_PROMPTS). */
  prompts?: string[];
  /** Seed of the first image; image k of the whole session gets seed + k (default 0). */
  seed?: number;
  apiKey?: string;
  /** Per request (default 600 s). */
  timeoutMs?: number;
  bootstrap?: BootstrapOptions;
  /** Told after each run (warm-up runs have timed = false). */
  onRun?: (index: number, seconds: number, timed: boolean) => void;
}

/** speed.json: `bitprep tables` reads steps and sec_per_img. */
export interface SpeedResult {
  metric: 'speed';
  steps: number;
  /** Median over runs of (run wall time / batch_size), seconds. */
  sec_per_img: number;
  batch_size: number;
  batch_mode: BatchMode;
  runs: number;
  warmup: number;
  mean_sec_per_img: number;
  p90_sec_per_img: number;
  min_sec_per_img: number;
  max_sec_per_img: number;
  ci95?: BootstrapCi;
  /** Wall time of each timed run (the whole batch), seconds, in order. */
  run_seconds: number[];
  endpoint: string;
  model: string;
  size: string;
  /** The extra request fields sent with every request (steps included). */
  request_fields: Record<string, unknown>;
  prompts: number;
  measures: string;
  paper_condition: string;
}

const seconds = (ms: number) => ms / 1000;

/** Times the endpoint. Any failed request fails the measurement (retries would distort the times), naming the run. */
export async function measureSpeed(o: SpeedOptions): Promise<SpeedResult> {
  const B = o.batchSize ?? 1;
  const mode = o.batchMode ?? 'n';
  const runs = o.runs ?? 10;
  const warmup = o.warmup ?? 2;
  const size = o.size ?? '1024x1024';
  const prompts = o.prompts ?? DEFAULT_SPEED_PROMPTS;
  if (!(Number.isInteger(o.steps) && o.steps > 0)) throw new Error(`speed: steps must be a positive integer, got ${o.steps}`);
  if (!(Number.isInteger(B) && B > 0)) throw new Error(`speed: batch size must be a positive integer, got ${B}`);
  if (!(Number.isInteger(runs) && runs > 0)) throw new Error(`speed: runs must be a positive integer, got ${runs}`);
  if (!(Number.isInteger(warmup) && warmup >= 0)) throw new Error(`speed: warmup must be a non-negative integer, got ${warmup}`);
  if (!/^\d+x\d+$/.test(size)) throw new Error(`speed: size must be WIDTHxHEIGHT, got ${size}`);
  if (prompts.length === 0) throw new Error('speed: no prompts');
  const stepsField = o.stepsField === undefined ? 'steps' : o.stepsField;
  const extra: Record<string, unknown> = { ...(stepsField ? { [stepsField]: o.steps } : {}), ...o.params };

  const client = new ImageClient({
    baseUrl: o.endpoint,
    model: o.model,
    apiKey: o.apiKey,
    maxInFlight: B,
    timeoutMs: o.timeoutMs ?? 600_000,
    retry: { retries: 0, minDelayMs: 0, maxDelayMs: 0 },
    malformedRetries: 0,
  });
  let image = 0;
  const oneRun = async (label: string): Promise<number> => {
    const first = image;
    image += B;
    const prompt = (k: number) => prompts[(first + k) % prompts.length];
    const seed = (o.seed ?? 0) + first;
    const t0 = performance.now();
    try {
      if (mode === 'n') await client.generate({ prompt: prompt(0), size, n: B, seed, extra });
      else await Promise.all(Array.from({ length: B }, (_, k) => client.generate({ prompt: prompt(k), size, n: 1, seed: seed + k, extra })));
    } catch (err) {
      throw new Error(`speed: ${label} against ${o.endpoint} (model ${o.model}, ${mode === 'n' ? `n=${B}` : `${B} concurrent requests`}) failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return seconds(performance.now() - t0);
  };

  const runSeconds: number[] = [];
  try {
    for (let i = 0; i < warmup; i++) {
      const s = await oneRun(`warm-up run ${i + 1}/${warmup}`);
      o.onRun?.(i, s, false);
    }
    for (let i = 0; i < runs; i++) {
      const s = await oneRun(`timed run ${i + 1}/${runs}`);
      runSeconds.push(s);
      o.onRun?.(i, s, true);
    }
  } finally {
    client.close();
  }

  const perImage = runSeconds.map((s) => s / B);
  const sorted = Float64Array.from(perImage).sort();
  return {
    metric: 'speed',
    steps: o.steps,
    sec_per_img: percentile(sorted, 0.5),
    batch_size: B,
    batch_mode: mode,
    runs,
    warmup,
    mean_sec_per_img: mean(perImage),
    p90_sec_per_img: percentile(sorted, 0.9),
    min_sec_per_img: sorted[0],
    max_sec_per_img: sorted[sorted.length - 1],
    ci95: bootstrapMean(perImage, o.bootstrap ?? DEFAULT_BOOTSTRAP),
    run_seconds: runSeconds,
    endpoint: o.endpoint,
    model: o.model,
    size,
    request_fields: extra,
    prompts: prompts.length,
    measures: 'served endpoint: sampler + PNG encode + base64 + HTTP + client decode, per image of a batch',
    paper_condition: PAPER_SPEED_CONDITION,
  };
}
