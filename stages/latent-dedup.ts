import { LATENT_BITS, LATENT_BYTES } from '../src/formats/latent-bits.js';
import { fmix32 } from '../src/fmix32.js';
import { popcount32 } from '../src/popcount.js';

/** 32-bit words per packed latent (256). */
const WORDS = LATENT_BYTES / 4;

/**
 * Largest supported threshold (bits). Multi-index hashing here uses t + 1 substrings of whole
 * 32-bit words, so t = 255 is the last threshold whose substrings are still at least one word.
 * Shorter substrings would hold fewer bits than log2(n) for millions of latents: random latents
 * would share them by chance and the candidate count would grow as n² / 2^bits, i.e. towards
 * brute force. 255 bits is 3.1% of the 8192.
 */
export const MAX_DEDUP_THRESHOLD = 255;

/** Packed latents: one contiguous buffer, or several (each a whole number of latents) when n × 1 KiB exceeds one typed array (4 GiB in Node 20). */
export type LatentBuffers = Uint8Array | readonly Uint8Array[];

/** One near-duplicate pair: indices i < j into the input, and their Hamming distance. */
export type NearPair = [i: number, j: number, distance: number];

export interface NearDuplicates {
  /** Every pair within the threshold, sorted by i then j. */
  pairs: NearPair[];
  /**
   * Connected components of the pairs with two or more members; each lists its members
   * ascending, and clusters are sorted by their first member. A `drop` policy keeps each
   * cluster's first member (the lowest index: first in input order) and drops the rest, see
   * duplicatesToDrop().
   */
  clusters: number[][];
}

export interface NearDuplicateStats {
  latents: number;
  threshold: number;
  /** Substrings = passes over the data (threshold + 1). */
  substrings: number;
  /** Smallest and largest substring, in bits. */
  substringBits: [min: number, max: number];
  /** Pairs that shared a bucket in some pass, i.e. the distance checks made. */
  candidates: number;
  /** Pairs within the threshold (also counted when `collectPairs` is false). */
  found: number;
  /** Bytes held by the index while searching (all passes reuse it), not counting the input or the output. */
  indexBytes: number;
}

export interface NearDuplicateOptions {
  /** Largest Hamming distance (bits, 0..MAX_DEDUP_THRESHOLD) that makes two latents near duplicates. */
  threshold: number;
  /**
   * Set false when only the clusters are needed (a `drop` policy): `pairs` comes back empty and
   * pairs already known to be in one cluster are not checked, which keeps large groups of
   * duplicates (a blank image a thousand times) from costing a check per pair per pass.
   * Default true.
   */
  collectPairs?: boolean;
  /** Called after each pass; a CLI turns it into a progress bar. */
  onProgress?: (passesDone: number, passes: number) => void;
}

/** How multi-index hashing splits a latent for a given threshold. */
export interface SubstringPlan {
  /** Number of substrings m (= threshold + 1). */
  m: number;
  /** Substring k is the 32-bit words bounds[k] .. bounds[k + 1] - 1 of the packed latent (bytes 4·bounds[k] ..). */
  bounds: Int32Array;
}

/**
 * The substrings for `threshold`: m = t + 1 disjoint runs of whole 32-bit words, as equal as
 * 256 words allow. By pigeonhole, t differing bits touch at most t substrings, so two latents
 * within distance t are equal on at least one of the t + 1: searching for exact substring
 * matches misses no pair.
 *
 * Why m = t + 1 with exact matching rather than Norouzi et al.'s m ≈ b / log2(n) with radius
 * r = ⌊t/m⌋: the search runs one substring at a time over all latents (one index in memory,
 * reused), so its cost is about one O(n) pass per substring, and the least m wins. A radius r > 0
 * would instead probe every key within r bits of each substring — at least 33 probes per latent
 * per pass for 32-bit substrings at r = 1, hundreds for the long substrings of small t — which
 * costs more than the passes it saves. With t ≤ 255 every substring has ≥ 32 bits, more than
 * log2(n) for up to billions of random latents, so chance bucket-mates stay rare.
 */
export function planSubstrings(threshold: number): SubstringPlan {
  checkThreshold(threshold);
  const m = threshold + 1;
  const bounds = new Int32Array(m + 1);
  for (let k = 0; k <= m; k++) bounds[k] = Math.floor((k * WORDS) / m);
  return { m, bounds };
}

/**
 * Every pair of latents within Hamming distance `threshold` — exact: no pair missed, none
 * reported beyond the threshold — and their clusters, by multi-index hashing (see
 * planSubstrings). Each pass k hashes substring k of every latent into one open-addressing
 * table; latents that share a bucket are checked with the full distance. A pair equal on several
 * substrings is reported only in the pass of the first one, so no pair is found twice, and pairs
 * come back sorted by (i, j) whatever order they were found in.
 *
 * Memory besides the input (1 KiB per latent): about 20–28 bytes per latent (a 32-bit substring
 * hash and chain link per latent, a table of 2–4 slots per latent, a union-find parent), reused by
 * every pass; plus the output, 3 numbers per pair.
 *
 * Time: threshold + 1 passes of O(n) each, plus one distance check per pass for each pair of
 * latents whose substrings of that pass hash alike. On random-like data that is each near
 * duplicate once per substring it shares (checks after the first stop at the first shared
 * substring) plus rare chance matches; data whose substrings often coincide by chance (long runs
 * of constant bits) makes more checks, each cut short once past the threshold.
 *
 * Throws a RangeError for a threshold outside 0..MAX_DEDUP_THRESHOLD or a buffer that is not a
 * whole number of 1024-byte latents. Buffers not aligned to 4 bytes are copied first (a fresh
 * `new Uint8Array(n * 1024)` is always aligned).
 */
