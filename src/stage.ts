import type PQueue from 'p-queue';
import { mapConcurrent } from './concurrency.js';
import { fail, type Sample } from './sample.js';
import type { StageStats, StatsCollector } from './stats.js';
import { withFields, type Logger } from './log.js';
import { rethrowOutage } from './outage.js';

/** What a stage sees of the unit it runs in. */
export interface StageContext {
  unitId: string;
  stats: StatsCollector;
  log: Logger;
  signal?: AbortSignal;
}

/** A stage maps a stream of samples to a stream of samples; stages/*.ts export factories of these. */
export type Stage = (input: AsyncIterable<Sample>, ctx: StageContext) => AsyncIterable<Sample>;

/** Connects a source to stages, in order. */
export function pipe(source: AsyncIterable<Sample>, stages: Stage[], ctx: StageContext): AsyncIterable<Sample> {
  const signal = ctx.signal;
  if (!signal) return stages.reduce<AsyncIterable<Sample>>((stream, stage) => stage(stream, ctx), source);
  return untilAborted(stages.reduce<AsyncIterable<Sample>>((stream, stage) => stage(stream, ctx), untilAborted(source, signal)), signal);
}

/** Ends a unit's stream with the signal's reason once the run is cancelled, at both ends of the pipe. */
async function* untilAborted(input: AsyncIterable<Sample>, signal: AbortSignal): AsyncGenerator<Sample> {
  for await (const s of input) {
    signal.throwIfAborted();
    yield s;
  }
  signal.throwIfAborted();
}

export interface SampleStageOptions {
  /** Samples processed at once (default 1). */
  concurrency?: number;
  /** Keep input order (default true: outputs stay reproducible). */
  ordered?: boolean;
  /** Shared limiter, e.g. one CPU pool for all image work. */
  queue?: PQueue;
}

/**
 * Builds a stage from a per-sample function. Samples that are already dropped or failed pass
 * through untouched; a throw marks the sample failed with this stage's name, and the run goes on.
 * `fn` changes the sample in place (or marks it with drop()).
 */
export function sampleStage(name: string, fn: (s: Sample, stats: StageStats, ctx: StageContext) => Promise<void> | void, opts: SampleStageOptions = {}): Stage {
  return (input, unitCtx) => {
    const stats = unitCtx.stats.stage(name);
    // Messages the stage logs carry its name in structured logs.
    const ctx = { ...unitCtx, log: withFields(unitCtx.log, { stage: name }) };
    const work = async (s: Sample): Promise<Sample> => {
      if (s.status.kind !== 'ok') return s;
      stats.in++;
      const t0 = performance.now();
      try {
        await fn(s, stats, ctx);
      } catch (err) {
        // An outage or a cancelled run says nothing about this sample: the unit stops instead.
        rethrowOutage(err);
        if (ctx.signal?.aborted) throw err;
        fail(s, name, err);
      }
      stats.busySeconds += (performance.now() - t0) / 1000;
      countOutcome(stats, s);
      return s;
    };
    return mapConcurrent(input, work, { concurrency: opts.concurrency ?? 1, ordered: opts.ordered ?? true, queue: opts.queue });
  };
}

/**
 * The stage protocol's count of one sample a stage worked on (it came in ok): its outcome now.
 * Every stage tallies through here, so `in = ok + dropped + failed` holds for each.
 */
export function countOutcome(stats: StageStats, s: Sample): void {
  const kind = s.status.kind;
  if (kind === 'ok') stats.ok++;
  else if (kind === 'dropped') stats.dropped++;
  else stats.failed++;
}

/**
 * A stage of synchronous per-sample work in input order (filters, dedup): the protocol of
 * sampleStage (non-ok samples pass untouched, a throw fails the sample, outages stop the unit,
 * in/outcome/busy time tallied) without a promise and a queue slot per sample. `init` runs once
 * per stream with the stage's stats (e.g. to list every counter, zero included).
 */
export function syncSampleStage(name: string, fn: (s: Sample, stats: StageStats) => void, opts: { init?: (stats: StageStats) => void } = {}): Stage {
  return async function* (input, ctx) {
    const stats = ctx.stats.stage(name);
    opts.init?.(stats);
    for await (const s of input) {
      if (s.status.kind === 'ok') {
        stats.in++;
        const t0 = performance.now();
        try {
          fn(s, stats);
        } catch (err) {
          rethrowOutage(err);
          fail(s, name, err);
        }
        stats.busySeconds += (performance.now() - t0) / 1000;
        countOutcome(stats, s);
      }
      yield s;
    }
  };
}
