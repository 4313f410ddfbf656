import http from 'node:http';
import https from 'node:https';
import { z } from 'zod';
import { TransientError, parseRetryAfter, withRetry } from '../src/retry.js';
import { Breaker, networkBreaker, type BreakerOptions } from '../src/outage.js';
import { checkAddress, ipLiteral, validateAllowList } from '../src/net/address-policy.js';
import type { LookupFunction } from 'node:net';
import { DnsCache, guardedLookup } from '../src/net/dns-cache.js';
import { ProxyAgents } from '../src/net/proxy.js';
import { sniffImage } from '../src/images/sniff-image.js';
import { robotsOptOut } from '../src/net/robots-tag.js';
import { packageVersion } from '../src/package-root.js';
import { drop, SampleError, type Sample } from '../src/sample.js';
import { sampleStage, type Stage, type StageContext } from '../src/stage.js';
import type { StageStats } from '../src/stats.js';
import { parseStageOptions } from './stage-options.js';

/** Download settings (unset keys take the defaults below). */
export const fetchOptions = z.object({
  /** Downloads in flight at once, all hosts together. */
  concurrency: z.number().int().min(1).default(64),
  /** Requests in flight per host name; also the agents' sockets per host. */
  per_host: z.number().int().min(1).default(8),
  /** Longest wait for DNS plus TCP connect → 'connect_timeout'. */
  connect_timeout_ms: z.number().int().min(1).default(10_000),
  /** Longest silence while waiting for headers or between two body chunks → 'timeout'. */
  read_timeout_ms: z.number().int().min(1).default(20_000),
  /** Longest time for one attempt, redirects and body included → 'timeout'. */
  total_timeout_ms: z.number().int().min(1).default(60_000),
  /** Retries of transient failures (timeouts, resets, 429, 5xx) after the first attempt. */
  retries: z.number().int().min(0).default(2),
  /** First retry backoff; doubles per retry with jitter, capped at 30 s. */
  retry_delay_ms: z.number().int().min(0).default(1000),
  /** Redirects followed per attempt. */
  max_redirects: z.number().int().min(0).default(5),
  /** Largest body accepted (32 MiB), by Content-Length and while streaming → 'too_large'. */
  max_bytes: z.number().int().min(1).default(32 * 1024 * 1024),
  /** `bitprep/<version> (+https://github.com/bitprep)` unless set; its product name is the X-Robots-Tag agent token. */
  user_agent: z.string().default(`bitprep/${packageVersion} (+https://github.com/bitprep)`),
  /** CIDRs or addresses allowed although private, loopback or link-local (default none), e.g. ["127.0.0.1/32"]. */
  allow_addresses: z.array(z.string()).default([]),
  /** Drop images whose X-Robots-Tag opts out (noai, noimageai, noindex, noimageindex) before their body is read. */
  respect_robots: z.boolean().default(true),
}).strict();

/** What fetchStage takes: the download settings (unset keys take their defaults) and the stream's shared objects. */
export type FetchOptions = z.input<typeof fetchOptions> & {
  /** DNS answers shared between streams (default: a fresh 60 s cache per stream); its resolver can be replaced. */
  dns_cache?: DnsCache;
  /**
   * When this many downloads in a row, over at least `minHosts` hosts, fail at the network level
   * (refused, unreachable, DNS, reset, connect timeout) and none gets any HTTP answer, the network
   * is taken as down and the unit stops as an outage instead of failing its rows (default: the `breaker` section's network_failures and network_min_hosts).
   */
  breaker?: BreakerOptions;
};

/**
 * Failure codes a later attempt may cure; `retry-failed` reruns rows failed with these.
 * dns_error is listed although a missing name fails at once within a run: names come back.
 */
export const TRANSIENT_FETCH_CODES: readonly string[] = [
  'timeout',
  'connect_timeout',
  'connection_reset',
  'connection_refused',
  'host_unreachable',
  'network_unreachable',
  'dns_error',
  'truncated',
  'http_429',
  ...Array.from({ length: 100 }, (_, i) => 500 + i).filter((c) => c !== 501).map((c) => `http_${c}`),
];

const TRANSIENT = new Set(TRANSIENT_FETCH_CODES);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Bytes needed to recognise every supported format (webp and ISO-BMFF brands sit at 8..12). */
const SNIFF_BYTES = 12;
/** Error and redirect bodies up to this size are drained so their keep-alive socket is reused. */
const DRAIN_MAX = 64 * 1024;

