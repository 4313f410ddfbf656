import { z } from 'zod';
import { decodeResizeOptions } from '../stages/decode-resize.js';

/** Rows (or files) per unit, and so per output shard (img2dataset: 10,000). */
export const unitRows = z.number().int().min(1).default(10_000);

/** A URL/caption parquet source (LAION-COCO, Re-LAION, anything pyarrow or Spark wrote). */
export const parquetInput = z.object({
  /** A URL/caption table (the name is historical: CSV, TSV and JSON Lines too, see `format`). */
  kind: z.literal('parquet'),
  /** Table files, folders of them, or s3:// URLs of files or prefixes. */
  paths: z.array(z.string()).min(1),
  url_column: z.string().default('URL'),
  caption_column: z.string().default('TEXT'),
  unit_rows: unitRows,
  /** 'auto' (default): each file's extension says (.parquet, .csv, .tsv, .jsonl or .json, text ones plain or .gz); or one of parquet, csv, tsv, jsonl for every file. */
  format: z.enum(['auto', 'parquet', 'csv', 'tsv', 'jsonl']).default('auto'),
  /** CSV/TSV files without a header line: their column names in order (CC3M: [caption, url]; CC12M: [url, caption]). */
  columns: z.array(z.string().min(1)).min(1).optional(),
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

/** Decode and resize settings: the keys of stages/decode-resize.ts that configs expose, with its defaults. */
export const imageOptions = decodeResizeOptions.pick({ size: true, mode: true, min_edge: true, max_aspect_ratio: true, format: true, quality: true, max_pixels: true, keep_original: true, sha256_column: true });

type Unset<T> = T extends z.ZodDefault<infer U extends z.core.SomeType> ? z.ZodOptional<U> : T extends z.ZodOptional ? T : T extends z.core.SomeType ? z.ZodOptional<T> : never;

/**
 * A stage's options schema with every key optional and no defaults, for config sections whose
 * unset keys stay unset in the parsed config (and in the config an output records) and take the
 * stage's defaults when the stage parses them.
 */
export function unsetDefaults<S extends z.ZodRawShape>(schema: z.ZodObject<S, z.core.$strict>): z.ZodObject<{ [K in keyof S]: Unset<S[K]> }, z.core.$strict> {
  const shape = Object.fromEntries(Object.entries(schema.shape).map(([k, v]) => [k, (v instanceof z.ZodDefault ? (v.removeDefault() as z.ZodType) : (v as z.ZodType)).optional()]));
  return z.object(shape).strict() as never;
}

export { input as imageShardsInput };
