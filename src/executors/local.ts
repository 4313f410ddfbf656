import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import { ConfigError } from '../config/config-error.js';
import { changedSettings, formatChanges, operationalPatterns } from '../config/fixed-settings.js';
import { findOutage, systemicWriteError } from '../outage.js';
import { DEFAULT_LEASE_TTL_MS, OutputLease } from '../units/output-lease.js';
import type { AnyJob, BaseJobConfig } from '../job.js';
import { withFields, type Logger } from '../log.js';
import { createProgress, type Progress, type ProgressOptions } from '../progress.js';
import { pinsUsed, usePins } from '../stores/hf-url.js';
import type { Store } from '../stores/store.js';
import { doneName, type Unit, type UnitStats } from '../units/unit.js';
import { mapConcurrent } from '../concurrency.js';
import { RUN_SUMMARY_NAME, summarizeOutput, writeRunSummary, type RunSummary } from '../run-summary.js';
import { extendUnits, sameUnits } from './extend-plan.js';
import { runUnit } from './run-unit.js';
import { selectUnits, type ShardSelection } from './shard-select.js';

export interface ExecuteOptions {
  output: Store;
  log: Logger;
  /** The slice of units this process runs (array jobs); all when undefined. */
  selection?: ShardSelection;
  progress?: ProgressOptions['mode'];
  /** Told of rows as units finish them (besides the progress display), for embedders and benchmarks. */
  onRows?: (n: number) => void;
  /** Cancels the run (Ctrl-C): no unit starts after it, running ones stop and stay undone. */
  signal?: AbortSignal;
  /** How this run was started, for the run log (e.g. the command line). */
  command?: string;
  /** Extend mode: the output's existing plan grows by the units of inputs it does not have yet (extendPlan). */
  extend?: boolean;
  /** Told of each unit as it ends: its stats when it is done, undefined when it failed (metrics-file.ts). */
  onUnitDone?: (unit: string, stats: UnitStats | undefined) => void;
}

const PLAN_NAME = '_plan.json';
export const CONFIG_NAME = '_config.json';
/** One object per run with its effective settings (`_runs/<started>-<host>-<pid>.json`): an output's history. */
export const RUN_LOG_PREFIX = '_runs/';

/** `_plan.json`: the units an output was started with, so a resume with other inputs is refused. */
export interface PlanFile {
  job: string;
  units: number;
  fingerprint: string;
  unit_ids: string[];
  /** Remote inputs' revisions as the plan resolved them (hf://: `<repo>@<revision>` → commit). */
  pins?: Record<string, string>;
  /** The units themselves (ids and inputs), so a later run can extend the plan (`--extend`). */
  plan?: Unit[];
}

/** Before planning into an existing output: the revisions its plan pinned, so planning again reads the same commits. */
export async function loadPlanPins(store: Store): Promise<void> {
  if (!(await store.exists(PLAN_NAME))) return;
  usePins((await readPlan(store)).pins);
}

export async function readPlan(store: Store): Promise<PlanFile> {
  if (!(await store.exists(PLAN_NAME))) throw new Error(`${store.url} has no ${PLAN_NAME}: not a bitprep output`);
  return JSON.parse(new TextDecoder().decode(await store.get(PLAN_NAME))) as PlanFile;
}

