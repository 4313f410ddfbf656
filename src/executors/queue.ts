import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { DelayedError, Queue, Worker, type Job as BullJob } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { validateConfig } from '../config/load-config.js';
import { PreflightError } from '../config/preflight.js';
import type { AnyJob, BaseJobConfig, JobSession } from '../job.js';
import type { Logger } from '../log.js';
import { findOutage, systemicWriteError } from '../outage.js';
import { createProgress, type Progress, type ProgressOptions } from '../progress.js';
import { summarizeOutput, writeRunSummary } from '../run-summary.js';
import { openStore } from '../stores/open-store.js';
import type { Store } from '../stores/store.js';
import { doneName, type Unit } from '../units/unit.js';
import { checkConfig, checkPlan, configJson, logRun, readPlan, type RunStop } from './local.js';
import { runUnit } from './run-unit.js';

/**
 * BullMQ's own key prefix, kept at its default so BullMQ dashboards see bitprep queues. Our keys
 * live under `bull:<queue>:bitprep:*`: job ids (`unit-…`) never contain ':', so they cannot
 * collide, and `Queue.obliterate` removes them with the queue.
 */
const PREFIX = 'bull';
/** A Redis set of the queue names plans were enqueued under, so `worker`/`status` can find a lone one. */
const REGISTRY_KEY = 'bitprep:queues';
const UNFINISHED = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;
const ADD_CHUNK = 1000;
/** Times a unit may go back to the queue because its worker died (lost its lock) before it fails. */
const MAX_STALLS = 2;

/** Redis keys bitprep keeps next to a BullMQ queue. */
function queueKeys(name: string) {
  const base = `${PREFIX}:${name}:bitprep`;
  return {
    /** The resolved job config (JSON), stored once so each BullMQ job carries only its unit. */
    config: `${base}:config`,
    /** The output URL the plan writes to. */
    output: `${base}:output`,
    /** The dead-letter list: JSON {@link DeadLetter}s, one per unit that failed every attempt. */
    dead: `${base}:dead`,
  };
}

/** BullMQ refuses integer-looking custom ids ("00012" would pass, "12345" not), so unit ids get a prefix. */
const bullJobId = (unitId: string): string => `unit-${unitId}`;

/** What each BullMQ job carries: the unit alone (id + inputs); the config is stored once per queue. */
interface UnitJobData {
  unit: Unit;
}

/** An entry of the dead-letter list: a unit that failed on every one of its attempts. */
export interface DeadLetter {
  unit: string;
  error: string;
  attempts: number;
  failed_at: string;
  /** `host:pid` of the worker that saw the last failure. */
  worker: string;
}

/** Where a queue lives: a Redis URL (`redis://[:password@]host:port[/db]`, `rediss://` for TLS) and a queue name. */
export interface QueueTarget {
  url: string;
  /** Default: the lone queue registered in that Redis (worker/status), or derived from the output (plan). */
  name?: string;
}

/**
 * The default queue of an output: `bitprep-` + the first 12 hex digits of SHA-256 of its URL
 * (local paths made absolute), so two plans of one output share one queue.
 */
export function defaultQueueName(output: string): string {
  const canonical = /^[a-z][a-z0-9+.-]*:\/\//i.test(output) ? output.replace(/\/+$/, '') : resolve(output);
  return `bitprep-${createHash('sha256').update(canonical).digest('hex').slice(0, 12)}`;
}

/** The Redis URL with its password replaced by `***`, for logs and errors. */
export function maskRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparsable redis url>';
  }
}

/** Replaces the URL's password wherever it appears in a message (driver errors may quote it). */
function redactor(url: string): (msg: string) => string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    return (m) => m;
  }
  return (m) => (password ? m.split(password).join('***') : m);
}

function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`queue name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only`);
  return name;
}

/** A Redis client for short commands (plan, status) that gives up after a few reconnects instead of hanging. */
async function connect(url: string, extra: RedisOptions = {}): Promise<Redis> {
  const mask = redactor(url);
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, retryStrategy: (n) => (n > 3 ? null : 250), ...extra });
  // Connection errors also reach the failing command, but only as "Connection is closed": keep the cause.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => (lastError = err));
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    const why = lastError ?? err;
    throw new Error(`cannot reach Redis at ${maskRedisUrl(url)}: ${mask(why instanceof Error ? why.message : String(why))}`);
  }
  return redis;
}

