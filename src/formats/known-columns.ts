import type { ColumnType } from './parquet-write.js';
import { LATENT_BYTES } from './latent-bits.js';

/**
 * Every column bitprep writes itself, with the one type it has in every file of every job: a
 * column's type never follows one file's values (an all-null `exif_orientation` would otherwise be
 * STRING, a unit whose `gen_guidance` values are all 0 would make it INT64). Names are lowercase
 * snake_case; a carried input column that matches one of them but for case is renamed on write
 * (see ColumnNames).
 */
export const OWN_COLUMN_TYPES: Readonly<Record<string, ColumnType>> = {
  // status (src/records.ts)
  key: 'STRING',
  status: 'STRING',
  dropped_by: 'STRING',
  dropped_value: 'STRING',
  failed_stage: 'STRING',
  error_code: 'STRING',
  error: 'STRING',
  // sources: the row's origin (source_*, set once by the first job) and this job's input (shard_*)
  url: 'STRING',
  caption: 'STRING',
  source_file: 'STRING',
  source_row: 'INT64',
  source_key: 'STRING',
  shard_file: 'STRING',
  shard_key: 'STRING',
  // fetch
  http_status: 'INT64',
  content_type: 'STRING',
  final_url: 'STRING',
  download_bytes: 'INT64',
  // decode-resize
  original_sha256: 'STRING',
  original_format: 'STRING',
  original_width: 'INT64',
  original_height: 'INT64',
  exif_orientation: 'INT64',
  exif: 'JSON',
  width: 'INT64',
  height: 'INT64',
  // dalle-ingest and recaption
  declared_width: 'INT64',
  declared_height: 'INT64',
  caption_long: 'STRING',
  caption_short: 'STRING',
  caption_model: 'STRING',
  caption_prompt_version: 'STRING',
  caption_seed: 'INT64',
  caption_attempts: 'INT64',
  caption_short_seed: 'INT64',
  // annotations
  aesthetic_score: 'DOUBLE',
  ocr_density: 'DOUBLE',
  ocr_words: 'INT64',
  ocr_median_height: 'DOUBLE',
  ocr_min_height: 'DOUBLE',
  ocr_backend: 'STRING',
  // diffusiondb-synth
  gen_model: 'STRING',
  gen_preset: 'STRING',
  gen_served_model: 'STRING',
  gen_size: 'STRING',
  gen_steps: 'INT64',
  gen_guidance: 'DOUBLE',
  gen_extra: 'STRING',
  gen_seed: 'INT64',
  // pre-encode
  source: 'STRING',
  source_original: 'STRING',
  latent: { fixedLenByteArray: LATENT_BYTES },
  view: 'INT64',
  // training-mix
  caption_kind: 'STRING',
  caption_text: 'STRING',
  mix_set: 'STRING',
  dataset: 'STRING',
  input_shard: 'STRING',
  copies: 'INT64',
};

/**
 * Types of well-known input columns that bitprep carries (LAION, LAION-COCO, Re-LAION, DiffusionDB),
 * under the names they are written with: LAION's `WIDTH`/`HEIGHT` as `source_WIDTH`/`source_HEIGHT`,
 * DiffusionDB's `width`/`height` as `source_width`/`source_height`. Used when every value of a file
 * fits (so a `similarity` that is whole in one unit stays DOUBLE, an all-null `hash` stays INT64);
 * an input that uses the name for something else keeps the type its values give.
 */
export const SOURCE_COLUMN_TYPES: Readonly<Record<string, ColumnType>> = {
  hash: 'INT64',
  SAMPLE_ID: 'INT64',
  source_WIDTH: 'INT64',
  source_HEIGHT: 'INT64',
  similarity: 'DOUBLE',
  punsafe: 'DOUBLE',
  pwatermark: 'DOUBLE',
  aesthetic: 'DOUBLE',
  source_width: 'INT64',
  source_height: 'INT64',
  seed: 'INT64',
  step: 'INT64',
  cfg: 'DOUBLE',
  image_nsfw: 'DOUBLE',
  prompt_nsfw: 'DOUBLE',
};

/** Every type bitprep pins by column name (an own column's type wins where both lists name it). */
export const KNOWN_COLUMN_TYPES: Readonly<Record<string, ColumnType>> = { ...SOURCE_COLUMN_TYPES, ...OWN_COLUMN_TYPES };
