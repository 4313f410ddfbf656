import type { JobSession } from '../job.js';
import type { Logger } from '../log.js';
import type { Store } from '../stores/store.js';
import type { Unit, UnitStats } from '../units/unit.js';

/** What running one unit needs from its executor. */
export interface RunUnitContext {
  output: Store;
  log: Logger;
  /** Told of rows as the unit finishes them. */
  onRows: (n: number) => void;
  /** Cancels the unit (the run was interrupted or hit an outage): it stops and stays undone. */
  signal?: AbortSignal;
}

/** A unit's outcome: its stats, or the error that stopped it (message for reports, cause to rethrow). */
export type RunUnitResult = { ok: true; stats: UnitStats } | { ok: false; error: string; cause: unknown };

/**
 * Runs one unit of a job, as every executor does it: first removes the temp files a killed
 * writer of this unit left (so a rerun's `<unit>.*` listing holds only complete objects), then
 * runs the job's unit, which writes its outputs and its done marker last. Never throws: a
 * failure comes back as `{ ok: false }`, so the local executor can go on with other units and
 * the queue executor can hand it to BullMQ's retries.
 */
export async function runUnit(session: JobSession, unit: Unit, ctx: RunUnitContext): Promise<RunUnitResult> {
  try {
    const stale = (await ctx.output.removePartials?.(`${unit.id}.`)) ?? 0;
    if (stale > 0) ctx.log.info(`unit ${unit.id}: removed ${stale} partial file(s) left by an interrupted run`);
    const stats: UnitStats = await session.run(unit, { output: ctx.output, log: ctx.log, onRows: ctx.onRows, signal: ctx.signal });
    return { ok: true, stats };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err), cause: err };
  }
}
