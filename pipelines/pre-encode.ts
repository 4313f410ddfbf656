import { modelBreaker } from '../src/outage.js';
import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import { writeLatentManifest } from '../src/formats/latent-shards.js';
import { CONFIG_NAME } from '../src/executors/local.js';
import type { Job, JobSession } from '../src/job.js';
import type { Logger } from '../src/log.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { TensorModel } from '../src/models/tensor.js';
import { pipe, type Stage } from '../src/stage.js';
import { drop } from '../src/sample.js';
import { StatsCollector } from '../src/stats.js';
import { checkBitEncoder } from '../stages/bit-encoder.js';
import { captionTokensStage, loadCaptionTokenizer, tokenColumnTypes, tokensField, textTokensConfig, type CaptionTokenizer, type TextTokensConfig } from '../stages/caption-tokens.js';
import { encoderOptions, encodeStages, viewsProblem } from '../stages/encode.js';
import { writeLatentShards } from '../stages/sinks/latent-shards.js';
import { planWebDatasetUnits, webDatasetSource } from '../stages/sources/webdataset-source.js';
import type { DedupDropOfRow, DedupViews } from '../stages/dedup/dedup-view.js';
import { DEDUP_SUMMARY } from '../stages/dedup/dedup-layout.js';
import { loadTensorModels, modelSource } from '../src/models/model-source.js';
import { unitRows } from './config-parts.js';
import { checkModelSource, checkTarInputs, fileProblem, messageOf } from './checks.js';

export const preEncodeConfig = baseJobConfig.extend({
  job: z.literal('pre-encode'),
  /** Image shards (laion-filter, recaption, dalle-ingest or diffusiondb-synth output): tars, folders or s3:// prefixes; keys kept. */
  input: z.object({
    paths: z.array(z.string()).min(1),
    unit_rows: unitRows,
    /**
     * `bitprep dedup` outputs whose views apply: an input row they drop (a later exact or near
     * copy of a picture another output or unit holds) is recorded as dropped `duplicate` or
     * `near_duplicate`, with the copy kept, and not encoded. Every input tar must be a unit the
     * dedup saw (checked at plan time).
     */
    exclude: z.array(z.string().min(1)).default([]),
  }).strict(),
  /** The dataset's name in every latent row (`source`), what training-mix weighs by, e.g. laion, dalle3, flux-schnell. */
  source: z.string().min(1),
  /** The BIT encoder: an ONNX export in process, or KServe v2 endpoints (one per GPU). */
  encoder: z.object({
    model: modelSource,
    /** Size, batching and waiting (stages/encode.ts). */
    ...encoderOptions.omit({ decode_concurrency: true }).shape,
  }).strict(),
  decode_concurrency: encoderOptions.shape.decode_concurrency,
  /** Optional: caption token ids stored beside the latent (stages/caption-tokens.ts documents the options). */
  text_tokens: textTokensConfig.optional(),
}).strict().superRefine((c, ctx) => {
  const problem = viewsProblem(c.encoder.crop, c.encoder.views);
  if (problem) ctx.addIssue({ code: 'custom', path: ['encoder', 'views'], message: problem });
});

export type PreEncodeConfig = z.infer<typeof preEncodeConfig>;

/** Float annotation columns, pinned: a shard whose scores happen to be whole would otherwise type them INT64. */
const FLOAT_COLUMNS = { aesthetic_score: 'DOUBLE', ocr_density: 'DOUBLE', ocr_median_height: 'DOUBLE', ocr_min_height: 'DOUBLE', similarity: 'DOUBLE', pwatermark: 'DOUBLE', punsafe: 'DOUBLE', gen_guidance: 'DOUBLE', cfg: 'DOUBLE', image_nsfw: 'DOUBLE', prompt_nsfw: 'DOUBLE' } as const;

/** Encoder replicas, opened and checked against the contract (a wrong export fails before any shard is read, not on the first batch). */
async function openEncoder(cfg: PreEncodeConfig): Promise<{ pool: ReplicaPool<TensorModel>; models: TensorModel[] }> {
  const replicas = await loadTensorModels(cfg.encoder.model, 'bit-encoder', { breaker: modelBreaker(cfg.breaker) });
  for (const r of replicas) checkBitEncoder(r.client, { size: cfg.encoder.size });
  return { pool: new ReplicaPool(replicas), models: replicas.map((r) => r.client) };
}

async function openTokenizer(tt: TextTokensConfig, log: Logger): Promise<CaptionTokenizer> {
  const t = await loadCaptionTokenizer(tt.tokenizer, { max_length: tt.max_length, padding: tt.padding, add_special_tokens: tt.add_special_tokens, pad_id: tt.pad_id });
  log.info(`text_tokens: ${t.path} (sha256 ${t.sha256}), max_length ${t.maxLength}, ${t.padding} padding with id ${t.padId}, special ids before the text [${t.prefix.join(', ')}] and after it [${t.suffix.join(', ')}]`);
  return t;
}

