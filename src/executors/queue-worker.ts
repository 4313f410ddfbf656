import { hostname } from 'node:os';
import { DelayedError, Queue, Worker, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { validateConfig } from '../config/load-config.js';
import { PreflightError } from '../config/preflight.js';
import type { AnyJob, BaseJobConfig, JobSession } from '../job.js';
import type { Logger } from '../log.js';
import { findOutage, systemicWriteError } from '../outage.js';
import { createProgress, type Progress, type ProgressOptions } from '../progress.js';
import { summarizeOutput, writeRunSummary } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';
import type { Store } from '../stores/store.js';
import { doneName } from '../units/unit.js';
import { readPlan, type RunStop } from './local.js';
import { connect, maskRedisUrl, MAX_STALLS, PREFIX, queueKeys, redactor, resolveQueueName, unfinishedCount, type DeadLetter, type QueueTarget, type UnitJobData } from './queue-redis.js';
import { runUnit } from './run-unit.js';

export interface QueueWorkerOptions extends QueueTarget {
  /** The job registry (the CLI wiring's jobs). */
  jobs: Record<string, AnyJob>;
  /** Units run at once by this worker; default the config's `parallel_units`. */
  concurrency?: number;
  /** Stop once no unit is waiting, delayed or running anywhere (batch systems, tests). */
  exitWhenEmpty: boolean;
  /**
   * Lock (heartbeat) duration: a running unit's lock is renewed every half of it; a worker that
   * dies loses the lock, and its unit goes back to the queue within about twice this time.
   */
  lockMs: number;
  progress?: ProgressOptions['mode'];
  log: Logger;
  /** Resolves when the worker should stop (signals); a second stop is the caller's business. */
  stop?: Promise<'graceful' | 'force'>;
}

export interface QueueWorkerReport {
  queue: string;
  completed: number;
  skipped: number;
  failedAttempts: number;
  dead: number;
  /** The outage that stopped this worker (its unit went back to the queue without using an attempt). */
  stopped?: RunStop;
}

/** A queue's config, validated and with its job, as a worker runs it. */
interface PlanContext {
  job: AnyJob;
  cfg: BaseJobConfig;
  store: Store;
  /** The job opened for this config, for every unit this worker runs of it; closed when the worker stops. */
  session: JobSession;
}

/**
 * `bitprep worker`: takes units from the queue and runs them as the local executor does. A unit
 * whose done marker exists completes without running (another worker finished it). A unit that
 * throws fails its BullMQ attempt and is retried with backoff; after its last attempt it goes to
 * the dead-letter list with its error. Whenever a unit completes and nothing waits or is delayed,
 * the worker rewrites `run-summary.json`, and when every planned unit is done it calls the job's
 * finalize (idempotent, so racing workers may both do it).
 */
export async function runQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorkerReport> {
  const redis = await connect(opts.url, { maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(n * 500, 5000) });
  try {
    return await workQueue(redis, opts);
  } finally {
    redis.disconnect();
  }
}

async function workQueue(redis: Redis, opts: QueueWorkerOptions): Promise<QueueWorkerReport> {
  const mask = redactor(opts.url);
  const name = await resolveQueueName(redis, opts);
  const keys = queueKeys(name);
  const contexts = new Map<string, PlanContext>();
  const workerHost = hostname();
  const contextFor = async (): Promise<PlanContext> => {
    const text = await redis.get(keys.config);
    if (text === null) throw new Error(`queue ${name} has no config in Redis at ${maskRedisUrl(opts.url)}: run \`bitprep plan <config> --queue …\` first`);
    let ctx = contexts.get(text);
    if (!ctx) {
      const { job, config } = validateConfig(JSON.parse(text), `config of queue ${name}`, opts.jobs);
      // What plan checked on the planning machine must hold here too (model files, inputs).
      const problems = (await job.check?.(config, opts.log)) ?? [];
      if (problems.length > 0) throw new PreflightError(`of queue ${name} on ${workerHost}`, problems);
      ctx = { job, cfg: config, store: openStore(config.output), session: job.open(config, opts.log) };
      contexts.set(text, ctx);
    }
    return ctx;
  };
  const first = await contextFor();
  const workerName = `${workerHost}:${process.pid}`;
  const queue = new Queue<UnitJobData>(name, { connection: redis, prefix: PREFIX });
  const concurrency = opts.concurrency ?? first.cfg.parallel_units;
  opts.log.info(`worker ${workerName}: queue ${name} on ${maskRedisUrl(opts.url)}, job ${first.job.name} → ${first.cfg.output}, ${concurrency} unit(s) at once`);

  const progress: Progress = createProgress({ label: `${first.job.name} (queue ${name})`, units: await unfinishedCount(queue), mode: opts.progress ?? 'auto' });
  const report: QueueWorkerReport = { queue: name, completed: 0, skipped: 0, failedAttempts: 0, dead: 0 };
  let running = 0;

  // Written whenever a unit ends and nothing else waits, however it ended (done or dead), so the
  // last unit to end always leaves a summary naming the dead ones.
  const afterUnit = async (ctx: PlanContext): Promise<void> => {
    const counts = await queue.getJobCounts('waiting', 'delayed', 'prioritized');
    if ((counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0) > 0) return;
    const plan = await readPlan(ctx.store);
    const units = plan.unit_ids.map((id) => ({ id, inputs: [] }));
    const doneMarkers = new Set(plan.unit_ids.map(doneName));
    for (;;) {
      const dead = (await redis.lrange(keys.dead, 0, -1)).map((d) => JSON.parse(d) as DeadLetter).map((d) => ({ unit: d.unit, error: d.error, attempts: d.attempts }));
      const summary = { ...(await summarizeOutput(ctx.store, plan.job, units)), dead };
      if (summary.units.done === summary.units.planned) opts.log.info(`all ${summary.units.planned} unit(s) of ${ctx.cfg.output} done`);
      await writeRunSummary(ctx.store, summary, ctx.job, plan.unit_ids, opts.log);
      // Another worker may have ended a unit while this one summarized, and written its summary
      // first: then this one wrote an older state over it, and looks again until nothing changed.
      const done = (await ctx.store.list()).filter((n) => doneMarkers.has(n)).length;
      if (done === summary.units.done && (await redis.llen(keys.dead)) === dead.length) return;
    }
  };

  let stopping: 'graceful' | 'force' | undefined;
  const processUnit = async (bj: BullJob<UnitJobData>, token?: string): Promise<{ rows: number } | { skipped: true }> => {
    running++;
    try {
      const ctx = await contextFor();
      const unit = bj.data.unit;
      const attempt = `attempt ${bj.attemptsMade + 1} of ${bj.opts.attempts ?? 1}`;
      if (await ctx.store.exists(doneName(unit.id))) {
        opts.log.info(`unit ${unit.id}: already done, skipped`);
        report.skipped++;
        progress.unitDone();
        return { skipped: true };
      }
      opts.log.info(`unit ${unit.id}: started (${attempt})`);
      const r = await runUnit(ctx.session, unit, { output: ctx.store, log: opts.log, onRows: (n) => progress.rows(n) });
      if (!r.ok) {
        const outage = findOutage(r.cause) ?? systemicWriteError(r.cause, ctx.cfg.output);
        if (outage) {
          // Not the unit's fault: it goes back to the queue without using an attempt, and this
          // worker stops rather than burn every unit's attempts against a dead endpoint.
          report.stopped ??= { kind: 'outage', target: outage.target, reason: outage.reason, message: outage.message };
          stopping ??= 'graceful';
          opts.log.error(`unit ${unit.id}: outage, back to the queue: ${outage.message}`);
          await bj.moveToDelayed(Date.now() + opts.lockMs, token);
          throw new DelayedError();
        }
        report.failedAttempts++;
        opts.log.error(`unit ${unit.id} failed (${attempt}): ${r.error}`);
        throw r.cause instanceof Error ? r.cause : new Error(r.error);
      }
      opts.log.info(`unit ${unit.id}: done`);
      report.completed++;
      progress.unitDone();
      await afterUnit(ctx).catch((err) => opts.log.warn(`summary of ${ctx.cfg.output} after unit ${unit.id}: ${err instanceof Error ? err.message : String(err)}`));
      return { rows: r.stats.funnel.rows_in };
    } finally {
      running--;
    }
  };

  const worker = new Worker<UnitJobData>(name, processUnit, {
    connection: { url: opts.url, maxRetriesPerRequest: null },
    prefix: PREFIX,
    name: workerName,
    concurrency,
    lockDuration: opts.lockMs,
    stalledInterval: opts.lockMs,
    // A unit whose worker died goes back to the queue; one that loses its worker more often
    // than this (say, it runs every worker out of memory) fails as stalled, in BullMQ's failed
    // set with reason "job stalled more than allowable limit"; status lists it with the dead.
    maxStalledCount: MAX_STALLS,
    drainDelay: 1,
  });
  const deadPushes = new Set<Promise<unknown>>();
  worker.on('failed', (bj, err) => {
    if (!bj || bj.attemptsMade < (bj.opts.attempts ?? 1)) return;
    const entry: DeadLetter = { unit: bj.data.unit.id, error: err.message, attempts: bj.attemptsMade, failed_at: new Date().toISOString(), worker: workerName };
    report.dead++;
    progress.unitDone();
    opts.log.error(`unit ${entry.unit}: failed ${entry.attempts} time(s), moved to the dead-letter list ${keys.dead}`);
    const p = redis
      .rpush(keys.dead, JSON.stringify(entry))
      .then(async () => afterUnit(await contextFor()))
      .catch((e) => opts.log.error(`dead-letter push or summary after unit ${entry.unit}: ${mask(String(e))}`));
    deadPushes.add(p);
    void p.finally(() => deadPushes.delete(p));
  });
  worker.on('error', (err) => opts.log.warn(`worker ${workerName}: ${mask(err.message)}`));

  void opts.stop?.then((how) => (stopping = how));
  try {
    await worker.waitUntilReady();
    for (;;) {
      if (stopping) break;
      if (opts.exitWhenEmpty && running === 0 && (await unfinishedCount(queue)) === 0) {
        opts.log.info(`queue ${name} is empty: worker ${workerName} exits`);
        break;
      }
      await Promise.race([new Promise((r) => setTimeout(r, 500)), opts.stop ?? new Promise(() => {})]);
    }
  } finally {
    if (stopping) opts.log.info(`worker ${workerName}: stopping${stopping === 'graceful' ? ' after the running unit(s)' : ' now; running units go back to the queue'}`);
    await worker.close(stopping === 'force');
    await Promise.all([...deadPushes]);
    progress.stop();
    await Promise.allSettled([...contexts.values()].map((c) => c.session.close()));
    await queue.close();
  }
  return report;
}
