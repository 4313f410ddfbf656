import { createHash } from 'node:crypto';
import { drop } from '../src/sample.js';
import type { Stage } from '../src/stage.js';

const EMPTY = 0xffffffff;
const HEX24 = /^[0-9a-fA-F]{24}/;
const HEX_DIGEST = /^[0-9a-fA-F]{24,}$/;

/**
 * The content digests seen so far, each mapped to the key of the first sample that had it.
 *
 * Memory: a digest is kept as its first 96 bits (three uint32) in typed arrays, the first key
 * as UTF-8 bytes in one growing pool, and an open-addressing table (linear probing, load ≤ 0.5)
 * of uint32 entry indices: about 20 bytes + key length per entry (up to twice that just after a
 * growth; 100k entries with 12-byte keys take 5.2 MB, a Map of 16-hex-digit keys 9.3 MB), and
 * no per-entry JS objects, so no GC pressure and no Map's 2^24-entry ceiling. Growth doubles
 * an array, so a resize briefly holds old and new copies.
 *
 * Collisions: two different digests sharing 96 bits make the later image a false duplicate.
 * The chance of any such pair among n digests is about n² / 2^97: 6e-18 for a million images,
 * 2e-10 for LAION-5B's five billion. Accepted.
 *
 * Share one instance between the stages of the units a process runs to deduplicate across them.
 * Calls are synchronous, so concurrent units in one process cannot interleave inside add().
 */
export class ExactSeenSet {
  private d0 = new Uint32Array(1024);
  private d1 = new Uint32Array(1024);
  private d2 = new Uint32Array(1024);
  /** keyStart[i]..keyStart[i+1] are entry i's key bytes in `pool`. */
  private keyStart = new Uint32Array(1025);
  private pool = new Uint8Array(16 * 1024);
  private table = new Uint32Array(2048).fill(EMPTY);
  private n = 0;
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  /** Digests held. */
  get size(): number {
    return this.n;
  }

  /** Approximate bytes held by the set's arrays. */
  get byteLength(): number {
    return this.d0.byteLength * 3 + this.keyStart.byteLength + this.pool.byteLength + this.table.byteLength;
  }

  /**
   * Records `digest` (hex, at least 24 digits, case ignored) as first seen in sample `key`, or,
   * when it was seen before, returns the key it was first seen in and records nothing.
   */
  add(digest: string, key: string): string | undefined {
    const [a, b, c] = words(digest);
    const slot = this.find(a, b, c);
    const at = this.table[slot];
    if (at !== EMPTY) return this.keyOf(at);
    if (this.n === this.d0.length) this.growEntries();
    const i = this.n;
    this.d0[i] = a;
    this.d1[i] = b;
    this.d2[i] = c;
    this.appendKey(i, key);
    this.table[slot] = i;
    this.n++;
    if (this.n * 2 > this.table.length) this.rehash(this.table.length * 2);
    return undefined;
  }

  has(digest: string): boolean {
    return this.firstKey(digest) !== undefined;
  }

  /** The key of the first sample seen with `digest`, if any. */
  firstKey(digest: string): string | undefined {
    const [a, b, c] = words(digest);
    const at = this.table[this.find(a, b, c)];
    return at === EMPTY ? undefined : this.keyOf(at);
  }

  /** The slot holding this digest, or the empty slot where it would go. */
  private find(a: number, b: number, c: number): number {
    const mask = this.table.length - 1;
    // The digest is uniformly random, so its own bits serve as the hash.
    let slot = a & mask;
    for (;;) {
      const at = this.table[slot];
      if (at === EMPTY || (this.d0[at] === a && this.d1[at] === b && this.d2[at] === c)) return slot;
      slot = (slot + 1) & mask;
    }
  }

  private keyOf(i: number): string {
    return this.decoder.decode(this.pool.subarray(this.keyStart[i], this.keyStart[i + 1]));
  }

