import { join } from 'node:path';
import { decodeRgbAsPil } from '../../src/images/pil-decode.js';
import { hashDistance, perceptualHash, PHASH_BITS } from '../../src/images/phash.js';
import type { Logger } from '../../src/log.js';
import { hash32 } from '../mix/hash.js';
import { earliestOf, type DedupDrop, type EmitDrop } from './dedup-drop.js';
import { ordinalOf, storedImages, type DedupUnit } from './dedup-units.js';
import { LinePartitions } from './line-partitions.js';

/**
 * Near duplicates by perceptual hash: every ok row's stored image is hashed (src/images/phash.ts,
 * imagehash's phash) and a row is dropped when an earlier row's hash is within `maxBits` bits.
 *
 * Exact and in bounded memory, by multi-index hashing on disk: the 64 bits are cut into
 * maxBits + 1 bands; two hashes within maxBits bits agree on at least one whole band
 * (pigeonhole). Each row goes to a partition file once per band, keyed by (band, its bits);
 * each partition is then read alone, rows sharing a band value compared, and for each row the
 * earliest close row noted. Those candidates go to partitions by row and are reduced to the
 * earliest per row. Disk: ~60 bytes per row per band; memory: one partition.
 */
export const MAX_PHASH_BITS = 12;

export interface PhashPassCounts {
  /** Ok rows hashed, per output. */
  hashed: number[];
}

function bands(maxBits: number): [number, number][] {
  const m = maxBits + 1;
  return Array.from({ length: m }, (_, b) => [Math.floor((b * PHASH_BITS) / m), Math.floor(((b + 1) * PHASH_BITS) / m)]);
}

const bitsOf = (hash: Uint8Array, from: number, to: number): string => {
  let s = '';
  for (let i = from; i < to; i++) s += (hash[i >> 3] >> (7 - (i & 7))) & 1;
  return s;
};

export async function phashPass(units: readonly DedupUnit[], outputs: readonly string[], maxBits: number, scratch: string, partitions: number, emit: EmitDrop, log: Logger): Promise<PhashPassCounts> {
  if (!(Number.isInteger(maxBits) && maxBits >= 0 && maxBits <= MAX_PHASH_BITS)) throw new Error(`dedup --phash: ${maxBits}: give 0 … ${MAX_PHASH_BITS} bits (of ${PHASH_BITS})`);
  const cuts = bands(maxBits);
  const bandParts = await LinePartitions.create(join(scratch, 'phash-bands'), partitions);
  const pairParts = await LinePartitions.create(join(scratch, 'phash-pairs'), partitions);
  const hashed: number[] = new Array(outputs.length).fill(0);
  try {
    for (const [k, u] of units.entries()) {
      const where = `${outputs[u.output]}/${u.id}`;
      for await (const { key, row, bytes } of storedImages(u, outputs[u.output])) {
        let hash: Uint8Array;
        try {
          hash = perceptualHash(await decodeRgbAsPil(bytes));
        } catch (err) {
          // The shards hold what bitprep wrote and decoded; one that no longer decodes is damaged.
          throw new Error(`${where}.tar: sample ${key}: ${err instanceof Error ? err.message : String(err)}`);
        }
        const ordinal = ordinalOf(k, row);
        const hex = Buffer.from(hash).toString('hex');
        for (const [b, [from, to]] of cuts.entries()) {
          const bucket = `${b}:${bitsOf(hash, from, to)}`;
          await bandParts.add(hash32(bucket, 7) % partitions, JSON.stringify([bucket, hex, ordinal, key]));
        }
        hashed[u.output]++;
      }
    }
    log.info(`dedup --phash ${maxBits}: ${hashed.reduce((a, b) => a + b, 0)} images hashed; comparing in ${cuts.length} bands`);
    await bandParts.finish();
    for (let p = 0; p < partitions; p++) {
      const groups = new Map<string, [Uint8Array, number, string][]>();
      for (const line of await bandParts.read(p)) {
        const [bucket, hex, ordinal, key] = JSON.parse(line) as [string, string, number, string];
        let g = groups.get(bucket);
        if (!g) groups.set(bucket, (g = []));
        g.push([Buffer.from(hex, 'hex'), ordinal, key]);
      }
      for (const g of groups.values()) {
        g.sort((a, b) => a[1] - b[1]);
        for (let j = 1; j < g.length; j++) {
          for (let i = 0; i < j; i++) {
            const d = hashDistance(g[i][0], g[j][0]);
            if (d > maxBits) continue;
            await pairParts.add(hash32(String(g[j][1]), 11) % partitions, JSON.stringify([g[j][1], g[j][2], g[i][1], g[i][2], d]));
            break;
          }
        }
      }
    }
    await pairParts.finish();
    for (let p = 0; p < partitions; p++) {
      const candidates: DedupDrop[] = (await pairParts.read(p)).map((line) => {
        const [row, key, kept, keptKey, distance] = JSON.parse(line) as [number, string, number, string, number];
        return { row, key, method: 'phash', kept, keptKey, distance };
      });
      for (const d of earliestOf(candidates)) await emit(d);
    }
    return { hashed };
  } finally {
    await bandParts.remove();
    await pairParts.remove();
  }
}
