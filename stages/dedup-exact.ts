import { createHash } from 'node:crypto';
import { drop } from '../src/sample.js';
import { syncSampleStage, type Stage } from '../src/stage.js';
import { DigestTable } from '../src/digest-table.js';

const HEX24 = /^[0-9a-fA-F]{24}/;
const HEX_DIGEST = /^[0-9a-fA-F]{24,}$/;

/**
 * The content digests seen so far, each mapped to the key of the first sample that had it.
 *
 * Memory: the digests (their first 96 bits) in a DigestTable, the first keys as UTF-8 bytes in
 * one growing pool: about 24 bytes + key length per entry (up to twice that just after a growth;
 * 100k entries with 12-byte keys take ~5 MB, a Map of 16-hex-digit keys 9.3 MB). Two different
 * digests sharing 96 bits make the later image a false duplicate (about n² / 2^97: 2e-10 for
 * LAION-5B's five billion). Accepted.
 *
 * Share one instance between the stages of the units a process runs to deduplicate across them.
 * Calls are synchronous, so concurrent units in one process cannot interleave inside add().
 */
export class ExactSeenSet {
  private readonly digests = new DigestTable();
  /** keyStart[i]..keyStart[i+1] are entry i's key bytes in `pool`. */
  private keyStart = new Uint32Array(1025);
  private pool = new Uint8Array(16 * 1024);
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  /** Digests held. */
  get size(): number {
    return this.digests.size;
  }

  /** Approximate bytes held by the set's arrays. */
  get byteLength(): number {
    return this.digests.byteLength + this.keyStart.byteLength + this.pool.byteLength;
  }

  /**
   * Records `digest` (hex, at least 24 digits, case ignored) as first seen in sample `key`, or,
   * when it was seen before, returns the key it was first seen in and records nothing.
   */
  add(digest: string, key: string): string | undefined {
    const [a, b, c] = words(digest);
    const i = this.digests.size;
    const first = this.digests.firstOrAdd(a, b, c, i);
    if (first !== undefined) return this.keyOf(first);
    this.appendKey(i, key);
    return undefined;
  }

  has(digest: string): boolean {
    return this.firstKey(digest) !== undefined;
  }

  /** The key of the first sample seen with `digest`, if any. */
  firstKey(digest: string): string | undefined {
    const [a, b, c] = words(digest);
    const at = this.digests.get(a, b, c);
    return at === undefined ? undefined : this.keyOf(at);
  }

  private keyOf(i: number): string {
    return this.decoder.decode(this.pool.subarray(this.keyStart[i], this.keyStart[i + 1]));
  }

  private appendKey(i: number, key: string): void {
    if (i + 1 >= this.keyStart.length) {
      const next = new Uint32Array(this.keyStart.length * 2);
      next.set(this.keyStart);
      this.keyStart = next;
    }
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
  return syncSampleStage(
    'dedup-exact',
    (s, stats) => {
      const digest = digestOf(s.fields[field]);
      if (digest === undefined) {
        stats.counts.no_hash++;
        return;
      }
      const first = seen.add(digest, s.key);
      if (first !== undefined) {
        drop(s, 'duplicate', { of: first });
        stats.counts.duplicates++;
      }
    },
    {
      init: (stats) => {
        stats.counts.duplicates ??= 0;
        stats.counts.no_hash ??= 0;
      },
    },
  );
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