  private appendKey(i: number, key: string): void {
    const start = this.keyStart[i];
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    const need = start + key.length * 3;
    if (need > this.pool.length) {
      if (need > 0xffffffff) throw new Error('ExactSeenSet: key pool over 4 GiB; use fewer units per process');
      const next = new Uint8Array(Math.min(0xffffffff, Math.max(need, this.pool.length * 2)));
      next.set(this.pool.subarray(0, start));
      this.pool = next;
    }
    const { written } = this.encoder.encodeInto(key, this.pool.subarray(start));
    this.keyStart[i + 1] = start + written;
  }

  private growEntries(): void {
    const cap = this.d0.length * 2;
    const grow = (arr: Uint32Array, len: number) => {
      const next = new Uint32Array(len);
      next.set(arr);
      return next;
    };
    this.d0 = grow(this.d0, cap);
    this.d1 = grow(this.d1, cap);
    this.d2 = grow(this.d2, cap);
    this.keyStart = grow(this.keyStart, cap + 1);
  }

  private rehash(size: number): void {
    this.table = new Uint32Array(size).fill(EMPTY);
    const mask = size - 1;
    for (let i = 0; i < this.n; i++) {
      let slot = this.d0[i] & mask;
      while (this.table[slot] !== EMPTY) slot = (slot + 1) & mask;
      this.table[slot] = i;
    }
  }
}

function words(digest: string): [number, number, number] {
  if (!HEX24.test(digest)) throw new Error(`ExactSeenSet: expected a hex digest of at least 24 digits, got ${JSON.stringify(digest.slice(0, 80))}`);
  return [parseInt(digest.slice(0, 8), 16), parseInt(digest.slice(8, 16), 16), parseInt(digest.slice(16, 24), 16)];
}

export interface ExactDedupOptions {
  /**
   * The field holding the content hash (default `original_sha256`, set by decode-resize). A hex
   * digest of 24+ digits is used as is; any other string, number, bigint or byte array is
   * SHA-256 hashed first, so e.g. `URL` deduplicates by URL.
   */
  field?: string;
  /**
   * The digests already seen; pass one set to several stages (units) to deduplicate across them.
   * Default: a new set per exactDedup() call, shared by every stream that Stage processes.
   */
  seen?: ExactSeenSet;
}

/**
 * Drops every ok sample whose content hash was already seen, as `drop(s, 'duplicate', { of:
 * <first key> })`, keeping the first occurrence in stream order (across units, the first in the
 * order units ran, which a parallel executor does not fix). Samples without the field, and
 * samples not ok, pass through untouched.
 *
 * Out of scope: deduplication across separate processes (array jobs, queue workers), whose sets
 * are not shared; that needs a global pass over the written records.
 *
 * Stats (stage `dedup-exact`): units `duplicates`, `no_hash` (ok samples lacking the field).
 */
export function exactDedup(opts: ExactDedupOptions = {}): Stage {
  const field = opts.field ?? 'original_sha256';
  const seen = opts.seen ?? new ExactSeenSet();
  return async function* (input, ctx) {
    const stats = ctx.stats.stage('dedup-exact');
    stats.units.duplicates ??= 0;
    stats.units.no_hash ??= 0;
    for await (const s of input) {
      if (s.status.kind !== 'ok') {
        yield s;
        continue;
      }
      stats.in++;
      const digest = digestOf(s.fields[field]);
      if (digest === undefined) {
        stats.units.no_hash++;
        stats.ok++;
        yield s;
        continue;
      }
      const first = seen.add(digest, s.key);
      if (first === undefined) {
        stats.ok++;
      } else {
        drop(s, 'duplicate', { of: first });
        stats.units.duplicates++;
        stats.dropped++;
      }
      yield s;
    }
  };
}

function digestOf(v: unknown): string | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  if (typeof v === 'string') return HEX_DIGEST.test(v) ? v : sha256(v);
  if (v instanceof Uint8Array) return sha256(v);
  if (typeof v === 'number' || typeof v === 'bigint') return sha256(String(v));
  return sha256(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? String(v));
}

function sha256(v: string | Uint8Array): string {
  return createHash('sha256').update(v).digest('hex');
}
