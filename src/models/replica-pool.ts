import { OutageError, isOutage } from '../outage.js';
import { isTransient } from '../retry.js';

export interface ReplicaPoolOptions {
  /** Calls one replica serves at once (default 2: one running, one queued hides the round trip). */
  maxInFlightPerReplica?: number;
  /** How long a failing replica is taken out, in ms (default 30 s). */
  cooldownMs?: number;
  /** Consecutive transient failures that take a replica out (default 3). */
  failuresToEject?: number;
  /** Tries of one call, over all replicas (default 2 × replicas). */
  maxAttempts?: number;
  /** How long a call waits, from when it first finds every replica ejected, before it fails (default 2 × cooldownMs). */
  maxWaitMs?: number;
}

export interface RunOptions {
  /** Work this call puts on a replica, e.g. samples in the batch (default 1). */
  cost?: number;
  /** Stops waiting for a replica; `fn` gets no signal from here, so close over it where needed. */
  signal?: AbortSignal;
}

export interface ReplicaStats {
  name: string;
  calls: number;
  failures: number;
  ejections: number;
  busyMs: number;
  inFlight: number;
  ejected: boolean;
  lastError?: string;
}

/** A failure worth trying elsewhere: resets, timeouts, TransientError, and HTTP 429 / 5xx answers. */
export function isReplicaFailure(err: unknown): boolean {
  const status = (err as { status?: unknown } | null | undefined)?.status;
  // A replica that is down (refused, unknown model, breaker open) may be the only one: try the others.
  return isOutage(err) || isTransient(err) || (typeof status === 'number' && (status >= 500 || status === 429));
}

/** What run() throws when a call finally fails: names the replica; the original error is `cause`. */
export class ReplicaCallError extends Error {
  constructor(readonly replica: string, readonly attempts: number, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'ReplicaCallError';
  }
}

/** Every replica stayed ejected for longer than maxWaitMs: the model is down, not the row. */
export class NoReplicaError extends OutageError {
  constructor(target: string, message: string) {
    super(target, 'no_replica', message);
    this.name = 'NoReplicaError';
  }
}

interface Replica<R> {
  name: string;
  client: R;
  inFlight: number;
  /** Sum of the costs of calls in flight. */
  outstanding: number;
  consecutiveFailures: number;
  ejectedUntil: number;
  /** Pick sequence number: the tie-break that makes equal replicas take turns. */
  lastPick: number;
  stats: Omit<ReplicaStats, 'name' | 'inFlight' | 'ejected'>;
}

interface Call {
  tried: Set<string>;
  errors: string[];
  deadline?: number;
}

interface Waiter<R> {
  cost: number;
  call: Call;
  resolve: (r: Replica<R>) => void;
  reject: (err: unknown) => void;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Spreads calls over replicas of one model (e.g. one endpoint per GPU): least outstanding work
 * first, a cap per replica, ejection of replicas that keep failing transiently, and retry of the
 * call elsewhere. Waiting callers are served first come, first served.
 */
export class ReplicaPool<R> {
  private readonly replicas: Replica<R>[];
  private readonly waiters: Waiter<R>[] = [];
  private readonly cap: number;
  private readonly cooldownMs: number;
  private readonly failuresToEject: number;
  private readonly maxAttempts: number;
  private readonly maxWaitMs: number;
  private picks = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(replicas: { name: string; client: R }[], opts: ReplicaPoolOptions = {}) {
    if (replicas.length === 0) throw new Error('ReplicaPool needs at least one replica');
    const names = new Set(replicas.map((r) => r.name));
    if (names.size !== replicas.length) throw new Error(`ReplicaPool replica names must be unique, got ${replicas.map((r) => r.name).join(', ')}`);
    this.cap = positive('maxInFlightPerReplica', opts.maxInFlightPerReplica ?? 2);
    this.cooldownMs = positive('cooldownMs', opts.cooldownMs ?? 30_000, true);
    this.failuresToEject = positive('failuresToEject', opts.failuresToEject ?? 3);
    this.maxAttempts = positive('maxAttempts', opts.maxAttempts ?? 2 * replicas.length);
    this.maxWaitMs = positive('maxWaitMs', opts.maxWaitMs ?? 2 * this.cooldownMs, true);
    this.replicas = replicas.map((r) => ({
      name: r.name, client: r.client, inFlight: 0, outstanding: 0, consecutiveFailures: 0, ejectedUntil: 0, lastPick: 0,
      stats: { calls: 0, failures: 0, ejections: 0, busyMs: 0 },
    }));
  }

  get names(): string[] {
    return this.replicas.map((r) => r.name);
  }

