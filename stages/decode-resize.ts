import { sharpFormat, sniffImage } from '../src/images/sniff-image.js';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type PQueue from 'p-queue';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { z } from 'zod';
import { drop, SampleError } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { parseStageOptions } from './stage-options.js';

/**
 * Images decoded and encoded at once. sharp runs on libuv's thread pool, and the main thread
 * needs slack for tar and records: two per core (at least 4) measured level with bare sharp at
 * its best (bench/decode-resize.bench.ts), where one per core cost 15–25% more.
 */
export const decodeConcurrency = z.number().int().min(1).default(Math.max(4, 2 * availableParallelism()));

/**
 * Refuse images whose header declares more pixels than this (decompression bombs), before any
 * pixel is decoded. Default 100 megapixels: above any real photo, below sharp's own 268 MP
 * default, and small enough that a worker decoding several at once stays within memory.
 */
export const maxPixels = z.number().int().min(1).default(100_000_000);

/**
 * Options of the decode-resize stage. It reads `sample.image` (the original encoded bytes),
 * applies the EXIF orientation, resizes, and replaces `sample.image` with the re-encoded result
 * (`sample.imageExt` = jpg | webp | png).
 *
 * Output is deterministic for a given sharp/libvips version: metadata (EXIF, ICC, XMP) is
 * stripped, pixels are converted to 8-bit sRGB with 3 channels, and alpha is flattened onto
 * white (as img2dataset does), so transparent areas are white even in `border` mode, where only
 * the padding takes `border_color`. Animated images yield their first frame.
 *
 * Fields written (also on dropped and failed samples, as far as they are known):
 * `original_sha256` (hex SHA-256 of the original bytes), `original_format` (sharp's name: jpeg,
 * png, webp, gif, tiff, heif…), `original_width`/`original_height` (after EXIF orientation),
 * `exif_orientation` (1–8 or null), `exif` ({Make, Model, Software, DateTimeOriginal} where
 * present, or null), and on success `width`/`height` of the output.
 *
 * Failure codes: no_image, empty, hash_mismatch, unsupported_format, pixel_limit, truncated, decode_error.
 * Drops: `min_edge` (value: shorter edge), `max_aspect_ratio` (value: long/short ratio).
 */