/** The queue named, or the lone queue plans were enqueued under in this Redis. */
async function resolveQueueName(redis: Redis, target: QueueTarget): Promise<string> {
  if (target.name) return checkQueueName(target.name);
  const names = (await redis.smembers(REGISTRY_KEY)).sort();
  if (names.length === 1) return names[0];
  if (names.length === 0) throw new Error(`Redis at ${maskRedisUrl(target.url)} holds no bitprep queue: run \`bitprep plan <config> --queue ${maskRedisUrl(target.url)}\` first`);
  throw new Error(`Redis at ${maskRedisUrl(target.url)} holds several bitprep queues (${names.join(', ')}): pick one with --queue-name`);
}

async function unfinishedCount(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...UNFINISHED);
  return UNFINISHED.reduce((a, k) => a + (counts[k] ?? 0), 0);
}

/** Names of the units of `store` that have a done marker (one listing, not a request per unit). */
async function doneUnitIds(store: Store): Promise<Set<string>> {
  const suffix = '.done.json';
  return new Set((await store.list()).filter((n) => n.endsWith(suffix) && !n.includes('/')).map((n) => n.slice(0, -suffix.length)));
}

export interface EnqueueOptions extends QueueTarget {
  /** Runs of a unit before it goes to the dead-letter list (BullMQ `attempts`). */
  attempts: number;
  /** First retry delay; doubles per retry (BullMQ exponential backoff). */
  backoffMs: number;
  log: Logger;
}

export interface EnqueueResult {
  queue: string;
  planned: number;
  enqueued: number;
  alreadyDone: number;
  /** Units with a job still waiting, delayed or running. */
  alreadyQueued: number;
  /** Units whose job failed every attempt (in the dead-letter list); re-planning leaves them there. */
  dead: number;
}

/**
 * `bitprep plan --queue`: writes `_plan.json`/`_config.json` into the output as a local run does
 * (refusing an output planned differently), stores the config once in Redis, and adds one BullMQ
 * job per unit without a done marker. Job ids are the unit ids, so planning again adds nothing
 * that is queued already. A queue whose units are still unfinished refuses a different config.
 */
