import type { z } from 'zod';
import type { Logger } from './log.js';
import type { BreakerConfig } from './outage.js';
import type { Sample } from './sample.js';
import type { StatsCollector } from './stats.js';
import type { Store } from './stores/store.js';
import type { Unit, UnitStats } from './units/unit.js';
import type { UnitOutputs } from './units/unit-outputs.js';

/** What a job's unit run gets from the executor. */
export interface UnitContext {
  /** Where the job's outputs go. */
  output: Store;
  log: Logger;
  /** Called as rows finish, for progress. */
  onRows(n: number): void;
  signal?: AbortSignal;
}

/** Options every job's config has; a job's schema extends `baseJobConfig`. */
export interface BaseJobConfig {
  job: string;
  output: string;
  /** Units run at once on this machine. */
  parallel_units: number;
  /** When repeated failures become an outage (src/outage.ts); every parsed job config has it. */
  breaker?: BreakerConfig;
  /** The run's lease on its output; every parsed job config has it. */
  lease?: { ttl_s: number };
}

/**
 * A named job (pipelines/*.ts): plans units from its inputs, and runs one unit by wiring
 * source → stages → sink. The sink writes the unit's outputs and its done marker.
 */
export interface Job<C extends BaseJobConfig = BaseJobConfig> {
  name: string;
  description: string;
  schema: z.ZodType<C>;
  /** Deterministic: the same config and inputs give the same units with the same ids. */
  plan(cfg: C, log: Logger): Promise<Unit[]>;
  /**
   * Everything that can be checked before any work (inputs exist, named columns exist in every
   * input's schema, expressions compile, address ranges parse, model files exist and honour their
   * contracts). Returns every problem found, one line each naming the file, key or column; `bitprep
   * plan` and the start of `bitprep run` list them all at once and exit 2.
   */
  check?(cfg: C, log: Logger): Promise<string[]>;
  /**
   * Config key paths that only change how a run goes, not what it writes (concurrency, timeouts,
   * retries, endpoint URLs): they may differ on a rerun. Every other key is fixed once an output
   * exists. `*` matches one path segment, a trailing `.**` every key below. `parallel_units`,
   * `output`, `lease` and `breaker` are operational for every job.
   */
  operational?: readonly string[];
  /**
   * Opens the job for one config: the session runs its units and owns what they share (model
   * sessions, clients with their in-flight caps, OCR workers, caches), loaded on first use. The
   * executor that opens a session closes it; nothing outlives it, so two sessions in one process
   * never share state.
   */
  open(cfg: C, log: Logger): JobSession;
  /** Funnel reasons (`stage:code`) a later attempt may cure; `bitprep retry-failed` reruns those rows. */
  transientFailures?: string[];
  /**
   * Writes dataset-level files derived from the done markers (e.g. a latent dataset's
   * `index.json`) once every planned unit is done: called at the end of such a run and by
   * `bitprep summary`, so array tasks finishing in any order still end with one.
   */
  finalize?(output: Store, unitIds: string[], log: Logger): Promise<void>;
  /**
   * `bitprep refilter`: the funnel lines a new config may re-decide from recorded annotations,
   * in pipeline order, and the verdict of the new config on one record that is ok or was dropped
   * by one of them.
   */
  refilter?: {
    reasons: readonly string[];
    verdict(cfg: C, record: Record<string, unknown>): RefilterVerdict;
  };
}

/** One opened job: runs units of its config, then is closed by whoever opened it. */
export interface JobSession {
  /** Runs one unit: source → stages → sink, which writes the unit's outputs and its done marker last. */
  run(unit: Unit, ctx: UnitContext): Promise<UnitStats>;
  /**
   * The samples with these keys of a unit, through every stage but the sink (for retry-failed).
   * `previous` holds the unit's stored records, so stages that compare rows (dedup) can see the
   * rows that are not rerun.
   */
  rerun?(unit: Unit, keys: Set<string>, ctx: { log: Logger; stats: StatsCollector; previous: Record<string, unknown>[] }): AsyncIterable<Sample>;
  /**
   * retry-failed: writes, into `outputs`, the unit's other per-row outputs with the recovered
   * samples added (laion-filter's saved embeddings), after the tar and before the records.
   * Returns the suffixes it rewrote; the marker keeps the unit's other outputs as they were.
   */
  mergeRecovered?(unit: Unit, recovered: readonly Sample[], ctx: { store: Store; outputs: UnitOutputs }): Promise<string[]>;
  /** Releases what the session holds (model sessions, sockets, OCR workers); failed opens hold nothing. */
  close(): Promise<void>;
}

/** A row's fate under new thresholds: kept, dropped (by, value), or undecidable (what is missing). */
export type RefilterVerdict = { kind: 'ok' } | { kind: 'dropped'; by: string; value?: unknown } | { kind: 'unknown'; missing: string };

// Jobs are stored in a heterogeneous registry; each validates its own config before use.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyJob = Job<any>;

/** Every job a config can name, loaded when a command first needs one (listing commands load none). */
export type JobsLoader = () => Promise<Record<string, AnyJob>>;