export const decodeResizeOptions = z.object({
  /** Target size in pixels (square side for centre_crop and border, longer side for keep_ratio), e.g. 256, 512, 1024. */
  size: z.number().int().min(8).max(16384).default(512),
  /**
   * img2dataset's resize modes:
   * - `centre_crop`: shorter side to `size`, then centre crop to size×size;
   * - `keep_ratio`: longer side to `size` (fit inside), no crop;
   * - `border`: fit inside, then pad to size×size with `border_color`;
   * - `none`: no resize (still oriented, flattened, converted and re-encoded).
   */
  mode: z.enum(['centre_crop', 'keep_ratio', 'border', 'none']).default('centre_crop'),
  /** Images whose shorter edge (original, oriented) is below this are dropped (the paper: half the target size). */
  min_edge: z.number().int().min(0).default(0),
  /** Drop images whose longer/shorter edge ratio exceeds this. */
  max_aspect_ratio: z.number().min(1).optional(),
  /** Output encoding. */
  format: z.enum(['jpeg', 'webp', 'png']).default('jpeg'),
  /** JPEG/WebP quality 1–100 (95 is img2dataset's default). PNG is lossless and ignores it. */
  quality: z.number().int().min(1).max(100).default(95),
  /** Decompression-bomb guard: images declaring more pixels fail without being decoded (see maxPixels). */
  max_pixels: maxPixels,
  /**
   * Scale small images up to `size` (like img2dataset). When false, a smaller image keeps its
   * size: `centre_crop` only crops what exceeds size×size, `border` pads around it.
   */
  upscale: z.boolean().default(true),
  /** Padding colour of `border` mode, any CSS colour. */
  border_color: z.string().default('#000000'),
  /** Image formats accepted, by sharp's name (default: raster formats; SVG and PDF are refused). */
  formats: z.array(z.string()).readonly().default(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']),
  /** Images processed at once (see decodeConcurrency: two per core, at least 4). */
  concurrency: decodeConcurrency,
  /**
   * Keep the downloaded bytes unchanged, for a later pass at another resolution without
   * downloading again: `true` stores them beside the resized image (shard member
   * `<key>.original.<ext>`); `only` stores them instead of it (no decoding beyond the header, no
   * re-encoding: img2dataset's disable_all_reencoding), the drops and the pixel limit still applied.
   */
  keep_original: z.union([z.boolean(), z.literal('only')]).default(false),
  /**
   * An input column holding each image's hex SHA-256 (DataComp's `sha256`): where a row has one,
   * the downloaded bytes must match it or the row fails as `hash_mismatch`.
   */
  sha256_column: z.string().default('sha256'),
}).strict();

/** What decodeResize takes: the options (unset keys take their defaults), and a shared limiter, e.g. one CPU pool for all image work. */
export type DecodeResizeOptions = z.input<typeof decodeResizeOptions> & { queue?: PQueue };

const EXT = { jpeg: 'jpg', webp: 'webp', png: 'png' } as const;
/** File extensions of kept originals, by sharp's format name. */
const ORIGINAL_EXT: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tif', heif: 'heic' };
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
const FIT = { centre_crop: 'cover', keep_ratio: 'inside', border: 'contain' } as const;

/**
 * Decodes, orients, resizes and re-encodes images (see decodeResizeOptions).
 *
 * Global sharp settings (sharp.concurrency, cache, UV_THREADPOOL_SIZE) are left alone because
 * they are process-wide and shared with every other sharp user. Note that sharp runs on libuv's
 * thread pool (4 threads unless UV_THREADPOOL_SIZE is set before start-up), so more than that
 * many images only decode at once when the process is started with a larger pool.
 */
export function decodeResize(opts: DecodeResizeOptions = {}): Stage {
  const { queue, ...options } = opts;
  const o = parseStageOptions('decode-resize', decodeResizeOptions, options);
  const { format, quality, max_pixels: pixelLimit, border_color: border, upscale } = o;
  const formats = new Set(o.formats);
  // Parses the colour now, so a typo fails at start-up instead of failing every sample.
  sharp({ create: { width: 1, height: 1, channels: 3, background: border } });

  return sampleStage(
    'decode-resize',
    async (s, stats) => {
      const input = s.image;
      if (!input) throw new SampleError('no_image', 'no image bytes to decode (sample.image is missing)');
      // bytes_in is the work read, failures included; images, bytes_out and pixels_out count outputs.
      stats.counts.bytes_in = (stats.counts.bytes_in ?? 0) + input.length;
      if (input.length === 0) throw new SampleError('empty', 'image is empty (0 bytes)');
      s.fields.original_sha256 = createHash('sha256').update(input).digest('hex');
      const expected = s.fields[o.sha256_column];
      if (typeof expected === 'string' && HEX_SHA256.test(expected.trim()) && expected.trim().toLowerCase() !== s.fields.original_sha256) {
        throw new SampleError('hash_mismatch', `the downloaded bytes' SHA-256 ${s.fields.original_sha256} is not the ${o.sha256_column} column's ${expected.trim().toLowerCase()}`);
      }

      // Header only; the limit is checked here rather than by sharp so the message can say how big.
      let meta: Metadata;
      try {
        meta = await sharp(input, { limitInputPixels: false }).metadata();
      } catch (err) {
        throw classify(err, input, undefined);
      }
      s.fields.original_format = meta.format;
      if (!formats.has(meta.format)) throw new SampleError('unsupported_format', `${meta.format} images are not accepted (accepted: ${[...formats].join(', ')})`);
      const { width: ow, height: oh } = meta.autoOrient;
      s.fields.original_width = ow;
      s.fields.original_height = oh;
      s.fields.exif_orientation = meta.orientation ?? null;
      s.fields.exif = meta.exif ? readExif(meta.exif) : null;
      if (ow * oh > pixelLimit) throw new SampleError('pixel_limit', `image is ${ow}×${oh} = ${ow * oh} pixels, over max_pixels ${pixelLimit}; refused without decoding`);

      const shorter = Math.min(ow, oh);
      if (shorter < o.min_edge) {
        drop(s, 'min_edge', shorter);
        return;
      }
      const ratio = Math.max(ow, oh) / shorter;
      if (o.max_aspect_ratio !== undefined && ratio > o.max_aspect_ratio) {
        drop(s, 'max_aspect_ratio', ratio);
        return;
      }

      const originalExt = ORIGINAL_EXT[meta.format] ?? meta.format;
      if (o.keep_original === 'only') {
        // The bytes as downloaded: nothing decoded beyond the header, so nothing re-encoded.
        s.imageExt = originalExt;
        s.fields.width = ow;
        s.fields.height = oh;
        stats.counts.originals = (stats.counts.originals ?? 0) + 1;
        stats.counts.bytes_out = (stats.counts.bytes_out ?? 0) + input.byteLength;
        return;
      }
      if (o.keep_original) s.original = { bytes: input, ext: originalExt };
      // 'truncated' fails on cut-off data (with 'none', libjpeg fills the rest with grey and
      // succeeds) but tolerates the harmless warnings common on the web that PIL also accepts.
      let img = sharp(input, { failOn: 'truncated', limitInputPixels: pixelLimit, autoOrient: true });
      // Giving the target size lets sharp shrink JPEG/WebP on load, the main speed win here.
      if (o.mode !== 'none') img = img.resize(o.size, o.size, { fit: FIT[o.mode], position: 'centre', background: border, withoutEnlargement: !upscale, kernel: 'lanczos3' });
      img = img.flatten({ background: '#ffffff' }).toColourspace('srgb');
      if (format === 'jpeg') img = img.jpeg({ quality });
      else if (format === 'webp') img = img.webp({ quality });
      else img = img.png();
      let out: { data: Buffer; info: OutputInfo };
      try {
        out = await img.toBuffer({ resolveWithObject: true });
      } catch (err) {
        throw classify(err, input, meta.format);
      }

      s.image = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
      s.imageExt = EXT[format];
      s.fields.width = out.info.width;
      s.fields.height = out.info.height;
      stats.counts.images = (stats.counts.images ?? 0) + 1;
      stats.counts.bytes_out = (stats.counts.bytes_out ?? 0) + out.data.byteLength;
      stats.counts.pixels_out = (stats.counts.pixels_out ?? 0) + out.info.width * out.info.height;
    },
    { concurrency: o.concurrency, ordered: true, queue },
  );
}

/** Maps a sharp error to a funnel code; sharp has no error codes, only libvips' messages. */
function classify(err: unknown, bytes: Uint8Array, format: string | undefined): SampleError {
  const msg = (err instanceof Error ? err.message : String(err)).split('\n').find((l) => l.trim() !== '') ?? 'unknown error';
  const fmt = format ?? sniff(bytes);
  // Under concurrency libvips may report "Unknown error" (its error buffer is shared between
  // threads), so an unreadable header with no image signature counts as not an image.
  const garbled = /^unknown error$/i.test(msg.trim());
  if (/unsupported image format/i.test(msg) || (garbled && format === undefined && !fmt)) return new SampleError('unsupported_format', `not a recognised image format (data starts with ${JSON.stringify(preview(bytes))})`);
  if (/pixel limit/i.test(msg)) return new SampleError('pixel_limit', `image exceeds the pixel limit: ${msg}`);
  // libpng and libwebp report a cut-off file as a generic read/parse error, so check the container.
  if (/premature end|unexpected end|truncat|not enough data/i.test(msg) || containerTruncated(bytes)) return new SampleError('truncated', `truncated image data (${fmt ?? 'image'}: ${msg})`);
  return new SampleError('decode_error', `cannot decode ${fmt ?? 'image'}: ${msg}`);
}

const ascii = (b: Uint8Array, at: number, s: string): boolean => b.length >= at + s.length && [...s].every((c, i) => b[at + i] === c.charCodeAt(0));

/** sharp's name of the format the bytes carry, for messages. */
function sniff(b: Uint8Array): string | undefined {
  const ext = sniffImage(b);
  return ext && sharpFormat(ext);
}

function containerTruncated(b: Uint8Array): boolean {
  const fmt = sniff(b);
  if (fmt === 'png') return Buffer.from(b.buffer, b.byteOffset, b.byteLength).lastIndexOf('IEND') < 0;
  if (fmt === 'webp') return b.length >= 12 && new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(4, true) + 8 > b.length;
  // libvips' error buffer is shared between threads, so under concurrency a cut-off JPEG may
  // fail with "Unknown error"; a JPEG whose tail holds no EOI marker (FF D9) was cut off.
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xd8) {
    const tail = Buffer.from(b.buffer, b.byteOffset, b.byteLength).subarray(Math.max(0, b.length - 4096));
    return tail.lastIndexOf(Buffer.from([0xff, 0xd9])) < 0;
  }
  return false;
}

