import { jsonLinesLogger } from '../log-file.js';
import { MetricsFile } from '../metrics-file.js';
import { Command } from 'commander';
import { integerOption, outputOption, progressOption, setOption } from './option-parsers.js';
import { reportRun } from './report-run.js';
import { stopOnSignals } from './stop-signals.js';
import { loadConfig, parseOverride } from '../config/load-config.js';
import { preflight } from '../config/preflight.js';
import { executeLocal } from '../executors/local.js';
import { resolveShardSelection } from '../executors/shard-select.js';
import type { JobsLoader } from '../job.js';
import { consoleLogger } from '../log.js';
import { openStore } from '../stores/open-store.js';
import { commandLine } from '../units/output-lease.js';

/** `bitprep run <config>`: runs a job's units on this machine; rerunning resumes. */
export function runCommand(jobs: JobsLoader): Command {
  return new Command('run')
    .argument('<config>', 'job config (.yaml or .json)')
    .addOption(outputOption())
    .addOption(setOption())
    .option('--shard-index <n>', 'run only units i with i mod shard-count = n (array jobs)', integerOption('--shard-index'))
    .option('--shard-count <n>', 'number of array tasks', integerOption('--shard-count'))
    .option('--parallel-units <n>', 'units run at once on this machine (overrides parallel_units)', integerOption('--parallel-units'))
    .addOption(progressOption())
    .option('--json', 'print the run summary as JSON on stdout')
    .option('--extend', 'add the units of inputs the output does not have yet (new input paths in the config); existing units stay as they are')
    .option('--log-file <path>', 'also write every message as JSON lines (time, level, job, unit, stage, message) to this file, appended')
    .option('--metrics-file <path>', "write the run's counters in Prometheus' text format to this file as units end (for node_exporter's textfile collector)")
    .action(async (configPath: string, o: { output?: string; set: string[]; shardIndex?: number; shardCount?: number; parallelUnits?: number; progress: 'auto' | 'bar' | 'plain' | 'off'; json?: boolean; logFile?: string; metricsFile?: string; extend?: boolean }) => {
      const overrides = o.set.map(parseOverride);
      if (o.output) overrides.push(['output', o.output]);
      if (o.parallelUnits !== undefined) overrides.push(['parallel_units', o.parallelUnits]);
      const { job, config } = await loadConfig(configPath, await jobs(), overrides);
      const log = o.logFile ? jsonLinesLogger(o.logFile, consoleLogger, { job: job.name }) : consoleLogger;
      const selection = resolveShardSelection({ shardIndex: o.shardIndex, shardCount: o.shardCount });
      const { units } = await preflight(job, config, log, configPath);
      log.info(`${job.name}: ${units.length} unit(s) → ${config.output}`);
      const metrics = o.metricsFile ? new MetricsFile(o.metricsFile, { job: job.name, output: config.output }, units.length) : undefined;
      const signals = stopOnSignals('stopping the running unit(s), which stay undone');
      try {
        const summary = await executeLocal(job, config, units, { output: openStore(config.output), log, selection, progress: o.progress, signal: signals.signal, command: commandLine(), extend: o.extend, onUnitDone: metrics && ((_, stats) => metrics.unitDone(stats)) });
        reportRun(summary, config.output, { json: o.json });
      } finally {
        signals.dispose();
      }
    });
}
