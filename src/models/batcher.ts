import { batch, mapConcurrent } from '../concurrency.js';
import { causeChain, OutageError, rethrowOutage } from '../outage.js';
import { fail, type Sample } from '../sample.js';
import { countOutcome, type Stage, type StageContext } from '../stage.js';
import { addCount, type StageStats } from '../stats.js';
import { ReplicaCallError, type ReplicaPool } from './replica-pool.js';

export interface ModelBatchStageOptions<C, X, Y> {
  name: string;
  pool: ReplicaPool<C>;
  /** Ok samples per model call. */
  batchSize: number;
  /** Send a partial batch once its first sample has waited this long. */
  maxWaitMs: number;
  /** Batches between the input and the output at once: in the pool, queued for it, or waiting to be emitted in order. */
  maxBatchesInFlight: number;
  /** Per-sample model input; a throw fails that sample only. */
  prepare: (s: Sample) => Promise<X> | X;
  /** One result per input, in the same order. */
  call: (client: C, inputs: X[], replica: string) => Promise<Y[]>;
  /** Writes a result into its sample (after the replica is released, so slow work here never holds one); a throw fails that sample only. */
  apply: (s: Sample, y: Y) => Promise<void> | void;
}

/** An ok sample and the dropped/failed samples just before it, which must come out ahead of it. */
interface Item {
  sample?: Sample;
  before: Sample[];
}

/**
 * A stage that sends ok samples to a model in batches spread over a ReplicaPool, keeping input
 * order. Non-ok samples pass through untouched in their place. A batch whose call finally fails
 * (after the pool's retries) fails all its samples with code 'model_error' and the run goes on,
 * unless the failure is an outage (src/outage.ts): that says nothing about the samples, so it is
 * rethrown and stops the unit, which stays undone.
 *
 * Memory: at most (maxBatchesInFlight + 1) × batchSize ok samples are held. Dropped and failed
 * samples (payloads already released) ride along with the next ok sample, at most batchSize of
 * them before each.
 */
export function modelBatchStage<C, X, Y>(opts: ModelBatchStageOptions<C, X, Y>): Stage {
  for (const k of ['batchSize', 'maxBatchesInFlight'] as const) {
    if (!(Number.isInteger(opts[k]) && opts[k] >= 1)) throw new Error(`${opts.name}: ${k} must be a positive integer, got ${opts[k]}`);
  }
  return (input, ctx) => {
    const stats = ctx.stats.stage(opts.name);
    const batches = batch(items(input, opts.batchSize), { size: opts.batchSize, maxWaitMs: opts.maxWaitMs });
    const done = mapConcurrent(batches, (group) => runBatch(opts, group, stats, ctx), { concurrency: opts.maxBatchesInFlight, ordered: true });
    return flatten(done);
  };
}

async function* items(input: AsyncIterable<Sample>, maxRun: number): AsyncGenerator<Item> {
  let before: Sample[] = [];
  for await (const s of input) {
    if (s.status.kind === 'ok') {
      yield { sample: s, before };
      before = [];
    } else {
      before.push(s);
      // A long run of non-ok samples must not pile up waiting for the next ok one.
      if (before.length >= maxRun) {
        yield { before };
        before = [];
      }
    }
  }
  if (before.length > 0) yield { before };
}

async function* flatten(groups: AsyncIterable<Item[]>): AsyncGenerator<Sample> {
  for await (const group of groups) {
    for (const it of group) {
      yield* it.before;
      if (it.sample) yield it.sample;
    }
  }
}


async function runBatch<C, X, Y>(opts: ModelBatchStageOptions<C, X, Y>, group: Item[], stats: StageStats, ctx: StageContext): Promise<Item[]> {
  const oks = group.flatMap((it) => (it.sample ? [it.sample] : []));
  if (oks.length === 0) return group;
  const { name } = opts;
  stats.in += oks.length;
  let busyMs = 0;

  let t = performance.now();
  const live: { s: Sample; x: X; i: number }[] = [];
  await Promise.all(oks.map(async (s, i) => {
    try {
      const x = await opts.prepare(s);
      live.push({ s, x, i });
    } catch (err) {
      fail(s, name, err);
    }
  }));
  // prepare() may settle out of order; the model's inputs follow the samples' order.
  live.sort((a, b) => a.i - b.i);
  busyMs += performance.now() - t;

  if (live.length > 0) {
    const inputs = live.map((p) => p.x);
    let attempts = 0;
    let modelMs = 0;
    try {
      const { ys, replica } = await opts.pool.run(async (client, replica) => {
        attempts++;
        const t0 = performance.now();
        try {
          const ys = await opts.call(client, inputs, replica);
          const n = Array.isArray(ys) ? ys.length : typeof ys;
          if (n !== inputs.length) throw new Error(`model returned ${n} results for ${inputs.length} inputs`);
          return { ys, replica };
        } finally {
          modelMs += performance.now() - t0;
        }
      }, { cost: live.length, signal: ctx.signal });
      addCount(stats, 'batches');
      addCount(stats, 'samples', live.length);
      addCount(stats, `replica:${replica}:batches`);
      t = performance.now();
      await Promise.all(live.map(async (p, i) => {
        try {
          await opts.apply(p.s, ys[i]);
        } catch (err) {
          fail(p.s, name, err);
        }
      }));
      busyMs += performance.now() - t;
    } catch (err) {
      // A cancelled run is not a model failure: the unit stops and its samples are not recorded as failed.
      if (ctx.signal?.aborted) throw err;
      rethrowOutage(err);
      const msg = err instanceof Error ? err.message : String(err);
      for (const p of live) fail(p.s, name, `model call failed: ${msg}`, 'model_error');
      addCount(stats, 'failed_batches');
      if (err instanceof ReplicaCallError) addCount(stats, `replica:${err.replica}:failed_batches`);
    }
    addCount(stats, 'model_ms', modelMs);
    if (attempts > 1) addCount(stats, 'retries', attempts - 1);
    busyMs += modelMs;
  }

  for (const s of oks) countOutcome(stats, s);
  stats.busySeconds += busyMs / 1000;
  return group;
}