/** A failure worth retrying, still carrying its stable code for the funnel. */
class TransientFetchError extends TransientError {
  constructor(readonly code: string, message: string, retryAfterMs?: number, readonly status?: number) {
    super(message, retryAfterMs);
  }
}

class PermanentFetchError extends SampleError {
  constructor(code: string, message: string, readonly status?: number) {
    super(code, message);
  }
}

/** Thrown to stop the download when the server opts the image out; becomes a drop, not a failure. */
class RobotsOptOut extends Error {
  constructor(readonly directive: string) {
    super(`X-Robots-Tag: ${directive}`);
  }
}

function failure(code: string, message: string, opts: { transient?: boolean; retryAfterMs?: number; status?: number } = {}): Error {
  return (opts.transient ?? TRANSIENT.has(code)) ? new TransientFetchError(code, message, opts.retryAfterMs, opts.status) : new PermanentFetchError(code, message, opts.status);
}

function networkFailure(err: unknown, url: URL): Error {
  if (err instanceof SampleError || err instanceof TransientFetchError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const msg = `${url.host}: ${e?.message ?? String(err)}`;
  if (code === 'EAI_AGAIN') return failure('dns_error', msg, { transient: true });
  if (['ENOTFOUND', 'EAI_NONAME', 'EAI_NODATA', 'EAI_FAIL'].includes(code)) return failure('dns_error', msg, { transient: false });
  if (code === 'ECONNREFUSED') return failure('connection_refused', msg);
  if (code === 'EHOSTUNREACH') return failure('host_unreachable', msg);
  if (code === 'ENETUNREACH' || code === 'ENETDOWN') return failure('network_unreachable', msg);
  if (['ECONNRESET', 'EPIPE', 'ECONNABORTED'].includes(code)) return failure('connection_reset', msg);
  if (code === 'ETIMEDOUT') return failure('connect_timeout', msg);
  if (e?.name === 'AbortError') return failure('aborted', msg);
  if (code.startsWith('HPE_')) return failure('bad_response', msg);
  if (/CERT|TLS|SSL/.test(code)) return failure('tls_error', msg);
  return failure('network_error', msg);
}

/** Caps requests per host name; callers over the cap wait in arrival order. Idle hosts are forgotten. */
class HostLimiter {
  private readonly hosts = new Map<string, { active: number; waiters: (() => void)[] }>();
  constructor(private readonly limit: number) {}

  async run<T>(host: string, fn: () => Promise<T>): Promise<T> {
    let h = this.hosts.get(host);
    if (!h) this.hosts.set(host, (h = { active: 0, waiters: [] }));
    const slot = h;
    if (slot.active >= this.limit) await new Promise<void>((r) => slot.waiters.push(r));
    else slot.active++;
    try {
      return await fn();
    } finally {
      const next = slot.waiters.shift();
      // The slot passes straight to the next waiter, so `active` never dips and lets a newcomer in.
      if (next) next();
      else if (--slot.active === 0) this.hosts.delete(host);
    }
  }
}

/** Failures that say nothing reached the host: what the network breaker watches. */
const NETWORK_LEVEL = new Set(['connection_refused', 'host_unreachable', 'network_unreachable', 'connection_reset', 'connect_timeout', 'dns_error']);

type Resolved = z.output<typeof fetchOptions> & { breaker: BreakerOptions; dns_cache?: DnsCache };

function resolveOptions(opts: FetchOptions): Resolved {
  const { dns_cache, breaker, ...options } = opts;
  const o = parseStageOptions('fetch', fetchOptions, options);
  validateAllowList(o.allow_addresses);
  return { ...o, breaker: breaker ?? networkBreaker(), dns_cache };
}

type Hop =
  | { kind: 'redirect'; location: string }
  | { kind: 'final'; status: number; contentType: string; body: Buffer; ext: string };

interface Download {
  status: number;
  contentType: string;
  finalUrl: string;
  body: Buffer;
  ext: string;
}

/** Frees a response we do not want: small bodies are drained so the socket returns to the pool. */
function discard(res: http.IncomingMessage, readTimeoutMs: number): void {
  res.on('error', () => undefined);
  const len = Number(res.headers['content-length']);
  if (!(len <= DRAIN_MAX)) {
    res.destroy();
    return;
  }
  const timer = setTimeout(() => res.destroy(), readTimeoutMs).unref();
  res.once('close', () => clearTimeout(timer));
  res.resume();
}

function checkTarget(url: URL, allow: string[]): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw failure('unsupported_scheme', `${url.protocol}// URLs are not downloaded (http and https only): ${url.href.slice(0, 200)}`);
  // Node connects to IP literals without calling lookup, so they are checked here, before any socket.
  const ip = ipLiteral(url.hostname);
  if (ip) checkAddress(ip, allow);
}

