import { Command } from 'commander';
import { validateConfig } from '../config/load-config.js';
import { CONFIG_NAME, readPlan } from '../executors/local.js';
import type { JobsLoader } from '../job.js';
import { consoleLogger } from '../log.js';
import { retryFailed } from '../retry-failed.js';
import { formatFunnel, summarizeOutput, writeRunSummary, type RunSummary } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';
import { OutputLease } from '../units/output-lease.js';

/** `bitprep retry-failed <output>`: reruns the rows that failed for transient reasons. */
export function retryFailedCommand(jobs: JobsLoader): Command {
  return new Command('retry-failed')
    .argument('<output>', 'output directory or s3://bucket/prefix of a finished or partial run')
    .option('--reasons <list>', 'comma-separated funnel reasons to retry (default: the job\'s transient ones, e.g. fetch:timeout)')
    .option('--json', 'print what was retried and the new summary as JSON')
    .action(async (output: string, o: { reasons?: string; json?: boolean }) => {
      const store = openStore(output);
      const plan = await readPlan(store);
      const raw = JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME)));
      const { job, config } = validateConfig({ ...raw, output }, `${output}/${CONFIG_NAME}`, await jobs());
      const units = await job.plan(config, consoleLogger);
      if (units.length !== plan.units || units.some((u, i) => u.id !== plan.unit_ids[i])) throw new Error(`the inputs of ${output} changed since it was made; cannot match rows to units`);
      const reasons = o.reasons ? o.reasons.split(',').map((r) => r.trim()).filter(Boolean) : job.transientFailures;
      // It rewrites shards and records: like a run, it must be the output's only writer.
      const lease = await OutputLease.acquire(store, { scope: 'all', log: consoleLogger });
      let r: Awaited<ReturnType<typeof retryFailed>>;
      let summary: RunSummary;
      try {
        r = await retryFailed(job, config, units, store, consoleLogger, reasons);
        summary = await summarizeOutput(store, job.name, units);
        await writeRunSummary(store, summary, job, units.map((u) => u.id), consoleLogger);
      } finally {
        await lease.release();
      }
      if (o.json) process.stdout.write(JSON.stringify({ ...r, summary }, null, 2) + '\n');
      else process.stdout.write(`retried ${r.retried} row(s) in ${r.units} unit(s): ${r.recovered} recovered\n${formatFunnel(summary.funnel)}\n`);
    });
}
