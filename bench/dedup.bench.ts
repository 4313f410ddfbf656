import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchResult } from './harness.js';

/**
 * `bitprep dedup`'s exact engine (digests to hash partitions on disk, one partition sorted at a
 * time) against the obvious in-memory map of every digest, each in its own process on the same
 * 10M synthetic digests (10% repeats), side by side: rows per second and peak memory (max RSS).
 * The point is the memory: the map grows with the dataset (at 100M rows it would not fit a node),
 * the partitions' stays near their budget.
 */
const N = 10_000_000;

interface Run {
  rows: number;
  duplicates: number;
  seconds: number;
  maxRssMiB: number;
}

const run = (contender: string): Run =>
  JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--max-old-space-size=8192', join(import.meta.dirname, 'dedup-worker.ts'), contender, String(N)], { encoding: 'utf8', maxBuffer: 1 << 20 })) as Run;

export default async function bench(): Promise<BenchResult> {
  const parts = run('partitions');
  const set = run('set');
  if (parts.duplicates !== set.duplicates) throw new Error(`dedup bench: the contenders disagree (${parts.duplicates} vs ${set.duplicates} duplicates)`);
  return {
    name: 'dedup',
    data: `${N.toLocaleString('en')} synthetic SHA-256 digests with keys, ${set.duplicates.toLocaleString('en')} of them (~10%) repeats of an earlier one; each contender in its own process`,
    rows: [
      { label: `bitprep dedup engine (hash partitions on disk, ${Math.max(1, Math.ceil((N * 64) / (64 * 2 ** 20)))} partitions): rows per second (peak RSS ${parts.maxRssMiB.toFixed(0)} MiB)`, value: parts.rows / parts.seconds, unit: 'rows/s' },
      { label: `one in-memory Map of every digest: rows per second (peak RSS ${set.maxRssMiB.toFixed(0)} MiB)`, value: set.rows / set.seconds, unit: 'rows/s' },
    ],
    ratios: [
      { label: 'dedup engine rows/s / in-memory map', value: set.seconds / parts.seconds },
      { label: 'dedup engine peak memory / in-memory map', value: parts.maxRssMiB / set.maxRssMiB, goal: '< 0.5, and flat as rows grow' },
      { label: 'dedup engine peak memory, MiB', value: parts.maxRssMiB },
    ],
    notes: [`both found ${parts.duplicates.toLocaleString('en')} duplicates; the engine wrote ${(N * 52 / 2 ** 20).toFixed(0)} MiB of partitions to the temp folder`],
  };
}
