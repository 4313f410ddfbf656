import { Command, CommanderError, Option } from 'commander';
import { EXIT } from './exit-codes.js';
import { findOutage } from '../outage.js';
import { stopOnSignals } from './stop-signals.js';
import { collectValues, integerOption } from './option-parsers.js';
import { ConfigError, loadConfig, parseOverride, validateConfig } from '../config/load-config.js';
import { preflight } from '../config/preflight.js';
import { commandLine, OutputLease } from '../units/output-lease.js';
import { CONFIG_NAME, executeLocal, readPlan } from '../executors/local.js';
import { refilterOutput } from '../refilter.js';
import { retryFailed } from '../retry-failed.js';
import { resolveShardSelection } from '../executors/shard-select.js';
import type { AnyJob } from '../job.js';
import { consoleLogger } from '../log.js';
import { formatFunnel, summarizeOutput, writeRunSummary, type RunSummary } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';
import { OnnxTensorModel } from '../models/onnx-model.js';
import { planOnQueue, statusCommand, workerCommand } from './queue-commands.js';
import { serveCommand } from './serve-command.js';

const SET_HELP =
  'override a config value, e.g. --set image.size=256 (repeatable; values are read as YAML; --set key=null unsets an optional key or section, ' +
  'e.g. --set aesthetic=null runs laion-filter download-only, and gives a defaulted key its default)';

/** What the composition root (pipelines/main.ts) hands the CLI: src/ never imports pipelines. */
export interface CliWiring {
  jobs: Record<string, AnyJob>;
  demo(opts: { out: string; images: number; progress: string }): Promise<number>;
  version: string;
  /** Job-specific commands (e.g. `recaption export|import`), added as they are. */
  commands?: Command[];
}

