import { Command } from 'commander';
import { integerOption, outputOption, setOption } from './option-parsers.js';
import { planOnQueue } from './queue-commands.js';
import { loadConfig, parseOverride } from '../config/load-config.js';
import { preflight } from '../config/preflight.js';
import type { JobsLoader } from '../job.js';
import { consoleLogger } from '../log.js';

/** `bitprep plan <config>`: checks a config and prints (or enqueues) its units. */
export function planCommand(jobs: JobsLoader): Command {
  return new Command('plan')
    .argument('<config>', 'job config (.yaml or .json)')
    .addOption(outputOption())
    .addOption(setOption())
    .option('--json', 'print the units as JSON')
    .option('--queue <url>', 'enqueue the units not done yet on a BullMQ queue in this Redis, e.g. redis://:password@host:6379/0')
    .option('--queue-name <name>', 'queue name (default: bitprep- and 12 hex digits of SHA-256 of the output URL)')
    .option('--attempts <k>', 'runs of a unit before it goes to the dead-letter list', integerOption('--attempts', { min: 1 }), 3)
    .option('--backoff-ms <ms>', 'delay before the first retry of a failed unit; doubles per retry', integerOption('--backoff-ms'), 10_000)
    .action(async (configPath: string, o: { output?: string; set: string[]; json?: boolean; queue?: string; queueName?: string; attempts: number; backoffMs: number }) => {
      const overrides = o.set.map(parseOverride);
      if (o.output) overrides.push(['output', o.output]);
      const { job, config } = await loadConfig(configPath, await jobs(), overrides);
      const { units } = await preflight(job, config, consoleLogger, configPath);
      if (o.queue) await planOnQueue(job, config, units, { url: o.queue, name: o.queueName, attempts: o.attempts, backoffMs: o.backoffMs, json: o.json });
      else if (o.json) process.stdout.write(JSON.stringify(units, null, 2) + '\n');
      else {
        process.stdout.write(`${job.name}: ${units.length} unit(s) → ${config.output}\n`);
        for (const u of units.slice(0, 20)) process.stdout.write(`  ${u.id}  ${u.inputs.map((i) => `${i.uri}${i.rowStart !== undefined ? ` rows ${i.rowStart}-${i.rowEnd}` : ''}${i.files ? ` (${i.files.length} files)` : ''}`).join(', ')}\n`);
        if (units.length > 20) process.stdout.write(`  … ${units.length - 20} more\n`);
      }
    });
}
