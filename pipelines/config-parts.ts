import { availableParallelism } from 'node:os';
import { z } from 'zod';

/** Rows (or files) per unit, and so per output shard (img2dataset: 10,000). */
export const unitRows = z.number().int().min(1).default(10_000);

/** A URL/caption parquet source (LAION-COCO, Re-LAION, anything pyarrow or Spark wrote). */
export const parquetInput = z.object({
  kind: z.literal('parquet'),
  /** Parquet files, folders of them, or s3:// URLs. */
  paths: z.array(z.string()).min(1),
  url_column: z.string().default('URL'),
  caption_column: z.string().default('TEXT'),
  unit_rows: unitRows,
}).strict();

const input = z.discriminatedUnion('kind', [
  parquetInput,
  z.object({
    kind: z.literal('folder'),
    path: z.string(),
    extensions: z.array(z.string()).default(['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif', 'bmp']),
    unit_rows: unitRows,
  }).strict(),
  z.object({
    kind: z.literal('webdataset'),
    paths: z.array(z.string()).min(1),
    caption_field: z.string().optional(),
    unit_rows: unitRows,
  }).strict(),
]);

/** Decode and resize settings (stages/decode-resize.ts). */
export const imageOptions = z.object({
  /** Target size in pixels (square side for centre_crop and border, longer side for keep_ratio). */
  size: z.number().int().min(8).max(16384).default(512),
  mode: z.enum(['centre_crop', 'keep_ratio', 'border', 'none']).default('centre_crop'),
  /** Images whose shorter edge is below this are dropped (the paper: half the target size). */
  min_edge: z.number().int().min(0).default(0),
  max_aspect_ratio: z.number().min(1).optional(),
  format: z.enum(['jpeg', 'webp', 'png']).default('jpeg'),
  quality: z.number().int().min(1).max(100).default(95),
  /** Decompression-bomb guard: larger images fail without being decoded. */
  max_pixels: z.number().int().min(1).default(100_000_000),
}).strict();

/**
 * Thumbnails of dropped images for `bitprep report` (`<unit>.thumbs`). Bounded per unit so
 * the sidecar stays small at LAION scale: 60k units × 12 × ~5 KB ≈ 3.6 GB at 600M rows, about
 * 0.1% of the dataset.
 */
export const thumbnailOptions = z.object({
  /** Dropped samples kept as thumbnails per unit, spread round-robin over drop reasons; 0 writes no sidecar. */
  dropped_per_unit: z.number().int().min(0).default(12),
}).strict();

/**
 * Images decoded and encoded at once. sharp runs on libuv's thread pool, and the main thread
 * needs slack for tar and records: two per core (at least 4) measured level with bare sharp at
 * its best (bench/decode-resize.bench.ts), where one per core cost 15–25% more.
 */
export const decodeConcurrency = z.number().int().min(1).default(Math.max(4, 2 * availableParallelism()));

export { input as imageShardsInput };
