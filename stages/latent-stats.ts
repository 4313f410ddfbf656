import { LATENT_BITS, LATENT_BITS_PER_TOKEN, LATENT_BYTES, LATENT_TOKENS, popcount8 } from '../src/formats/latent-bits.js';

/**
 * Default ε for dead bits: a bit set in fewer than 1 image in 1000 (or unset in fewer than 1 in
 * 1000) carries H(0.001) = 0.011 bits, about 1% of what a balanced bit carries, so the model
 * gets almost nothing from it. At the sizes stats run on (10^5 images and up) the estimate of
 * such a p has a standard error of 10^-4 or less, so the list is not sampling noise; below
 * 1/ε images "dead" can only mean "constant".
 */
export const DEFAULT_DEAD_EPSILON = 0.001;

/**
 * Verdict thresholds. A rule on the "collapsed" side makes the verdict collapsed, any rule on
 * the "suspect" side makes it at least suspect; every rule that fires is one reason.
 * - Fewer than VERDICT_MIN_IMAGES latents: `insufficient`. With n images a rare but live bit
 *   (p = 0.01) reads as constant with probability 0.99^n: still 37% at n = 100.
 * - Dead bits: ≥ SUSPECT_DEAD_SHARE (5%) of the 8192 means a measurable part of the code's
 *   capacity is unused; ≥ COLLAPSED_DEAD_SHARE (90%) leaves fewer than 820 varying bits.
 * - Mean per-bit entropy: below SUSPECT_MEAN_ENTROPY (0.75 bits, e.g. every bit at p ≈ 0.21)
 *   the code is far from balanced; below COLLAPSED_MEAN_ENTROPY (0.1 bits, every bit at
 *   p ≈ 0.013) latents are near copies of one code.
 * - Distinct latents: two different images giving the same 8192 bits is vanishingly unlikely
 *   for a working encoder, so repeats mean duplicate images or collapse. Under
 *   SUSPECT_DISTINCT_SHARE (99%) distinct is suspect, under COLLAPSED_DISTINCT_SHARE (50%)
 *   collapsed.
 * - A dead token (all 64 of its bits dead) is suspect: one token carries nothing, while the
 *   dead share (64 / 8192 = 0.8%) stays under its own threshold.
 */
export const VERDICT_MIN_IMAGES = 100;
export const SUSPECT_DEAD_SHARE = 0.05;
export const COLLAPSED_DEAD_SHARE = 0.9;
export const SUSPECT_MEAN_ENTROPY = 0.75;
export const COLLAPSED_MEAN_ENTROPY = 0.1;
export const SUSPECT_DISTINCT_SHARE = 0.99;
export const COLLAPSED_DISTINCT_SHARE = 0.5;

/**
 * Fingerprints held for the distinct count: exact up to this many distinct latents, a hash
 * sample of about half to all of it beyond (relative standard error ≈ 1/√32768 ≈ 0.6%).
 * Memory: 9 bytes per slot at load ≤ 1/2, ≈ 1.2 MB.
 */
export const DEFAULT_FINGERPRINT_CAPACITY = 1 << 16;

export type LatentVerdict = 'healthy' | 'suspect' | 'collapsed' | 'insufficient';

/** One bit of the latent: `bit` = token · 64 + index, as in unpackLatent. */
export interface LatentBitRef {
  bit: number;
  token: number;
  index: number;
}

export interface LatentStatsOptions {
  /** Dead-bit threshold ε (0 ≤ ε < 0.5); default DEFAULT_DEAD_EPSILON. */
  epsilon?: number;
  /** Distinct fingerprints held before sampling starts (≥ 16); default DEFAULT_FINGERPRINT_CAPACITY. */
  fingerprintCapacity?: number;
  /** At most this many bins in the ones-per-image histogram; default 16. */
  histogramBins?: number;
  /** Length of `leastUsedBits`; default 10. */
  leastUsed?: number;
}

