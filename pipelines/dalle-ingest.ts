import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job, UnitContext } from '../src/job.js';
import type { Unit, UnitStats } from '../src/units/unit.js';
import { SampleError, fail, type Sample } from '../src/sample.js';
import { countOutcome, pipe, type Stage } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { decodeConcurrency, decodeResize } from '../stages/decode-resize.js';
import { writeImageShards } from '../stages/sinks/image-shards.js';
import { planWebDatasetUnits, webDatasetSource } from '../stages/sources/webdataset-source.js';
import { imageOptions } from './config-parts.js';
import { checkTarInputs } from './checks.js';

export const dalleIngestConfig = baseJobConfig.extend({
  job: z.literal('dalle-ingest'),
  input: z.object({
    /** Tars (`data-000000.tar` …), folders of them, or s3:// URLs of tars or prefixes. */
    paths: z.array(z.string()).min(1),
    /**
     * Samples per tar at most; sizes the offset digits of the keys. Dalle3-1M tars hold about
     * 14,500 samples, over img2dataset's 10,000, so the default leaves room for five digits.
     */
    unit_rows: z.number().int().min(1).default(100_000),
  }).strict(),
  /** Which Dalle caption becomes `caption` (and the `.txt` member); both are kept as caption_short/caption_long. */
  primary_caption: z.enum(['short', 'long']).default('short'),
  image: imageOptions.default(imageOptions.parse({})),
  decode_concurrency: decodeConcurrency,
}).strict();

export type DalleIngestConfig = z.infer<typeof dalleIngestConfig>;

/**
 * Dalle3-1M WebDataset tars (ProGamerGov/synthetic-dataset-1m-dalle3-high-quality-captions), one
 * unit per tar → caption mapping → decode and resize → WebDataset image shards with a record of
 * every sample. `long_caption`/`short_caption` become `caption_long`/`caption_short` (the names
 * the recaption job writes) and `caption` is the primary one (the other when it is missing).
 * The json's `width`/`height` (the original size the dataset declares) become
 * `declared_width`/`declared_height`, so `width`/`height` mean the output size as in every image
 * shard. The other json fields are kept as they are; the caption lists `short_caption2`/
 * `long_caption2` are JSON columns in the records.
 */
export const dalleIngestJob: Job<DalleIngestConfig> = {
  name: 'dalle-ingest',
  description: 'decode and resize Dalle3-1M WebDataset tars into image shards with short and long captions',
  schema: dalleIngestConfig,
  plan: (cfg) => planWebDatasetUnits(cfg.input),
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkDalleIngest,
  // Stateless: units share nothing, so the session only runs them.
  open: (cfg) => ({ run: (unit, ctx) => runDalleUnit(unit, cfg, ctx), close: async () => {} }),
};

/**
 * Renames the Dalle json fields to bitprep's, on every sample whatever its status, so the
 * records of failed samples still say what the image was meant to show. An ok sample with
 * neither caption fails (`captions:no_caption`): an image without text is no training pair.
 */
function mapDalleCaptions(primary: 'short' | 'long'): Stage {
  return (input, ctx) => {
    // Taken now rather than on first pull, so the stage is listed in pipeline order in the stats.
    const stats = ctx.stats.stage('captions');
    return mapAll(input, (s) => {
      const f = s.fields;
      const long = typeof f.long_caption === 'string' && f.long_caption.trim() !== '' ? f.long_caption : null;
      const short = typeof f.short_caption === 'string' && f.short_caption.trim() !== '' ? f.short_caption : null;
      delete f.long_caption;
      delete f.short_caption;
      f.caption_long = long;
      f.caption_short = short;
      // A `.txt` member, should a tar carry one, is the fallback the source already put in `caption`.
      const txt = typeof f.caption === 'string' && f.caption !== '' ? f.caption : null;
      f.caption = (primary === 'short' ? short ?? long : long ?? short) ?? txt;
      if ('width' in f || 'height' in f) {
        f.declared_width = f.width ?? null;
        f.declared_height = f.height ?? null;
        delete f.width;
        delete f.height;
      }
      if (s.status.kind === 'ok') {
        stats.in++;
        if (f.caption === null) fail(s, 'captions', new SampleError('no_caption', `${f.source_file}: sample ${f.source_key} has no long_caption, short_caption or .txt caption`));
        countOutcome(stats, s);
      }
    });
  };
}

/**
 * Prefixes failure reasons with the tar and the sample's key in it, so a bad image can be found
 * in a 10 GB shard from the error alone. Source failures already name both.
 */
function nameSampleInFailures(): Stage {
  return (input) => mapAll(input, (s) => {
    const st = s.status;
    if (st.kind === 'failed' && !st.error.startsWith(`${s.fields.source_file}:`)) st.error = `${s.fields.source_file}: sample ${s.fields.source_key}: ${st.error}`;
  });
}

/** Changes every sample in place, whatever its status (sampleStage only sees ok ones), in order. */
async function* mapAll(input: AsyncIterable<Sample>, fn: (s: Sample) => void): AsyncGenerator<Sample> {
  for await (const s of input) {
    fn(s);
    yield s;
  }
}

async function runDalleUnit(unit: Unit, cfg: DalleIngestConfig, ctx: UnitContext): Promise<UnitStats> {
  const started = new Date();
  const stats = new StatsCollector();
  const stream = pipe(webDatasetSource(unit, cfg.input), [
    mapDalleCaptions(cfg.primary_caption),
    decodeResize({ ...cfg.image, concurrency: cfg.decode_concurrency }),
    nameSampleInFailures(),
  ], { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
  return writeImageShards(stream, { output: ctx.output, job: 'dalle-ingest', unitId: unit.id, stats, started, onRows: ctx.onRows });
}

/** dalle-ingest: the tars exist. */
async function checkDalleIngest(cfg: DalleIngestConfig): Promise<string[]> {
  return checkTarInputs(cfg.input.paths);
}
