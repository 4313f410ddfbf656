import { Command } from 'commander';
import { collectValues } from './option-parsers.js';
import { loadConfig, parseOverride, validateConfig } from '../config/load-config.js';
import { CONFIG_NAME, readPlan } from '../executors/local.js';
import type { JobsLoader } from '../job.js';
import { refilterOutput } from '../refilter.js';
import { formatFunnel } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';

/** `bitprep refilter <output>`: re-decides the annotation filters from the records alone. */
export function refilterCommand(jobs: JobsLoader): Command {
  return new Command('refilter')
    .argument('<output>', 'output directory or s3://bucket/prefix of a finished or partial run')
    .option('-c, --config <file>', 'config with the new thresholds (default: the one the output was made with)')
    .option('--set <key=value>', 'override a value, e.g. --set aesthetic.min_score=5.5 (repeatable)', collectValues, [])
    .option('--name <name>', 'results go to <output>/refilter/<name>/', 'latest')
    .option('--json', 'print the summary as JSON')
    .action(async (output: string, o: { config?: string; set: string[]; name: string; json?: boolean }) => {
      const store = openStore(output);
      const plan = await readPlan(store);
      const overrides: [string, unknown][] = [...o.set.map(parseOverride), ['output', output]];
      const { job, config } = o.config
        ? await loadConfig(o.config, await jobs(), overrides)
        : validateConfig(JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME))), `${output}/${CONFIG_NAME}`, await jobs(), overrides);
      if (job.name !== plan.job) throw new Error(`${output} was made by job ${plan.job}, the config is for ${job.name}`);
      const r = await refilterOutput(job, config, store, plan.unit_ids, o.name);
      if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else {
        process.stdout.write(`${formatFunnel(r.funnel)}\n`);
        process.stdout.write(`${r.changed} row(s) change; kept ${r.kept_in_shards} already in the shards, ${r.kept_not_in_shards} not (dropped before: rerun to fetch them)\n`);
        process.stdout.write(`records: ${output.replace(/\/+$/, '')}/refilter/${o.name}/\n`);
      }
    });
}
