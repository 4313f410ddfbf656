import type { RawImage } from '../sample.js';
import { popcount32 } from '../popcount.js';
import { resize } from './pil-resize.js';

/**
 * The 64-bit DCT perceptual hash as the `imagehash` Python package computes it (`phash`,
 * hash_size 8, highfreq_factor 4), so hashes and thresholds carry over between the two:
 * Pillow's `convert('L')` (ITU-R 601-2 luma in Pillow's fixed point), a 32×32 LANCZOS resize
 * (pil-resize.ts, Pillow's own arithmetic), a 2-D DCT-II (scipy.fftpack.dct's unnormalised
 * form, rows then columns), the 8×8 lowest frequencies, each bit set where the coefficient is
 * above their median. Bits are in row-major order of those 8×8, the first bit the most
 * significant of the first byte (imagehash's hex string).
 *
 * Two pictures within a few bits are the same picture re-encoded, resized or lightly edited;
 * unrelated photographs are ~32 bits apart.
 */
export const PHASH_BITS = 64;

const N = 32;
const LOW = 8;

/** cos(π k (2n + 1) / 2N) for the 8 lowest k: the only DCT rows the hash reads. */
const COS = (() => {
  const t = new Float64Array(LOW * N);
  for (let k = 0; k < LOW; k++) for (let n = 0; n < N; n++) t[k * N + n] = Math.cos((Math.PI * k * (2 * n + 1)) / (2 * N));
  return t;
})();

/** Pillow's RGB → L: (R·19595 + G·38470 + B·7471 + 0x8000) >> 16 (Convert.c L24). */
function toGrey(img: RawImage): RawImage {
  if (img.channels === 1) return img;
  if (img.channels !== 3) throw new Error(`phash: a ${img.channels}-channel image (give RGB or grey)`);
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  const d = img.data;
  for (let i = 0; i < n; i++) out[i] = (d[i * 3] * 19595 + d[i * 3 + 1] * 38470 + d[i * 3 + 2] * 7471 + 0x8000) >>> 16;
  return { data: out, width: img.width, height: img.height, channels: 1 };
}

/** The hash of an RGB or grey image: 8 bytes. */
export function perceptualHash(img: RawImage): Uint8Array {
  const small = resize(toGrey(img), N, N, 'lanczos');
  const px = small.data;
  // DCT along axis 0 (down each column), then along axis 1, keeping only the 8 lowest of each.
  const cols = new Float64Array(LOW * N);
  for (let k = 0; k < LOW; k++) {
    for (let x = 0; x < N; x++) {
      let s = 0;
      for (let y = 0; y < N; y++) s += px[y * N + x] * COS[k * N + y];
      cols[k * N + x] = 2 * s;
    }
  }
  const low = new Float64Array(LOW * LOW);
  for (let k = 0; k < LOW; k++) {
    for (let l = 0; l < LOW; l++) {
      let s = 0;
      for (let x = 0; x < N; x++) s += cols[k * N + x] * COS[l * N + x];
      low[k * LOW + l] = 2 * s;
    }
  }
  const sorted = Float64Array.from(low).sort();
  const median = (sorted[31] + sorted[32]) / 2;
  const out = new Uint8Array(LOW);
  for (let i = 0; i < 64; i++) if (low[i] > median) out[i >> 3] |= 0x80 >> (i & 7);
  return out;
}

/** Bits that differ between two 8-byte hashes. */
export function hashDistance(a: Uint8Array, b: Uint8Array): number {
  const word = (h: Uint8Array, at: number) => ((h[at] << 24) | (h[at + 1] << 16) | (h[at + 2] << 8) | h[at + 3]) >>> 0;
  return popcount32((word(a, 0) ^ word(b, 0)) >>> 0) + popcount32((word(a, 4) ^ word(b, 4)) >>> 0);
}
