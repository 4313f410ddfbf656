import { describe, expect, it } from 'vitest';
import { hammingDistance, LATENT_BITS, LATENT_BYTES } from '../src/formats/latent-bits.js';
import { seededRandom } from '../src/seeded-random.js';
import {
  bruteForceNearDuplicates,
  duplicatesToDrop,
  findNearDuplicates,
  MAX_DEDUP_THRESHOLD,
  planSubstrings,
  type NearPair,
} from '../stages/latent-dedup.js';

function randomLatents(n: number, rnd: () => number): Uint8Array {
  const buf = new Uint8Array(n * LATENT_BYTES);
  const words = new Uint32Array(buf.buffer);
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(rnd() * 2 ** 32);
  return buf;
}

const latent = (buf: Uint8Array, i: number) => buf.subarray(i * LATENT_BYTES, (i + 1) * LATENT_BYTES);

interface Planted {
  /** Groups built to be connected within t: expected clusters. */
  groups: number[][];
  /** Every pair of a group or decoy group whose true distance is ≤ t: expected pairs. */
  pairs: NearPair[];
  /** Planted (i, j) at exactly t + 1. */
  decoys: [number, number][];
  /** Planted bit-flip counts from a source, to show the fixture covers 0 and t. */
  flipCounts: Set<number>;
}

/**
 * Plants near duplicates into random latents. Random latents lie ~4096 ± 45 bits apart, so the
 * only pairs within t ≤ 255 are the planted ones; which planted pairs are within t is measured
 * with latent-bits' hammingDistance rather than assumed.
 */
function plant(buf: Uint8Array, t: number, groupCount: number, rnd: () => number): Planted {
  const n = buf.length / LATENT_BYTES;
  const slots = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [slots[i], slots[j]] = [slots[j], slots[i]];
  }
  let nextSlot = 0;
  const take = () => slots[nextSlot++];
  const randomBits = (count: number, from = 0, to = LATENT_BITS, avoid = new Set<number>()) => {
    const bits = new Set<number>();
    while (bits.size < count) {
      const b = from + Math.floor(rnd() * (to - from));
      if (!avoid.has(b)) bits.add(b);
    }
    return bits;
  };
  const copyFlipped = (src: number, bits: Iterable<number>) => {
    const dst = take();
    buf.copyWithin(dst * LATENT_BYTES, src * LATENT_BYTES, (src + 1) * LATENT_BYTES);
    for (const b of bits) buf[dst * LATENT_BYTES + (b >> 3)] ^= 128 >> (b & 7);
    return dst;
  };
  const { m, bounds } = planSubstrings(t);
  const substringBit = (s: number) => randomBits(1, bounds[s] * 32, bounds[s + 1] * 32);

  const groups: number[][] = [];
  const decoyGroups: number[][] = [];
  const decoys: [number, number][] = [];
  const flipCounts = new Set<number>();
  // Cycles through 0, t, then everything in between, so both ends appear however few groups there are.
  const ks = [0, t, ...Array.from({ length: Math.max(0, t - 1) }, (_, i) => i + 1)];
  for (let g = 0; g < groupCount; g++) {
    const src = take();
    const kind = g % 8;
    if (kind === 5 && t > 0) {
      // A chain: c is within t of b, b of a, but a and c are 2t apart (disjoint flips); only
      // union-find joins a and c.
      const kb = t;
      const bBits = randomBits(kb);
      const b = copyFlipped(src, bBits);
      const c = copyFlipped(b, randomBits(kb, 0, LATENT_BITS, bBits));
      flipCounts.add(kb);
      groups.push([src, b, c]);
    } else if (kind === 6 && t > 0) {
      // One flip in each substring but one (the pigeonhole bound's tightest case: distance t
      // when m = t + 1, only the untouched substring matches). Were the plan to use m ≤ t
      // substrings, every one is flipped and the pair, within t, must still be found.
      const keep = m > t ? g % m : -1;
      const bits: number[] = [];
      for (let s = 0; s < m; s++) if (s !== keep) bits.push(...substringBit(s));
      groups.push([src, copyFlipped(src, bits)]);
      flipCounts.add(bits.length);
    } else {
      const members = [src];
      const copies = kind % 3 === 0 ? 2 : 1;
      for (let c = 0; c < copies; c++) {
        const k = ks[(g + c * 7) % ks.length];
        members.push(copyFlipped(src, randomBits(k)));
        flipCounts.add(k);
      }
      groups.push(members);
    }
  }
  // Decoys at t + 1: spread over all m substrings (no substring in common), bunched into one
  // substring (the rest match on every other pass), and at random.
  for (let d = 0; d < 12; d++) {
    const src = take();
    let bits: Iterable<number>;
    if (d % 3 === 0) {
      const spread = new Set<number>();
      for (let s = 0; s < m && spread.size <= t; s++) spread.add([...substringBit(s)][0]);
      for (const b of randomBits(t + 1 - spread.size, 0, LATENT_BITS, spread)) spread.add(b);
      bits = spread;
    } else if (d % 3 === 1) {
      const s = Math.floor(rnd() * m);
      bits = randomBits(t + 1, bounds[s] * 32, bounds[s + 1] * 32);
    } else {
      bits = randomBits(t + 1);
    }
    const dst = copyFlipped(src, bits);
    decoys.push([Math.min(src, dst), Math.max(src, dst)]);
    decoyGroups.push([src, dst]);
  }

  const pairs: NearPair[] = [];
  for (const members of [...groups, ...decoyGroups]) {
    const sorted = [...members].sort((a, b) => a - b);
    for (let x = 0; x < sorted.length; x++) {
      for (let y = x + 1; y < sorted.length; y++) {
        const d = hammingDistance(latent(buf, sorted[x]), latent(buf, sorted[y]));
        if (d <= t) pairs.push([sorted[x], sorted[y], d]);
      }
    }
  }
  pairs.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  return { groups: groups.map((g) => [...g].sort((a, b) => a - b)).sort((a, b) => a[0] - b[0]), pairs, decoys, flipCounts };
}

