import { EXIT } from './exit-codes.js';
import { formatFunnel, type RunSummary } from '../run-summary.js';

/**
 * Prints a finished run (the funnel, stage amounts, units, or the summary as JSON) and sets the
 * exit code: 130 when interrupted, 1 when a unit failed or an outage stopped the run, else 0.
 */
export function reportRun(summary: RunSummary, output: string, opts: { json?: boolean } = {}): void {
  const t = summary.this_run!;
  process.exitCode = t.stopped?.kind === 'interrupted' ? EXIT.INTERRUPTED : t.units_failed.length > 0 || t.stopped ? EXIT.UNITS_FAILED : EXIT.OK;
  if (t.stopped) {
    const left = t.units_failed.length + t.units_not_started.length;
    process.stderr.write(
      t.stopped.kind === 'outage'
        ? `error: run stopped by an outage of ${t.stopped.target}: ${t.stopped.message}\n  ${left} unit(s) left undone; fix it and rerun the same command to finish (done units are kept)\n`
        : `error: run interrupted; ${left} unit(s) left undone; rerun the same command to finish\n`,
    );
  }
  if (opts.json) {
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    return;
  }
  process.stdout.write(`${formatFunnel(summary.funnel)}\n`);
  for (const st of summary.stages) {
    const amounts = Object.entries(st.counts).filter(([k]) => k !== 'bytes');
    if (amounts.length === 0) continue;
    // Rates only when every counted unit ran now: stats of units done earlier would inflate them.
    const rate = t.units_already_done === 0 && t.seconds > 0 ? (v: number) => ` (${(v / t.seconds).toFixed(1)}/s)` : () => '';
    process.stdout.write(`${st.name}: ${amounts.map(([k, v]) => `${k} ${v}${rate(v)}`).join(', ')}\n`);
  }
  const notStarted = t.units_not_started.length > 0 ? `, ${t.units_not_started.length} not started` : '';
  process.stdout.write(`units: ${summary.units.done}/${summary.units.planned} done; this run ${t.units_completed} completed, ${t.units_already_done} already done, ${t.units_failed.length} failed${notStarted}; ${t.rows} rows in ${t.seconds.toFixed(1)} s (${t.rows_per_second.toFixed(1)} rows/s)\n`);
  for (const f of t.units_failed) process.stdout.write(`  failed: unit ${f.unit}: ${f.error.split('\n')[0]}\n`);
  process.stdout.write(`summary: ${output.replace(/\/+$/, '')}/run-summary.json\n`);
}