/** A pre-encode session: one encoder pool (and caption tokenizer) for all its units, opened by the first unit. */
function openPreEncode(cfg: PreEncodeConfig, log: Logger): JobSession {
  let encoder: ReturnType<typeof openEncoder> | undefined;
  // The dedups' views, read a unit at a time (summaries once for the session).
  let views: Promise<DedupViews> | undefined;
  let tokenizer: Promise<CaptionTokenizer> | undefined;
  return {
    async run(unit, ctx) {
      const started = new Date();
      const stats = new StatsCollector();
      const { pool } = await (encoder ??= openEncoder(cfg));
      const tt = cfg.text_tokens;
      const stages = [
        ...(cfg.input.exclude.length > 0 ? [excludeStage(await (await (views ??= openViews(cfg.input.exclude))).dropsOf(unit.inputs[0].uri))] : []),
        sourceStage(cfg.source),
        ...(tt ? [captionTokensStage(await (tokenizer ??= openTokenizer(tt, log)), tt.fields)] : []),
        ...encodeStages({ pool, size: cfg.encoder.size, crop: cfg.encoder.crop, views: cfg.encoder.views, viewSeed: cfg.encoder.view_seed, batchSize: cfg.encoder.batch_size, maxBatchesInFlight: cfg.encoder.max_batches_in_flight, maxWaitMs: cfg.encoder.max_wait_ms, decodeConcurrency: cfg.decode_concurrency }),
      ];
      const stream = pipe(webDatasetSource(unit, sourceOptions(cfg)), stages, { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
      return writeLatentShards(stream, { output: ctx.output, job: 'pre-encode', unitId: unit.id, stats, started, onRows: ctx.onRows, columnTypes: tt ? { ...FLOAT_COLUMNS, ...tokenColumnTypes(tt) } : FLOAT_COLUMNS, shardOnlyFields: tt?.fields.map(tokensField) });
    },
    async close() {
      // An encoder that failed to open (server down, wrong model) holds nothing; its error was the unit's.
      await encoder?.then((x) => Promise.all(x.models.map((m) => m.close())), () => undefined);
    },
  };
}

const openViews = (dirs: readonly string[]): Promise<DedupViews> => import('../stages/dedup/dedup-view.js').then((m) => new m.DedupViews(dirs));

/** Drops the rows a dedup named as later copies, before anything is decoded. */
function excludeStage(dropped: Map<string, DedupDropOfRow>): Stage {
  return async function* (input) {
    for await (const s of input) {
      const d = s.status.kind === 'ok' ? dropped.get(s.key) : undefined;
      yield d === undefined ? s : drop(s, d.by, d.kept);
    }
  };
}

function sourceStage(source: string): Stage {
  return async function* (input) {
    for await (const s of input) {
      // A dataset's own `source` field (Dalle3-1M has one) is kept under another name.
      if (s.fields.source !== undefined && s.fields.source !== source) s.fields.source_original = s.fields.source;
      s.fields.source = source;
      yield s;
    }
  };
}

const sourceOptions = (cfg: PreEncodeConfig) => ({ paths: cfg.input.paths, unit_rows: cfg.input.unit_rows, keep_keys: true });

/**
 * Image shards → decode (CPU, ahead) → BIT encoder (batched over replicas) → 1024-byte packed
 * latents → latent shards (`<unit>.latents.parquet`, zstd) with the records of every row and,
 * once every unit is done, `index.json`.
 */
export const preEncodeJob: Job<PreEncodeConfig> = {
  name: 'pre-encode',
  description: 'encode image shards with the BIT encoder into packed 128×64-bit latent shards (Parquet, zstd) and an index.json',
  schema: preEncodeConfig,
  // How the run goes, not what it writes: these may change on a rerun of an output.
  operational: ['encoder.batch_size', 'encoder.max_batches_in_flight', 'encoder.max_wait_ms'],
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkPreEncode,
  async plan(cfg) {
    return planWebDatasetUnits(sourceOptions(cfg));
  },
  open: openPreEncode,
  async finalize(output, unitIds, log) {
    // finalize gets no config: the crop settings come from the output's own _config.json.
    const cfg = preEncodeConfig.parse(JSON.parse(new TextDecoder().decode(await output.get(CONFIG_NAME))));
    await writeLatentManifest(output, 'pre-encode', unitIds, log, { crop: cfg.encoder.crop, views: cfg.encoder.views });
  },
};

/** pre-encode: the tars exist, the encoder honours the BIT encoder contract, the tokenizer loads. */
async function checkPreEncode(cfg: PreEncodeConfig, log: Logger): Promise<string[]> {
  const problems = await checkTarInputs(cfg.input.paths);
  const excludeOk: string[] = [];
  for (const [i, d] of cfg.input.exclude.entries()) {
    const missing = await fileProblem(`input.exclude[${i}]`, `${d.replace(/\/+$/, '')}/${DEDUP_SUMMARY}`, 'file (a finished bitprep dedup output)');
    if (missing) problems.push(missing);
    else excludeOk.push(d);
  }
  if (problems.length === 0 && excludeOk.length > 0) {
    // Every tar's unit must have a view: a unit made after the dedup would otherwise be encoded whole.
    try {
      const missing = await (await openViews(excludeOk)).missingViews((await planWebDatasetUnits(sourceOptions(cfg))).map((u) => u.inputs[0].uri));
      if (missing.length > 0) problems.push(`input.exclude: ${missing.length} input unit(s) have no dedup view (e.g. ${missing[0]}); they were made after the dedup: run bitprep dedup again`);
    } catch (err) {
      problems.push(`input.exclude: ${messageOf(err)}`);
    }
  }
  problems.push(...(await checkModelSource('encoder.model', cfg.encoder.model, (m) => checkBitEncoder(m, { size: cfg.encoder.size }), log)));
  const tt = cfg.text_tokens;
  if (tt) {
    const missing = await fileProblem('text_tokens.tokenizer', tt.tokenizer, 'file (tokenizer.json)');
    if (missing) problems.push(missing);
    else {
      try {
        await loadCaptionTokenizer(tt.tokenizer, { max_length: tt.max_length, padding: tt.padding, add_special_tokens: tt.add_special_tokens, pad_id: tt.pad_id });
      } catch (err) {
        const msg = messageOf(err);
        problems.push(msg.startsWith('text_tokens') ? msg : `text_tokens.tokenizer: ${msg}`);
      }
    }
  }
  return problems;
}
