import { Command } from 'commander';
import { readPlan } from '../executors/local.js';
import type { JobsLoader } from '../job.js';
import { consoleLogger } from '../log.js';
import { formatFunnel, summarizeOutput, writeRunSummary } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';

/** `bitprep summary <output>`: rebuilds run-summary.json from the done markers. */
export function summaryCommand(jobs: JobsLoader): Command {
  return new Command('summary')
    .argument('<output>', 'output directory or s3://bucket/prefix')
    .option('--json', 'print the summary as JSON')
    .action(async (output: string, o: { json?: boolean }) => {
      const store = openStore(output);
      const plan = await readPlan(store);
      const summary = await summarizeOutput(store, plan.job, plan.unit_ids.map((id) => ({ id, inputs: [] })));
      await writeRunSummary(store, summary, (await jobs())[plan.job], plan.unit_ids, consoleLogger);
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else process.stdout.write(`${formatFunnel(summary.funnel)}\nunits: ${summary.units.done}/${summary.units.planned} done\n`);
    });
}
