/** The BIT tokenizer's latent: 128 tokens × 64 binary values. */
export const LATENT_TOKENS = 128;
export const LATENT_BITS_PER_TOKEN = 64;
/** Bits per image (8192). */
export const LATENT_BITS = LATENT_TOKENS * LATENT_BITS_PER_TOKEN;
/** Packed bytes per image (1024). */
export const LATENT_BYTES = LATENT_BITS / 8;
/** Named in latent manifests and shard metadata, so a reader can refuse an order it does not know. */
export const BIT_ORDER = 'logit>0; token-major [128,64] row-major; 8 bits per byte, most significant first (numpy.packbits)';

/**
 * Packs one image's logits `[128, 64]` (row-major, from `offset`) into 1024 bytes: bit = logit > 0
 * (the reference tokenizer's sigmoid(x) > 0.5), token-major, most significant bit first — exactly
 * `numpy.packbits((logits > 0).reshape(-1))`, so a trainer unpacks with
 * `numpy.unpackbits(buf).reshape(128, 64)`. NaN logits pack as 0 (NaN > 0 is false), like numpy.
 */
export function packLogits(logits: ArrayLike<number>, offset = 0, out = new Uint8Array(LATENT_BYTES)): Uint8Array {
  if (logits.length - offset < LATENT_BITS) throw new RangeError(`packLogits: need ${LATENT_BITS} logits from offset ${offset}, have ${logits.length - offset}`);
  for (let byte = 0, i = offset; byte < LATENT_BYTES; byte++, i += 8) {
    out[byte] =
      (logits[i] > 0 ? 128 : 0) |
      (logits[i + 1] > 0 ? 64 : 0) |
      (logits[i + 2] > 0 ? 32 : 0) |
      (logits[i + 3] > 0 ? 16 : 0) |
      (logits[i + 4] > 0 ? 8 : 0) |
      (logits[i + 5] > 0 ? 4 : 0) |
      (logits[i + 6] > 0 ? 2 : 0) |
      (logits[i + 7] > 0 ? 1 : 0);
  }
  return out;
}

/** Packs 8192 bits given as 0/1 values (any nonzero is 1), in the same order as packLogits. */
export function packBits(bits: ArrayLike<number>): Uint8Array {
  if (bits.length !== LATENT_BITS) throw new RangeError(`packBits: need ${LATENT_BITS} bits, got ${bits.length}`);
  const out = new Uint8Array(LATENT_BYTES);
  for (let i = 0; i < LATENT_BITS; i++) if (bits[i]) out[i >> 3] |= 128 >> (i & 7);
  return out;
}

/** The 8192 bits (0/1) of a packed latent, token-major: bit j of token t is at t * 64 + j. */
export function unpackLatent(packed: Uint8Array): Uint8Array {
  if (packed.length !== LATENT_BYTES) throw new RangeError(`unpackLatent: a latent is ${LATENT_BYTES} bytes, got ${packed.length}`);
  const out = new Uint8Array(LATENT_BITS);
  for (let i = 0; i < LATENT_BITS; i++) out[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

const POPCOUNT = new Uint8Array(256).map((_, i) => {
  let n = 0;
  for (let x = i; x; x >>= 1) n += x & 1;
  return n;
});

/** Number of set bits in a byte. */
export function popcount8(x: number): number {
  return POPCOUNT[x & 255];
}

/** Hamming distance between two packed latents (or any equal-length byte strings). */
export function hammingDistance(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`hammingDistance: lengths differ (${a.length} vs ${b.length})`);
  let d = 0;
  // 32-bit words where both views are aligned: ~4× fewer steps than bytes.
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0 && a.length % 4 === 0) {
    const wa = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    const wb = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < wa.length; i++) {
      let x = wa[i] ^ wb[i];
      x -= (x >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      d += (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return d;
  }
  for (let i = 0; i < a.length; i++) d += POPCOUNT[a[i] ^ b[i]];
  return d;
}
