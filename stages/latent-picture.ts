import sharp from 'sharp';
import { LATENT_BITS_PER_TOKEN, LATENT_BYTES, LATENT_TOKENS } from '../src/formats/latent-bits.js';

/** Largest scale accepted: a 64 × 128 latent at 64× is already 4096 × 8192 pixels. */
const MAX_SCALE = 64;
/** Separator between tiles of a grid: mid grey, so it reads as neither a 0 nor a 1 bit. */
const GAP_GREY = 128;

export interface LatentPictureOptions {
  /** Integer upscale factor, nearest neighbour; default 4. */
  scale?: number;
}

function checkScale(scale: number): number {
  if (!Number.isInteger(scale) || scale < 1 || scale > MAX_SCALE) throw new RangeError(`latent picture: scale must be an integer in 1..${MAX_SCALE}, got ${scale}`);
  return scale;
}

/** Writes one latent's bits as 0/255 grey pixels into `out` (row stride `stride`) at (x0, y0). */
function drawLatent(latent: Uint8Array, out: Uint8Array, stride: number, x0: number, y0: number): void {
  if (latent.length !== LATENT_BYTES) throw new RangeError(`latent picture: a latent is ${LATENT_BYTES} bytes, got ${latent.length}`);
  for (let t = 0; t < LATENT_TOKENS; t++) {
    const row = (y0 + t) * stride + x0;
    for (let j = 0; j < LATENT_BITS_PER_TOKEN; j++) {
      const i = t * LATENT_BITS_PER_TOKEN + j;
      out[row + j] = (latent[i >> 3] >> (7 - (i & 7))) & 1 ? 255 : 0;
    }
  }
}

async function greyPng(pixels: Uint8Array, width: number, height: number, scale: number): Promise<Buffer> {
  return sharp(pixels, { raw: { width, height, channels: 1 } })
    .resize(width * scale, height * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/**
 * A picture of one packed latent: 128 rows (tokens) × 64 columns (bits of the token), black = 0
 * and white = 1, each bit a `scale` × `scale` square; an 8-bit greyscale PNG of
 * (64·scale) × (128·scale) pixels (width × height).
 */
export async function latentToPng(latent: Uint8Array, opts: LatentPictureOptions = {}): Promise<Buffer> {
  const scale = checkScale(opts.scale ?? 4);
  const pixels = new Uint8Array(LATENT_TOKENS * LATENT_BITS_PER_TOKEN);
  drawLatent(latent, pixels, LATENT_BITS_PER_TOKEN, 0, 0);
  return greyPng(pixels, LATENT_BITS_PER_TOKEN, LATENT_TOKENS, scale);
}

/**
 * Several latents side by side, `columns` per row in the order given, as one greyscale PNG:
 * tile (r, c) holds latent r·columns + c drawn as latentToPng draws it, with a one-bit-wide
 * grey (128) gap between tiles; empty tiles in the last row stay grey. Size before scaling:
 * (c·65 − 1) × (rows·129 − 1) with c = min(columns, latents.length).
 */
export async function latentsGridPng(latents: Uint8Array[], columns: number, opts: LatentPictureOptions = {}): Promise<Buffer> {
  const scale = checkScale(opts.scale ?? 4);
  if (latents.length === 0) throw new RangeError('latentsGridPng: no latents');
  if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`latentsGridPng: columns must be a positive integer, got ${columns}`);
  const cols = Math.min(columns, latents.length);
  const rows = Math.ceil(latents.length / cols);
  const width = cols * (LATENT_BITS_PER_TOKEN + 1) - 1;
  const height = rows * (LATENT_TOKENS + 1) - 1;
  const pixels = new Uint8Array(width * height).fill(GAP_GREY);
  latents.forEach((latent, k) => drawLatent(latent, pixels, width, (k % cols) * (LATENT_BITS_PER_TOKEN + 1), Math.floor(k / cols) * (LATENT_TOKENS + 1)));
  return greyPng(pixels, width, height, scale);
}
