import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../src/seeded-random.js';
import { DigestPartitions, partitionsFor } from '../stages/dedup/digest-partitions.js';

/**
 * One contender of `npm run bench -- dedup`, in a process of its own so its peak memory is its
 * own: `partitions` (bitprep dedup's engine: hash partitions on disk) or `set` (every digest in
 * one in-memory Set, the obvious way). The same N synthetic digests, 10% of them repeats of an
 * earlier one, each with a key. Prints JSON: rows, duplicates, seconds, max RSS.
 */
const [contender, nArg] = process.argv.slice(2);
const n = Number(nArg);
// The project's mulberry32 as 32-bit integers (its floats are those integers / 2^32, exactly).
const random = seededRandom(0x9e3779b9);
const next = () => random() * 2 ** 32;
const digest = Buffer.alloc(32);
/** Row i's digest: its own random one, or (1 in 10) the digest of an earlier row. */
const digestOf = (i: number): Buffer => {
  const r = next();
  const src = i > 0 && r % 10 === 0 ? next() % i : i;
  for (let w = 0; w < 8; w++) digest.writeUInt32LE(Math.imul(src + 1, 0x9e3779b1 + w * 0x85ebca6b) >>> 0, w * 4);
  return digest;
};

const t0 = process.hrtime.bigint();
let duplicates = 0;
if (contender === 'partitions') {
  const parts = await DigestPartitions.create(join(tmpdir(), `bitprep-dedup-bench-${process.pid}`), partitionsFor(n));
  for (let i = 0; i < n; i++) await parts.add(digestOf(i), i, `k${i}`);
  await parts.finish();
  for await (const _ of parts.duplicates()) duplicates++;
  await parts.remove();
} else {
  const seen = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const d = digestOf(i).toString('hex');
    if (seen.has(d)) duplicates++;
    else seen.set(d, `k${i}`);
  }
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({ rows: n, duplicates, seconds, maxRssMiB: process.resourceUsage().maxRSS / 1024 }) + '\n');
