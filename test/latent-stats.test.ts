import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { latentsGridPng, latentToPng } from '../stages/latent-picture.js';
import { binaryEntropy, COLLAPSED_DISTINCT_SHARE, formatLatentStats, LatentStats, SUSPECT_DEAD_SHARE, VERDICT_MIN_IMAGES, type LatentStatsResult } from '../stages/latent-stats.js';
import { LATENT_BITS, LATENT_BYTES, packBits, unpackLatent } from '../src/formats/latent-bits.js';
import { seededRandom } from '../src/seeded-random.js';

/** 8192 bits, each 1 with probability p unless `fix` says otherwise. */
function randomBits(rnd: () => number, fix: (bit: number) => 0 | 1 | undefined = () => undefined, p = 0.5): Uint8Array {
  const bits = new Uint8Array(LATENT_BITS);
  for (let b = 0; b < LATENT_BITS; b++) bits[b] = fix(b) ?? (rnd() < p ? 1 : 0);
  return bits;
}

const randomLatents = (n: number, seed: number, fix?: (bit: number) => 0 | 1 | undefined) => {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => packBits(randomBits(rnd, fix)));
};

function statsOf(latents: Uint8Array[], opts?: ConstructorParameters<typeof LatentStats>[0]): LatentStatsResult {
  const s = new LatentStats(opts);
  for (const l of latents) s.add(l);
  return s.result();
}

/** Per-bit counts and ones per image the slow, obvious way. */
function direct(latents: Uint8Array[]) {
  const counts = new Float64Array(LATENT_BITS);
  const perImage: number[] = [];
  for (const l of latents) {
    const bits = unpackLatent(l);
    let ones = 0;
    for (let b = 0; b < LATENT_BITS; b++) {
      counts[b] += bits[b];
      ones += bits[b];
    }
    perImage.push(ones);
  }
  return { counts, perImage };
}

// Planted: always-0 and always-1 bits, a dead-ish bit (1 image in 2000: p = 0.0005 < ε), a rare
// but live bit (4 in 2000: p = 0.002 > ε), the rest fair coins.
const N = 2000;
const ZEROS = [0, 100, 4095, 8191];
const ONES = [1, 777, 5000];
const DEAD = 2048;
const RARE = 3000;
function planted(): Uint8Array[] {
  const rnd = seededRandom(7);
  return Array.from({ length: N }, (_, i) =>
    packBits(
      randomBits(rnd, (b) => {
        if (ZEROS.includes(b)) return 0;
        if (ONES.includes(b)) return 1;
        if (b === DEAD) return i === 500 ? 1 : 0;
        if (b === RARE) return i % 500 === 3 ? 1 : 0;
        return undefined;
      }),
    ),
  );
}