/** One stream's connections: agents, DNS cache and per-host limits live as long as the stream. */
class Session {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly limiter: HostLimiter;
  private readonly headers: Record<string, string>;
  private readonly breaker: Breaker;
  private readonly proxies: ProxyAgents;
  private readonly lookup: LookupFunction;

  constructor(private readonly o: Resolved) {
    this.breaker = new Breaker('the network (image downloads)', o.breaker);
    const lookup = guardedLookup({ allow: o.allow_addresses, cache: o.dns_cache ?? new DnsCache() });
    this.lookup = lookup;
    // The agent timeout closes idle pooled sockets; requests enforce their own timeouts.
    const agentOpts = { keepAlive: true, maxSockets: o.per_host, maxFreeSockets: o.per_host, scheduling: 'lifo' as const, timeout: 15_000, lookup };
    this.httpAgent = new http.Agent(agentOpts);
    this.httpsAgent = new https.Agent(agentOpts);
    // Through a proxy (HTTP(S)_PROXY, NO_PROXY honoured) the sockets go to the proxy; see request().
    this.proxies = new ProxyAgents({ keepAlive: true, maxSockets: o.per_host, maxFreeSockets: o.per_host, scheduling: 'lifo', timeout: 15_000 });
    this.limiter = new HostLimiter(o.per_host);
    // Identity encoding: a compressed body would fail the image sniff, and images do not compress.
    this.headers = { 'User-Agent': o.user_agent, Accept: 'image/avif,image/webp,image/*,*/*;q=0.8', 'Accept-Encoding': 'identity' };
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.proxies.destroy();
  }

  /** Resolves `hostname` as a direct connection would, through the guard: the address policy holds for proxied requests too. */
  private checkHost(hostname: string): Promise<void> {
    return new Promise((resolve, reject) => this.lookup(hostname, { all: true }, (err) => (err ? reject(err) : resolve())));
  }

