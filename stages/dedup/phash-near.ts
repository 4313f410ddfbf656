import { join } from 'node:path';
import { decodeRgbAsPil } from '../../src/images/pil-decode.js';
import { perceptualHash } from '../../src/images/phash.js';
import type { Logger } from '../../src/log.js';
import type { EmitDrop } from './dedup-drop.js';
import { ordinalOf, storedImages, type DedupUnit } from './dedup-units.js';
import { HammingBands } from './hamming-bands.js';

/**
 * Near duplicates by perceptual hash: every ok row's stored image is hashed (src/images/phash.ts,
 * imagehash's phash) and a row is dropped when an earlier row's hash is within `maxBits` bits
 * (found exactly and in bounded memory by hamming-bands.ts).
 */
export interface PhashPassCounts {
  /** Ok rows hashed, per output. */
  hashed: number[];
}

export async function phashPass(units: readonly DedupUnit[], outputs: readonly string[], maxBits: number, scratch: string, partitions: number, emit: EmitDrop, log: Logger): Promise<PhashPassCounts> {
  const search = await HammingBands.create(join(scratch, 'phash'), maxBits, partitions);
  const hashed: number[] = new Array(outputs.length).fill(0);
  try {
    for (const [k, u] of units.entries()) {
      for await (const { key, row, bytes } of storedImages(u, outputs[u.output])) {
        let hash: Uint8Array;
        try {
          hash = perceptualHash(await decodeRgbAsPil(bytes));
        } catch (err) {
          // The shards hold what bitprep wrote and decoded; one that no longer decodes is damaged.
          throw new Error(`${outputs[u.output]}/${u.id}.tar: sample ${key}: ${err instanceof Error ? err.message : String(err)}`);
        }
        await search.add(hash, ordinalOf(k, row), key);
        hashed[u.output]++;
      }
    }
    log.info(`dedup --phash ${maxBits}: ${hashed.reduce((a, b) => a + b, 0)} images hashed; comparing in ${maxBits + 1} bands`);
    for await (const d of search.nearest()) await emit({ ...d, method: 'phash' });
    return { hashed };
  } finally {
    await search.remove();
  }
}
