import { networkBreaker } from '../src/outage.js';
import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job, JobSession, RefilterVerdict } from '../src/job.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { columnFilters, columnFilterSchema } from '../stages/column-filters.js';
import { decodeConcurrency, decodeResize } from '../stages/decode-resize.js';
import { exactDedup, ExactSeenSet } from '../stages/dedup-exact.js';
import { fetchOptions, fetchStage, TRANSIENT_FETCH_CODES } from '../stages/fetch.js';
import { DroppedThumbnails, droppedThumbnailOptions } from '../stages/sinks/dropped-thumbnails.js';
import { EMBEDDING_INDEX, EMBEDDING_NPY, embeddingIndexRow, saveEmbeddings, writeImageShards } from '../stages/sinks/image-shards.js';
import { decodeNpy } from '../src/formats/npy.js';
import { parquetSourceFromStore, readParquetRowGroups } from '../src/formats/parquet-read.js';
import { planTableUnits, tableSource } from '../stages/sources/table-source.js';
import { textVerdict } from '../stages/text-filter.js';
import { aestheticOptions, Annotators, ocrOptions } from './annotations.js';
import { imageOptions, parquetInput, unsetDefaults } from './config-parts.js';
import { checkAesthetic, checkOcr, checkParquetInput, missingColumnProblem, PARQUET_SOURCE_FIELDS } from './checks.js';
import { checkColumnFilters } from '../stages/column-filters.js';
import { allowListProblems } from '../src/net/address-policy.js';
import type { Logger } from '../src/log.js';

export const laionFilterConfig = baseJobConfig.extend({
  job: z.literal('laion-filter'),
  input: parquetInput,
  /** Column filters applied before anything is downloaded, in order; each is a funnel line. */
  filters: columnFilterSchema.default([]),
  /** Download settings (stages/fetch.ts); unset keys take the stage's defaults when it runs. */
  fetch: unsetDefaults(fetchOptions).default({}),
  image: imageOptions.default(imageOptions.parse({})),
  /** Drop exact duplicates (same original bytes) within a unit. */
  dedup: z.boolean().default(true),
  decode_concurrency: decodeConcurrency,
  /** Aesthetic score (and filter) of each decoded image. */
  aesthetic: aestheticOptions.optional(),
  /** OCR text density and size (and their filters), after the aesthetic filter. */
  ocr: ocrOptions.optional(),
  /** Thumbnails of dropped images for `bitprep report`. */
  thumbnails: droppedThumbnailOptions.default(droppedThumbnailOptions.parse({})),
  /**
   * Save the image embeddings the aesthetic stage computes (or looks up) for the kept images, in
   * LAION's layout: `<unit>.img_emb.npy` beside a row-aligned `<unit>.img_emb.parquet` (key, url,
   * caption), for semantic dedup, NSFW or concept filters and retrieval. Needs `aesthetic`.
   */
  embeddings: z.object({
    /** float16 as LAION publishes its embeddings (half the bytes), or float32. */
    dtype: z.enum(['float16', 'float32']).default('float16'),
  }).strict().optional(),
}).strict().superRefine((c, ctx) => {
  if (c.embeddings && !c.aesthetic) ctx.addIssue({ code: 'custom', path: ['embeddings'], message: 'embeddings are the aesthetic stage\'s: configure aesthetic (clip or embeddings) to save them' });
});

export type LaionFilterConfig = z.infer<typeof laionFilterConfig>;

/**
 * LAION-style URL/caption parquet → column filters → download → decode and resize → exact
 * dedup → aesthetic score and filter → OCR text density and size and their filters →
 * WebDataset image shards with a record of every row (annotations included, dropped rows too).
 */
export const laionFilterJob: Job<LaionFilterConfig> = {
  name: 'laion-filter',
  description: 'filter, download, decode and resize LAION-style URL/caption parquet into image shards',
  schema: laionFilterConfig,
  // How the run goes, not what it writes: these may change on a rerun of an output.
  operational: ['fetch.concurrency', 'fetch.per_host', 'fetch.connect_timeout_ms', 'fetch.read_timeout_ms', 'fetch.total_timeout_ms', 'fetch.retries', 'fetch.retry_delay_ms', 'fetch.user_agent', 'aesthetic.clip.batch_size', 'ocr.workers', 'ocr.detector.batch_size'],
  plan: (cfg) => planTableUnits(cfg.input),
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkLaionFilter,
  open: openLaionFilter,
  transientFailures: TRANSIENT_FETCH_CODES.map((c) => `fetch:${c}`),
  refilter: {
    reasons: ['aesthetic', 'text_density', 'text_height'],
    verdict: refilterVerdict,
  },
};