export interface LatentStatsResult {
  images: number;
  epsilon: number;
  /** Fraction of images with the bit set, per bit (8192, token-major). 0 everywhere when no images. */
  bitOnesFraction: number[];
  /** Binary entropy of each bit in bits, H(p) = −p·log2 p − (1−p)·log2(1−p). */
  bitEntropy: number[];
  /** Fraction of ones per token (128), over its 64 bits and all images. */
  tokenOnesFraction: number[];
  /** Mean of the 64 bit entropies of each token. */
  tokenMeanEntropy: number[];
  meanBitEntropy: number;
  /** Sum of the bit entropies: an upper bound on the information per latent, in bits. */
  entropySumBits: number;
  /** Bits with the same value in every image. */
  constantBits: Array<LatentBitRef & { value: 0 | 1 }>;
  /** Bits with p < ε or p > 1−ε; includes the constant bits. */
  deadBits: Array<LatentBitRef & { onesFraction: number }>;
  /** Tokens all of whose bits are dead. */
  deadTokens: number[];
  /** The lowest-entropy bits, lowest first (ties by bit position). */
  leastUsedBits: Array<LatentBitRef & { onesFraction: number; entropy: number }>;
  /** Set bits per image (0..8192); bins cover min..max, `from` and `to` inclusive. */
  onesPerImage: { mean: number; std: number; min: number; max: number; binWidth: number; bins: Array<{ from: number; to: number; count: number }> };
  /** Distinct latents: exact while the fingerprint set had room, then estimated from a hash sample. */
  distinct: { estimate: number; share: number; exact: boolean };
  verdict: LatentVerdict;
  reasons: string[];
}

/** Plain typed arrays and numbers: what a worker posts to the thread that merges (structured clone). */
export interface LatentStatsState {
  images: number;
  bitCounts: Float64Array;
  onesCounts: Float64Array;
  fingerprintLevel: number;
  fingerprintsHi: Uint32Array;
  fingerprintsLo: Uint32Array;
}

/**
 * Bounded set of 64-bit latent fingerprints for counting distinct latents (adaptive distinct
 * sampling, Gibbons 2001): at level L it keeps only fingerprints whose top L bits are zero, and
 * when it outgrows its capacity it raises L and drops those that no longer qualify. Distinct
 * count ≈ size · 2^L, exact at L = 0. Two sets merge at the higher level, so per-shard sets
 * combine into the set one pass over all shards would have built.
 */
class FingerprintSample {
  level = 0;
  private hi: Uint32Array;
  private lo: Uint32Array;
  private used: Uint8Array;
  private n = 0;

  constructor(readonly capacity: number) {
    let slots = 2;
    while (slots < capacity * 2) slots *= 2;
    this.hi = new Uint32Array(slots);
    this.lo = new Uint32Array(slots);
    this.used = new Uint8Array(slots);
  }

  get estimate(): number {
    return this.n * 2 ** this.level;
  }

  add(hi: number, lo: number): void {
    if (this.level > 0 && hi >>> (32 - this.level) !== 0) return;
    if (!this.insert(hi, lo)) return;
    while (this.n > this.capacity) this.raise();
  }

  /** Entries as two parallel arrays, for state() and merge. */
  entries(): { hi: Uint32Array; lo: Uint32Array } {
    const hi = new Uint32Array(this.n);
    const lo = new Uint32Array(this.n);
    for (let s = 0, k = 0; s < this.used.length; s++) {
      if (!this.used[s]) continue;
      hi[k] = this.hi[s];
      lo[k++] = this.lo[s];
    }
    return { hi, lo };
  }

  absorb(level: number, hi: Uint32Array, lo: Uint32Array): void {
    while (this.level < level) this.raise();
    for (let i = 0; i < hi.length; i++) this.add(hi[i], lo[i]);
  }