export async function enqueuePlan(job: AnyJob, cfg: BaseJobConfig, units: Unit[], opts: EnqueueOptions): Promise<EnqueueResult> {
  const name = checkQueueName(opts.name ?? defaultQueueName(cfg.output));
  const store = openStore(cfg.output);
  await checkPlan(store, job.name, units);
  await checkConfig(store, job, cfg, opts.log);
  await logRun(store, cfg, new Date(), { command: 'plan --queue', queue: name });
  const cfgText = configJson(cfg);

  const redis = await connect(opts.url);
  const queue = new Queue<UnitJobData>(name, { connection: redis, prefix: PREFIX });
  try {
    const keys = queueKeys(name);
    const [prevCfg, prevOutput] = await Promise.all([redis.get(keys.config), redis.get(keys.output)]);
    if (prevOutput !== null && prevOutput !== cfg.output) throw new Error(`queue ${name} holds the plan of output ${prevOutput}, not ${cfg.output}: use another --queue-name`);
    if (prevCfg !== null && prevCfg !== cfgText && (await unfinishedCount(queue)) > 0) {
      throw new Error(`queue ${name} still has unfinished units planned with another config: let its workers finish, or use another --queue-name`);
    }
    await redis.multi().set(keys.config, cfgText).set(keys.output, cfg.output).sadd(REGISTRY_KEY, name).exec();

    const done = await doneUnitIds(store);
    const todo = units.filter((u) => !done.has(u.id));
    const result: EnqueueResult = { queue: name, planned: units.length, enqueued: 0, alreadyDone: units.length - todo.length, alreadyQueued: 0, dead: 0 };
    for (let i = 0; i < todo.length; i += ADD_CHUNK) {
      const chunk = todo.slice(i, i + ADD_CHUNK);
      const existing = await redis.pipeline(chunk.map((u) => ['exists', `${PREFIX}:${name}:${bullJobId(u.id)}`])).exec();
      const fresh: Unit[] = [];
      for (let j = 0; j < chunk.length; j++) {
        if (!existing?.[j]?.[1]) {
          fresh.push(chunk[j]);
          continue;
        }
        const state = await queue.getJobState(bullJobId(chunk[j].id));
        if (state === 'failed') result.dead++;
        else if (state === 'completed' || state === 'unknown') {
          // Completed in Redis yet no done marker: the output was removed since; run the unit again.
          await queue.remove(bullJobId(chunk[j].id));
          fresh.push(chunk[j]);
        } else result.alreadyQueued++;
      }
      await queue.addBulk(
        fresh.map((unit) => ({
          name: 'unit',
          data: { unit },
          opts: { jobId: bullJobId(unit.id), attempts: opts.attempts, backoff: { type: 'exponential', delay: opts.backoffMs } },
        })),
      );
      result.enqueued += fresh.length;
    }
    return result;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

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
    const dead = (await redis.lrange(keys.dead, 0, -1)).map((d) => JSON.parse(d) as DeadLetter).map((d) => ({ unit: d.unit, error: d.error, attempts: d.attempts }));
    const summary = { ...(await summarizeOutput(ctx.store, plan.job, units)), dead };
    if (summary.units.done === summary.units.planned) opts.log.info(`all ${summary.units.planned} unit(s) of ${ctx.cfg.output} done`);
    await writeRunSummary(ctx.store, summary, ctx.job, plan.unit_ids, opts.log);
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

export interface QueueStatus {
  queue: string;
  redis: string;
  output: string | null;
  job: string | null;
  /** BullMQ job counts by state. */
  counts: Record<'waiting' | 'active' | 'delayed' | 'prioritized' | 'completed' | 'failed', number>;
  dead: DeadLetter[];
  /** Done markers in the output against the units of its `_plan.json`; null when the output has none yet. */
  units: { planned: number; done: number } | null;
}

/**
 * Units BullMQ failed because their worker died more than MAX_STALLS times (a unit that kills
 * every worker, e.g. out of memory): BullMQ fails those inside Redis without a worker 'failed'
 * event, so they never reach the dead-letter list; status reports them as dead all the same.
 */
async function stalledOut(queue: Queue, listed: Set<string>): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  for (let start = 0; ; start += 1000) {
    const failed = await queue.getFailed(start, start + 999);
    for (const j of failed) {
      const unit = (j.data as { unit?: { id?: string } } | undefined)?.unit?.id;
      if (!unit || listed.has(unit) || !/stalled more than allowable limit/.test(j.failedReason ?? '')) continue;
      out.push({ unit, error: `its worker died ${MAX_STALLS + 1} times while running it (e.g. killed, or out of memory): ${j.failedReason}`, attempts: j.attemptsMade, failed_at: new Date(j.finishedOn ?? Date.now()).toISOString(), worker: j.processedBy ?? 'unknown' });
    }
    if (failed.length < 1000) return out;
  }
}

/** `bitprep status`: BullMQ counts, the dead-letter list, and done markers against the plan. */
export async function queueStatus(target: QueueTarget): Promise<QueueStatus> {
  const redis = await connect(target.url);
  try {
    const name = await resolveQueueName(redis, target);
    const keys = queueKeys(name);
    const queue = new Queue(name, { connection: redis, prefix: PREFIX, skipMetasUpdate: true });
    try {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
      const [output, cfgText, deadRaw] = await Promise.all([redis.get(keys.output), redis.get(keys.config), redis.lrange(keys.dead, 0, -1)]);
      const dead = deadRaw.map((d) => JSON.parse(d) as DeadLetter);
      let units: QueueStatus['units'] = null;
      if (output !== null) {
        const store = openStore(output);
        const plan = await readPlan(store).catch(() => undefined);
        if (plan) {
          const done = await doneUnitIds(store);
          units = { planned: plan.units, done: plan.unit_ids.filter((id) => done.has(id)).length };
        }
      }
      return {
        queue: name,
        redis: maskRedisUrl(target.url),
        output,
        job: cfgText === null ? null : String((JSON.parse(cfgText) as { job?: unknown }).job),
        counts: {
          waiting: c.waiting ?? 0,
          active: c.active ?? 0,
          delayed: c.delayed ?? 0,
          prioritized: c.prioritized ?? 0,
          completed: c.completed ?? 0,
          failed: c.failed ?? 0,
        },
        dead: [...dead, ...(await stalledOut(queue, new Set(dead.map((d) => d.unit))))],
        units,
      };
    } finally {
      await queue.close();
    }
  } finally {
    redis.disconnect();
  }
}
