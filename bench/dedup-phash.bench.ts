import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchResult } from './harness.js';

/**
 * `bitprep dedup --phash`'s search (multi-index bands in partitions on disk, one read at a time)
 * against the same multi-index search held in memory, each in its own process on the same 1M
 * synthetic 64-bit hashes (5% near copies) at 4 bits: rows per second and peak memory. The disk
 * engine runs under a 128 MiB V8 heap cap, which is what "bounded" means here: it would run under
 * the same cap at 100M rows, where the in-memory index would need gigabytes. Both must give the
 * same answer. Time grows faster than the rows (rows sharing a band value are compared pairwise).
 */
const N = 1_000_000;
const BITS = 4;

interface Run {
  rows: number;
  near: number;
  digest: number;
  seconds: number;
  maxRssMiB: number;
}

const run = (contender: string, heap: string[]): Run =>
  JSON.parse(execFileSync(process.execPath, [...heap, '--import', 'tsx', join(import.meta.dirname, 'dedup-phash-worker.ts'), contender, String(N), String(BITS)], { encoding: 'utf8', maxBuffer: 1 << 20 })) as Run;

export default async function bench(): Promise<BenchResult> {
  const bands = run('bands', ['--max-old-space-size=128']);
  const memory = run('memory', []);
  if (bands.near !== memory.near || bands.digest !== memory.digest) throw new Error(`dedup-phash bench: the contenders disagree (${bands.near} vs ${memory.near} near copies)`);
  return {
    name: 'dedup-phash',
    data: `${N.toLocaleString('en')} synthetic 64-bit hashes, ${memory.near.toLocaleString('en')} of them within ${BITS} bits of an earlier one; each contender in its own process`,
    rows: [
      { label: `bitprep dedup --phash ${BITS} search (bands in partitions on disk, 128 MiB heap cap): rows per second (peak RSS ${bands.maxRssMiB.toFixed(0)} MiB)`, value: bands.rows / bands.seconds, unit: 'rows/s' },
      { label: `the same search with every hash and band index in memory: rows per second (peak RSS ${memory.maxRssMiB.toFixed(0)} MiB)`, value: memory.rows / memory.seconds, unit: 'rows/s' },
    ],
    ratios: [
      { label: 'phash engine rows/s / in-memory index', value: memory.seconds / bands.seconds },
      { label: 'phash engine peak memory, MiB', value: bands.maxRssMiB },
    ],
    notes: [`both found the same ${bands.near.toLocaleString('en')} near copies and the same earlier row for each`],
  };
}