  /**
   * Runs `fn` on a replica. Transient failures (see isReplicaFailure) count against the replica
   * and the call moves on, preferring replicas it has not tried; other errors fail at once.
   * Throws ReplicaCallError (or NoReplicaError when every replica stays ejected too long).
   */
  async run<T>(fn: (client: R, replica: string) => Promise<T>, opts: RunOptions = {}): Promise<T> {
    const cost = opts.cost ?? 1;
    const call: Call = { tried: new Set(), errors: [] };
    for (let attempt = 1; ; attempt++) {
      const r = await this.acquire(cost, call, opts.signal);
      call.tried.add(r.name);
      r.stats.calls++;
      const t0 = performance.now();
      let outcome: { ok: true; value: T } | { ok: false; err: unknown };
      try {
        outcome = { ok: true, value: await fn(r.client, r.name) };
      } catch (err) {
        outcome = { ok: false, err };
      }
      r.stats.busyMs += performance.now() - t0;
      r.inFlight--;
      r.outstanding -= cost;
      if (outcome.ok) {
        r.consecutiveFailures = 0;
        this.pump();
        return outcome.value;
      }
      const retryable = isReplicaFailure(outcome.err);
      // Record before pump() so queued calls do not land on a replica that was just ejected.
      this.recordFailure(r, outcome.err, retryable);
      this.pump();
      const msg = message(outcome.err);
      if (!retryable) throw new ReplicaCallError(r.name, attempt, `replica ${r.name}: ${msg}`, outcome.err);
      // Every replica out, the last for an outage: waiting out the cooldown would only delay the verdict.
      const now = Date.now();
      if (isOutage(outcome.err) && this.replicas.every((x) => x.ejectedUntil > now)) {
        throw new ReplicaCallError(r.name, attempt, `replica ${r.name}: ${msg}${call.errors.length > 0 ? `; earlier: ${call.errors.join('; ')}` : ''}`, outcome.err);
      }
      if (attempt >= this.maxAttempts) {
        const earlier = call.errors.length > 0 ? `; earlier: ${call.errors.join('; ')}` : '';
        throw new ReplicaCallError(r.name, attempt, `replica ${r.name}: ${msg} (gave up after ${attempt} attempts${earlier})`, outcome.err);
      }
      call.errors.push(`${r.name}: ${msg}`);
    }
  }

  stats(): ReplicaStats[] {
    const now = Date.now();
    return this.replicas.map((r) => ({ name: r.name, ...r.stats, inFlight: r.inFlight, ejected: r.ejectedUntil > now }));
  }

  private acquire(cost: number, call: Call, signal?: AbortSignal): Promise<Replica<R>> {
    signal?.throwIfAborted();
    return new Promise<Replica<R>>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        this.pump();
        reject(signal?.reason);
      };
      const waiter: Waiter<R> = {
        cost,
        call,
        resolve: (r) => (signal?.removeEventListener('abort', onAbort), resolve(r)),
        reject: (e) => (signal?.removeEventListener('abort', onAbort), reject(e)),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Hands free capacity to waiters in arrival order; arranges a wake-up for when an ejected replica returns. */
  private pump(): void {
    const now = Date.now();
    while (this.waiters.length > 0) {
      const w = this.waiters[0];
      const r = this.pick(w.call.tried, now);
      if (!r) break;
      this.waiters.shift();
      r.inFlight++;
      r.outstanding += w.cost;
      r.lastPick = ++this.picks;
      w.resolve(r);
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiters.length === 0) return;
    const ejected = this.replicas.filter((r) => r.ejectedUntil > now);
    if (ejected.length === 0) return; // a release will call pump()
    const nextReturn = Math.min(...ejected.map((r) => r.ejectedUntil));
    if (ejected.length === this.replicas.length) {
      for (const w of [...this.waiters]) {
        w.call.deadline ??= now + this.maxWaitMs;
        if (nextReturn > w.call.deadline) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.reject(this.noReplicaError(now, w.call));
        }
      }
      if (this.waiters.length === 0) return;
    }
    this.timer = setTimeout(() => this.pump(), nextReturn - now + 1);
  }

  /** The free, healthy replica with the least outstanding work; replicas this call already tried come last. */
  private pick(tried: Set<string>, now: number): Replica<R> | undefined {
    let best: Replica<R> | undefined;
    let bestKey: number[] = [];
    for (const r of this.replicas) {
      if (r.ejectedUntil > now || r.inFlight >= this.cap) continue;
      const key = [tried.has(r.name) ? 1 : 0, r.outstanding, r.lastPick];
      if (!best || lexLess(key, bestKey)) {
        best = r;
        bestKey = key;
      }
    }
    return best;
  }

  private recordFailure(r: Replica<R>, err: unknown, retryable: boolean): void {
    r.stats.failures++;
    r.stats.lastError = message(err);
    if (!retryable) return;
    // The count survives a cooldown, so a returning replica that fails again goes straight back out.
    r.consecutiveFailures++;
    // An unreachable replica, or one that is not serving the model, is taken out at once.
    if (isOutage(err)) r.consecutiveFailures = Math.max(r.consecutiveFailures, this.failuresToEject);
    const now = Date.now();
    if (r.consecutiveFailures >= this.failuresToEject && r.ejectedUntil <= now) {
      r.ejectedUntil = now + this.cooldownMs;
      r.stats.ejections++;
    }
  }

  private noReplicaError(now: number, call: Call): NoReplicaError {
    const each = this.replicas.map((r) => `${r.name} (back in ${((r.ejectedUntil - now) / 1000).toFixed(1)} s; last error: ${r.stats.lastError ?? 'none'})`);
    const earlier = call.errors.length > 0 ? `; this call's errors: ${call.errors.join('; ')}` : '';
    return new NoReplicaError(this.replicas.map((r) => r.name).join(', '), `no replica available within maxWaitMs=${this.maxWaitMs}: all ${this.replicas.length} are ejected: ${each.join(', ')}${earlier}`);
  }
}

function lexLess(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

function positive(name: string, v: number, allowFraction = false): number {
  if (!(v > 0) || (!allowFraction && !Number.isInteger(v))) throw new Error(`ReplicaPool ${name} must be a positive ${allowFraction ? 'number' : 'integer'}, got ${v}`);
  return v;
}