  async fetchSample(s: Sample, stats: StageStats, ctx: StageContext): Promise<void> {
    const raw = s.fields.url;
    if (typeof raw !== 'string' || raw === '') throw new SampleError('no_url', 'no image URL in the url column');
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new SampleError('invalid_url', `not a URL: ${raw.slice(0, 200)}`);
    }
    const t0 = performance.now();
    const add = (k: string, n: number) => (stats.counts[k] = (stats.counts[k] ?? 0) + n);
    try {
      const d = await withRetry(
        () => this.attempt(url, add, ctx.signal),
        { retries: this.o.retries, minDelayMs: this.o.retry_delay_ms, maxDelayMs: 30_000 },
        () => add('retries', 1),
        ctx.signal,
      );
      s.image = new Uint8Array(d.body.buffer, d.body.byteOffset, d.body.byteLength);
      s.imageExt = d.ext;
      s.fields.http_status = d.status;
      s.fields.content_type = d.contentType;
      s.fields.final_url = d.finalUrl;
      s.fields.download_bytes = d.body.byteLength;
      // Time goes to the stats, not the record: records and shards stay identical across reruns.
      add('download_ms', Math.round(performance.now() - t0));
      this.breaker.success();
    } catch (err) {
      if (err instanceof RobotsOptOut) {
        this.breaker.success();
        drop(s, 'robots', err.directive);
        return;
      }
      const status = (err as { status?: number }).status;
      if (status !== undefined) s.fields.http_status = status;
      const code = (err as { code?: string }).code ?? '';
      // Any answer from any host proves the network works; only failures below HTTP count.
      if (NETWORK_LEVEL.has(code) && !ctx.signal?.aborted) this.breaker.failure('network', `${code}: ${(err as Error).message}`, url.host);
      else this.breaker.success();
      throw err;
    }
  }

  /** One try: follows redirects, each target checked like the first; the total timeout spans them all. */
  private async attempt(start: URL, add: (k: string, n: number) => void, signal?: AbortSignal): Promise<Download> {
    const deadline = Date.now() + this.o.total_timeout_ms;
    const seen = new Set<string>([start.href]);
    let url = start;
    for (let redirects = 0; ; ) {
      checkTarget(url, this.o.allow_addresses);
      const target = url;
      const hop = await this.limiter.run(url.hostname, () => this.request(target, deadline, add, signal));
      if (hop.kind === 'final') return { status: hop.status, contentType: hop.contentType, finalUrl: url.href, body: hop.body, ext: hop.ext };
      add('redirects', 1);
      let next: URL;
      try {
        next = new URL(hop.location, url);
      } catch {
        throw failure('invalid_url', `${url.href} redirects to an invalid URL ${JSON.stringify(hop.location.slice(0, 200))}`);
      }
      if (seen.has(next.href)) throw failure('redirect_loop', `${url.href} redirects back to ${next.href}`);
      if (++redirects > this.o.max_redirects) throw failure('too_many_redirects', `more than ${this.o.max_redirects} redirects from ${start.href}`);
      seen.add(next.href);
      url = next;
    }
  }

  /**
   * One request. Through a proxy, the target's host is first resolved and checked as a direct
   * connection would be (the proxy then resolves it again, so a host that changes its answer
   * between the two is the proxy's to police); errors name the proxy.
   */
  private async request(url: URL, deadline: number, add: (k: string, n: number) => void, signal?: AbortSignal): Promise<Hop> {
    const direct = url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
    const route = this.proxies.for(url, direct);
    if (!route.proxy) return this.send(url, route.agent, deadline, add, signal);
    add('proxied', 1);
    try {
      if (!ipLiteral(url.hostname)) await this.checkHost(url.hostname);
      return await this.send(url, route.agent, deadline, add, signal);
    } catch (err) {
      const f = networkFailure(err, url);
      const code = (f as { code?: string }).code ?? '';
      if (NETWORK_LEVEL.has(code) && !(err instanceof SampleError && code === 'blocked_address')) f.message = `${f.message} (through proxy ${route.proxy.replace(/\/\/[^/@]*@/, '//***@')})`;
      throw f;
    }
  }

  private send(url: URL, agent: http.Agent, deadline: number, add: (k: string, n: number) => void, signal?: AbortSignal): Promise<Hop> {
    const o = this.o;
    return new Promise<Hop>((resolve, reject) => {
      let settled = false;
      let res: http.IncomingMessage | undefined;
      let totalTimer: NodeJS.Timeout | undefined;
      let connectTimer: NodeJS.Timeout | undefined;
      let idleTimer: NodeJS.Timeout | undefined;
      const settle = (err: Error | undefined, hop?: Hop) => {
        if (settled) return;
        settled = true;
        clearTimeout(totalTimer);
        clearTimeout(connectTimer);
        clearTimeout(idleTimer);
        if (err) reject(err);
        else resolve(hop as Hop);
      };
      // Settles first, so the errors the destroyed streams emit next are ignored.
      const abort = (err: Error) => {
        settle(err);
        res?.destroy();
        req.destroy();
      };
      const armIdle = () => {
        if (settled) return;
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => abort(failure('timeout', `${url.host}: no data for ${o.read_timeout_ms} ms`)), o.read_timeout_ms);
      };

      const remaining = deadline - Date.now();
      if (remaining <= 0) return reject(failure('timeout', `${url.host}: total_timeout_ms (${o.total_timeout_ms}) spent before this request`));
      add('requests', 1);
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method: 'GET', agent, headers: this.headers, signal });
      totalTimer = setTimeout(() => abort(failure('timeout', `${url.host}: no complete answer within ${o.total_timeout_ms} ms`)), remaining);
      req.on('error', (err) => settle(networkFailure(err, url)));
      req.on('socket', (sock) => {
        if (!sock.connecting) return armIdle();
        connectTimer = setTimeout(() => abort(failure('connect_timeout', `${url.host}: not connected within ${o.connect_timeout_ms} ms`)), o.connect_timeout_ms);
        sock.once('connect', () => {
          clearTimeout(connectTimer);
          armIdle();
        });
      });
      req.on('response', (r) => {
        res = r;
        r.on('error', () => undefined);
        if (settled) return void r.destroy();
        armIdle();
        const status = r.statusCode ?? 0;
        const location = r.headers.location;
        if (REDIRECTS.has(status) && location) {
          discard(r, o.read_timeout_ms);
          return settle(undefined, { kind: 'redirect', location });
        }
        if (status < 200 || status > 299) {
          discard(r, o.read_timeout_ms);
          const retryAfterMs = parseRetryAfter((r.headers['retry-after'] as string | undefined) ?? null);
          const transient = status === 429 || (status >= 500 && status !== 501);
          return settle(failure(`http_${status}`, `HTTP ${status} ${r.statusMessage ?? ''} from ${url.href.slice(0, 200)}`.trim(), { transient, retryAfterMs, status }));
        }
        if (o.respect_robots) {
          const directive = robotsOptOut(r.headersDistinct['x-robots-tag'] ?? [], o.user_agent);
          if (directive) return abort(new RobotsOptOut(directive));
        }
        const contentType = r.headers['content-type'] ?? '';
        const declared = r.headers['content-length'] === undefined ? undefined : Number(r.headers['content-length']);
        const length = declared !== undefined && Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
        if (length !== undefined && length > o.max_bytes) return abort(failure('too_large', `Content-Length ${length} exceeds max_bytes ${o.max_bytes}`, { status }));
        // A known length is read straight into its final buffer; otherwise chunks are joined once at the end.
        const fixed = length !== undefined ? Buffer.allocUnsafeSlow(length) : undefined;
        const chunks: Buffer[] = [];
        let received = 0;
        let sniffed = false;
        const notImage = (head: Uint8Array) => {
          const start = JSON.stringify(Buffer.from(head.subarray(0, 16)).toString('latin1'));
          return failure('not_an_image', `body is not an image (Content-Type ${JSON.stringify(contentType)}, starts ${start})`, { status });
        };
        const head = () => (fixed ? fixed.subarray(0, received) : Buffer.concat(chunks));
        r.on('data', (chunk: Buffer) => {
          if (settled) return;
          armIdle();
          add('bytes', chunk.length);
          if (received + chunk.length > (length ?? o.max_bytes)) {
            return abort(length === undefined ? failure('too_large', `body exceeds max_bytes ${o.max_bytes}`, { status }) : failure('bad_response', `body longer than Content-Length ${length}`, { status }));
          }
          if (fixed) chunk.copy(fixed, received);
          else chunks.push(chunk);
          received += chunk.length;
          // Sniffing early stops an HTML error page (or a video) before it is downloaded in full.
          if (!sniffed && received >= SNIFF_BYTES) {
            sniffed = true;
            const h = head();
            if (!sniffImage(h)) abort(notImage(h));
          }
        });
        r.on('end', () => {
          if (settled) return;
          if (length !== undefined && received < length) return settle(failure('truncated', `got ${received} of ${length} bytes`, { status }));
          let body = fixed;
          if (!body) {
            body = Buffer.allocUnsafeSlow(received);
            let at = 0;
            for (const c of chunks) at += c.copy(body, at);
          }
          const ext = sniffImage(body);
          if (!ext) return settle(notImage(body));
          settle(undefined, { kind: 'final', status, contentType, body, ext });
        });
        r.on('close', () => {
          if (!r.complete) settle(failure('truncated', `connection closed after ${received}${length === undefined ? '' : ` of ${length}`} bytes`, { status }));
        });
      });
      req.end();
    });
  }
}

/**
 * Downloads `fields.url` (http and https) into `sample.image`, setting fields http_status,
 * content_type, final_url and download_bytes. Every failure is a SampleError-coded failed
 * sample (see TRANSIENT_FETCH_CODES for the ones worth retrying later); an X-Robots-Tag opt-out
 * is a drop by 'robots'. Stats units: bytes, requests, retries, redirects, download_ms (summed
 * over successful downloads, retries and backoff included).
 */
export function fetchStage(opts: FetchOptions = {}): Stage {
  const o = resolveOptions(opts);
  return (input, ctx) => {
    const session = new Session(o);
    const inner = sampleStage('fetch', (s, stats, c) => session.fetchSample(s, stats, c), { concurrency: o.concurrency })(input, ctx);
    return (async function* () {
      try {
        yield* inner;
      } finally {
        session.close();
      }
    })();
  };
}