  /** True when new. Slots come from the low word: the level filter looks at the high one. */
  private insert(hi: number, lo: number): boolean {
    const mask = this.used.length - 1;
    let s = lo & mask;
    while (this.used[s]) {
      if (this.hi[s] === hi && this.lo[s] === lo) return false;
      s = (s + 1) & mask;
    }
    this.used[s] = 1;
    this.hi[s] = hi;
    this.lo[s] = lo;
    this.n++;
    return true;
  }

  private raise(): void {
    const { hi, lo } = this.entries();
    this.level++;
    this.used.fill(0);
    this.n = 0;
    for (let i = 0; i < hi.length; i++) if (hi[i] >>> (32 - this.level) === 0) this.insert(hi[i], lo[i]);
  }
}

// Module-local copies for the hot loop: some loaders (tsx, vitest) turn imported bindings into getter calls.
const BYTES = LATENT_BYTES;
const WORDS = LATENT_BYTES / 4;
const BYTE_ONES = Uint8Array.from({ length: 256 }, (_, v) => popcount8(v));

const fmix32 = (h: number): number => {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
};

/** Binary entropy in bits; 0 at p = 0 and p = 1. */
export function binaryEntropy(p: number): number {
  if (p <= 0 || p >= 1) return 0;
  return -(p * Math.log2(p) + (1 - p) * Math.log2(1 - p));
}

const bitRef = (bit: number): LatentBitRef => ({ bit, token: Math.floor(bit / LATENT_BITS_PER_TOKEN), index: bit % LATENT_BITS_PER_TOKEN });

/**
 * Streaming statistics of packed latents (1024 bytes each, see latent-bits.ts): how often each
 * bit is set, ones per image, distinct latents, and a code-collapse verdict.
 *
 * add() never loops over single bits. Each latent is read as 256 32-bit words, and every word is
 * added into four accumulators of eight 4-bit counters (bit q of the word counts in nibble q/4
 * of accumulator q%4), so one image costs four shift-mask-adds per word (vertical popcount,
 * SWAR). Every 15 images the nibbles move into 8-bit counters, every 255 images those move
 * into float64 per-bit counts (exact up to 2^53 images). The working set is 12 KB and stays in
 * L1; a table of byte-value counts per position (1024 × 256) was measured 2–3× slower, its
 * 1024 scattered increments per image missing the cache. The ones per image come from a
 * per-byte popcount table, the fingerprint from two murmur3-style lanes over the same words.
 * merge() adds another accumulator's counts; the result is the one a single pass over both
 * inputs gives (the distinct estimate too, see FingerprintSample).
 */
export class LatentStats {
  private images = 0;
  /** Set count per bit (token-major), flushed from the counters below. */
  private readonly bitCounts = new Float64Array(LATENT_BITS);
  /** [word · 4 + k]: nibble n counts bit 4n + k of the word (little-endian word of bytes 4·word..4·word+3). */
  private readonly nibbleCounts = new Uint32Array(WORDS * 4);
  /** [word · 8 + j]: byte lane m counts bit 8m + j of the word. */
  private readonly byteCounts = new Uint32Array(WORDS * 8);
  /** Images in nibbleCounts (≤ 15) and in byteCounts (≤ 255), not yet in bitCounts. */
  private inNibbles = 0;
  private inBytes = 0;
  /** [set bits in a latent] → images. */
  private readonly onesCounts = new Float64Array(LATENT_BITS + 1);
  private readonly fingerprints: FingerprintSample;
  private readonly epsilon: number;
  private readonly histogramBins: number;
  private readonly leastUsed: number;

