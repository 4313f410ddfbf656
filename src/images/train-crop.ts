import type { RawImage } from '../sample.js';
import { centreCropOffset, resize, resizeRegion, roundHalfEven } from './pil-resize.js';

/**
 * The crops an image is encoded from, made exactly as the reference pipelines make them with
 * Pillow (every resize through pil-resize.ts, bit for bit):
 *
 * - `randomCrop`: guided-diffusion's `random_crop_arr(image, size, min_crop_frac=0.8)`, what
 *   Instella-T2I's training (`scripts/train_diff.py`, `train_ar.py`, `utils/misc.py`) applies each
 *   time it sees an image, followed by its `RandomHorizontalFlip`: halve with BOX while the shorter
 *   side is at least twice the drawn side s, resize the shorter side to s with BICUBIC (each side
 *   Python's `round(x * s / shorter)`), take a size×size crop at the drawn offsets, flip.
 * - `centreCrop`: torchvision's `Resize(size, BICUBIC)` then `CenterCrop(size)`, for evaluation
 *   sets: the shorter side to `size`, the longer to `int(size * long / short)` (truncated, as
 *   torchvision computes it), the crop offset rounded half to even (centreCropOffset).
 *
 * The draws themselves (s, offsets, flip) are the caller's (stages/encode-views.ts seeds them).
 */
export interface CropDraw {
  /** The shorter side after resizing, size … ceil(size / 0.8). */
  side: number;
  left: number;
  top: number;
  flip: boolean;
}

/** The smallest and largest shorter side random_crop_arr draws for `size` (its min/max_crop_frac 0.8 and 1). */
export const cropSides = (size: number): [min: number, max: number] => [size, Math.ceil(size / 0.8)];

/** What random_crop_arr does to a width × height image before cropping, for shorter side `side`: BOX halvings, then the BICUBIC size. */
export function cropGeometry(width: number, height: number, side: number): { halvings: number; width: number; height: number } {
  let w = width;
  let h = height;
  let halvings = 0;
  while (Math.min(w, h) >= 2 * side) {
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
    halvings++;
  }
  // Python: scale = side / min(size); round(x * scale) — the same float64 operations, in order.
  const scale = side / Math.min(w, h);
  return { halvings, width: roundHalfEven(w * scale), height: roundHalfEven(h * scale) };
}

function flipRows(img: RawImage): RawImage {
  const { width: w, height: h, channels: c, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * c;
      const d = (y * w + (w - 1 - x)) * c;
      for (let k = 0; k < c; k++) out[d + k] = data[s + k];
    }
  }
  return { data: out, width: w, height: h, channels: c };
}

/** random_crop_arr(img, size) with the draw given, then the flip: a size × size RGB image. */
export function randomCrop(img: RawImage, size: number, draw: CropDraw): RawImage {
  const g = cropGeometry(img.width, img.height, draw.side);
  if (!(draw.left >= 0 && draw.top >= 0 && draw.left + size <= g.width && draw.top + size <= g.height)) {
    throw new Error(`train-crop: a ${size}×${size} crop at (${draw.left}, ${draw.top}) does not fit the ${g.width}×${g.height} resized image`);
  }
  let cur = img;
  for (let i = 0; i < g.halvings; i++) cur = resize(cur, Math.floor(cur.width / 2), Math.floor(cur.height / 2), 'box');
  const out = resizeRegion(cur, g.width, g.height, 'bicubic', { left: draw.left, top: draw.top, width: size, height: size });
  return draw.flip ? flipRows(out) : out;
}

/** torchvision's Resize(size, BICUBIC) + CenterCrop(size) on a PIL image: a size × size RGB image. */
export function centreCrop(img: RawImage, size: number): RawImage {
  const short = Math.min(img.width, img.height);
  const long = Math.max(img.width, img.height);
  const other = Math.trunc((size * long) / short);
  const [w, h] = img.width <= img.height ? [size, other] : [other, size];
  return resizeRegion(img, w, h, 'bicubic', { left: centreCropOffset(w, size), top: centreCropOffset(h, size), width: size, height: size });
}