/** True when `err` or its cause chain is a refusal of a request for its size (HTTP 413). */
export function isRequestTooLarge(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if ((e as { status?: unknown }).status === 413) return true;
    if (e instanceof OutageError && e.reason === 'http_413_request_too_large') return true;
  }
  return false;
}

/** What a RequestSplitter knows of one client's limit. */
interface SizeLimit {
  /** Smallest batch refused for its size (Infinity: none yet). */
  refused: number;
  /** Largest batch accepted that is smaller than `refused` (0: none yet). */
  accepted: number;
}

export interface SplitEvent {
  /** The endpoint, as OutageErrors name it. */
  target: string;
  /** Size of the batch that was refused. */
  refused: number;
  /** Batch size this client is sent from now on: the largest accepted so far, or half the refused. */
  nextSize: number;
  /** The server's message. */
  message: string;
}

/**
 * Sends a batch to an endpoint that may refuse requests for their size (HTTP 413: a server body
 * limit smaller than the batch). A refused batch is split in halves and each half sent, split again
 * if refused, recursively, in order. Per client it remembers the largest batch that got through
 * (below the smallest refused), and later batches at least as large as a refused one are sent
 * pre-split into parts of that size, so the refusal costs one round trip, not one per batch.
 * A single input still refused is an outage: OutageError(target, 'http_413_request_too_large'),
 * never a row failure, since no row can get through until the server's limit is raised.
 * Parts of one batch are sent one after another, so memory stays that of one part's request.
 */
export class RequestSplitter<C extends object> {
  private readonly limits = new WeakMap<C, SizeLimit>();

  /** `target` names a client's endpoint in errors and split events. */
  constructor(private readonly target: (client: C) => string) {}

  /** The batch size this client is sent at most (Infinity until a refusal). */
  maxBatch(client: C): number {
    const l = this.limits.get(client);
    if (!l || l.refused === Infinity) return Infinity;
    return l.accepted > 0 ? l.accepted : Math.max(1, Math.ceil(l.refused / 2));
  }

  /**
   * `send` gets a contiguous part of `inputs` and returns one result per input, in order;
   * `onSplit` hears of each refusal that splits a batch.
   */
  async run<X, Y>(client: C, inputs: X[], send: (part: X[]) => Promise<Y[]>, onSplit?: (e: SplitEvent) => void): Promise<Y[]> {
    if (inputs.length === 0) return [];
    const l = this.limits.get(client);
    if (l && inputs.length >= l.refused && inputs.length > 1) {
      const size = Math.min(this.maxBatch(client), inputs.length - 1);
      const out: Y[] = [];
      for (let i = 0; i < inputs.length; i += size) out.push(...(await this.run(client, inputs.slice(i, i + size), send, onSplit)));
      return out;
    }
    let ys: Y[];
    try {
      ys = await send(inputs);
    } catch (err) {
      if (!isRequestTooLarge(err)) throw err;
      const lim = this.limits.get(client) ?? { refused: Infinity, accepted: 0 };
      this.limits.set(client, lim);
      lim.refused = Math.min(lim.refused, inputs.length);
      // A size accepted before and refused now (the server was restarted with a lower limit): learn again.
      if (lim.accepted >= lim.refused) lim.accepted = 0;
      const target = this.target(client);
      const message = err instanceof Error ? err.message : String(err);
      if (inputs.length === 1) {
        throw new OutageError(
          target,
          'http_413_request_too_large',
          `${target} refuses a request of a single sample for its size (HTTP 413: ${message}); raise the server's request body limit (bitprep serve: --max-request-mb)`,
          { cause: err },
        );
      }
      onSplit?.({ target, refused: inputs.length, nextSize: this.maxBatch(client), message });
      const mid = Math.ceil(inputs.length / 2);
      const first = await this.run(client, inputs.slice(0, mid), send, onSplit);
      const second = await this.run(client, inputs.slice(mid), send, onSplit);
      return [...first, ...second];
    }
    const lim = this.limits.get(client);
    if (lim && inputs.length < lim.refused) lim.accepted = Math.max(lim.accepted, inputs.length);
    return ys;
  }
}