  constructor(opts: LatentStatsOptions = {}) {
    this.epsilon = opts.epsilon ?? DEFAULT_DEAD_EPSILON;
    if (!(this.epsilon >= 0 && this.epsilon < 0.5)) throw new RangeError(`LatentStats: epsilon must be in [0, 0.5), got ${opts.epsilon}`);
    const capacity = opts.fingerprintCapacity ?? DEFAULT_FINGERPRINT_CAPACITY;
    if (!Number.isInteger(capacity) || capacity < 16) throw new RangeError(`LatentStats: fingerprintCapacity must be an integer ≥ 16, got ${capacity}`);
    this.fingerprints = new FingerprintSample(capacity);
    this.histogramBins = opts.histogramBins ?? 16;
    if (!Number.isInteger(this.histogramBins) || this.histogramBins < 1) throw new RangeError(`LatentStats: histogramBins must be a positive integer, got ${opts.histogramBins}`);
    this.leastUsed = opts.leastUsed ?? 10;
  }

  /** Latents added so far (merged ones included). */
  get count(): number {
    return this.images;
  }

  /** Counts one packed latent (exactly LATENT_BYTES bytes). */
  add(latent: Uint8Array): void {
    if (latent.length !== LATENT_BYTES) throw new RangeError(`LatentStats.add: a latent is ${LATENT_BYTES} bytes, got ${latent.length}`);
    const acc = this.nibbleCounts;
    let ones = 0;
    let h1 = 0x9747b28c;
    let h2 = 0x5bd1e995;
    const pop = BYTE_ONES;
    for (let i = 0, a = 0; i < BYTES; i += 4, a += 4) {
      const b0 = latent[i];
      const b1 = latent[i + 1];
      const b2 = latent[i + 2];
      const b3 = latent[i + 3];
      // Little-endian by hand rather than a Uint32Array view: any byte offset, any platform, same fingerprints.
      const w = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24);
      acc[a] += w & 0x11111111;
      acc[a + 1] += (w >>> 1) & 0x11111111;
      acc[a + 2] += (w >>> 2) & 0x11111111;
      acc[a + 3] += (w >>> 3) & 0x11111111;
      ones += pop[b0] + pop[b1] + pop[b2] + pop[b3];
      let k1 = Math.imul(w, 0xcc9e2d51);
      k1 = Math.imul((k1 << 15) | (k1 >>> 17), 0x1b873593);
      h1 ^= k1;
      h1 = (Math.imul((h1 << 13) | (h1 >>> 19), 5) + 0xe6546b64) | 0;
      let k2 = Math.imul(w, 0x239b961b);
      k2 = Math.imul((k2 << 17) | (k2 >>> 15), 0xab0e9789);
      h2 ^= k2;
      h2 = (Math.imul((h2 << 15) | (h2 >>> 17), 5) + 0x38b34ae5) | 0;
    }
    if (++this.inNibbles === 15) this.flushNibbles();
    h1 += h2;
    h2 += h1;
    h1 = fmix32(h1);
    h2 = fmix32(h2);
    h1 = (h1 + h2) >>> 0;
    h2 = (h2 + h1) >>> 0;
    this.onesCounts[ones]++;
    this.images++;
    this.fingerprints.add(h1, h2);
  }

  /** Nibble counters into byte counters; those into bitCounts before a byte lane could pass 255. */
  private flushNibbles(): void {
    const nib = this.nibbleCounts;
    const byt = this.byteCounts;
    for (let word = 0; word < WORDS; word++) {
      for (let k = 0; k < 4; k++) {
        const v = nib[word * 4 + k];
        byt[word * 8 + k] += v & 0x0f0f0f0f;
        byt[word * 8 + 4 + k] += (v >>> 4) & 0x0f0f0f0f;
      }
    }
    nib.fill(0);
    this.inBytes += this.inNibbles;
    this.inNibbles = 0;
    if (this.inBytes > 255 - 15) this.flushBytes();
  }

  private flushBytes(): void {
    const byt = this.byteCounts;
    for (let word = 0; word < WORDS; word++) {
      for (let j = 0; j < 8; j++) {
        const v = byt[word * 8 + j];
        if (v === 0) continue;
        // Byte lane m holds bit 8m + j of the word: byte 4·word + m of the latent, j places from its least significant bit.
        for (let m = 0; m < 4; m++) this.bitCounts[(word * 4 + m) * 8 + 7 - j] += (v >>> (8 * m)) & 255;
      }
    }
    byt.fill(0);
    this.inBytes = 0;
  }

  private flush(): void {
    if (this.inNibbles) this.flushNibbles();
    if (this.inBytes) this.flushBytes();
  }

  /** Adds another accumulator's latents to this one (for per-shard stats computed in parallel); returns this. */
  merge(other: LatentStats | LatentStatsState): this {
    const s = other instanceof LatentStats ? other.state() : other;
    if (s.bitCounts.length !== LATENT_BITS || s.onesCounts.length !== LATENT_BITS + 1) throw new RangeError('LatentStats.merge: state has the wrong shape');
    this.flush();
    for (let i = 0; i < LATENT_BITS; i++) this.bitCounts[i] += s.bitCounts[i];
    for (let i = 0; i < s.onesCounts.length; i++) this.onesCounts[i] += s.onesCounts[i];
    this.images += s.images;
    this.fingerprints.absorb(s.fingerprintLevel, s.fingerprintsHi, s.fingerprintsLo);
    return this;
  }

  /** A copy of the counts, structured-clonable: post it from a worker and merge() it in the parent. */
  state(): LatentStatsState {
    this.flush();
    const { hi, lo } = this.fingerprints.entries();
    return {
      images: this.images,
      bitCounts: this.bitCounts.slice(),
      onesCounts: this.onesCounts.slice(),
      fingerprintLevel: this.fingerprints.level,
      fingerprintsHi: hi,
      fingerprintsLo: lo,
    };
  }

  /** The statistics of everything added and merged so far, with the verdict. */
  result(): LatentStatsResult {
    const n = this.images;
    const eps = this.epsilon;
    this.flush();
    const onesPerBit = this.bitCounts;

    const bitOnesFraction: number[] = new Array(LATENT_BITS);
    const bitEntropy: number[] = new Array(LATENT_BITS);
    const constantBits: LatentStatsResult['constantBits'] = [];
    const deadBits: LatentStatsResult['deadBits'] = [];
    const deadPerToken = new Array<number>(LATENT_TOKENS).fill(0);
    let entropySum = 0;
    for (let b = 0; b < LATENT_BITS; b++) {
      const p = n === 0 ? 0 : onesPerBit[b] / n;
      const h = binaryEntropy(p);
      bitOnesFraction[b] = p;
      bitEntropy[b] = h;
      entropySum += h;
      if (n === 0) continue;
      const constant = onesPerBit[b] === 0 || onesPerBit[b] === n;
      if (constant) constantBits.push({ ...bitRef(b), value: onesPerBit[b] === 0 ? 0 : 1 });
      if (constant || p < eps || p > 1 - eps) {
        deadBits.push({ ...bitRef(b), onesFraction: p });
        deadPerToken[Math.floor(b / LATENT_BITS_PER_TOKEN)]++;
      }
    }

    const tokenOnesFraction: number[] = new Array(LATENT_TOKENS);
    const tokenMeanEntropy: number[] = new Array(LATENT_TOKENS);
    for (let t = 0; t < LATENT_TOKENS; t++) {
      let ones = 0;
      let h = 0;
      for (let j = 0, b = t * LATENT_BITS_PER_TOKEN; j < LATENT_BITS_PER_TOKEN; j++, b++) {
        ones += onesPerBit[b];
        h += bitEntropy[b];
      }
      tokenOnesFraction[t] = n === 0 ? 0 : ones / (n * LATENT_BITS_PER_TOKEN);
      tokenMeanEntropy[t] = h / LATENT_BITS_PER_TOKEN;
    }
    const deadTokens = deadPerToken.flatMap((d, t) => (d === LATENT_BITS_PER_TOKEN ? [t] : []));

    const order = Array.from({ length: LATENT_BITS }, (_, b) => b).sort((a, b) => bitEntropy[a] - bitEntropy[b] || a - b);
    const leastUsedBits = order.slice(0, n === 0 ? 0 : this.leastUsed).map((b) => ({ ...bitRef(b), onesFraction: bitOnesFraction[b], entropy: bitEntropy[b] }));

    const onesPerImage = this.onesHistogram();
    const estimate = Math.min(this.fingerprints.estimate, n);
    const distinct = { estimate, share: n === 0 ? 0 : estimate / n, exact: this.fingerprints.level === 0 };
    const meanBitEntropy = entropySum / LATENT_BITS;
    const { verdict, reasons } = judge({ images: n, epsilon: eps, deadBits: deadBits.length, constantBits: constantBits.length, deadTokens, meanBitEntropy, distinct });
    return {
      images: n,
      epsilon: eps,
      bitOnesFraction,
      bitEntropy,
      tokenOnesFraction,
      tokenMeanEntropy,
      meanBitEntropy,
      entropySumBits: entropySum,
      constantBits,
      deadBits,
      deadTokens,
      leastUsedBits,
      onesPerImage,
      distinct,
      verdict,
      reasons,
    };
  }

  private onesHistogram(): LatentStatsResult['onesPerImage'] {
    const c = this.onesCounts;
    const n = this.images;
    if (n === 0) return { mean: 0, std: 0, min: 0, max: 0, binWidth: 1, bins: [] };
    let min = 0;
    while (c[min] === 0) min++;
    let max = LATENT_BITS;
    while (c[max] === 0) max--;
    let sum = 0;
    for (let k = min; k <= max; k++) sum += c[k] * k;
    const mean = sum / n;
    let sq = 0;
    for (let k = min; k <= max; k++) sq += c[k] * (k - mean) ** 2;
    const binWidth = Math.max(1, Math.ceil((max - min + 1) / this.histogramBins));
    const bins: Array<{ from: number; to: number; count: number }> = [];
    for (let from = min; from <= max; from += binWidth) {
      const to = Math.min(from + binWidth - 1, max);
      let count = 0;
      for (let k = from; k <= to; k++) count += c[k];
      bins.push({ from, to, count });
    }
    return { mean, std: Math.sqrt(sq / n), min, max, binWidth, bins };
  }
}

