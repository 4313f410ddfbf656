/**
 * The Redis side of the queue executor, shared by plan, worker and status: key names, the
 * connection, queue-name resolution, password masking, dead-letter entries.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Store } from '../stores/store.js';
import type { Unit } from '../units/unit.js';

/**
 * BullMQ's own key prefix, kept at its default so BullMQ dashboards see bitprep queues. Our keys
 * live under `bull:<queue>:bitprep:*`: job ids (`unit-…`) never contain ':', so they cannot
 * collide, and `Queue.obliterate` removes them with the queue.
 */
export const PREFIX = 'bull';
/** A Redis set of the queue names plans were enqueued under, so `worker`/`status` can find a lone one. */
export const REGISTRY_KEY = 'bitprep:queues';
export const UNFINISHED = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;
/** Times a unit may go back to the queue because its worker died (lost its lock) before it fails. */
export const MAX_STALLS = 2;

/** Redis keys bitprep keeps next to a BullMQ queue. */
export function queueKeys(name: string) {
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
export const bullJobId = (unitId: string): string => `unit-${unitId}`;

/** What each BullMQ job carries: the unit alone (id + inputs); the config is stored once per queue. */
export interface UnitJobData {
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
export function redactor(url: string): (msg: string) => string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    return (m) => m;
  }
  return (m) => (password ? m.split(password).join('***') : m);
}

export function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`queue name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only`);
  return name;
}

/** A Redis client for short commands (plan, status) that gives up after a few reconnects instead of hanging. */
export async function connect(url: string, extra: RedisOptions = {}): Promise<Redis> {
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
export async function resolveQueueName(redis: Redis, target: QueueTarget): Promise<string> {
  if (target.name) return checkQueueName(target.name);
  const names = (await redis.smembers(REGISTRY_KEY)).sort();
  if (names.length === 1) return names[0];
  if (names.length === 0) throw new Error(`Redis at ${maskRedisUrl(target.url)} holds no bitprep queue: run \`bitprep plan <config> --queue ${maskRedisUrl(target.url)}\` first`);
  throw new Error(`Redis at ${maskRedisUrl(target.url)} holds several bitprep queues (${names.join(', ')}): pick one with --queue-name`);
}

export async function unfinishedCount(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...UNFINISHED);
  return UNFINISHED.reduce((a, k) => a + (counts[k] ?? 0), 0);
}

/** Names of the units of `store` that have a done marker (one listing, not a request per unit). */
export async function doneUnitIds(store: Store): Promise<Set<string>> {
  const suffix = '.done.json';
  return new Set((await store.list()).filter((n) => n.endsWith(suffix) && !n.includes('/')).map((n) => n.slice(0, -suffix.length)));
}
