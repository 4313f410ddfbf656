import { join } from 'node:path';
import { popcount32 } from '../../src/popcount.js';
import { hash32 } from '../mix/hash.js';
import { LinePartitions } from './line-partitions.js';

/**
 * For every 64-bit hash, the earliest earlier one within `maxBits` bits, exactly and in bounded
 * memory, by multi-index hashing on disk: the 64 bits are cut into maxBits + 1 bands, and two
 * hashes within maxBits bits agree on at least one whole band (pigeonhole). Each row goes to a
 * partition file once per band, keyed by (band, its bits); each partition is then read alone,
 * rows sharing a band value compared in order, and for each row the first close one noted. Those
 * candidates go to partitions by row and are reduced to the earliest per row.
 *
 * Cost: disk ~60 bytes per row per band; memory one partition; time one check per pair of rows
 * sharing a band value, which for unrelated hashes is about n² / 2^(64 / (maxBits + 1)) per
 * band: fine for small thresholds or millions of rows, quadratic in the end (bench: dedup-phash).
 */
export const MAX_HAMMING_BITS = 12;

export interface NearHash {
  /** The row (its dedup ordinal; lower is earlier). */
  row: number;
  key: string;
  /** The earliest earlier row within the bits. */
  kept: number;
  keptKey: string;
  distance: number;
}

export class HammingBands {
  private readonly cuts: [number, number][];

  private constructor(private readonly bands: LinePartitions, private readonly pairs: LinePartitions, readonly maxBits: number) {
    const m = maxBits + 1;
    this.cuts = Array.from({ length: m }, (_, b) => [Math.floor((b * 64) / m), Math.floor(((b + 1) * 64) / m)]);
  }

  static async create(dir: string, maxBits: number, partitions: number): Promise<HammingBands> {
    if (!(Number.isInteger(maxBits) && maxBits >= 0 && maxBits <= MAX_HAMMING_BITS)) throw new Error(`near-duplicate hashes: ${maxBits}: give 0 … ${MAX_HAMMING_BITS} bits (of 64)`);
    return new HammingBands(await LinePartitions.create(join(dir, 'bands'), partitions), await LinePartitions.create(join(dir, 'pairs'), partitions), maxBits);
  }

  /** Adds a row: `hash` 8 bytes (first byte most significant), `row` its place in the order. */
  async add(hash: Uint8Array, row: number, key: string): Promise<void> {
    const hi = ((hash[0] << 24) | (hash[1] << 16) | (hash[2] << 8) | hash[3]) >>> 0;
    const lo = ((hash[4] << 24) | (hash[5] << 16) | (hash[6] << 8) | hash[7]) >>> 0;
    const p = this.bands.partitions;
    for (const [b, [from, to]] of this.cuts.entries()) {
      const bucket = `${b}:${bitsOf(hi, lo, from, to)}`;
      await this.bands.add(hash32(bucket, 7) % p, JSON.stringify([bucket, hi, lo, row, key]));
    }
  }

  /** Every row with an earlier row within the bits, with the earliest such row, partition by partition. */
  async *nearest(): AsyncGenerator<NearHash> {
    await this.bands.finish();
    const p = this.pairs.partitions;
    for (let part = 0; part < this.bands.partitions; part++) {
      const groups = new Map<string, [number, number, number, string][]>();
      for await (const line of this.bands.read(part)) {
        const [bucket, hi, lo, row, key] = JSON.parse(line) as [string, number, number, number, string];
        let g = groups.get(bucket);
        if (!g) groups.set(bucket, (g = []));
        g.push([hi, lo, row, key]);
      }
      for (const g of groups.values()) {
        g.sort((a, b) => a[2] - b[2]);
        for (let j = 1; j < g.length; j++) {
          const [hj, lj] = g[j];
          for (let i = 0; i < j; i++) {
            const d = popcount32((g[i][0] ^ hj) >>> 0) + popcount32((g[i][1] ^ lj) >>> 0);
            if (d > this.maxBits) continue;
            await this.pairs.add(hash32(String(g[j][2]), 11) % p, JSON.stringify([g[j][2], g[j][3], g[i][2], g[i][3], d]));
            break;
          }
        }
      }
    }
    await this.pairs.finish();
    for (let part = 0; part < p; part++) {
      const best = new Map<number, NearHash>();
      for await (const line of this.pairs.read(part)) {
        const [row, key, kept, keptKey, distance] = JSON.parse(line) as [number, string, number, string, number];
        const b = best.get(row);
        if (!b || kept < b.kept) best.set(row, { row, key, kept, keptKey, distance });
      }
      yield* best.values();
    }
  }

  async remove(): Promise<void> {
    await this.bands.remove();
    await this.pairs.remove();
  }
}

/** Bits [from, to) of the 64-bit hash (hi, lo), as a string of 0s and 1s. */
function bitsOf(hi: number, lo: number, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += i < 32 ? (hi >>> (31 - i)) & 1 : (lo >>> (63 - i)) & 1;
  return s;
}
