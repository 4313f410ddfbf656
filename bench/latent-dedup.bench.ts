import { LATENT_BITS, LATENT_BYTES } from '../src/formats/latent-bits.js';
import { seededRandom } from '../src/seeded-random.js';
import { bruteForceNearDuplicates, findNearDuplicates, type NearDuplicates } from '../stages/latent-dedup.js';
import { timeMedian, type BenchResult } from './harness.js';

const N = 100_000;
/** Brute force is O(n²): 20k latents is ~2·10⁸ pair checks, seconds rather than minutes. */
const BRUTE_N = 20_000;
const THRESHOLD = 16;
const PLANTED = 400;

/** Random latents with near duplicates planted at 0..t bits from a random source, so both contenders find (and sort, and cluster) something. */
function makeLatents(): Uint8Array {
  const rnd = seededRandom(8192);
  const buf = new Uint8Array(N * LATENT_BYTES);
  const words = new Uint32Array(buf.buffer);
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(rnd() * 2 ** 32);
  for (let p = 0; p < PLANTED; p++) {
    const src = Math.floor(rnd() * N);
    const dst = Math.floor(rnd() * N);
    if (src === dst) continue;
    buf.copyWithin(dst * LATENT_BYTES, src * LATENT_BYTES, (src + 1) * LATENT_BYTES);
    for (let k = p % (THRESHOLD + 1); k > 0; k--) {
      const b = Math.floor(rnd() * LATENT_BITS);
      buf[dst * LATENT_BYTES + (b >> 3)] ^= 128 >> (b & 7);
    }
  }
  return buf;
}

const same = (a: NearDuplicates, b: NearDuplicates) => JSON.stringify([a.pairs, a.clusters]) === JSON.stringify([b.pairs, b.clusters]);

export default async function bench(): Promise<BenchResult> {
  const all = makeLatents();
  const subset = all.subarray(0, BRUTE_N * LATENT_BYTES);

  // Both contenders must give the same answer on the shared subset, or the timing means nothing.
  const bruteResult = bruteForceNearDuplicates(subset, THRESHOLD);
  const mihSubsetResult = findNearDuplicates(subset, { threshold: THRESHOLD });
  if (!same(bruteResult, mihSubsetResult)) throw new Error('latent-dedup bench: MIH and brute force disagree on the subset');

  // One timed brute-force run: at ~10 s a run, noise is small next to the ratio measured.
  const brute = await timeMedian(async () => bruteForceNearDuplicates(subset, THRESHOLD), 1, 0);
  const mihSubset = await timeMedian(async () => findNearDuplicates(subset, { threshold: THRESHOLD }), 5, 1);
  const mih = await timeMedian(async () => findNearDuplicates(all, { threshold: THRESHOLD }), 3, 1);
  const mih64 = await timeMedian(async () => findNearDuplicates(all, { threshold: 64 }), 3, 1);
  const full = findNearDuplicates(all, { threshold: THRESHOLD });
  const full64 = findNearDuplicates(all, { threshold: 64 });
  // Pair checks scale as n(n−1)/2; the O(n) parts of brute force are negligible beside them.
  const bruteExtrapolated = brute * ((N * (N - 1)) / (BRUTE_N * (BRUTE_N - 1)));

  return {
    name: 'latent-dedup',
    data: `${N} random 1024-byte latents (seeded) with ${PLANTED} near duplicates planted at 0..${THRESHOLD} bits; threshold t = ${THRESHOLD} unless stated; brute force timed on the first ${BRUTE_N}`,
    rows: [
      { label: `brute force, n = ${BRUTE_N} (measured, 1 run)`, value: BRUTE_N / brute, unit: 'latents/s' },
      { label: `multi-index hashing, n = ${BRUTE_N}`, value: BRUTE_N / mihSubset, unit: 'latents/s' },
      { label: `brute force, n = ${N} (EXTRAPOLATED from n = ${BRUTE_N} by n²)`, value: N / bruteExtrapolated, unit: 'latents/s' },
      { label: `multi-index hashing, n = ${N}`, value: N / mih, unit: 'latents/s' },
      { label: `multi-index hashing, n = ${N}, t = 64`, value: N / mih64, unit: 'latents/s' },
    ],
    ratios: [
      { label: `MIH speed-up over brute force, n = ${BRUTE_N} (both measured)`, value: brute / mihSubset, goal: '> 1' },
      { label: `MIH speed-up over brute force, n = ${N} (brute force extrapolated)`, value: bruteExtrapolated / mih },
    ],
    notes: [
      `seconds: brute force ${brute.toFixed(2)} at ${BRUTE_N} (extrapolated ${bruteExtrapolated.toFixed(1)} at ${N}); MIH ${mihSubset.toFixed(3)} at ${BRUTE_N}, ${mih.toFixed(3)} at ${N}, ${mih64.toFixed(3)} at ${N} with t = 64`,
      `results identical on the ${BRUTE_N}-latent subset (${bruteResult.pairs.length} pairs, ${bruteResult.clusters.length} clusters); at ${N}, t = ${THRESHOLD}: ${full.pairs.length} pairs, ${full.clusters.length} clusters`,
      `MIH, n = ${N}: t = ${THRESHOLD} → ${full.stats.substrings} substrings of ${full.stats.substringBits.join('–')} bits, ${full.stats.candidates} distance checks; t = 64 → ${full64.stats.substrings} substrings of ${full64.stats.substringBits.join('–')} bits, ${full64.stats.candidates} checks; index ${(full.stats.indexBytes / N).toFixed(1)} bytes per latent besides the 1024-byte latent`,
      'brute force stops each pair check once past the threshold (its best case on random data); MIH time includes sorting pairs and building clusters',
    ],
  };
}