export function findNearDuplicates(latents: LatentBuffers, opts: NearDuplicateOptions): NearDuplicates & { stats: NearDuplicateStats } {
  const { m, bounds } = planSubstrings(opts.threshold);
  const t = opts.threshold;
  const collectPairs = opts.collectPairs ?? true;
  const store = new LatentStore(latents);
  const n = store.n;

  let size = 2;
  while (size < 2 * n) size *= 2;
  const mask = size - 1;
  // Slots and links hold index + 1 so that 0 means empty.
  const table = new Uint32Array(size);
  const keys = new Uint32Array(n);
  const next = new Uint32Array(n);
  const uf = new UnionFind(n);
  const found: number[] = [];
  let candidates = 0;
  let foundCount = 0;

  for (let k = 0; k < m; k++) {
    const w0 = bounds[k];
    const w1 = bounds[k + 1];
    table.fill(0);
    for (let c = 0; c < store.chunks.length; c++) {
      const words = store.chunks[c];
      const first = c * store.perChunk;
      const count = words.length / WORDS;
      for (let local = 0; local < count; local++) {
        const i = first + local;
        const base = local * WORDS;
        const h = hashWords(words, base + w0, base + w1, k);
        keys[i] = h;
        let slot = h & mask;
        for (;;) {
          const e = table[slot];
          if (e === 0) {
            table[slot] = i + 1;
            next[i] = 0;
            break;
          }
          if (keys[e - 1] !== h) {
            slot = (slot + 1) & mask;
            continue;
          }
          next[i] = e;
          table[slot] = i + 1;
          // Every earlier latent with this substring hash is a candidate partner of i.
          for (let link = e; link !== 0; link = next[link - 1]) {
            const j = link - 1;
            if (!collectPairs && uf.find(i) === uf.find(j)) continue;
            candidates++;
            const d = verify(store.chunkOf(j), store.baseOf(j), words, base, bounds, m, k, t);
            if (d < 0) continue;
            foundCount++;
            uf.union(i, j);
            if (collectPairs) found.push(j, i, d);
          }
          break;
        }
      }
    }
    opts.onProgress?.(k + 1, m);
  }

  const pairs: NearPair[] = [];
  for (let p = 0; p < found.length; p += 3) pairs.push([found[p], found[p + 1], found[p + 2]]);
  pairs.sort(comparePairs);
  let minWords = WORDS;
  let maxWords = 0;
  for (let k = 0; k < m; k++) {
    minWords = Math.min(minWords, bounds[k + 1] - bounds[k]);
    maxWords = Math.max(maxWords, bounds[k + 1] - bounds[k]);
  }
  return {
    pairs,
    clusters: uf.clusters(),
    stats: {
      latents: n,
      threshold: t,
      substrings: m,
      substringBits: [minWords * 32, maxWords * 32],
      candidates,
      found: foundCount,
      indexBytes: table.byteLength + keys.byteLength + next.byteLength + uf.byteLength,
    },
  };
}

/**
 * The same result as findNearDuplicates by checking all n(n−1)/2 pairs: the reference the tests
 * compare against and the benchmark's peer. Each check stops once past the threshold, which is
 * what makes brute force as fast as it can be; it is still O(n²).
 */
export function bruteForceNearDuplicates(latents: LatentBuffers, threshold: number): NearDuplicates {
  checkThreshold(threshold);
  const store = new LatentStore(latents);
  const n = store.n;
  const uf = new UnionFind(n);
  const pairs: NearPair[] = [];
  for (let i = 0; i < n; i++) {
    const a = store.chunkOf(i);
    const ab = store.baseOf(i);
    for (let j = i + 1; j < n; j++) {
      const b = store.chunkOf(j);
      const bb = store.baseOf(j);
      let d = 0;
      for (let w = 0; w < WORDS && d <= threshold; w++) d += popcount32(a[ab + w] ^ b[bb + w]);
      if (d > threshold) continue;
      pairs.push([i, j, d]);
      uf.union(i, j);
    }
  }
  return { pairs, clusters: uf.clusters() };
}

/** The indices a `drop` policy removes: every cluster member but the first (lowest index), ascending. */
export function duplicatesToDrop(clusters: readonly (readonly number[])[]): number[] {
  const out: number[] = [];
  for (const c of clusters) for (let x = 1; x < c.length; x++) out.push(c[x]);
  return out.sort((a, b) => a - b);
}

