import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job } from '../src/job.js';
import { pipe, type Stage } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { decodeResize } from '../stages/decode-resize.js';
import { readLocal } from '../stages/read-local.js';
import { writeImageShards } from '../stages/sinks/image-shards.js';
import { folderSource, planFolderUnits } from '../stages/sources/folder-source.js';
import { parquetSource, planParquetUnits } from '../stages/sources/parquet-source.js';
import { planWebDatasetUnits, webDatasetSource } from '../stages/sources/webdataset-source.js';

const unitRows = z.number().int().min(1).default(10_000);

const input = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('parquet'),
    /** Parquet files or folders of them; URLs in the url column are local paths here. */
    paths: z.array(z.string()).min(1),
    url_column: z.string().default('URL'),
    caption_column: z.string().default('TEXT'),
    unit_rows: unitRows,
  }).strict(),
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

const image = z.object({
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

export const imageShardsConfig = baseJobConfig.extend({
  job: z.literal('image-shards'),
  input,
  image: image.default(image.parse({})),
  /**
   * Images decoded and encoded at once. sharp runs on libuv's thread pool, and the main thread
   * needs slack for tar and records: two per core (at least 4) measured level with bare sharp at
   * its best (bench/decode-resize.bench.ts), where one per core cost 15–25% more.
   */
  decode_concurrency: z.number().int().min(1).default(Math.max(4, 2 * availableParallelism())),
  /** Local files read at once. */
  read_concurrency: z.number().int().min(1).default(16),
}).strict();

export type ImageShardsConfig = z.infer<typeof imageShardsConfig>;

/** Local images (a folder, a URL/caption parquet of local paths, or WebDataset tars) → resized WebDataset image shards. */
export const imageShardsJob: Job<ImageShardsConfig> = {
  name: 'image-shards',
  description: 'decode, resize and re-encode local images into WebDataset shards with sidecar records',
  schema: imageShardsConfig,
  async plan(cfg) {
    const inp = cfg.input;
    if (inp.kind === 'parquet') return planParquetUnits(inp);
    if (inp.kind === 'folder') return planFolderUnits(inp);
    return planWebDatasetUnits(inp);
  },
  async run(unit, cfg, ctx) {
    const started = new Date();
    const stats = new StatsCollector();
    const inp = cfg.input;
    const stages: Stage[] = [];
    let source;
    if (inp.kind === 'parquet') {
      source = parquetSource(unit, inp);
      stages.push(readLocal({ baseDir: (f) => dirname(String(f.source_file)), concurrency: cfg.read_concurrency }));
    } else if (inp.kind === 'folder') {
      source = folderSource(unit, inp);
      stages.push(readLocal({ baseDir: (f) => String(f.source_file), concurrency: cfg.read_concurrency }));
    } else {
      source = webDatasetSource(unit, inp);
    }
    stages.push(decodeResize({ ...cfg.image, concurrency: cfg.decode_concurrency }));
    const stream = pipe(source, stages, { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
    return writeImageShards(stream, { output: ctx.output, job: 'image-shards', unitId: unit.id, stats, started, onRows: ctx.onRows });
  },
};
