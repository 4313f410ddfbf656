import { createHash } from 'node:crypto';
import type { AnyJob, BaseJobConfig } from '../job.js';
import type { Logger } from '../log.js';
import { createProgress, type Progress, type ProgressOptions } from '../progress.js';
import type { Store } from '../stores/store.js';
import { doneName, type Unit } from '../units/unit.js';
import { mapConcurrent } from '../concurrency.js';
import { summarizeOutput, type RunSummary } from '../run-summary.js';
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
}

const PLAN_NAME = '_plan.json';
export const CONFIG_NAME = '_config.json';

/** `_plan.json`: the units an output was started with, so a resume with other inputs is refused. */
export interface PlanFile {
  job: string;
  units: number;
  fingerprint: string;
  unit_ids: string[];
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
 * Runs a job's units on this machine, skipping units whose done marker exists. A unit that throws
 * is reported and left undone (a rerun retries it); the other units go on.
 */
export async function executeLocal(job: AnyJob, cfg: BaseJobConfig, units: Unit[], opts: ExecuteOptions): Promise<RunSummary> {
  const started = new Date();
  await checkPlan(opts.output, job.name, units);
  // Kept so that commands on the output alone (retry-failed) know how it was made.
  await opts.output.put(CONFIG_NAME, configJson(cfg));
  const selected = selectUnits(units, opts.selection);
  const doneFlags = await Promise.all(selected.map((u) => opts.output.exists(doneName(u.id))));
  const todo = selected.filter((_, i) => !doneFlags[i]);
  if (opts.selection) opts.log.info(`shard ${opts.selection.index}/${opts.selection.count} (from ${opts.selection.from}): ${selected.length} of ${units.length} units`);
  if (todo.length < selected.length) opts.log.info(`${selected.length - todo.length} unit(s) already done, ${todo.length} to run`);

  const progress: Progress = createProgress({ label: job.name, units: todo.length, mode: opts.progress ?? 'auto' });
  const failures: { unit: string; error: string }[] = [];
  let rowsThisRun = 0;
  const runOne = async (unit: Unit): Promise<void> => {
    const r = await runUnit(job, cfg, unit, {
      output: opts.output,
      log: opts.log,
      onRows: (n) => {
        progress.rows(n);
        opts.onRows?.(n);
      },
    });
    if (r.ok) rowsThisRun += r.stats.funnel.rows_in;
    else {
      failures.push({ unit: unit.id, error: r.error });
      opts.log.error(`unit ${unit.id} failed, left undone for a rerun: ${r.error}`);
    }
    progress.unitDone();
  };
  try {
    for await (const _ of mapConcurrent(todo, runOne, { concurrency: cfg.parallel_units, ordered: false })) void _;
  } finally {
    progress.stop();
    await job.close?.();
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
      units_completed: todo.length - failures.length,
      units_failed: failures,
      rows: rowsThisRun,
      rows_per_second: rowsThisRun / Math.max(seconds, 1e-6),
    },
  };
  await opts.output.put('run-summary.json', JSON.stringify(run, null, 2) + '\n');
  if (summary.units.done === summary.units.planned) await job.finalize?.(opts.output, units.map((u) => u.id), opts.log);
  return run;
}

/**
 * Refuses to resume into an output planned differently: unit ids would name other rows and the
 * records would no longer hold each row exactly once. Writes `_plan.json` on first use.
 */
export async function checkPlan(store: Store, job: string, units: Unit[]): Promise<void> {
  const fingerprint = createHash('sha256').update(JSON.stringify(units)).digest('hex');
  const plan: PlanFile = { job, units: units.length, fingerprint, unit_ids: units.map((u) => u.id) };
  if (await store.exists(PLAN_NAME)) {
    const prev = await readPlan(store);
    if (prev.job !== job || prev.fingerprint !== fingerprint) {
      throw new Error(
        `output ${store.url} holds a different plan (job ${prev.job}, ${prev.units} units; now job ${job}, ${units.length} units): ` +
          'the inputs or unit size changed since it was started. Use a new output, or delete it to start over.',
      );
    }
    return;
  }
  await store.put(PLAN_NAME, JSON.stringify(plan, null, 2) + '\n');
}
