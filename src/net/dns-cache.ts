import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import PQueue from 'p-queue';
import { SampleError } from '../sample.js';
import { checkAddress } from './address-policy.js';

/** Resolves a host name to all its addresses, the way dns.lookup({ all: true }) does. */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))));

export interface DnsCacheOptions {
  /** How long an answer is reused (ms, default 60 s); dns.lookup does not report the record's TTL. */
  ttlMs?: number;
  /**
   * Lookups in flight at once (default 8). dns.lookup runs on libuv's thread pool (4 threads by
   * default) shared with file and zlib work, so hundreds of parallel lookups would stall those.
   */
  concurrency?: number;
  /** Host names remembered at most (default 10 000); the oldest are forgotten first. */
  maxEntries?: number;
  /** Replaces the system resolver (tests, or a custom DNS client). */
  resolver?: Resolver;
}

/** A small TTL cache of dns.lookup answers; concurrent lookups of one name share a single query. */
export class DnsCache {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly resolver: Resolver;
  private readonly queue: PQueue;
  private readonly entries = new Map<string, { addrs: LookupAddress[]; expires: number }>();
  private readonly pending = new Map<string, Promise<LookupAddress[]>>();

  constructor(opts: DnsCacheOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.resolver = opts.resolver ?? systemResolver;
    this.queue = new PQueue({ concurrency: opts.concurrency ?? 8 });
  }

  async resolve(hostname: string): Promise<LookupAddress[]> {
    const key = hostname.toLowerCase();
    const hit = this.entries.get(key);
    if (hit && hit.expires > Date.now()) return hit.addrs;
    let p = this.pending.get(key);
    if (!p) {
      p = (this.queue.add(() => this.resolver(key)) as Promise<LookupAddress[]>).then(
        (addrs) => {
          this.pending.delete(key);
          // Failures are not cached: a temporary resolver error must not stick for a whole TTL.
          this.entries.delete(key);
          this.entries.set(key, { addrs, expires: Date.now() + this.ttlMs });
          if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
          return addrs;
        },
        (err: unknown) => {
          this.pending.delete(key);
          throw err;
        },
      );
      this.pending.set(key, p);
    }
    return p;
  }

  get size(): number {
    return this.entries.size;
  }
}

export interface GuardedLookupOptions {
  /** CIDRs or addresses allowed although not public (see checkAddress). */
  allow: string[];
  /** Answer lifetime when no `cache` is given. */
  ttlMs?: number;
  cache?: DnsCache;
}

/**
 * A `lookup` for http.Agent / http.request / net.connect that resolves through a cache and only
 * hands out addresses the policy allows. Checking here, on the very addresses the socket will
 * connect to, rather than resolving once beforehand, is what defeats DNS rebinding. Non-public
 * answers are removed; when none is left the lookup fails with SampleError 'blocked_address'.
 * Node does not call lookup for IP-literal hosts: check those with checkAddress before requesting.
 */
export function guardedLookup(opts: GuardedLookupOptions): LookupFunction {
  const cache = opts.cache ?? new DnsCache({ ttlMs: opts.ttlMs });
  return ((hostname: string, options: { family?: number | string; all?: boolean }, callback: (...args: unknown[]) => void) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    cache.resolve(hostname).then(
      (all) => {
        const wanted = family === 4 || family === 6 ? all.filter((a) => a.family === family) : all;
        let firstError: unknown;
        const allowed = wanted.filter((a) => {
          try {
            checkAddress(a.address, opts.allow);
            return true;
          } catch (err) {
            firstError ??= err;
            return false;
          }
        });
        if (allowed.length === 0) {
          const err = firstError instanceof SampleError
            ? new SampleError(firstError.code, `${hostname} resolves to: ${firstError.message}`)
            : firstError ?? Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
          callback(err, options.all ? [] : undefined, undefined);
        } else if (options.all) callback(null, allowed);
        else callback(null, allowed[0].address, allowed[0].family);
      },
      (err: unknown) => callback(err, options.all ? [] : undefined, undefined),
    );
  }) as LookupFunction;
}