describe('LatentStats on planted data', () => {
  const latents = planted();
  const r = statsOf(latents);
  const ref = direct(latents);

  it('gives exact per-bit fractions and float64 entropies, per bit and per token', () => {
    expect(r.images).toBe(N);
    for (let b = 0; b < LATENT_BITS; b++) {
      expect(r.bitOnesFraction[b]).toBe(ref.counts[b] / N);
      const p = ref.counts[b] / N;
      const h = p === 0 || p === 1 ? 0 : -p * Math.log2(p) - (1 - p) * Math.log2(1 - p);
      expect(r.bitEntropy[b]).toBeCloseTo(h, 12);
    }
    expect(r.bitOnesFraction[DEAD]).toBe(1 / N);
    expect(r.bitOnesFraction[RARE]).toBe(4 / N);
    expect(r.bitEntropy[ONES[0]]).toBe(0);
    for (let t = 0; t < 128; t++) {
      let ones = 0;
      let h = 0;
      for (let j = 0; j < 64; j++) {
        ones += ref.counts[t * 64 + j];
        h += binaryEntropy(ref.counts[t * 64 + j] / N);
      }
      expect(r.tokenOnesFraction[t]).toBeCloseTo(ones / (64 * N), 12);
      expect(r.tokenMeanEntropy[t]).toBeCloseTo(h / 64, 12);
    }
    const sum = r.bitEntropy.reduce((a, b) => a + b, 0);
    expect(r.entropySumBits).toBeCloseTo(sum, 9);
    expect(r.meanBitEntropy).toBeCloseTo(sum / LATENT_BITS, 12);
  });

  it('lists the constant and dead bits with token and index', () => {
    const constant = [...ZEROS.map((bit) => ({ bit, value: 0 })), ...ONES.map((bit) => ({ bit, value: 1 }))].sort((a, b) => a.bit - b.bit);
    expect(r.constantBits).toEqual(constant.map(({ bit, value }) => ({ bit, token: Math.floor(bit / 64), index: bit % 64, value })));
    expect(r.constantBits.find((b) => b.bit === 5000)).toEqual({ bit: 5000, token: 78, index: 8, value: 1 });
    expect(r.deadBits.map((b) => b.bit)).toEqual([...ZEROS, ...ONES, DEAD].sort((a, b) => a - b));
    expect(r.deadBits.find((b) => b.bit === DEAD)).toEqual({ bit: DEAD, token: 32, index: 0, onesFraction: 1 / N });
    expect(r.deadTokens).toEqual([]);
    // The seven constant bits (entropy 0, by position), then the dead-ish one, then the rare one.
    expect(r.leastUsedBits.map((b) => b.bit)).toEqual([0, 1, 100, 777, 4095, 5000, 8191, DEAD, RARE, ...r.leastUsedBits.slice(9).map((b) => b.bit)]);
    expect(r.leastUsedBits).toHaveLength(10);
  });

  it('a larger ε makes the rare bit dead too', () => {
    const wide = statsOf(latents, { epsilon: 0.005 });
    expect(wide.deadBits.map((b) => b.bit)).toContain(RARE);
    expect(wide.constantBits).toEqual(r.constantBits);
  });

  it('summarises ones per image exactly, with a histogram that counts every image once', () => {
    const o = r.onesPerImage;
    const mean = ref.perImage.reduce((a, b) => a + b, 0) / N;
    const std = Math.sqrt(ref.perImage.reduce((a, b) => a + (b - mean) ** 2, 0) / N);
    expect(o.mean).toBeCloseTo(mean, 9);
    expect(o.std).toBeCloseTo(std, 9);
    expect(o.min).toBe(Math.min(...ref.perImage));
    expect(o.max).toBe(Math.max(...ref.perImage));
    expect(o.bins.reduce((a, b) => a + b.count, 0)).toBe(N);
    expect(o.bins.length).toBeLessThanOrEqual(16);
    expect(o.bins[0].from).toBe(o.min);
    expect(o.bins.at(-1)!.to).toBe(o.max);
    for (let i = 1; i < o.bins.length; i++) expect(o.bins[i].from).toBe(o.bins[i - 1].to + 1);
    for (const bin of o.bins) expect(bin.count).toBe(ref.perImage.filter((k) => k >= bin.from && k <= bin.to).length);
  });

  it('counts distinct latents exactly while the fingerprints fit, and calls the code healthy', () => {
    expect(r.distinct).toEqual({ estimate: N, share: 1, exact: true });
    expect(r.verdict).toBe('healthy');
    expect(r.reasons).toEqual([]);
  });

  it('merge(a, b) equals one pass over the union, also through a structured clone of the state', () => {
    const a = new LatentStats();
    const b = new LatentStats();
    latents.slice(0, 733).forEach((l) => a.add(l));
    latents.slice(733).forEach((l) => b.add(l));
    expect(a.merge(b).result()).toEqual(r);

    const c = new LatentStats();
    const d = new LatentStats();
    latents.slice(0, 1500).forEach((l) => c.add(l));
    latents.slice(1500).forEach((l) => d.add(l));
    c.merge(structuredClone(d.state()));
    expect(c.count).toBe(N);
    expect(c.result()).toEqual(r);
  });

  it('formats a compact summary', () => {
    const text = formatLatentStats(r);
    expect(text).toContain('latents: 2,000');
    expect(text).toContain('verdict: HEALTHY');
    expect(text).toContain('dead bits (p < 0.001 or p > 0.999): 8');
    expect(text).toContain('constant: 7 (4 always 0, 3 always 1)');
    expect(text).toContain('  t0:b0  0.0000  0.0000');
    expect(text).toContain('  t78:b8  1.0000  0.0000');
    const lines = text.split('\n');
    const hist = lines.indexOf('ones per image:');
    const least = lines.findIndex((l) => l.startsWith('least-used bits'));
    expect(least - hist - 1).toBe(r.onesPerImage.bins.length);
    expect(lines.length - least - 1).toBe(10);
  });
});