const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)}%`;

/** The verdict rules (see the threshold constants above), one reason per rule that fires. */
function judge(m: { images: number; epsilon: number; deadBits: number; constantBits: number; deadTokens: number[]; meanBitEntropy: number; distinct: LatentStatsResult['distinct'] }): { verdict: LatentVerdict; reasons: string[] } {
  if (m.images < VERDICT_MIN_IMAGES) return { verdict: 'insufficient', reasons: [`${m.images} latents; a verdict needs at least ${VERDICT_MIN_IMAGES}`] };
  const collapsed: string[] = [];
  const suspect: string[] = [];
  const deadShare = m.deadBits / LATENT_BITS;
  const deadText = `${m.deadBits} of ${LATENT_BITS} bits dead (${pct(deadShare)}, ${m.constantBits} constant; ε = ${m.epsilon})`;
  if (deadShare >= COLLAPSED_DEAD_SHARE) collapsed.push(`${deadText} ≥ ${pct(COLLAPSED_DEAD_SHARE, 0)}`);
  else if (deadShare >= SUSPECT_DEAD_SHARE) suspect.push(`${deadText} ≥ ${pct(SUSPECT_DEAD_SHARE, 0)}`);
  const entropyText = `mean bit entropy ${m.meanBitEntropy.toFixed(3)} bits`;
  if (m.meanBitEntropy < COLLAPSED_MEAN_ENTROPY) collapsed.push(`${entropyText} < ${COLLAPSED_MEAN_ENTROPY}`);
  else if (m.meanBitEntropy < SUSPECT_MEAN_ENTROPY) suspect.push(`${entropyText} < ${SUSPECT_MEAN_ENTROPY}`);
  const distinctText = `${m.distinct.exact ? '' : '~'}${pct(m.distinct.share, 2)} of latents distinct (${m.distinct.exact ? '' : '~'}${Math.round(m.distinct.estimate)} of ${m.images}): duplicate images or an encoder mapping different images to one code`;
  if (m.distinct.share < COLLAPSED_DISTINCT_SHARE) collapsed.push(`${distinctText}; < ${pct(COLLAPSED_DISTINCT_SHARE, 0)}`);
  else if (m.distinct.share < SUSPECT_DISTINCT_SHARE) suspect.push(`${distinctText}; < ${pct(SUSPECT_DISTINCT_SHARE, 0)}`);
  if (m.deadTokens.length > 0) suspect.push(`${m.deadTokens.length} token(s) with all ${LATENT_BITS_PER_TOKEN} bits dead: ${m.deadTokens.slice(0, 8).join(', ')}${m.deadTokens.length > 8 ? ', …' : ''}`);
  if (collapsed.length) return { verdict: 'collapsed', reasons: [...collapsed, ...suspect] };
  if (suspect.length) return { verdict: 'suspect', reasons: suspect };
  return { verdict: 'healthy', reasons: [] };
}

const BAR_WIDTH = 40;

/** A compact terminal summary of a LatentStatsResult (what `bitprep latents stats` prints). */
export function formatLatentStats(r: LatentStatsResult): string {
  const int = (x: number) => Math.round(x).toLocaleString('en-US');
  const o = r.onesPerImage;
  const constOnes = r.constantBits.filter((b) => b.value === 1).length;
  const lines = [
    `latents: ${int(r.images)}   distinct: ${r.distinct.exact ? '' : '~'}${int(r.distinct.estimate)} (${pct(r.distinct.share, 2)}${r.distinct.exact ? '' : ', estimated'})`,
    `ones per image: mean ${o.mean.toFixed(1)}  std ${o.std.toFixed(1)}  min ${o.min}  max ${o.max}  (of ${LATENT_BITS})`,
    `bit entropy: mean ${r.meanBitEntropy.toFixed(4)} bits, sum ${r.entropySumBits.toFixed(1)} bits per latent`,
    `dead bits (p < ${r.epsilon} or p > ${1 - r.epsilon}): ${r.deadBits.length} (${pct(r.deadBits.length / LATENT_BITS, 2)}); constant: ${r.constantBits.length} (${r.constantBits.length - constOnes} always 0, ${constOnes} always 1); dead tokens: ${r.deadTokens.length}`,
    `verdict: ${r.verdict.toUpperCase()}`,
    ...r.reasons.map((x) => `  - ${x}`),
  ];
  if (o.bins.length) {
    lines.push('ones per image:');
    const top = Math.max(...o.bins.map((b) => b.count));
    const labels = o.bins.map((b) => (b.from === b.to ? `${b.from}` : `${b.from}–${b.to}`));
    const pad = Math.max(...labels.map((l) => l.length));
    o.bins.forEach((b, i) => {
      const len = Math.round((b.count / top) * BAR_WIDTH);
      // A non-empty bin never draws blank, however small next to the tallest.
      const bar = len > 0 ? '█'.repeat(len) : b.count > 0 ? '▏' : '';
      lines.push(`  ${labels[i].padStart(pad)} │${bar.padEnd(BAR_WIDTH)} ${int(b.count)}`);
    });
  }
  if (r.leastUsedBits.length) {
    lines.push('least-used bits (token:bit  p(1)  entropy):');
    for (const b of r.leastUsedBits.slice(0, 10)) lines.push(`  t${b.token}:b${b.index}  ${b.onesFraction.toFixed(4)}  ${b.entropy.toFixed(4)}`);
  }
  return lines.join('\n');
}