export function buildProgram(w: CliWiring): Command {
  const program = new Command('bitprep')
    .description('Dataflow toolkit for 1D binary-latent text-to-image training data')
    .version(w.version)
    .showHelpAfterError();

  program
    .command('run')
    .description('run a job from a config file; done units are skipped, so rerunning resumes')
    .argument('<config>', 'job config (.yaml or .json)')
    .option('-o, --output <url>', 'output directory or s3://bucket/prefix (overrides output)')
    .option('--set <key=value>', SET_HELP, collectValues, [])
    .option('--shard-index <n>', 'run only units i with i mod shard-count = n (array jobs)', integerOption('--shard-index'))
    .option('--shard-count <n>', 'number of array tasks', integerOption('--shard-count'))
    .option('--parallel-units <n>', 'units run at once on this machine (overrides parallel_units)', integerOption('--parallel-units'))
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'plain', 'off']).default('auto'))
    .option('--json', 'print the run summary as JSON on stdout')
    .action(async (configPath: string, o: { output?: string; set: string[]; shardIndex?: number; shardCount?: number; parallelUnits?: number; progress: 'auto' | 'bar' | 'plain' | 'off'; json?: boolean }) => {
      const overrides = o.set.map(parseOverride);
      if (o.output) overrides.push(['output', o.output]);
      if (o.parallelUnits !== undefined) overrides.push(['parallel_units', o.parallelUnits]);
      const { job, config } = await loadConfig(configPath, w.jobs, overrides);
      const selection = resolveShardSelection({ shardIndex: o.shardIndex, shardCount: o.shardCount });
      const { units } = await preflight(job, config, consoleLogger, configPath);
      consoleLogger.info(`${job.name}: ${units.length} unit(s) → ${config.output}`);
      const signals = stopOnSignals('stopping the running unit(s), which stay undone');
      try {
        const summary = await executeLocal(job, config, units, { output: openStore(config.output), log: consoleLogger, selection, progress: o.progress, signal: signals.signal, command: commandLine() });
        reportRun(summary, config.output, { json: o.json });
      } finally {
        signals.dispose();
      }
    });

  program
    .command('plan')
    .description('validate a config and print the units it plans; with --queue, enqueue them for `bitprep worker`s')
    .argument('<config>', 'job config (.yaml or .json)')
    .option('-o, --output <url>', 'output directory or s3://bucket/prefix (overrides output)')
    .option('--set <key=value>', SET_HELP, collectValues, [])
    .option('--json', 'print the units as JSON')
    .option('--queue <url>', 'enqueue the units not done yet on a BullMQ queue in this Redis, e.g. redis://:password@host:6379/0')
    .option('--queue-name <name>', 'queue name (default: bitprep- and 12 hex digits of SHA-256 of the output URL)')
    .option('--attempts <k>', 'runs of a unit before it goes to the dead-letter list', integerOption('--attempts', { min: 1 }), 3)
    .option('--backoff-ms <ms>', 'delay before the first retry of a failed unit; doubles per retry', integerOption('--backoff-ms'), 10_000)
    .action(async (configPath: string, o: { output?: string; set: string[]; json?: boolean; queue?: string; queueName?: string; attempts: number; backoffMs: number }) => {
      const overrides = o.set.map(parseOverride);
      if (o.output) overrides.push(['output', o.output]);
      const { job, config } = await loadConfig(configPath, w.jobs, overrides);
      const { units } = await preflight(job, config, consoleLogger, configPath);
      if (o.queue) await planOnQueue(job, config, units, { url: o.queue, name: o.queueName, attempts: o.attempts, backoffMs: o.backoffMs, json: o.json });
      else if (o.json) process.stdout.write(JSON.stringify(units, null, 2) + '\n');
      else {
        process.stdout.write(`${job.name}: ${units.length} unit(s) → ${config.output}\n`);
        for (const u of units.slice(0, 20)) process.stdout.write(`  ${u.id}  ${u.inputs.map((i) => `${i.uri}${i.rowStart !== undefined ? ` rows ${i.rowStart}-${i.rowEnd}` : ''}${i.files ? ` (${i.files.length} files)` : ''}`).join(', ')}\n`);
        if (units.length > 20) process.stdout.write(`  … ${units.length - 20} more\n`);
      }
    });

  program.addCommand(workerCommand(w.jobs));
  program.addCommand(statusCommand());

  program
    .command('summary')
    .description('rebuild run-summary.json of an output from its done markers and print the funnel')
    .argument('<output>', 'output directory or s3://bucket/prefix')
    .option('--json', 'print the summary as JSON')
    .action(async (output: string, o: { json?: boolean }) => {
      const store = openStore(output);
      const plan = await readPlan(store);
      const summary = await summarizeOutput(store, plan.job, plan.unit_ids.map((id) => ({ id, inputs: [] })));
      await writeRunSummary(store, summary, w.jobs[plan.job], plan.unit_ids, consoleLogger);
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else process.stdout.write(`${formatFunnel(summary.funnel)}\nunits: ${summary.units.done}/${summary.units.planned} done\n`);
    });

  program
    .command('retry-failed')
    .description("rerun only the rows of an output that failed for transient reasons, merging them into the same shards")
    .argument('<output>', 'output directory or s3://bucket/prefix of a finished or partial run')
    .option('--reasons <list>', 'comma-separated funnel reasons to retry (default: the job\'s transient ones, e.g. fetch:timeout)')
    .option('--json', 'print what was retried and the new summary as JSON')
    .action(async (output: string, o: { reasons?: string; json?: boolean }) => {
      const store = openStore(output);
      const plan = await readPlan(store);
      const raw = JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME)));
      const { job, config } = validateConfig({ ...raw, output }, `${output}/${CONFIG_NAME}`, w.jobs);
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

  program
    .command('refilter')
    .description('re-decide the annotation filters (aesthetic, text density and height) of an output under new thresholds, from its records alone')
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
        ? await loadConfig(o.config, w.jobs, overrides)
        : validateConfig(JSON.parse(new TextDecoder().decode(await store.get(CONFIG_NAME))), `${output}/${CONFIG_NAME}`, w.jobs, overrides);
      if (job.name !== plan.job) throw new Error(`${output} was made by job ${plan.job}, the config is for ${job.name}`);
      const r = await refilterOutput(job, config, store, plan.unit_ids, o.name);
      if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else {
        process.stdout.write(`${formatFunnel(r.funnel)}\n`);
        process.stdout.write(`${r.changed} row(s) change; kept ${r.kept_in_shards} already in the shards, ${r.kept_not_in_shards} not (dropped before: rerun to fetch them)\n`);
        process.stdout.write(`records: ${output.replace(/\/+$/, '')}/refilter/${o.name}/\n`);
      }
    });

  for (const c of w.commands ?? []) program.addCommand(c);

  program.addCommand(serveCommand((path, name) => OnnxTensorModel.load(path, { name })));

  program
    .command('jobs')
    .description('list the jobs a config can name')
    .action(() => {
      for (const j of Object.values(w.jobs)) process.stdout.write(`${j.name.padEnd(16)} ${j.description}\n`);
    });

  program
    .command('demo')
    .description('generate sample data and run the whole dataflow on it, offline')
    .option('--out <dir>', 'where the sample data and outputs go', '.')
    .option('--images <n>', 'images to generate', integerOption('--images'), 300)
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'plain', 'off']).default('auto'))
    .action(async (o: { out: string; images: number; progress: string }) => {
      process.exitCode = await w.demo(o);
    });

  return program;
}

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
    const amounts = Object.entries(st.units).filter(([k]) => k !== 'bytes');
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

/** Runs the CLI; known user errors print without a stack trace. */
export async function runCli(w: CliWiring, argv: string[]): Promise<void> {
  const program = buildProgram(w);
  // Commander exits by itself on usage errors (with 1); bitprep's usage errors exit 2 like config errors.
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version print and end normally; commander has already printed its own message.
      process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: ${msg}\n`);
    if (!(err instanceof ConfigError) && process.env.BITPREP_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    // Errors that escape a command stopped it before or outside unit work: refusals (2), unless the
    // environment itself failed (an outage: the same class as a unit stopped by one, 1).
    process.exitCode = findOutage(err) ? EXIT.UNITS_FAILED : EXIT.USAGE;
  }
}