/** A resolved config as `_config.json` holds it (JSON has no bigints: they become strings). */
export function configJson(cfg: BaseJobConfig): string {
  return JSON.stringify(cfg, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

/**
 * An output's config is fixed: `_config.json` is written once, by the run that starts the output.
 * A later run whose fixed settings differ (prompts, thresholds, sizes, models, seeds) is refused
 * with the changed keys listed, since its rows would sit beside rows made another way; settings
 * that only change how it runs (the job's operational keys) may differ. While no unit is done,
 * any setting may change.
 */
export async function checkConfig(store: Store, job: AnyJob, cfg: BaseJobConfig, log?: Logger): Promise<void> {
  const text = configJson(cfg);
  if (!(await store.exists(CONFIG_NAME))) {
    await store.put(CONFIG_NAME, text);
    return;
  }
  const before = JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME))) as unknown;
  const changes = changedSettings(before, JSON.parse(text), operationalPatterns(job));
  if (changes.length === 0) return;
  // Until a unit is done nothing disagrees with new settings (e.g. a misnamed model fixed after
  // the first run stopped): the output takes them.
  if (!(await store.list()).some((n) => n.endsWith('.done.json') && !n.includes('/'))) {
    log?.info(`${store.url}: no unit done yet; ${CONFIG_NAME} takes the new settings (${changes.map((c) => c.key).join(', ')})`);
    await store.put(CONFIG_NAME, text);
    return;
  }
  throw new ConfigError(
    `output ${store.url} was made with other settings, which change what it holds (${changes.length}):\n${formatChanges(changes)}\n` +
      `Rerun with the values in ${CONFIG_NAME}, or write to a new output. Settings that only change how a run goes may differ: ${operationalPatterns(job).join(', ')}.`,
  );
}

/** Appends this run's effective settings to the output's run log (one object per run: S3 has no append). */
export async function logRun(store: Store, cfg: BaseJobConfig, started: Date, extra: Record<string, unknown>): Promise<string> {
  const name = `${RUN_LOG_PREFIX}${started.toISOString().replace(/[:.]/g, '-')}-${hostname()}-${process.pid}.json`;
  const entry = { started_at: started.toISOString(), host: hostname(), pid: process.pid, ...extra, config: JSON.parse(configJson(cfg)) as unknown };
  await store.put(name, JSON.stringify(entry, null, 2) + '\n');
  return name;
}

/** What stopped a run before its units were all tried: an outage, a systemic write error, or a cancel. */
export interface RunStop {
  kind: 'outage' | 'interrupted';
  target?: string;
  reason: string;
  message: string;
}

/**
 * Runs a job's units on this machine, skipping units whose done marker exists. A unit that throws
 * is reported and left undone (a rerun retries it); the other units go on, except after an
 * outage (src/outage.ts: an unusable endpoint, the network gone, the disk full) or a cancel:
 * then no further unit starts, running ones stop, and the summary names what stopped the run.
 * `run-summary.json` is written however the run ends.
 */
export async function executeLocal(job: AnyJob, cfg: BaseJobConfig, units: Unit[], opts: ExecuteOptions): Promise<RunSummary> {
  // One live writer per output (or per array task): a second run would delete this one's temp
  // files and race its commits. Held from before the first write to after the summary.
  const leaseLost = new AbortController();
  const lease = await OutputLease.acquire(opts.output, {
    scope: opts.selection ? { index: opts.selection.index, count: opts.selection.count } : 'all',
    ttlMs: (cfg.lease?.ttl_s ?? DEFAULT_LEASE_TTL_MS / 1000) * 1000,
    log: opts.log,
    onLost: (e) => leaseLost.abort(new Error(e.message)),
  });
  try {
    return await executeHeld(job, cfg, units, opts, leaseLost.signal);
  } finally {
    await lease.release().catch((err: unknown) => opts.log.warn(`releasing the lease on ${opts.output.url}: ${err instanceof Error ? err.message : String(err)}`));
  }
}

