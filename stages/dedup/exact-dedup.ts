import type { Logger } from '../../src/log.js';
import type { EmitDrop } from './dedup-drop.js';
import { ordinalOf, unitRecords, type DedupUnit } from './dedup-units.js';
import { DigestPartitions } from './digest-partitions.js';

/**
 * Exact duplicates: rows whose original bytes have the same SHA-256 (`original_sha256`, recorded
 * by decode-resize), across every unit given. The same picture under two URLs in two units, or
 * in LAION and a synthetic or Dalle3 set, is kept once: the earliest in dedup order. Bounded
 * memory: digests go to hash partitions on disk (digest-partitions.ts), sorted one at a time.
 */
export interface ExactPassCounts {
  /** Ok rows with a digest, per output. */
  rows: number[];
  /** Ok rows without one (nothing to compare), per output. */
  noDigest: number[];
}

const HEX = /^[0-9a-f]{64}$/;

export async function exactPass(units: readonly DedupUnit[], outputs: readonly string[], parts: DigestPartitions, emit: EmitDrop, log: Logger): Promise<ExactPassCounts> {
  const rows: number[] = new Array(outputs.length).fill(0);
  const noDigest: number[] = new Array(outputs.length).fill(0);
  for (const [k, u] of units.entries()) {
    for await (const { row, r } of unitRecords(u, ['key', 'status', 'original_sha256'])) {
      if (r.status !== 'ok') continue;
      const d = typeof r.original_sha256 === 'string' ? r.original_sha256.toLowerCase() : '';
      if (!HEX.test(d)) {
        noDigest[u.output]++;
        continue;
      }
      await parts.add(d, ordinalOf(k, row), String(r.key));
      rows[u.output]++;
    }
    if (k + 1 === units.length || units[k + 1].output !== u.output) log.info(`dedup: ${outputs[u.output]}: ${rows[u.output]} ok rows with a digest${noDigest[u.output] ? `, ${noDigest[u.output]} without` : ''}`);
  }
  await parts.finish();
  for await (const d of parts.duplicates()) {
    await emit({ row: d.ordinal, key: d.label, method: 'sha256', kept: d.keptOrdinal, keptKey: d.keptLabel, distance: 0, digest: d.digest });
  }
  return { rows, noDigest };
}
