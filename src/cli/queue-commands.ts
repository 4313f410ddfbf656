import { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { integerOption, progressOption } from './option-parsers.js';
import { stopOnSignals } from './stop-signals.js';
// The executor (bullmq, ioredis) loads when a queue command runs, not with the CLI.
import type { EnqueueOptions } from '../executors/queue-plan.js';
import type { AnyJob, BaseJobConfig, JobsLoader } from '../job.js';
import { consoleLogger } from '../log.js';
import type { Unit } from '../units/unit.js';

/** `plan --queue`: enqueues the planned units and prints what it did. */
export async function planOnQueue(job: AnyJob, cfg: BaseJobConfig, units: Unit[], o: Omit<EnqueueOptions, 'log'> & { json?: boolean }): Promise<void> {
  const { enqueuePlan } = await import('../executors/queue-plan.js');
  const r = await enqueuePlan(job, cfg, units, { ...o, log: consoleLogger });
  if (o.json) {
    process.stdout.write(JSON.stringify({ job: job.name, output: cfg.output, ...r }, null, 2) + '\n');
    return;
  }
  process.stdout.write(
    `${job.name}: ${r.planned} unit(s) → ${cfg.output}\n` +
      `queue ${r.queue}: ${r.enqueued} enqueued, ${r.alreadyDone} already done, ${r.alreadyQueued} already queued${r.dead ? `, ${r.dead} dead (see bitprep status)` : ''}\n`,
  );
}

/** `bitprep worker`: runs units from a queue until stopped (or until it is empty, with --exit-when-empty). */
export function workerCommand(jobs: JobsLoader): Command {
  return new Command('worker')
    .requiredOption('--queue <url>', 'Redis URL of the queue, e.g. redis://:password@host:6379/0')
    .option('--queue-name <name>', 'queue to work on (default: the only queue planned in that Redis)')
    .option('--concurrency <n>', "units run at once by this worker (default: the config's parallel_units)", integerOption('--concurrency', { min: 1 }))
    .option('--exit-when-empty', 'exit once no unit is waiting, delayed or running (batch jobs)')
    .option('--lock-ms <ms>', "heartbeat lock: a dead worker's unit goes back to the queue within about twice this", integerOption('--lock-ms', { min: 1000 }), 30_000)
    .addOption(progressOption())
    .option('--json', "print this worker's report as JSON")
    .action(async (o: { queue: string; queueName?: string; concurrency?: number; exitWhenEmpty?: boolean; lockMs: number; progress: 'auto' | 'bar' | 'plain' | 'off'; json?: boolean }) => {
      const signals = stopOnSignals('finishing the running unit(s)');
      try {
        const { runQueueWorker } = await import('../executors/queue-worker.js');
        const r = await runQueueWorker({
          url: o.queue,
          name: o.queueName,
          jobs: await jobs(),
          concurrency: o.concurrency,
          exitWhenEmpty: o.exitWhenEmpty ?? false,
          lockMs: o.lockMs,
          progress: o.progress,
          log: consoleLogger,
          stop: signals.stop,
        });
        if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
        else process.stdout.write(`queue ${r.queue}: this worker completed ${r.completed} unit(s), skipped ${r.skipped} already done, ${r.failedAttempts} failed attempt(s), ${r.dead} moved to the dead-letter list\n`);
        // A dead-lettered unit, or an outage that stopped the worker, is work left undone.
        if (r.stopped) process.stderr.write(`error: worker stopped by an outage of ${r.stopped.target}: ${r.stopped.message}\n  its unit went back to the queue without using an attempt; fix it and start the workers again\n`);
        process.exitCode = r.dead > 0 || r.stopped ? EXIT.UNITS_FAILED : EXIT.OK;
      } finally {
        signals.dispose();
      }
    });
}

/** `bitprep status`: progress of a queue and its output. */
export function statusCommand(): Command {
  return new Command('status')
    .requiredOption('--queue <url>', 'Redis URL of the queue')
    .option('--queue-name <name>', 'queue to show (default: the only queue planned in that Redis)')
    .option('--json', 'print the status as JSON')
    .action(async (o: { queue: string; queueName?: string; json?: boolean }) => {
      const { queueStatus } = await import('../executors/queue-status.js');
      const s = await queueStatus({ url: o.queue, name: o.queueName });
      if (o.json) {
        process.stdout.write(JSON.stringify(s, null, 2) + '\n');
        return;
      }
      const c = s.counts;
      process.stdout.write(`queue ${s.queue} on ${s.redis}: job ${s.job ?? '?'} → ${s.output ?? '?'}\n`);
      process.stdout.write(`jobs: ${c.waiting} waiting, ${c.active} active, ${c.delayed} delayed (retry backoff), ${c.prioritized} prioritized, ${c.completed} completed, ${c.failed} failed\n`);
      if (s.units) process.stdout.write(`units: ${s.units.done}/${s.units.planned} done\n`);
      process.stdout.write(`dead-letter: ${s.dead.length} unit(s)\n`);
      for (const d of s.dead) process.stdout.write(`  ${d.unit} (${d.attempts} attempts, last ${d.failed_at} on ${d.worker}): ${d.error.split('\n')[0]}\n`);
    });
}