function expectPlantedFound(buf: Uint8Array, t: number, planted: Planted): void {
  for (const [i, j] of planted.decoys) expect(hammingDistance(latent(buf, i), latent(buf, j))).toBe(t + 1);
  expect(planted.flipCounts.has(0) && planted.flipCounts.has(t)).toBe(true);

  const found = findNearDuplicates(buf, { threshold: t });
  // Exactly the planted pairs: none missed, no false pair, decoys at t + 1 absent.
  expect(found.pairs).toEqual(planted.pairs);
  const reported = new Set(found.pairs.map(([i, j]) => `${i},${j}`));
  for (const [i, j] of planted.decoys) expect(reported.has(`${i},${j}`)).toBe(false);
  for (const [i, j, d] of found.pairs) {
    expect(i).toBeLessThan(j);
    expect(d).toBe(hammingDistance(latent(buf, i), latent(buf, j)));
  }
  expect(found.clusters).toEqual(planted.groups);
  // A drop policy keeps the first member (lowest index) of each cluster.
  expect(duplicatesToDrop(found.clusters)).toEqual(planted.groups.flatMap((g) => g.slice(1)).sort((a, b) => a - b));
  expect(found.stats.found).toBe(planted.pairs.length);
  expect(found.stats.substrings).toBe(t + 1);
  // The index is tens of bytes per latent, not kilobytes.
  expect(found.stats.indexBytes / found.stats.latents).toBeLessThanOrEqual(28);

  const clustersOnly = findNearDuplicates(buf, { threshold: t, collectPairs: false });
  expect(clustersOnly.pairs).toEqual([]);
  expect(clustersOnly.clusters).toEqual(planted.groups);
}

