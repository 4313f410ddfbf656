import { randomBytes } from 'node:crypto';
import { readlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { z } from 'zod';
import { consoleLogger, type Logger } from '../log.js';
import { ObjectNotFoundError, type Store } from '../stores/store.js';

/**
 * One live writer per output: a lease object in the output store.
 *
 * Objects: `_lease/<scope>.<gen>.json`, where scope is `all` (a full run: the whole output) or
 * `<i>-of-<n>` (an array task, `--shard-index i --shard-count n`: the units i, i+n, i+2n, …), and
 * gen counts the takeovers of that scope. Every reader of an output's listing picks names by
 * suffix (`.done.json` and `.stats.json` at the top level, `.tar`, `.parquet`), so objects under
 * `_lease/` are never taken for outputs.
 *
 * Overlap: `all` overlaps every scope; `i-of-n` and `j-of-m` share a unit exactly when
 * i ≡ j (mod gcd(n, m)) (round-robin selection, src/executors/shard-select.ts), so the tasks of
 * one array job (same n) never overlap and run side by side, while a full run, or a second task
 * with the same i-of-n, is refused.
 *
 * Acquire: (1) list `_lease/` and read the overlapping leases; a live one of another holder
 * refuses (LeaseHeldError); stale ones (expired, or held by a process on this host that no
 * longer runs) are noted. (2) Create `<scope>.<gen>.json` with gen one past the highest of this
 * scope, by exclusive create (Store.putIfAbsent): of two takers of the same expired lease only
 * one can create that name, and nothing is deleted before the new lease exists, so two takers
 * never both win. (3) Read back and list again: a live overlapping lease created meanwhile (two
 * starts at once, with different scopes) makes this acquire withdraw and try again, so at most
 * one proceeds; then the stale leases are deleted, with a log line naming their holders.
 *
 * Renewal, every ttl/3 on an unref'd timer, first checks that this lease still names this
 * holder and that no overlapping lease records it as superseded, and that it renews before its
 * expiry; otherwise `onLost` is called (the holder stalled past its expiry and another run may
 * have taken the output over) and renewal stops. Clocks of the hosts must agree to well within
 * the TTL (NTP). A holder that stalls past its expiry (stopped, swapping) may still finish the
 * writes it had in flight when it resumes, before its overdue renewal reports the loss; the
 * executor stops writing at onLost.
 */

export const LEASE_PREFIX = '_lease/';
export const DEFAULT_LEASE_TTL_MS = 60_000;

/** The `lease` section every job config has (operational: may change on a rerun). */
export const leaseConfig = z.object({
  /** Seconds a run's lease lives without renewal (renewed every third of it); a dead holder's lease is taken over after it. */
  ttl_s: z.number().min(3).default(DEFAULT_LEASE_TTL_MS / 1000),
}).strict();

/** The whole output, or one array task's slice of its units. */
export type LeaseScope = 'all' | { index: number; count: number };

/** Who holds a lease. */
export interface LeaseHolder {
  host: string;
  pid: number;
  /** Random per acquire (12 hex digits): tells two runs of one pid apart. */
  run_id: string;
  /** The holder's command line, credentials masked. */
  command: string;
  /** Linux PID namespace (`pid:[4026531836]`): "same host" then means "same process table". */
  pid_ns?: string;
}

/** `_lease/<scope>.<gen>.json`. */
export interface LeaseRecord extends LeaseHolder {
  schema: 1;
  scope: string;
  started_at: string;
  renewed_at: string;
  expires_at: string;
  ttl_ms: number;
  /** The stale leases this one replaced (their holders died or stalled past expiry). */
  supersedes: { name: string; run_id: string; host: string; pid: number }[];
}

export interface LeaseLostEvent {
  /** `taken_over`: another run holds the output now; `missing`: the lease object is gone; `expired`: renewal came too late. */
  reason: 'taken_over' | 'missing' | 'expired';
  /** The lease that replaced this one, when known. */
  by?: LeaseRecord;
  /** One line for the log. */
  message: string;
}

export interface AcquireLeaseOptions {
  /** What this run writes (default `all`). */
  scope?: LeaseScope;
  /** How long the lease lives without renewal (default 60 s); renewed every ttl/3. */
  ttlMs?: number;
  /** Takeovers and renewal trouble are logged here (default: stderr). */
  log?: Logger;
  /** Overrides of the holder's identity (default: this host, pid and command line, a fresh run id). */
  holder?: Partial<LeaseHolder>;
  /** Called once if the lease is lost; the executor should stop writing. Default: logs an error. */
  onLost?: (e: LeaseLostEvent) => void;
}

/** A live lease of another holder overlaps the one asked for. */
export class LeaseHeldError extends Error {
  readonly code = 'lease_held';
  constructor(
    /** The output store's URL. */
    readonly output: string,
    /** The scope asked for. */
    readonly scope: string,
    /** The lease in the way, and its object name. */
    readonly held: LeaseRecord,
    readonly objectName: string,
  ) {
    super(heldMessage(output, scope, held, objectName));
    this.name = 'LeaseHeldError';
  }
}

const NAME_RE = /^_lease\/(all|(\d+)-of-(\d+))\.(\d+)\.json$/;

/** `all`, or `i-of-n` for an array task. */
export function leaseScope(scope: LeaseScope | undefined): string {
  if (scope === undefined || scope === 'all') return 'all';
  const { index, count } = scope;
  if (!(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 && index < count)) throw new Error(`lease scope: shard index ${index} of ${count} is not a valid array task`);
  return `${index}-of-${count}`;
}

function parseScope(s: string): { index: number; count: number } | undefined {
  const m = /^(\d+)-of-(\d+)$/.exec(s);
  return m ? { index: Number(m[1]), count: Number(m[2]) } : undefined;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** True when two scopes can select a common unit (see the module comment). */
export function scopesOverlap(a: string, b: string): boolean {
  const x = parseScope(a);
  const y = parseScope(b);
  if (!x || !y) return true;
  return (x.index - y.index) % gcd(x.count, y.count) === 0;
}

/** The lease objects of an output, parsed; `record` is undefined when the object vanished or cannot be read. */
export async function readLeases(store: Store): Promise<{ name: string; scope: string; gen: number; record?: LeaseRecord }[]> {
  const names = await store.list(LEASE_PREFIX);
  const out = [];
  for (const name of names) {
    const m = NAME_RE.exec(name);
    if (!m) continue;
    out.push({ name, scope: m[1], gen: Number(m[4]), record: await readRecord(store, name).catch(() => undefined) });
  }
  return out;
}

export class OutputLease {
  private current: LeaseRecord;
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  private lostEvent: LeaseLostEvent | undefined;
  private renewing: Promise<void> | undefined;

  private constructor(
    private readonly store: Store,
    /** The lease object's name, e.g. `_lease/all.1.json`. */
    readonly name: string,
    record: LeaseRecord,
    private readonly log: Logger,
    private readonly onLost: (e: LeaseLostEvent) => void,
  ) {
    this.current = record;
  }

  /**
   * Takes the lease of `scope` on `store`, or throws LeaseHeldError naming the live holder in the
   * way. Leases whose holders are gone are taken over, with a log line each.
   */
  static async acquire(store: Store, opts: AcquireLeaseOptions = {}): Promise<OutputLease> {
    const scope = leaseScope(opts.scope);
    const ttlMs = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    if (!(ttlMs >= 30)) throw new Error(`lease ttl must be at least 30 ms, got ${ttlMs}`);
    const log = opts.log ?? consoleLogger;
    const holder: LeaseHolder = {
      host: opts.holder?.host ?? hostname(),
      pid: opts.holder?.pid ?? process.pid,
      run_id: opts.holder?.run_id ?? randomBytes(6).toString('hex'),
      command: opts.holder?.command ?? commandLine(),
      pid_ns: opts.holder?.pid_ns ?? (await pidNamespace()),
    };
    const onLost = opts.onLost ?? ((e: LeaseLostEvent) => log.error(e.message));
    // Known before the lease exists, so that another acquire in this process never takes it for a dead pid's.
    liveRuns.add(holder.run_id);
    try {
      return await OutputLease.attempt(store, scope, ttlMs, holder, log, onLost);
    } catch (err) {
      liveRuns.delete(holder.run_id);
      throw err;
    }
  }

  private static async attempt(store: Store, scope: string, ttlMs: number, holder: LeaseHolder, log: Logger, onLost: (e: LeaseLostEvent) => void): Promise<OutputLease> {
    const me = await pidNamespace();
    for (let attempt = 1; ; attempt++) {
      const now = Date.now();
      const { names, leases } = await overlapping(store, scope);
      const stale: { name: string; record: LeaseRecord; why: string }[] = [];
      for (const l of leases) {
        const why = staleness(l.record, now, me);
        if (!why) throw new LeaseHeldError(store.url, scope, l.record, l.name);
        stale.push({ name: l.name, record: l.record, why });
      }
      const gens = names.map((n) => NAME_RE.exec(n)).filter((m) => m?.[1] === scope).map((m) => Number(m![4]));
      const gen = 1 + Math.max(0, ...gens);
      const name = `${LEASE_PREFIX}${scope}.${gen}.json`;
      const record: LeaseRecord = {
        schema: 1,
        scope,
        ...holder,
        started_at: new Date(now).toISOString(),
        renewed_at: new Date(now).toISOString(),
        expires_at: new Date(now + ttlMs).toISOString(),
        ttl_ms: ttlMs,
        supersedes: stale.map((s) => ({ name: s.name, run_id: s.record.run_id, host: s.record.host, pid: s.record.pid })),
      };
      if (!(await createExclusive(store, name, JSON.stringify(record, null, 2) + '\n'))) {
        // Another acquirer created this name first; the next look finds it (or what replaced it).
        if (attempt >= 5) throw new Error(`output ${store.url}: could not create ${name} after ${attempt} tries: other runs keep starting on it`);
        continue;
      }
      // Two starts at once with different scopes both get here; whoever sees the other withdraws.
      const rival = await rivalAfterCreate(store, scope, name, record, me);
      if (!rival) {
        for (const s of stale) {
          await deleteIfMine(store, s.name, s.record.run_id).catch(() => {});
          log.info(`output ${store.url}: took over ${s.name} from run ${s.record.run_id} (host ${s.record.host}, pid ${s.record.pid}, since ${s.record.started_at}): ${s.why}`);
        }
        const lease = new OutputLease(store, name, record, log, onLost);
        lease.schedule(ttlMs / 3);
        return lease;
      }
      await deleteIfMine(store, name, record.run_id);
      if (rival.record && attempt >= 3) throw new LeaseHeldError(store.url, scope, rival.record, rival.name);
      if (attempt >= 5) throw new Error(`output ${store.url}: could not keep ${name} after ${attempt} tries: another writer keeps replacing it`);
      // Both may have withdrawn: try again after a random pause so one of the two wins.
      await sleep(50 + Math.random() * 200 * attempt);
    }
  }

  /** The lease as last written. */
  get record(): LeaseRecord {
    return this.current;
  }

  /** Set once the lease is lost (see onLost). */
  get lost(): LeaseLostEvent | undefined {
    return this.lostEvent;
  }

  /**
   * Checks the lease still belongs to this holder and extends it by the TTL; the timer calls it
   * every ttl/3. On a loss it calls onLost (once) and stops; store errors are logged and retried
   * sooner, and if none succeeds before the expiry the lease counts as lost.
   */
  renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  /** Stops renewing and deletes the lease object (if it still names this holder). Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    liveRuns.delete(this.current.run_id);
    clearTimeout(this.timer);
    await this.renewing?.catch(() => {});
    await deleteIfMine(this.store, this.name, this.current.run_id);
  }

  private schedule(ms: number): void {
    if (this.released || this.lostEvent) return;
    this.timer = setTimeout(() => void this.renew(), ms);
    this.timer.unref();
  }

  private async renewOnce(): Promise<void> {
    if (this.released || this.lostEvent) return;
    const ttl = this.current.ttl_ms;
    const expiresAt = Date.parse(this.current.expires_at);
    try {
      const { leases } = await overlapping(this.store, this.current.scope);
      for (const l of leases) {
        if (l.name === this.name) continue;
        if (l.record.supersedes?.some((s) => s.run_id === this.current.run_id)) return this.lose({ reason: 'taken_over', by: l.record, message: lostMessage(this.store.url, l.name, this.current, l.record) });
      }
      const own = leases.find((l) => l.name === this.name)?.record;
      if (!own) return this.lose({ reason: 'missing', message: `output ${this.store.url}: lease ${this.name} of this run (${this.current.run_id}) was deleted; another run may be writing the output, so this one stops` });
      if (own.run_id !== this.current.run_id) return this.lose({ reason: 'taken_over', by: own, message: lostMessage(this.store.url, this.name, this.current, own) });
      const now = Date.now();
      if (now >= expiresAt) {
        return this.lose({ reason: 'expired', message: `output ${this.store.url}: lease ${this.name} expired at ${this.current.expires_at} before this run (${this.current.run_id}) could renew it (stalled ${((now - Date.parse(this.current.renewed_at)) / 1000).toFixed(1)} s); another run may have taken the output over, so this one stops` });
      }
      const next: LeaseRecord = { ...this.current, renewed_at: new Date(now).toISOString(), expires_at: new Date(now + ttl).toISOString() };
      if (this.released) return;
      await this.store.put(this.name, JSON.stringify(next, null, 2) + '\n');
      this.current = next;
      this.schedule(ttl / 3);
    } catch (err) {
      if (Date.now() >= expiresAt) {
        return this.lose({ reason: 'expired', message: `output ${this.store.url}: could not renew lease ${this.name} before it expired at ${this.current.expires_at}: ${(err as Error).message ?? String(err)}` });
      }
      this.log.warn(`output ${this.store.url}: renewing lease ${this.name} failed, retrying: ${(err as Error).message ?? String(err)}`);
      this.schedule(Math.max(10, Math.min(ttl / 10, expiresAt - Date.now())));
    }
  }

  private lose(e: LeaseLostEvent): void {
    if (this.lostEvent || this.released) return;
    this.lostEvent = e;
    liveRuns.delete(this.current.run_id);
    clearTimeout(this.timer);
    this.onLost(e);
  }
}

/** Every lease object name, and the readable leases that overlap `scope`. */
async function overlapping(store: Store, scope: string): Promise<{ names: string[]; leases: { name: string; record: LeaseRecord }[] }> {
  const names = await store.list(LEASE_PREFIX);
  const leases = [];
  for (const name of names) {
    const m = NAME_RE.exec(name);
    if (!m || !scopesOverlap(m[1], scope)) continue;
    const record = await readRecord(store, name);
    if (record) leases.push({ name, record });
  }
  return { names, leases };
}

/**
 * The lease in `name`, or undefined when it is gone. A lease that stays unparsable (a hand edit,
 * a full disk) is an error naming it: nobody can tell whether its holder still runs.
 */
async function readRecord(store: Store, name: string): Promise<LeaseRecord | undefined> {
  for (let attempt = 1; ; attempt++) {
    let read = false;
    try {
      const bytes = await store.get(name);
      read = true;
      const r = JSON.parse(new TextDecoder().decode(bytes)) as LeaseRecord;
      if (typeof r?.run_id !== 'string' || typeof r.expires_at !== 'string' || Number.isNaN(Date.parse(r.expires_at))) throw new Error('not a lease record');
      return r;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return undefined;
      // A create without hard links ('wx') can be seen half-written for a moment, and a read that
      // meets the holder's renewal can fail on stores whose overwrites are not atomic (s3rver,
      // some gateways): look again before giving up.
      if (attempt < 3) {
        await sleep(50);
        continue;
      }
      if (!read) throw err;
      throw new Error(`output ${store.url}: lease object ${name} cannot be read (${(err as Error).message}); if no run is using this output, delete it`, { cause: err });
    }
  }
}

/** Run ids of the leases this process holds, to tell its own leases from those of a dead process that had its pid. */
const liveRuns = new Set<string>();

/**
 * Why a lease's holder is gone (so it may be taken over), or undefined while it is live: expired,
 * or written on this host, in this PID namespace, by a process that no longer runs.
 */
function staleness(r: LeaseRecord, now: number, myPidNs: string | undefined): string | undefined {
  if (Date.parse(r.expires_at) <= now) return `it expired at ${r.expires_at} (the holder died or stalled)`;
  if (r.host !== hostname() || r.pid_ns !== myPidNs) return undefined;
  if (r.pid === process.pid) return liveRuns.has(r.run_id) ? undefined : `it was left by an earlier process with this pid (${r.pid})`;
  return pidAlive(r.pid) ? undefined : `process ${r.pid} is no longer running on this host`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * After creating `name`: the first live overlapping lease of another holder, if any, or this
 * lease's own name when it turns out not to hold this record (a store without real exclusive
 * create let another writer overwrite it).
 */
async function rivalAfterCreate(store: Store, scope: string, name: string, record: LeaseRecord, myPidNs: string | undefined): Promise<{ name: string; record?: LeaseRecord } | undefined> {
  // Give a racing PUT on a store that ignores If-None-Match time to land before reading back.
  await sleep(25);
  const own = await readRecord(store, name);
  if (own?.run_id !== record.run_id) return { name, record: own };
  const superseded = new Set(record.supersedes.map((s) => s.run_id));
  const now = Date.now();
  for (const l of (await overlapping(store, scope)).leases) {
    if (l.name === name || superseded.has(l.record.run_id)) continue;
    if (!staleness(l.record, now, myPidNs)) return l;
  }
  return undefined;
}

async function createExclusive(store: Store, name: string, data: string): Promise<boolean> {
  if (store.putIfAbsent) return store.putIfAbsent(name, data);
  // A store without exclusive create: check, write, read back (rivalAfterCreate reads again later).
  if (await store.exists(name)) return false;
  await store.put(name, data);
  const back = await store.get(name).catch(() => undefined);
  return back !== undefined && new TextDecoder().decode(back) === data;
}

async function deleteIfMine(store: Store, name: string, runId: string): Promise<void> {
  const r = await readRecord(store, name).catch(() => undefined);
  if (r?.run_id === runId) await store.delete(name);
}

function describeScope(scope: string): string {
  return scope === 'all' ? 'the whole output' : `array task ${scope}`;
}

function heldMessage(output: string, scope: string, held: LeaseRecord, objectName: string): string {
  const cmd = held.command.length > 160 ? `${held.command.slice(0, 157)}...` : held.command;
  const same = scope !== 'all' && scope === held.scope ? ' (two array tasks were given the same --shard-index/--shard-count)' : '';
  return (
    `output ${output} is in use: ${describeScope(held.scope)} is leased to run ${held.run_id} on host ${held.host}, pid ${held.pid} (${cmd}), ` +
    `since ${held.started_at}, expiring ${held.expires_at} unless renewed, so ${describeScope(scope)} cannot be written${same}. ` +
    `Wait for that run to finish or stop it; if it is gone, rerun after ${held.expires_at} (or delete ${joinUrl(output, objectName)})`
  );
}

function lostMessage(output: string, name: string, mine: LeaseRecord, by: LeaseRecord): string {
  return `output ${output}: the lease of this run (${mine.run_id}) was taken over by run ${by.run_id} on host ${by.host}, pid ${by.pid} (${name}, since ${by.started_at}) after this run failed to renew it in time; this run stops writing`;
}

const joinUrl = (base: string, name: string) => `${base.replace(/\/+$/, '')}/${name}`;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let pidNs: Promise<string | undefined> | undefined;
function pidNamespace(): Promise<string | undefined> {
  pidNs ??= readlink('/proc/self/ns/pid').catch(() => undefined);
  return pidNs;
}

/** This process's command line for the lease, with credentials masked (`--set …key=***`, `//user:***@`). */
export function commandLine(argv: string[] = process.argv): string {
  return (argv.length > 1 ? argv.slice(1) : argv)
    .map((a) => a.replace(/^([^=\s]*(?:key|secret|token|password|passwd|credential)[^=\s]*=).*/i, '$1***').replace(/(\/\/[^/:@\s]+):[^@/\s]+@/g, '$1:***@'))
    .map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a))
    .join(' ');
}