describe('LatentStats verdicts', () => {
  it('random latents: healthy', () => {
    const r = statsOf(randomLatents(500, 1));
    expect(r.verdict).toBe('healthy');
    expect(r.constantBits).toEqual([]);
    expect(r.meanBitEntropy).toBeGreaterThan(0.99);
  });

  it('all-identical latents: collapsed, for every reason that applies', () => {
    const one = randomLatents(1, 2)[0];
    const r = statsOf(Array.from({ length: 500 }, () => one));
    expect(r.verdict).toBe('collapsed');
    expect(r.constantBits).toHaveLength(LATENT_BITS);
    expect(r.deadTokens).toHaveLength(128);
    expect(r.distinct).toEqual({ estimate: 1, share: 1 / 500, exact: true });
    expect(r.meanBitEntropy).toBe(0);
    expect(r.reasons.join('\n')).toMatch(/8192 of 8192 bits dead/);
    expect(r.reasons.join('\n')).toMatch(/mean bit entropy 0\.000 bits < 0\.1/);
    expect(r.reasons.join('\n')).toMatch(/0\.20% of latents distinct/);
    expect(formatLatentStats(r)).toContain('verdict: COLLAPSED');
  });

  it('half the bits constant (tokens 0–63 all zero): suspect, not collapsed', () => {
    const r = statsOf(randomLatents(500, 3, (b) => (b < LATENT_BITS / 2 ? 0 : undefined)));
    expect(r.verdict).toBe('suspect');
    expect(r.constantBits).toHaveLength(LATENT_BITS / 2);
    expect(r.deadBits.length / LATENT_BITS).toBeGreaterThanOrEqual(SUSPECT_DEAD_SHARE);
    expect(r.deadTokens).toEqual(Array.from({ length: 64 }, (_, t) => t));
    expect(r.meanBitEntropy).toBeCloseTo(0.5, 2);
    expect(r.reasons).toHaveLength(3);
  });

  it('one dead token alone is suspect', () => {
    const r = statsOf(randomLatents(500, 4, (b) => (b >= 64 * 9 && b < 64 * 10 ? 1 : undefined)));
    expect(r.verdict).toBe('suspect');
    expect(r.deadTokens).toEqual([9]);
    expect(r.reasons).toEqual([expect.stringMatching(/^1 token\(s\) with all 64 bits dead: 9$/)]);
  });

  it('too few latents: insufficient; none: empty, without throwing', () => {
    expect(statsOf(randomLatents(VERDICT_MIN_IMAGES - 1, 5)).verdict).toBe('insufficient');
    const empty = statsOf([]);
    expect(empty.verdict).toBe('insufficient');
    expect(empty.constantBits).toEqual([]);
    expect(empty.onesPerImage.bins).toEqual([]);
    expect(formatLatentStats(empty)).toContain('latents: 0');
  });
});

