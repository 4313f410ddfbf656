import { z } from 'zod';

/**
 * The line between a row's fault and an unusable environment.
 *
 * A row's fault (a 404 for one image, a refused caption, a corrupt JPEG) is recorded in the row
 * and the run goes on. An outage (a model endpoint refusing connections, unauthorised, not
 * serving the named model, refusing requests for their size; the network gone; the disk full)
 * says nothing about the row: recording it there would mark a unit done with rows that were never
 * tried. An OutageError therefore escapes every stage, fails the unit (left undone) and stops the
 * run, which exits non-zero naming the target; a rerun after the fix completes the output.
 */
export class OutageError extends Error {
  constructor(
    /** What is unusable: an endpoint URL, `the network`, an output store. */
    readonly target: string,
    /** A stable short reason, e.g. connection_refused, http_404, breaker:http_503, ENOSPC. */
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'OutageError';
  }
}

/** `err` and its causes, outermost first (bounded: a cause chain may loop). */
export function* causeChain(err: unknown): Generator<unknown> {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) yield e;
}

/** The OutageError in `err` or its cause chain, if any. */
export function findOutage(err: unknown): OutageError | undefined {
  for (const e of causeChain(err)) if (e instanceof OutageError) return e;
  return undefined;
}

export const isOutage = (err: unknown): boolean => findOutage(err) !== undefined;

/** Rethrows `err` when it is (or wraps) an outage; stages call this before turning an error into a row's failure. */
export function rethrowOutage(err: unknown): void {
  const o = findOutage(err);
  if (o) throw o;
}

/**
 * Socket error codes meaning the endpoint cannot be reached at all: once retries are spent, no
 * row-level retry can cure them.
 */
const UNREACHABLE: Record<string, string> = {
  ECONNREFUSED: 'connection_refused',
  EHOSTUNREACH: 'host_unreachable',
  ENETUNREACH: 'network_unreachable',
  ENETDOWN: 'network_down',
  ENOTFOUND: 'host_not_found',
  EAI_NONAME: 'host_not_found',
  EAI_AGAIN: 'dns_unavailable',
  EAI_FAIL: 'dns_unavailable',
};

/** The outage reason of a socket-level error (`code` on it or its causes), if it is one. */
function unreachableReason(err: unknown): string | undefined {
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNREACHABLE[code]) return UNREACHABLE[code];
    // undici wraps several attempts (IPv4 and IPv6) in an AggregateError.
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors)) for (const x of errors) {
      const r = unreachableReason(x);
      if (r) return r;
    }
  }
  return undefined;
}

/**
 * HTTP statuses from a model endpoint that say the endpoint, not the request's content, is wrong:
 * unauthorised, forbidden, no such model (or path), method not allowed, request too large.
 */
const ENDPOINT_STATUSES: Record<number, string> = {
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'request_too_large',
};

function endpointStatusReason(status: number | undefined): string | undefined {
  return status === undefined ? undefined : ENDPOINT_STATUSES[status] && `http_${status}_${ENDPOINT_STATUSES[status]}`;
}

/**
 * The outage a failed call to an endpoint amounts to, if it is one: unreachable (refused, no
 * route, no such host, after the caller's retries) or an HTTP status that makes every request
 * fail alike (see endpointStatusReason). `message` describes the failed call.
 */
export function endpointOutage(target: string, err: unknown, status: number | undefined, message: string): OutageError | undefined {
  const unreachable = unreachableReason(err);
  if (unreachable) return new OutageError(target, unreachable, `${unreachable.replace(/_/g, ' ')}: ${message}`, { cause: err });
  const reason = endpointStatusReason(status);
  return reason ? new OutageError(target, reason, message, { cause: err }) : undefined;
}

/**
 * Systemic write errors of the environment (disk full, no permission, read-only file system, quota):
 * every later unit would fail the same way, so the run stops at the first.
 */
