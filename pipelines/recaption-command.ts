import { Command } from 'commander';
import { integerOption, outputOption, progressOption, setOption } from '../src/cli/option-parsers.js';
import { shellLine } from '../src/cli/shell-quote.js';
import { reportRun } from '../src/cli/report-run.js';
import { loadConfig, parseOverride } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import type { AnyJob, JobsLoader } from '../src/job.js';
import { consoleLogger } from '../src/log.js';
import { retryFailed } from '../src/retry-failed.js';
import { summarizeOutput, writeRunSummary } from '../src/run-summary.js';
import { openStore } from '../src/stores/open-store.js';
import { doneName } from '../src/units/unit.js';
import { exportRecaptionBatch, importRecaptionBatch, RECAPTION_ANSWER_FAILURES, type RecaptionConfig } from './recaption.js';

async function recaptionConfigFrom(jobs: JobsLoader, path: string, set: string[], extra: [string, unknown][] = []): Promise<{ job: AnyJob; config: RecaptionConfig }> {
  const { job, config } = await loadConfig(path, await jobs(), [...set.map(parseOverride), ...extra]);
  if (job.name !== 'recaption') throw new Error(`${path} is a ${job.name} config; recaption export/import need a recaption config`);
  return { job, config: config as RecaptionConfig };
}

/** `bitprep recaption export|import`: the offline batch route for GPU clusters without a server. */
export function recaptionCommand(jobs: JobsLoader): Command {
  const cmd = new Command('recaption');

  cmd
    .command('export')
    .description('write the run-batch JSONL requests for every image of the config\'s shards whose captions are not cached')
    .argument('<config>', 'recaption config (.yaml or .json)')
    .requiredOption('--out <file>', 'JSONL file to write (local path or s3:// URL)')
    .option('--attempt <n>', 'attempt number: picks the seed (sampling.seed + n); use 1, 2… for images a previous import refused', integerOption('--attempt'), 0)
    .option('--shard-index <n>', 'export only units i with i mod shard-count = n', integerOption('--shard-index'))
    .option('--shard-count <n>', 'number of export files the work is split into', integerOption('--shard-count'))
    .addOption(setOption('override a config value (repeatable)'))
    .addOption(outputOption())
    .action(async (path: string, o: { out: string; attempt: number; shardIndex?: number; shardCount?: number; set: string[]; output?: string }) => {
      const { config } = await recaptionConfigFrom(jobs, path, o.set, o.output === undefined ? [] : [['output', o.output]]);
      const r = await exportRecaptionBatch(config, o.out, { attempt: o.attempt, shardIndex: o.shardIndex, shardCount: o.shardCount }, consoleLogger);
      process.stdout.write(`${r.requests} request(s) for ${r.images} image(s) → ${o.out}; ${r.cached} caption(s) already cached; ${r.skipped} sample(s) without a usable image\n`);
      // The import must see the config the export saw: the same overrides and output.
      const same = [...o.set.flatMap((kv) => ['--set', kv]), ...(o.output === undefined ? [] : ['-o', o.output])];
      const results = o.out.replace(/(\.jsonl)?$/, '.results.jsonl');
      process.stdout.write(`next: ${shellLine(['vllm', 'run-batch', '-i', o.out, '-o', results, '--model', config.server.model])}\n`);
      process.stdout.write(`then: ${shellLine(['bitprep', 'recaption', 'import', path, results, ...same])}\n`);
    });

  cmd
    .command('import')
    .description('validate a run-batch output file, cache its accepted captions, and write the output shards from the cache')
    .argument('<config>', 'the recaption config the requests were exported with')
    .argument('<results>', 'run-batch output JSONL (local path or s3:// URL)')
    .addOption(setOption('override a config value (repeatable)'))
    .addOption(outputOption())
    .addOption(progressOption())
    .action(async (path: string, results: string, o: { set: string[]; output?: string; progress: 'auto' | 'bar' | 'plain' | 'off' }) => {
      const { job, config } = await recaptionConfigFrom(jobs, path, o.set, [['captions_from', 'cache'], ...(o.output === undefined ? [] : [['output', o.output] as [string, unknown]])]);
      const r = await importRecaptionBatch(config, results, consoleLogger);
      const refused = Object.entries(r.refused).map(([k, v]) => `${k} ${v}`).join(', ');
      process.stdout.write(`${r.lines} answer(s): ${r.accepted} accepted, refused: ${refused || 'none'}${r.foreign ? `, ${r.foreign} line(s) with foreign custom_ids ignored` : ''}\n`);
      const units = await job.plan(config, consoleLogger);
      const store = openStore(config.output);
      // Units an earlier import finished are not rerun; their refused rows are re-decided from the cache instead.
      const doneBefore = (await Promise.all(units.map(async (u) => ((await store.exists(doneName(u.id))) ? u : undefined)))).filter((u) => u !== undefined);
      let summary = await executeLocal(job, config, units, { output: store, log: consoleLogger, progress: o.progress });
      if (doneBefore.length > 0) {
        const rr = await retryFailed(job, config, doneBefore, store, consoleLogger, RECAPTION_ANSWER_FAILURES);
        process.stdout.write(`re-decided ${rr.retried} failed row(s) of ${rr.units} unit(s) finished earlier: ${rr.recovered} now captioned\n`);
        summary = { ...(await summarizeOutput(store, job.name, units)), this_run: summary.this_run };
        await writeRunSummary(store, summary, job, units.map((u) => u.id), consoleLogger);
      }
      reportRun(summary, config.output);
    });

  return cmd;
}