describe('findNearDuplicates', () => {
  it('finds exactly the planted near duplicates (t = 16) among 100k random latents', () => {
    const rnd = seededRandom(20240601);
    const buf = randomLatents(100_000, rnd);
    const planted = plant(buf, 16, 200, rnd);
    expect(planted.groups.length).toBe(200);
    expectPlantedFound(buf, 16, planted);
  });

  it('finds exactly the planted near duplicates at t = 64 and t = 0', () => {
    const rnd = seededRandom(7);
    const buf = randomLatents(20_000, rnd);
    expectPlantedFound(buf, 64, plant(buf, 64, 150, rnd));
    const exact = randomLatents(5_000, rnd);
    expectPlantedFound(exact, 0, plant(exact, 0, 40, rnd));
  });

  it('agrees with brute force, including large groups of equal latents', () => {
    const rnd = seededRandom(99);
    const buf = randomLatents(2_000, rnd);
    plant(buf, 16, 60, rnd);
    // 25 copies of one latent: 300 pairs, each equal on every substring and found only once.
    for (let c = 1; c <= 25; c++) buf.copyWithin((1_000 + c) * LATENT_BYTES, 1_000 * LATENT_BYTES, 1_001 * LATENT_BYTES);
    for (const t of [0, 16, 64, MAX_DEDUP_THRESHOLD]) {
      const brute = bruteForceNearDuplicates(buf, t);
      const mih = findNearDuplicates(buf, { threshold: t });
      expect({ pairs: mih.pairs, clusters: mih.clusters }).toEqual(brute);
      expect(findNearDuplicates(buf, { threshold: t, collectPairs: false }).clusters).toEqual(brute.clusters);
    }
    expect(bruteForceNearDuplicates(buf, 16).pairs.length).toBeGreaterThan(300);
  });

  it('gives the same answer for split and unaligned buffers', () => {
    const rnd = seededRandom(3);
    const buf = randomLatents(1_500, rnd);
    plant(buf, 24, 50, rnd);
    const whole = findNearDuplicates(buf, { threshold: 24 });
    expect(whole.pairs.length).toBeGreaterThan(50);
    const chunks = [buf.subarray(0, 600 * LATENT_BYTES), buf.subarray(600 * LATENT_BYTES, 1_200 * LATENT_BYTES), buf.subarray(1_200 * LATENT_BYTES)];
    const split = findNearDuplicates(chunks, { threshold: 24 });
    expect(split.pairs).toEqual(whole.pairs);
    expect(split.clusters).toEqual(whole.clusters);
    const shifted = new Uint8Array(buf.length + 1);
    shifted.set(buf, 1);
    const unaligned = findNearDuplicates(shifted.subarray(1), { threshold: 24 });
    expect(unaligned.pairs).toEqual(whole.pairs);
    expect(bruteForceNearDuplicates(chunks, 24)).toEqual({ pairs: whole.pairs, clusters: whole.clusters });
  });

  it('handles no latents and one latent', () => {
    expect(findNearDuplicates(new Uint8Array(0), { threshold: 5 })).toMatchObject({ pairs: [], clusters: [] });
    expect(findNearDuplicates(new Uint8Array(LATENT_BYTES), { threshold: 5 })).toMatchObject({ pairs: [], clusters: [] });
  });

  it('refuses thresholds and buffers it cannot search, saying why', () => {
    const two = new Uint8Array(2 * LATENT_BYTES);
    for (const t of [-1, MAX_DEDUP_THRESHOLD + 1, 1.5, Number.NaN]) {
      expect(() => findNearDuplicates(two, { threshold: t })).toThrow(/threshold must be a whole number of bits from 0 to 255/);
      expect(() => bruteForceNearDuplicates(two, t)).toThrow(RangeError);
    }
    expect(() => findNearDuplicates(new Uint8Array(1_000), { threshold: 4 })).toThrow(/not a whole number of 1024-byte latents/);
    expect(() => findNearDuplicates([new Uint8Array(LATENT_BYTES), two, two], { threshold: 4 })).toThrow(/same nonzero number of latents/);
  });
});

describe('planSubstrings', () => {
  it('splits the 256 words into t + 1 contiguous substrings of at least one word each', () => {
    for (let t = 0; t <= MAX_DEDUP_THRESHOLD; t++) {
      const { m, bounds } = planSubstrings(t);
      expect(m).toBe(t + 1);
      expect(bounds[0]).toBe(0);
      expect(bounds[m]).toBe(LATENT_BYTES / 4);
      let min = Infinity;
      let max = 0;
      for (let k = 0; k < m; k++) {
        min = Math.min(min, bounds[k + 1] - bounds[k]);
        max = Math.max(max, bounds[k + 1] - bounds[k]);
      }
      expect(min).toBeGreaterThanOrEqual(1);
      expect(max - min).toBeLessThanOrEqual(1);
    }
  });
});
