import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../src/seeded-random.js';
import { popcount32 } from '../src/popcount.js';
import { HammingBands } from '../stages/dedup/hamming-bands.js';
import { partitionsFor } from '../stages/dedup/digest-partitions.js';

/**
 * One contender of `npm run bench -- dedup-phash`, in a process of its own so its peak memory is
 * its own: `bands` (bitprep dedup's near-duplicate engine: multi-index bands in partitions on
 * disk) or `memory` (the same multi-index search with every hash and band index in memory). The
 * same N synthetic 64-bit hashes, 5% of them an earlier one with 0–4 bits flipped. Prints JSON:
 * rows, near (rows with an earlier row within the bits), a digest of the answer, seconds, max RSS.
 */
const [contender, nArg, tArg] = process.argv.slice(2);
const n = Number(nArg);
const t = Number(tArg);
// The project's mulberry32 as 32-bit integers (its floats are those integers / 2^32, exactly).
const random = seededRandom(0x2545f491);
const next = () => random() * 2 ** 32;
const hi = new Uint32Array(n);
const lo = new Uint32Array(n);
for (let i = 0; i < n; i++) {
  if (i > 0 && next() % 20 === 0) {
    const src = next() % i;
    [hi[i], lo[i]] = [hi[src], lo[src]];
    for (let f = next() % 5; f > 0; f--) {
      const bit = next() % 64;
      if (bit < 32) hi[i] ^= 1 << bit;
      else lo[i] ^= 1 << (bit - 32);
    }
  } else [hi[i], lo[i]] = [next(), next()];
}
const t0 = process.hrtime.bigint();
let near = 0;
let digest = 0;
const note = (row: number, kept: number) => {
  near++;
  digest = (digest + Math.imul(row + 1, 0x9e3779b1) + Math.imul(kept + 1, 0x85ebca6b)) >>> 0;
};
if (contender === 'bands') {
  const search = await HammingBands.create(join(tmpdir(), `bitprep-phash-bench-${process.pid}`), t, partitionsFor(n * (t + 1) * 4));
  const h = new Uint8Array(8);
  const view = new DataView(h.buffer);
  for (let i = 0; i < n; i++) {
    view.setUint32(0, hi[i]);
    view.setUint32(4, lo[i]);
    await search.add(h, i, `k${i}`);
  }
  for await (const d of search.nearest()) note(d.row, d.kept);
  await search.remove();
} else {
  const m = t + 1;
  const cuts = Array.from({ length: m }, (_, b) => [Math.floor((b * 64) / m), Math.floor(((b + 1) * 64) / m)]);
  const band = (i: number, from: number, to: number) => {
    const v = (BigInt(hi[i]) << 32n) | BigInt(lo[i]);
    return Number((v >> BigInt(64 - to)) & ((1n << BigInt(to - from)) - 1n));
  };
  const tables = cuts.map(() => new Map<number, number[]>());
  for (let j = 0; j < n; j++) {
    let best = -1;
    for (const [b, [from, to]] of cuts.entries()) {
      const v = band(j, from, to);
      let list = tables[b].get(v);
      if (!list) tables[b].set(v, (list = []));
      for (const i of list) {
        if (best >= 0 && i >= best) break;
        if (popcount32((hi[i] ^ hi[j]) >>> 0) + popcount32((lo[i] ^ lo[j]) >>> 0) <= t) {
          best = i;
          break;
        }
      }
      list.push(j);
    }
    if (best >= 0) note(j, best);
  }
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({ rows: n, near, digest, seconds, maxRssMiB: process.resourceUsage().maxRSS / 1024 }) + '\n');