function preview(b: Uint8Array): string {
  return String.fromCharCode(...b.subarray(0, 16)).replace(/[^\x20-\x7e]/g, '.');
}

const IFD0_TAGS: Record<number, string> = { 0x010f: 'Make', 0x0110: 'Model', 0x0131: 'Software' };
const EXIF_IFD_TAGS: Record<number, string> = { 0x9003: 'DateTimeOriginal' };
const EXIF_IFD_POINTER = 0x8769;

/**
 * Reads a few ASCII tags from a raw EXIF block (optionally prefixed "Exif\0\0", then TIFF).
 * No EXIF package is installed and only four tags are wanted, so this is a bounds-checked
 * minimal IFD walk; malformed EXIF yields null, never a failed sample.
 */
function readExif(raw: Uint8Array): Record<string, string> | null {
  try {
    const t = ascii(raw, 0, 'Exif\0\0') ? raw.subarray(6) : raw;
    const v = new DataView(t.buffer, t.byteOffset, t.byteLength);
    const le = ascii(t, 0, 'II');
    if (!le && !ascii(t, 0, 'MM')) return null;
    if (v.getUint16(2, le) !== 42) return null;
    const out: Record<string, string> = {};
    const walk = (ifd: number, tags: Record<number, string>): number | undefined => {
      let sub: number | undefined;
      const n = v.getUint16(ifd, le);
      for (let i = 0; i < n; i++) {
        const e = ifd + 2 + i * 12;
        if (e + 12 > t.length) break;
        const tag = v.getUint16(e, le);
        if (tag === EXIF_IFD_POINTER) sub = v.getUint32(e + 8, le);
        const name = tags[tag];
        if (!name || v.getUint16(e + 2, le) !== 2) continue; // 2 = ASCII
        const count = v.getUint32(e + 4, le);
        const start = count <= 4 ? e + 8 : v.getUint32(e + 8, le);
        if (start + count > t.length) continue;
        const text = Buffer.from(t.buffer, t.byteOffset + start, count).toString('utf8').replace(/\0[\s\S]*$/, '').replace(/[\x00-\x1f\x7f]/g, '').trim();
        if (text) out[name] = text.slice(0, 128);
      }
      return sub;
    };
    const sub = walk(v.getUint32(4, le), IFD0_TAGS);
    if (sub !== undefined) walk(sub, EXIF_IFD_TAGS);
    return Object.keys(out).length > 0 ? out : null;
  } catch {
    return null; // a DataView read past the end: malformed EXIF
  }
}
