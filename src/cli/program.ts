import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/config-error.js';
import type { JobsLoader } from '../job.js';
import type { TensorModel } from '../models/tensor.js';
import { addCommands, type CommandEntry } from './command-entry.js';
import { EXIT } from './exit-codes.js';
import { integerOption, progressOption } from './option-parsers.js';

/** What the composition root (pipelines/main.ts) hands the CLI: src/ never imports pipelines. */
export interface CliWiring {
  version: string;
  jobs: JobsLoader;
  demo(opts: { out: string; images: number; progress: string }): Promise<number>;
  /** How `bitprep serve` opens a model file (the root picks the runtime). */
  loadModel(path: string, name: string): Promise<TensorModel>;
  /** Job-specific and evaluation commands (e.g. `recaption export|import`, `eval`), in help order. */
  commands?: CommandEntry[];
}

/** The commands of every job: run, plan, queue work, summaries, retries, serving. */
function builtinCommands(w: CliWiring): { before: CommandEntry[]; after: CommandEntry[] } {
  return {
    before: [
      { name: 'run', description: 'run a job from a config file; done units are skipped, so rerunning resumes', load: async () => (await import('./run-command.js')).runCommand(w.jobs) },
      { name: 'plan', description: 'validate a config and print the units it plans; with --queue, enqueue them for `bitprep worker`s', load: async () => (await import('./plan-command.js')).planCommand(w.jobs) },
      { name: 'worker', description: 'take units from a queue (bitprep plan --queue) and run them; any number of workers on any machines', load: async () => (await import('./queue-commands.js')).workerCommand(w.jobs) },
      { name: 'status', description: 'show the progress of a queue: BullMQ counts, dead-letter units, done units of the output', load: async () => (await import('./queue-commands.js')).statusCommand() },
      { name: 'summary', description: 'rebuild run-summary.json of an output from its done markers and print the funnel', load: async () => (await import('./summary-command.js')).summaryCommand(w.jobs) },
      { name: 'retry-failed', description: 'rerun only the rows of an output that failed for transient reasons, merging them into the same shards', load: async () => (await import('./retry-failed-command.js')).retryFailedCommand(w.jobs) },
      {
        name: 'refilter',
        description: 're-decide the annotation filters (aesthetic, text density and height) of an output under new thresholds, from its records alone',
        load: async () => (await import('./refilter-command.js')).refilterCommand(w.jobs),
      },
    ],
    after: [
      { name: 'serve', description: 'serve models over the KServe v2 HTTP protocol (JSON and binary tensor data)', load: async () => (await import('./serve-command.js')).serveCommand(w.loadModel) },
      {
        name: 'jobs',
        description: 'list the jobs a config can name',
        load: async () =>
          new Command('jobs').action(async () => {
            for (const j of Object.values(await w.jobs())) process.stdout.write(`${j.name.padEnd(16)} ${j.description}\n`);
          }),
      },
      {
        name: 'demo',
        description: 'generate sample data and run the whole dataflow on it, offline',
        load: async () =>
          new Command('demo')
            .option('--out <dir>', 'where the sample data and outputs go', '.')
            .option('--images <n>', 'images to generate', integerOption('--images'), 300)
            .addOption(progressOption())
            .action(async (o: { out: string; images: number; progress: string }) => {
              process.exitCode = await w.demo(o);
            }),
      },
    ],
  };
}

/**
 * The program for these arguments: every command is listed (for help and "unknown command"),
 * but only the one the arguments name is loaded and defined.
 */
export async function buildProgram(w: CliWiring, args: string[]): Promise<Command> {
  const program = new Command('bitprep')
    .description('Dataflow toolkit for 1D binary-latent text-to-image training data')
    .version(w.version)
    .showHelpAfterError();
  const { before, after } = builtinCommands(w);
  await addCommands(program, [...before, ...(w.commands ?? []), ...after], args);
  return program;
}

/** Runs the CLI; known user errors print without a stack trace. */
export async function runCli(w: CliWiring, argv: string[]): Promise<void> {
  try {
    const program = await buildProgram(w, argv.slice(2));
    // Commander exits by itself on usage errors (with 1); bitprep's usage errors exit 2 like config errors.
    const override = (c: Command): void => {
      c.exitOverride();
      c.commands.forEach(override);
    };
    override(program);
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
    const { findOutage } = await import('../outage.js');
    process.exitCode = findOutage(err) ? EXIT.UNITS_FAILED : EXIT.USAGE;
  }
}
