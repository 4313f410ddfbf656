import { dirname } from 'node:path';
import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job, UnitContext } from '../src/job.js';
import type { Unit, UnitStats } from '../src/units/unit.js';
import { pipe, type Stage } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { decodeConcurrency, decodeResize } from '../stages/decode-resize.js';
import { readConcurrency, readLocal } from '../stages/read-local.js';
import { writeImageShards } from '../stages/sinks/image-shards.js';
import { folderSource, planFolderUnits } from '../stages/sources/folder-source.js';
import { planTableUnits, tableSource } from '../stages/sources/table-source.js';
import { planWebDatasetUnits, webDatasetSource } from '../stages/sources/webdataset-source.js';
import { imageOptions, imageShardsInput } from './config-parts.js';
import { checkParquetInput, listInputFiles, messageOf, shown } from './checks.js';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export const imageShardsConfig = baseJobConfig.extend({
  job: z.literal('image-shards'),
  input: imageShardsInput,
  image: imageOptions.default(imageOptions.parse({})),
  decode_concurrency: decodeConcurrency,
  /** Local files read at once. */
  read_concurrency: readConcurrency,
}).strict();

export type ImageShardsConfig = z.infer<typeof imageShardsConfig>;

/** Local images (a folder, a URL/caption parquet of local paths, or WebDataset tars) → resized WebDataset image shards. */
export const imageShardsJob: Job<ImageShardsConfig> = {
  name: 'image-shards',
  description: 'decode, resize and re-encode local images into WebDataset shards with sidecar records',
  schema: imageShardsConfig,
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkImageShards,
  async plan(cfg) {
    const inp = cfg.input;
    if (inp.kind === 'parquet') return planTableUnits(inp);
    if (inp.kind === 'folder') return planFolderUnits(inp);
    return planWebDatasetUnits(inp);
  },
  // Stateless: units share nothing, so the session only runs them.
  open: (cfg) => ({ run: (unit, ctx) => runImageShardsUnit(unit, cfg, ctx), close: async () => {} }),
};

async function runImageShardsUnit(unit: Unit, cfg: ImageShardsConfig, ctx: UnitContext): Promise<UnitStats> {
  const started = new Date();
  const stats = new StatsCollector();
  const inp = cfg.input;
  const stages: Stage[] = [];
  let source;
  if (inp.kind === 'parquet') {
    source = tableSource(unit, inp);
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
}

/** Whether a local folder holds at least one file with one of `exts`, searching no further than the first. */
async function holdsImage(dir: string, exts: Set<string>): Promise<boolean> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isFile() && exts.has(e.name.slice(e.name.lastIndexOf('.')).toLowerCase())) return true;
    if (e.isDirectory() && (await holdsImage(p, exts))) return true;
  }
  return false;
}

/** image-shards: the input of its kind exists and holds what the planner looks for. */
async function checkImageShards(cfg: ImageShardsConfig): Promise<string[]> {
  const inp = cfg.input;
  if (inp.kind === 'parquet') return (await checkParquetInput('input', inp)).problems;
  if (inp.kind === 'webdataset') return (await listInputFiles('input.paths', inp.paths, '.tar')).problems;
  const st = await stat(inp.path).catch(() => undefined);
  if (!st) return [`input.path: ${shown(inp.path)} does not exist`];
  if (!st.isDirectory()) return [`input.path: ${shown(inp.path)} is not a folder`];
  const exts = new Set(inp.extensions.map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase()));
  try {
    if (!(await holdsImage(inp.path, exts))) return [`input.path: folder ${shown(inp.path)} holds no file with extension ${inp.extensions.join(', ')} (input.extensions)`];
  } catch (err) {
    return [`input.path: cannot list ${shown(inp.path)}: ${messageOf(err)}`];
  }
  return [];
}
