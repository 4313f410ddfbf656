import { addFunnels, emptyFunnel, funnelBalances, mergeStageStats, type Funnel, type StageStats } from './stats.js';
import type { AnyJob } from './job.js';
import type { Logger } from './log.js';
import type { Store } from './stores/store.js';
import { doneName, readDoneMarker, readUnitStats, statsName, type Unit } from './units/unit.js';

/** `run-summary.json`: the whole output's state, rebuilt from its done markers. */
export interface RunSummary {
  job: string;
  output: string;
  units: { planned: number; done: number; pending: string[] };
  /** Over every done unit in the output, whichever process ran it. */
  funnel: Funnel;
  funnel_balances: boolean;
  stages: StageStats[];
  outputs: { files: number; bytes: number };
  /** Queue runs: units that failed every attempt (the dead-letter list), by id. */
  dead?: { unit: string; error: string; attempts: number }[];
  this_run?: {
    started_at: string;
    finished_at: string;
    seconds: number;
    units_selected: number;
    units_already_done: number;
    units_completed: number;
    units_failed: { unit: string; error: string }[];
    /** Units this run did not start because it stopped first (outage or interrupt). */
    units_not_started: string[];
    /** What stopped the run before every unit was tried, if anything. */
    stopped: { kind: 'outage' | 'interrupted'; target?: string; reason: string; message: string } | null;
    rows: number;
    rows_per_second: number;
  };
}


/** Reads every done marker and unit stats in `store` and sums them. */
export async function summarizeOutput(store: Store, job: string, units: Unit[]): Promise<RunSummary> {
  const names = new Set(await store.list());
  const funnel = emptyFunnel();
  const stageLists: StageStats[][] = [];
  const pending: string[] = [];
  let files = 0;
  let bytes = 0;
  for (const u of units) {
    if (!names.has(doneName(u.id))) {
      pending.push(u.id);
      continue;
    }
    const marker = await readDoneMarker(store, u.id);
    addFunnels(funnel, marker.funnel);
    files += marker.outputs.length;
    bytes += marker.outputs.reduce((a, o) => a + o.bytes, 0);
    if (names.has(statsName(u.id))) stageLists.push((await readUnitStats(store, u.id)).stages);
  }
  return {
    job,
    output: store.url,
    units: { planned: units.length, done: units.length - pending.length, pending },
    funnel,
    funnel_balances: funnelBalances(funnel),
    stages: mergeStageStats(stageLists),
    outputs: { files, bytes },
  };
}

export const RUN_SUMMARY_NAME = 'run-summary.json';

/**
 * Writes `run-summary.json`, then, once every planned unit is done, the job's dataset-level files
 * (`finalize`, e.g. a latent dataset's index.json). Every writer of a summary (a run, a queue
 * worker, `summary`, `retry-failed`) goes through here, so a dataset is finalized wherever its
 * last unit ends.
 */
export async function writeRunSummary(store: Store, summary: RunSummary, job: Pick<AnyJob, 'finalize'> | undefined, unitIds: string[], log: Logger): Promise<void> {
  await store.put(RUN_SUMMARY_NAME, JSON.stringify(summary, null, 2) + '\n');
  if (summary.units.done === summary.units.planned) await job?.finalize?.(store, unitIds, log);
}

/** The funnel as aligned text lines for a terminal. */
export function formatFunnel(f: Funnel): string {
  const rows: [string, number][] = [['rows in', f.rows_in]];
  for (const [k, v] of Object.entries(f.dropped).sort()) rows.push([`  dropped by ${k}`, v]);
  for (const [k, v] of Object.entries(f.failed).sort()) rows.push([`  failed at ${k}`, v]);
  rows.push(['written', f.written]);
  const w = Math.max(...rows.map(([k]) => k.length));
  const pct = (v: number) => (f.rows_in ? ` (${((100 * v) / f.rows_in).toFixed(1)}%)` : '');
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${String(v).padStart(8)}${k === 'rows in' ? '' : pct(v)}`).join('\n');
}
