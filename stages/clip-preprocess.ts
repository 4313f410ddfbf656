/**
 * OpenAI CLIP's image preprocessing, reproduced exactly:
 *
 *   Resize(224, interpolation=BICUBIC)  →  CenterCrop(224)  →  convert('RGB')  →  ToTensor()
 *   →  Normalize(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
 *
 * torchvision applies this to PIL images, so the resize is PIL's `Image.resize(…, BICUBIC)`:
 * src/images/pil-resize.ts reproduces it (fixed-point taps, each pass rounded to 8 bits). Given
 * the same decoded pixels the 224×224 RGB bytes equal PIL's bit for bit, and the normalised
 * floats equal torchvision's (float32 arithmetic, reproduced with Math.fround).
 *
 * Why not sharp's resize: measured against Pillow 9.4 on synthetic images (a linear gradient in
 * R and G, an 8-px black/white checkerboard in B), sharp 0.35 / libvips 8.18 with
 * `kernel: 'cubic'` is off by up to 15/255 (0.21 in normalised units, mean 0.19/255) when
 * shrinking 300×250 to 268×224, by 1/255 on the smooth gradient alone, and by up to 97/255 (1.38
 * normalised, mean 5.4/255) when enlarging 150×120, where libvips ignores the kernel; 'mitchell'
 * and 'lanczos3' are further off. This implementation matches PIL bit for bit on the same images
 * (grey, RGB, LA, RGBA; shrinking and enlarging). CLIP embeddings, and the aesthetic scores built
 * on them, are only comparable with published ones when the preprocessing matches.
 *
 * Other details that follow torchvision and PIL:
 * - the shorter side becomes 224 and the longer `int(224 * long / short)` (truncated);
 * - the crop offsets are `int(round((h - 224) / 2))`, `int(round((w - 224) / 2))` with Python's
 *   round, i.e. half to even: an odd excess of 45 gives 22, not 23;
 * - the resize runs in the image's own mode: grey (1 channel) is resized then replicated to RGB;
 *   with alpha (2 or 4 channels) PIL resizes premultiplied (LA→La, RGBA→RGBa) and
 *   `convert('RGB')` then drops alpha without flattening; an image already at the resized size is
 *   not resized at all (torchvision returns it as it is), so its alpha is not round-tripped;
 * - no EXIF rotation (PIL's Image.open does not apply it).
 *
 * Decoding of encoded bytes is sharp's. For the images bitprep feeds here (decode-resize output:
 * 8-bit sRGB JPEG/PNG/WebP without profiles) it matches PIL's decoders: measured identical for
 * 4:2:0 and 4:4:4 JPEGs (libjpeg-turbo defaults, islow IDCT and fancy upsampling, on both sides)
 * and for lossy WebP, against Debian's Pillow 9.4 with libjpeg-turbo and libwebp 1.2.4. Inputs
 * outside that set may differ from PIL: palette images (PIL resizes mode P with NEAREST), 16-bit,
 * CMYK, or images with an ICC profile.
 *
 * Cost: synchronous JS on the calling thread, about 4.5 M multiply-adds per 512×512 image
 * (7–10 ms measured on a shared 2-core EPYC VM); only the rows and columns that survive the crop
 * are computed.
 */
import sharp from 'sharp';
import { centreCropOffset, resizeRegion } from '../src/images/pil-resize.js';
import type { RawImage } from '../src/sample.js';

export const CLIP_SIZE = 224;
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Where the crop lies in the resized image. */
export interface ClipGeometry {
  resizedWidth: number;
  resizedHeight: number;
  top: number;
  left: number;
}

/** torchvision Resize(size) then CenterCrop(size) geometry for a width×height image. */
export function clipGeometry(width: number, height: number, size = CLIP_SIZE): ClipGeometry {
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) throw new Error(`clip-preprocess: bad image size ${width}×${height}`);
  const [resizedWidth, resizedHeight] = width <= height ? [size, Math.trunc((size * height) / width)] : [Math.trunc((size * width) / height), size];
  return { resizedWidth, resizedHeight, top: centreCropOffset(resizedHeight, size), left: centreCropOffset(resizedWidth, size) };
}

/**
 * Resize (shorter side to `size`, PIL bicubic) and centre crop, then convert to RGB as PIL does:
 * the size×size×3 bytes torchvision's ToTensor would see.
 */
export function clipResizeCrop(img: RawImage, size = CLIP_SIZE): RawImage {
  const g = clipGeometry(img.width, img.height, size);
  const bands = img.channels;
  const { data: px } = resizeRegion(img, g.resizedWidth, g.resizedHeight, 'bicubic', { left: g.left, top: g.top, width: size, height: size });
  if (bands === 3) return { data: px, width: size, height: size, channels: 3 };
  const rgb = new Uint8Array(size * size * 3);
  for (let i = 0, o = 0; o < rgb.length; i += bands, o += 3) {
    if (bands <= 2) rgb[o] = rgb[o + 1] = rgb[o + 2] = px[i];
    else {
      rgb[o] = px[i];
      rgb[o + 1] = px[i + 1];
      rgb[o + 2] = px[i + 2];
    }
  }
  return { data: rgb, width: size, height: size, channels: 3 };
}

const F_MEAN = CLIP_MEAN.map(Math.fround);
const F_STD = CLIP_STD.map(Math.fround);

/**
 * ToTensor + Normalize of an RGB image into CHW floats, written at `offset` of `out` (so a batch
 * can be filled in place). Each step is rounded to float32 as torch computes it.
 */
export function clipNormalize(rgb: RawImage, out?: Float32Array, offset = 0): Float32Array {
  if (rgb.channels !== 3) throw new Error(`clip-preprocess: clipNormalize needs RGB, got ${rgb.channels} channels`);
  const plane = rgb.width * rgb.height;
  const dst = out ?? new Float32Array(3 * plane);
  if (offset + 3 * plane > dst.length) throw new Error(`clip-preprocess: output holds ${dst.length} floats, needs ${offset + 3 * plane}`);
  for (let c = 0; c < 3; c++) {
    const m = F_MEAN[c];
    const s = F_STD[c];
    // 256 possible inputs per channel: a table keeps the per-pixel work to one lookup.
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) dst[base + i] = lut[rgb.data[i * 3 + c]];
  }
  return dst;
}

/**
 * Decodes encoded bytes to interleaved 8-bit pixels in the file's own channels (grey, grey+alpha,
 * RGB, RGBA), without EXIF rotation, as PIL's Image.open would see them.
 */
export async function decodeForClip(bytes: Uint8Array): Promise<RawImage> {
  const { data, info } = await sharp(bytes, { failOn: 'truncated' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: info.channels as RawImage['channels'] };
}

/**
 * CLIP preprocessing of one image (encoded bytes or decoded pixels) into a Float32Array laid out
 * [3, size, size]; `out`/`offset` write it into a batch tensor instead.
 */
export async function clipPreprocess(input: Uint8Array | RawImage, opts: { size?: number; out?: Float32Array; offset?: number } = {}): Promise<Float32Array> {
  const raw = input instanceof Uint8Array ? await decodeForClip(input) : input;
  return clipNormalize(clipResizeCrop(raw, opts.size ?? CLIP_SIZE), opts.out, opts.offset ?? 0);
}