/** A laion-filter session: one set of annotators (models, OCR workers) for all its units, opened by the first unit that needs them. */
function openLaionFilter(cfg: LaionFilterConfig): JobSession {
  let annotators: Promise<Annotators> | undefined;
  const annotatorsOnce = () => (annotators ??= Annotators.open(cfg));
  return {
    async run(unit, ctx) {
      const started = new Date();
      const stats = new StatsCollector();
      const thumbnails = DroppedThumbnails.fromOptions(cfg.thumbnails);
      const annotators = await annotatorsOnce();
      const stream = pipe(tableSource(unit, cfg.input), stagesOf(cfg, new ExactSeenSet(), annotators, thumbnails), { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
      const embeddings = cfg.embeddings && { dtype: cfg.embeddings.dtype === 'float16' ? ('f2' as const) : ('f4' as const), dim: annotators.embeddingDim! };
      return writeImageShards(stream, { output: ctx.output, job: 'laion-filter', unitId: unit.id, stats, started, onRows: ctx.onRows, thumbnails, embeddings });
    },
    async *rerun(unit, keys, ctx) {
      // A recovered image that duplicates one the unit already kept is dropped as in a full run.
      const seen = new ExactSeenSet();
      for (const r of ctx.previous) {
        if (r.status === 'ok' && typeof r.original_sha256 === 'string' && r.original_sha256) seen.add(r.original_sha256, String(r.key));
      }
      yield* pipe(tableSource(unit, cfg.input, keys), stagesOf(cfg, seen, await annotatorsOnce()), { unitId: unit.id, stats: ctx.stats, log: ctx.log });
    },
    async mergeRecovered(unit, recovered, { store, outputs }) {
      if (!cfg.embeddings) return [];
      // The recovered rows' embeddings after the unit's own, in LAION's layout (npy and index row-aligned).
      const before = decodeNpy(await store.get(unit.id + EMBEDDING_NPY), `${store.url}/${unit.id}${EMBEDDING_NPY}`);
      const dim = before.shape[1];
      const vectors = Array.from({ length: before.shape[0] }, (_, i) => before.data.subarray(i * dim, (i + 1) * dim));
      const index: Record<string, unknown>[] = [];
      for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, unit.id + EMBEDDING_INDEX))) index.push(...g.rows);
      if (index.length !== vectors.length) throw new Error(`${store.url}/${unit.id}${EMBEDDING_INDEX}: ${index.length} rows beside ${vectors.length} embeddings`);
      for (const s of recovered) {
        if (!s.embedding || s.embedding.length !== dim) throw new Error(`retry-failed: sample ${s.key} was recovered without its ${dim}-d embedding`);
        vectors.push(s.embedding);
        index.push(embeddingIndexRow(s));
      }
      await saveEmbeddings(outputs, vectors, index, { dtype: cfg.embeddings.dtype === 'float16' ? 'f2' : 'f4', dim });
      return [EMBEDDING_NPY, EMBEDDING_INDEX];
    },
    async close() {
      // Annotators that failed to open hold nothing; their error was the unit's.
      await annotators?.then((a) => a.close(), () => undefined);
    },
  };
}

/** The new config's decision on a recorded row, from its recorded annotations alone. */
function refilterVerdict(cfg: LaionFilterConfig, r: Record<string, unknown>): RefilterVerdict {
  if (cfg.aesthetic) {
    const score = typeof r.aesthetic_score === 'number' ? r.aesthetic_score : null;
    if (score === null) return { kind: 'unknown', missing: 'aesthetic_score' };
    if (cfg.aesthetic.min_score !== undefined && score < cfg.aesthetic.min_score) return { kind: 'dropped', by: 'aesthetic', value: score };
  }
  if (cfg.ocr) {
    const v = textVerdict(r, cfg.ocr);
    if (v === 'unannotated') return { kind: 'unknown', missing: 'ocr_density' };
    if (v) return { kind: 'dropped', by: v.by, value: v.value };
  }
  return { kind: 'ok' };
}

function stagesOf(cfg: LaionFilterConfig, seen: ExactSeenSet, annotators: Annotators, thumbnails?: DroppedThumbnails) {
  // Dedup stays inside the unit: a set shared across units would make a unit's output depend
  // on which units this process happened to run before it, and a resumed run would differ.
  // Thumbnails note the fetched image (for size and aspect drops) and then the resized one.
  return [
    columnFilters(cfg.filters),
    fetchStage({ ...cfg.fetch, breaker: networkBreaker(cfg.breaker) }),
    ...(thumbnails ? [thumbnails.remember()] : []),
    decodeResize({ ...cfg.image, concurrency: cfg.decode_concurrency }),
    ...(thumbnails ? [thumbnails.remember()] : []),
    ...(cfg.dedup ? [exactDedup({ seen })] : []),
    ...annotators.stages({ keepEmbedding: !!cfg.embeddings }),
  ];
}

/** laion-filter: inputs and their columns, every filter, allow_addresses, the aesthetic and OCR models. */
async function checkLaionFilter(cfg: LaionFilterConfig, log: Logger): Promise<string[]> {
  const input = await checkParquetInput('input', cfg.input);
  const problems = [...input.problems];
  // The source hands filters the url and caption columns as `url` and `caption`.
  const renamed: Record<string, string> = { [cfg.input.url_column]: 'url', [cfg.input.caption_column]: 'caption' };
  for (const f of checkColumnFilters(cfg.filters, 'filters')) {
    if (f.problem) problems.push(f.problem);
    for (const column of f.columns) {
      const as = renamed[column];
      if (as !== undefined && as !== column) {
        const key = as === 'url' ? 'input.url_column' : 'input.caption_column';
        problems.push(`${f.label}: column ${column} is ${key}, which filters read as ${as} (write ${as} in the expression)`);
        continue;
      }
      if (PARQUET_SOURCE_FIELDS.includes(column)) continue;
      const p = missingColumnProblem(f.label, column, input.schemas, PARQUET_SOURCE_FIELDS);
      if (p) problems.push(p);
    }
  }
  problems.push(...allowListProblems(cfg.fetch.allow_addresses ?? [], 'fetch.allow_addresses'));
  if (cfg.aesthetic) problems.push(...(await checkAesthetic('aesthetic', cfg.aesthetic, input.files, log)));
  if (cfg.ocr) problems.push(...(await checkOcr('ocr', cfg.ocr, log)));
  return problems;
}
