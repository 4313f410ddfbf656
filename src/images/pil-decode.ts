import sharp from 'sharp';
import type { RawImage } from '../sample.js';

/** Pillow's CMYK → RGB (Convert.c cmyk2rgb): each of C, M, Y scaled by 255 − K, without colour management. */
function pillowCmykToRgb(src: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n * 3);
  const muldiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < n; i++) {
    const nk = 255 - src[i * 4 + 3];
    for (let k = 0; k < 3; k++) out[i * 3 + k] = Math.max(0, Math.min(255, nk - muldiv255(src[i * 4 + k], nk)));
  }
  return out;
}

/**
 * Decodes an image (a file path or its bytes) to 8-bit RGB as PIL's `Image.open(p).convert('RGB')` does, since the
 * reference metrics (clean-fid, CLIP score, ImageReward, GenEval) read images that way: no colour
 * management (an embedded ICC profile is ignored: the stored values, not a conversion to sRGB),
 * no EXIF rotation, alpha dropped (not composited), grey replicated, palettes expanded, CMYK by
 * Pillow's formula (cmyk2rgb), 16-bit grey as Pillow opens it (mode I, values clipped to 255) and
 * 16-bit RGB by its high byte. Each mode is checked against Debian's python3-pil (test/eval-image-decode.test.ts).
 */
export async function decodeRgbAsPil(input: string | Buffer | Uint8Array): Promise<RawImage> {
  const opts = { failOn: 'truncated' as const, limitInputPixels: 1 << 28, ignoreIcc: true };
  const space = (await sharp(input, opts).metadata()).space;
  if (space === 'cmyk') {
    const { data, info } = await sharp(input, opts).pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`CMYK decoded to ${info.channels} channels`);
    return { data: pillowCmykToRgb(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), info.width * info.height), width: info.width, height: info.height, channels: 3 };
  }
  if (space === 'grey16') {
    const { data, info } = await sharp(input, opts).toColourspace('grey16').extractChannel(0).raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const v = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
    const n = info.width * info.height;
    const rgb = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = Math.min(255, v[i]);
    return { data: rgb, width: info.width, height: info.height, channels: 3 };
  }
  const { data, info } = await sharp(input, opts).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (info.channels === 3) return { data: src, width: info.width, height: info.height, channels: 3 };
  const rgb = new Uint8Array(n * 3);
  const c = info.channels;
  for (let i = 0; i < n; i++) {
    if (c >= 3) {
      rgb[i * 3] = src[i * c];
      rgb[i * 3 + 1] = src[i * c + 1];
      rgb[i * 3 + 2] = src[i * c + 2];
    } else {
      rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = src[i * c];
    }
  }
  return { data: rgb, width: info.width, height: info.height, channels: 3 };
}