function checkThreshold(threshold: number): void {
  if (!Number.isInteger(threshold) || threshold < 0 || threshold > MAX_DEDUP_THRESHOLD) {
    throw new RangeError(
      `latent dedup: threshold must be a whole number of bits from 0 to ${MAX_DEDUP_THRESHOLD} (of ${LATENT_BITS}), got ${threshold}; ` +
        'beyond that, multi-index substrings drop below 32 bits and the search degrades towards comparing every pair',
    );
  }
}

function comparePairs(x: NearPair, y: NearPair): number {
  return x[0] - y[0] || x[1] - y[1];
}

/**
 * Distance between two latents if it is within t and substring k is the first substring on which
 * they are equal; -1 otherwise. The second condition both rejects chance hash matches and leaves a
 * pair that is equal on several substrings to the pass of the first, so each pair is found once.
 * Scanning substrings in order lets pairs found before exit at their first equal substring.
 */
function verify(a: Int32Array, ab: number, b: Int32Array, bb: number, bounds: Int32Array, m: number, k: number, t: number): number {
  let d = 0;
  for (let s = 0; s < m; s++) {
    let ds = 0;
    for (let w = bounds[s], end = bounds[s + 1]; w < end; w++) ds += popcount32(a[ab + w] ^ b[bb + w]);
    if (ds === 0) {
      if (s < k) return -1;
    } else if (s === k) {
      return -1;
    }
    d += ds;
    if (d > t) return -1;
  }
  return d;
}

/**
 * MurmurHash3 (x86, 32-bit) of words[from..to), seeded by the pass so that each pass spreads its
 * buckets differently. Over one word it is a bijection, so one-word substrings never collide by
 * chance.
 */
function hashWords(words: Int32Array, from: number, to: number, seed: number): number {
  let h = seed;
  for (let w = from; w < to; w++) {
    let x = Math.imul(words[w], 0xcc9e2d51);
    x = (x << 15) | (x >>> 17);
    x = Math.imul(x, 0x1b873593);
    h ^= x;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return fmix32(h ^ ((to - from) * 4));
}

/** The input as 32-bit word views, addressed by latent index. */
class LatentStore {
  readonly chunks: Int32Array[];
  /** Latents in every chunk but the last. */
  readonly perChunk: number;
  readonly n: number;

  constructor(latents: LatentBuffers) {
    const list = latents instanceof Uint8Array ? [latents] : [...latents];
    list.forEach((buf, c) => {
      if (buf.length % LATENT_BYTES !== 0) {
        throw new RangeError(`latent dedup: buffer ${c} holds ${buf.length} bytes, not a whole number of ${LATENT_BYTES}-byte latents`);
      }
    });
    const counts = list.map((buf) => buf.length / LATENT_BYTES);
    // Equal chunks make the chunk of latent i a division rather than a search.
    for (let c = 0; c + 1 < counts.length; c++) {
      if (counts[c] !== counts[0] || counts[c] === 0) throw new RangeError(`latent dedup: every buffer but the last must hold the same nonzero number of latents; buffer ${c} holds ${counts[c]}, buffer 0 ${counts[0]}`);
    }
    this.n = counts.reduce((s, x) => s + x, 0);
    if (this.n >= 2 ** 31) throw new RangeError(`latent dedup: at most 2^31 - 1 latents per search, got ${this.n}`);
    this.perChunk = Math.max(1, counts[0] ?? 1);
    this.chunks = list.map((buf) => {
      const aligned = buf.byteOffset % 4 === 0 ? buf : buf.slice();
      return new Int32Array(aligned.buffer, aligned.byteOffset, aligned.length / 4);
    });
  }

  chunkOf(i: number): Int32Array {
    return this.chunks[Math.floor(i / this.perChunk)];
  }

  /** Word offset of latent i in its chunk. */
  baseOf(i: number): number {
    return (i % this.perChunk) * WORDS;
  }
}

/** Disjoint sets whose root is always the lowest index, so a cluster's root is its kept member. */
class UnionFind {
  private readonly parent: Int32Array;

  constructor(n: number) {
    this.parent = new Int32Array(n);
    for (let i = 0; i < n; i++) this.parent[i] = i;
  }

  get byteLength(): number {
    return this.parent.byteLength;
  }

  find(i: number): number {
    const p = this.parent;
    while (p[i] !== i) {
      p[i] = p[p[i]];
      i = p[i];
    }
    return i;
  }

  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra < rb) this.parent[rb] = ra;
    else if (rb < ra) this.parent[ra] = rb;
  }

  /** Components of two or more, members ascending, sorted by first member. */
  clusters(): number[][] {
    const byRoot = new Map<number, number[]>();
    const out: number[][] = [];
    for (let i = 0; i < this.parent.length; i++) {
      const r = this.find(i);
      if (r === i) continue;
      // Roots are minimal, so r < i and was passed already; members arrive ascending.
      let members = byRoot.get(r);
      if (members === undefined) {
        members = [r];
        byRoot.set(r, members);
        out.push(members);
      }
      members.push(i);
    }
    return out.sort((x, y) => x[0] - y[0]);
  }
}
