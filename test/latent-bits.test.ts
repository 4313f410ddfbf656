import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hammingDistance, LATENT_BITS, LATENT_BYTES, packBits, packLogits, unpackLatent } from '../src/formats/latent-bits.js';
import { seededRandom } from '../src/seeded-random.js';

/**
 * Logits that both numpy and this test compute exactly: ((i·7919) mod 257) − 128, with every
 * 97th set to exactly 0 (which must pack as 0: the bit is logit > 0, strictly).
 */
function fixedLogits(): Float32Array {
  const l = new Float32Array(LATENT_BITS);
  for (let i = 0; i < LATENT_BITS; i++) l[i] = i % 97 === 0 ? 0 : ((i * 7919) % 257) - 128;
  return l;
}

describe('bit order: logits [128, 64] → 1024 bytes, as numpy.packbits', () => {
  it('packs fixed logits to the bytes numpy.packbits((logits > 0).reshape(-1)) gives', () => {
    // Computed once with Debian's python3-numpy, independently of this code:
    //   i = np.arange(8192, dtype=np.float64); l = ((i*7919) % 257) - 128.0; l[::97] = 0
    //   b = np.packbits((l.reshape(128, 64) > 0).reshape(-1))
    const packed = packLogits(fixedLogits());
    expect(packed.length).toBe(LATENT_BYTES);
    expect(Buffer.from(packed.subarray(0, 24)).toString('hex')).toBe('639c639c639c639c639c638c338c738c738c738c738e718e');
    expect(Buffer.from(packed.subarray(-8)).toString('hex')).toBe('e71ce31ce31ce31c');
    expect(createHash('sha256').update(packed).digest('hex')).toBe('157ab8530d4aa51fc48bfb216ece85708f9df5a6bc2f2782d401f5f650f8cd79');
    const ones = unpackLatent(packed).reduce((a, b) => a + b, 0);
    expect(ones).toBe(4038);
  });

  it('reads logits at an offset (one image of a batch) and refuses too few', () => {
    const batch = new Float32Array(3 * LATENT_BITS).fill(-1);
    batch.set(fixedLogits(), LATENT_BITS);
    expect(Buffer.from(packLogits(batch, LATENT_BITS))).toEqual(Buffer.from(packLogits(fixedLogits())));
    expect(packLogits(batch, 0).every((b) => b === 0)).toBe(true);
    expect(() => packLogits(batch, 2 * LATENT_BITS + 1)).toThrow(/need 8192 logits/);
  });

  it('unpack(pack(x)) = x for random bits, token-major, most significant bit first', () => {
    const r = seededRandom(11);
    for (let k = 0; k < 20; k++) {
      const bits = Uint8Array.from({ length: LATENT_BITS }, () => (r() < 0.5 ? 1 : 0));
      const packed = packBits(bits);
      expect(Buffer.from(unpackLatent(packed))).toEqual(Buffer.from(bits));
      // Bit j of token t is bit (t·64 + j): byte (t·8 + j/8), mask 128 >> (j mod 8).
      const t = Math.floor(r() * 128), j = Math.floor(r() * 64);
      expect((packed[t * 8 + (j >> 3)] >> (7 - (j & 7))) & 1).toBe(bits[t * 64 + j]);
      // packLogits agrees with packBits on logits of the same signs.
      expect(Buffer.from(packLogits(Float32Array.from(bits, (b) => (b ? 0.5 : -0.5))))).toEqual(Buffer.from(packed));
    }
  });

  it('Hamming distance matches a bit-by-bit count, aligned or not', () => {
    const r = seededRandom(5);
    const a = Uint8Array.from({ length: LATENT_BYTES }, () => Math.floor(r() * 256));
    const b = Uint8Array.from({ length: LATENT_BYTES }, () => Math.floor(r() * 256));
    const ua = unpackLatent(a), ub = unpackLatent(b);
    let naive = 0;
    for (let i = 0; i < LATENT_BITS; i++) naive += ua[i] ^ ub[i];
    expect(hammingDistance(a, b)).toBe(naive);
    const shifted = new Uint8Array(LATENT_BYTES + 1);
    shifted.set(a, 1);
    expect(hammingDistance(shifted.subarray(1), b)).toBe(naive);
    expect(hammingDistance(a, a)).toBe(0);
  });
});
