/**
 * Seeded 32-bit hashes of strings for the training mix: which rows a set takes, which caption a
 * sample gets, and row identities for dedup. Every decision is a pure function of (seed, string),
 * never of a random stream, so it does not depend on read order, unit boundaries or which process
 * made it, and a rerun makes the same one.
 */

import { fmix32 } from '../../src/fmix32.js';

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;


/**
 * MurmurHash3 (x86, 32-bit) of a string's UTF-16 code units, two per 32-bit block, as uint32.
 * Code units rather than UTF-8 bytes: no encoding per call, and the same value on every platform.
 */
export function hash32(s: string, seed: number): number {
  let h = seed >>> 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)) | 0;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= n * 2;
  return fmix32(h);
}

/** A seed for one purpose (`salt`) derived from the user's seed, so purposes draw independently. */
export function deriveSeed(seed: number, salt: string): number {
  return fmix32((hash32(salt, 0x5eed) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0);
}

/** A uniform draw in [0, 1) that is a pure function of (seed, s). */
export function unitDraw(s: string, seed: number): number {
  return hash32(s, seed) / 4294967296;
}

/**
 * The dedup identity of a row: its `source` (the dataset name pre-encode stamps on every row) and
 * its key. Keys are unique only within a dataset — pre-encode derives them from unit and row
 * numbers, so two datasets share most keys — hence the source; a row without one falls back to
 * its dataset's location, so a dataset listed twice still matches itself.
 */
export function rowIdentity(source: string, key: string): string {
  return `${source}\u0000${key}`;
}

const FP_SEED_HI = 0x9747b28c;
const FP_SEED_LO = 0x2f1a3c5d;

/** A 64-bit fingerprint of a string as two uint32 halves (two independently seeded hashes). */
export function fingerprint64(s: string): [hi: number, lo: number] {
  return [hash32(s, FP_SEED_HI), hash32(s, FP_SEED_LO)];
}