describe('LatentStats distinct estimate beyond the fingerprint capacity', () => {
  // Distinct latents made cheaply: a counter in the first bytes of an otherwise fixed random latent.
  const base = randomLatents(1, 9)[0];
  const numbered = (i: number) => {
    const l = base.slice();
    l[0] = i & 255;
    l[1] = (i >> 8) & 255;
    l[2] = (i >> 16) & 255;
    return l;
  };

  it('samples, and stays within a few percent, duplicates and merges included', () => {
    const s = new LatentStats({ fingerprintCapacity: 1024 });
    for (let i = 0; i < 20_000; i++) s.add(numbered(i));
    for (let i = 0; i < 20_000; i += 2) s.add(numbered(i));
    const r = s.result();
    expect(r.images).toBe(30_000);
    expect(r.distinct.exact).toBe(false);
    expect(Math.abs(r.distinct.estimate - 20_000) / 20_000).toBeLessThan(0.1);

    // Shards overlapping by half: the merged estimate counts the overlap once.
    const a = new LatentStats({ fingerprintCapacity: 1024 });
    const b = new LatentStats({ fingerprintCapacity: 1024 });
    for (let i = 0; i < 15_000; i++) a.add(numbered(i));
    for (let i = 5_000; i < 20_000; i++) b.add(numbered(i));
    const m = a.merge(b).result();
    expect(Math.abs(m.distinct.estimate - 20_000) / 20_000).toBeLessThan(0.1);
    expect(m.distinct.share).toBeGreaterThan(COLLAPSED_DISTINCT_SHARE);
    expect(m.distinct.share).toBeLessThan(0.8);
  });

  it('fingerprints ignore the byte offset of the view', () => {
    const l = numbered(42);
    const shifted = new Uint8Array(LATENT_BYTES + 3);
    shifted.set(l, 3);
    const s = new LatentStats();
    s.add(l);
    s.add(shifted.subarray(3));
    expect(s.result().distinct.estimate).toBe(1);
  });

  it('refuses a latent of the wrong size and bad options', () => {
    expect(() => new LatentStats().add(new Uint8Array(1023))).toThrow(/1024 bytes/);
    expect(() => new LatentStats({ epsilon: 0.5 })).toThrow(RangeError);
    expect(() => new LatentStats({ fingerprintCapacity: 3 })).toThrow(RangeError);
  });
});

describe('latent pictures', () => {
  const patternBit = (t: number, j: number) => ((t + j) % 3 === 0 ? 1 : 0);
  const pattern = () => {
    const bits = new Uint8Array(LATENT_BITS);
    for (let t = 0; t < 128; t++) for (let j = 0; j < 64; j++) bits[t * 64 + j] = patternBit(t, j);
    return packBits(bits);
  };

  async function pixels(png: Buffer) {
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    return { at: (x: number, y: number) => data[(y * info.width + x) * info.channels], width: info.width, height: info.height };
  }

  it('draws token t as row t and bit j as column j, black 0 and white 1, upscaled by nearest neighbour', async () => {
    const scale = 3;
    const png = await latentToPng(pattern(), { scale });
    const meta = await sharp(png).metadata();
    expect(meta.format).toBe('png');
    expect([meta.width, meta.height]).toEqual([64 * scale, 128 * scale]);
    const img = await pixels(png);
    const got: number[] = [];
    const want: number[] = [];
    for (let y = 0; y < img.height; y++) {
      for (let x = 0; x < img.width; x++) {
        got.push(img.at(x, y));
        want.push(patternBit(Math.floor(y / scale), Math.floor(x / scale)) ? 255 : 0);
      }
    }
    expect(got).toEqual(want);
  });

  it('defaults to scale 4 and refuses bad scales and sizes', async () => {
    const meta = await sharp(await latentToPng(pattern())).metadata();
    expect([meta.width, meta.height]).toEqual([256, 512]);
    await expect(latentToPng(pattern(), { scale: 1.5 })).rejects.toThrow(RangeError);
    await expect(latentToPng(new Uint8Array(10))).rejects.toThrow(/1024 bytes/);
  });

  it('lays several latents out in a grid with grey gaps', async () => {
    const zeros = new Uint8Array(LATENT_BYTES);
    const ones = new Uint8Array(LATENT_BYTES).fill(255);
    const img = await pixels(await latentsGridPng([zeros, ones, pattern()], 2, { scale: 1 }));
    expect([img.width, img.height]).toEqual([2 * 65 - 1, 2 * 129 - 1]);
    expect(img.at(10, 10)).toBe(0); // tile 0
    expect(img.at(64, 10)).toBe(128); // gap between columns
    expect(img.at(65 + 10, 10)).toBe(255); // tile 1
    expect(img.at(10, 128)).toBe(128); // gap between rows
    for (let t = 0; t < 128; t++) for (let j = 0; j < 64; j++) expect(img.at(j, 129 + t)).toBe(patternBit(t, j) ? 255 : 0); // tile 2
    expect(img.at(65 + 10, 129 + 10)).toBe(128); // no fourth latent
  });
});