const SYSTEMIC_WRITE: Record<string, string> = {
  ENOSPC: 'disk_full',
  EDQUOT: 'quota_exceeded',
  EACCES: 'permission_denied',
  EPERM: 'permission_denied',
  EROFS: 'read_only_file_system',
};

/** An OutageError for a systemic write error in `err`'s chain, naming the output. */
export function systemicWriteError(err: unknown, output: string): OutageError | undefined {
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && SYSTEMIC_WRITE[code]) {
      return new OutageError(output, code, `${output}: ${SYSTEMIC_WRITE[code].replace(/_/g, ' ')} (${code}): ${(e as Error).message ?? String(e)}`, { cause: err });
    }
  }
  return undefined;
}

/**
 * The `breaker` section every job config has: when repeated failures stop being rows' bad luck
 * and become an outage that stops the run (Breaker below). Operational: may change on a rerun.
 */
export const breakerConfig = z.object({
  /** Model calls in a row (each after its own retries) failing with one reason (a 5xx status, timeouts) with no success between. */
  model_failures: z.number().int().min(1).default(10),
  /** Downloads in a row failing below HTTP (refused, unreachable, DNS, reset, connect timeout) with no answer from any host between. */
  network_failures: z.number().int().min(1).default(50),
  /** Distinct hosts those downloads must span: one dead host is its own rows' failure, not the network's. */
  network_min_hosts: z.number().int().min(1).default(5),
}).strict();

export type BreakerConfig = z.infer<typeof breakerConfig>;

/** The `breaker` section's defaults: what a job config without one, and a client given none, use. */
export const BREAKER_DEFAULTS: BreakerConfig = breakerConfig.parse({});

/** A model client's breaker from a job's `breaker` section. */
export const modelBreaker = (c: BreakerConfig = BREAKER_DEFAULTS): BreakerOptions => ({ failures: c.model_failures });

/** The download breaker from a job's `breaker` section. */
export const networkBreaker = (c: BreakerConfig = BREAKER_DEFAULTS): BreakerOptions => ({ failures: c.network_failures, minHosts: c.network_min_hosts });

/** Thresholds of a Breaker. */
export interface BreakerOptions {
  /** Consecutive failures (no success between) with one reason that make an outage. */
  failures: number;
  /** Distinct hosts those failures must span (downloads from the open web); 1 for one endpoint. */
  minHosts?: number;
}

/**
 * Tells an outage from bad luck where a single failure is ambiguous (a 503 or a timeout may be
 * one overloaded moment or a dead server): when the last `failures` outcomes were all failures
 * with the same reason and no success came between, the target is taken as down and the next
 * failure throws an OutageError. Any success resets it.
 */
export class Breaker {
  private streak = 0;
  private reason = '';
  private readonly hosts = new Set<string>();
  private lastMessage = '';

  constructor(
    readonly target: string,
    private readonly opts: BreakerOptions,
  ) {
    if (!(Number.isInteger(opts.failures) && opts.failures >= 1)) throw new Error(`breaker for ${target}: failures must be a positive integer, got ${opts.failures}`);
  }

  success(): void {
    this.streak = 0;
    this.reason = '';
    this.hosts.clear();
  }

  /** Counts a failure; throws an OutageError once the streak is long enough. */
  failure(reason: string, message: string, host?: string): void {
    if (reason !== this.reason) {
      this.streak = 0;
      this.hosts.clear();
      this.reason = reason;
    }
    this.streak++;
    this.lastMessage = message;
    if (host !== undefined) this.hosts.add(host);
    const minHosts = this.opts.minHosts ?? 1;
    if (this.streak >= this.opts.failures && (host === undefined || this.hosts.size >= minHosts)) {
      const span = host !== undefined ? ` across ${this.hosts.size} hosts` : '';
      throw new OutageError(this.target, `breaker:${reason}`, `${this.target}: the last ${this.streak} requests${span} all failed with ${reason} and none succeeded (last: ${this.lastMessage})`);
    }
  }
}