async function executeHeld(job: AnyJob, cfg: BaseJobConfig, planned: Unit[], opts: ExecuteOptions, leaseLost: AbortSignal): Promise<RunSummary> {
  const started = new Date();
  // Under the lease, so no other run reads the plan while it grows.
  const units = opts.extend ? await extendPlan(opts.output, job, cfg, planned, opts.log) : await recordedOrder(opts.output, planned);
  await checkPlan(opts.output, job.name, units);
  await checkConfig(opts.output, job, cfg, opts.log);
  const selected = selectUnits(units, opts.selection);
  const doneFlags = await Promise.all(selected.map((u) => opts.output.exists(doneName(u.id))));
  const todo = selected.filter((_, i) => !doneFlags[i]);
  await logRun(opts.output, cfg, started, { command: opts.command ?? null, selection: opts.selection ?? null, units_to_run: todo.length });
  if (opts.selection) opts.log.info(`shard ${opts.selection.index}/${opts.selection.count} (from ${opts.selection.from}): ${selected.length} of ${units.length} units`);
  if (todo.length < selected.length) opts.log.info(`${selected.length - todo.length} unit(s) already done, ${todo.length} to run`);

  // One controller for the whole run: the caller's cancel, or the first outage, stops every unit.
  const stopper = new AbortController();
  // Every in-flight request of every running unit listens on it (hundreds for recaption), each
  // removing its listener when it settles: many listeners here are the design, not a leak.
  setMaxListeners(0, stopper.signal);
  let stop: RunStop | undefined;
  const onCancel = () => {
    stop ??= { kind: 'interrupted', reason: 'interrupted', message: 'the run was interrupted' };
    stopper.abort(opts.signal?.reason);
  };
  if (opts.signal?.aborted) onCancel();
  opts.signal?.addEventListener('abort', onCancel, { once: true });
  // Another process took the output over (this one stalled past its lease): stop writing at once.
  const onLeaseLost = () => {
    const message = (leaseLost.reason as Error).message;
    stop ??= { kind: 'outage', target: opts.output.url, reason: 'lease_lost', message };
    opts.log.error(`lease lost: ${message}`);
    stopper.abort(leaseLost.reason);
  };
  leaseLost.addEventListener('abort', onLeaseLost, { once: true });

  // Opened once for the run: its units share models, clients and caches; closed however it ends.
  const session = job.open(cfg, opts.log);
  const progress: Progress = createProgress({ label: job.name, units: todo.length, mode: opts.progress ?? 'auto' });
  const failures: { unit: string; error: string }[] = [];
  const notStarted: string[] = [];
  let completed = 0;
  let rowsThisRun = 0;
  const runOne = async (unit: Unit): Promise<void> => {
    if (stopper.signal.aborted) {
      notStarted.push(unit.id);
      return;
    }
    const r = await runUnit(session, unit, {
      output: opts.output,
      log: withFields(opts.log, { unit: unit.id }),
      signal: stopper.signal,
      onRows: (n) => {
        progress.rows(n);
        opts.onRows?.(n);
      },
    });
    opts.onUnitDone?.(unit.id, r.ok ? r.stats : undefined);
    if (r.ok) {
      completed++;
      rowsThisRun += r.stats.funnel.rows_in;
    } else {
      failures.push({ unit: unit.id, error: r.error });
      const outage = findOutage(r.cause) ?? systemicWriteError(r.cause, opts.output.url);
      if (outage && !stop) {
        stop = { kind: 'outage', target: outage.target, reason: outage.reason, message: outage.message };
        opts.log.error(`outage of ${outage.target} (${outage.reason}): stopping the run; no further unit starts`);
        stopper.abort(outage);
      } else if (!stopper.signal.aborted) opts.log.error(`unit ${unit.id} failed, left undone for a rerun: ${r.error}`);
    }
    progress.unitDone();
  };
  try {
    for await (const _ of mapConcurrent(todo, runOne, { concurrency: cfg.parallel_units, ordered: false })) void _;
  } finally {
    opts.signal?.removeEventListener('abort', onCancel);
    leaseLost.removeEventListener('abort', onLeaseLost);
    progress.stop();
    // Releasing resources must not hide the run's outcome (or an outage) behind a second error.
    await session.close().catch((err: unknown) => opts.log.warn(`closing ${job.name}: ${err instanceof Error ? err.message : String(err)}`));
  }

  const finished = new Date();
  const seconds = (finished.getTime() - started.getTime()) / 1000;
  const summary = await summarizeOutput(opts.output, job.name, units);
  const run: RunSummary = {
    ...summary,
    this_run: {
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      seconds,
      units_selected: selected.length,
      units_already_done: selected.length - todo.length,
      units_completed: completed,
      units_failed: failures,
      units_not_started: notStarted,
      stopped: stop ?? null,
      rows: rowsThisRun,
      rows_per_second: rowsThisRun / Math.max(seconds, 1e-6),
    },
  };
  try {
    await writeRunSummary(opts.output, run, job, units.map((u) => u.id), opts.log);
  } catch (err) {
    // After a failed run (a full disk, say) a second error must not hide the first; after a clean
    // one it is the run's failure.
    if (!stop && failures.length === 0) throw err;
    opts.log.error(`could not write ${opts.output.url}/${RUN_SUMMARY_NAME}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return run;
}

/**
 * Refuses to resume into an output planned differently: unit ids would name other rows and the
 * records would no longer hold each row exactly once. Writes `_plan.json` on first use.
 */
export async function checkPlan(store: Store, job: string, units: Unit[]): Promise<void> {
  const plan = planFile(job, units, pinsUsed());
  if (await store.exists(PLAN_NAME)) {
    const prev = await readPlan(store);
    if (prev.job !== job || prev.fingerprint !== plan.fingerprint) {
      throw new Error(
        `output ${store.url} holds a different plan (job ${prev.job}, ${prev.units} units; now job ${job}, ${units.length} units): ` +
          'the inputs or unit size changed since it was started. Use a new output, delete it to start over, or add inputs with bitprep run --extend.',
      );
    }
    return;
  }
  await store.put(PLAN_NAME, JSON.stringify(plan, null, 2) + '\n');
}

/** `_plan.json` for these units: their fingerprint, ids, the units themselves and the pins they were planned with. */
function planFile(job: string, units: Unit[], pins: Record<string, string>): PlanFile {
  const fingerprint = createHash('sha256').update(JSON.stringify(units)).digest('hex');
  return { job, units: units.length, fingerprint, unit_ids: units.map((u) => u.id), ...(Object.keys(pins).length > 0 ? { pins } : {}), plan: units };
}

/**
 * The planned units in the ids and order the output's plan recorded, when they are the same units
 * (after an extension the planner's own order may differ: a new input sorted first); otherwise
 * the units as planned, for checkPlan to judge.
 */
async function recordedOrder(store: Store, planned: Unit[]): Promise<Unit[]> {
  if (!(await store.exists(PLAN_NAME))) return planned;
  const prev = (await readPlan(store)).plan;
  return prev && sameUnits(prev, planned) ? prev : planned;
}

/**
 * `--extend`: the units to run on an output that already has a plan: its units with their ids,
 * then the new inputs' units (extend-plan.ts). The output's `_plan.json` and `_config.json` take
 * the extended plan and the new input paths; any other change of settings is still refused.
 */
export async function extendPlan(store: Store, job: AnyJob, cfg: BaseJobConfig, units: Unit[], log: Logger): Promise<Unit[]> {
  if (!(await store.exists(PLAN_NAME))) return units;
  const prev = await readPlan(store);
  if (prev.job !== job.name) throw new Error(`--extend: output ${store.url} was made by ${prev.job}, not ${job.name}`);
  if (!prev.plan) throw new Error(`--extend: output ${store.url} was planned before plans recorded their units; it cannot be extended (write to a new output)`);
  const extended = extendUnits(prev.plan, units, store.url);
  const added = extended.length - prev.plan.length;
  // The settings may differ only in the inputs' paths.
  const before = JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME))) as Record<string, unknown>;
  const changes = changedSettings(before, JSON.parse(configJson(cfg)), [...operationalPatterns(job), 'input.paths']);
  if (changes.length > 0) {
    throw new ConfigError(`--extend adds inputs only; output ${store.url} was made with other settings (${changes.length}):\n${formatChanges(changes)}`);
  }
  if (added === 0) return extended;
  log.info(`--extend: ${added} new unit(s) for the new inputs (ids ${extended[prev.plan.length].id}–${extended[extended.length - 1].id}); the ${prev.plan.length} existing units are untouched`);
  await store.put(CONFIG_NAME, configJson(cfg));
  await store.put(PLAN_NAME, JSON.stringify(planFile(job.name, extended, { ...prev.pins, ...pinsUsed() }), null, 2) + '\n');
  return extended;
}
