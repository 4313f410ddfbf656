import { modelBreaker } from '../src/outage.js';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { mapConcurrent } from '../src/concurrency.js';
import { baseJobConfig } from '../src/config/load-config.js';
import { ContentCache } from '../src/content-cache.js';
import type { Job, JobSession } from '../src/job.js';
import type { Logger } from '../src/log.js';
import { ChatClient } from '../src/models/openai-chat.js';
import { DEFAULT_RETRY } from '../src/retry.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { openInputFile } from '../src/stores/input-file.js';
import { openStore } from '../src/stores/open-store.js';
import type { Unit } from '../src/units/unit.js';
import { CAPTION_CHECK_DEFAULTS, type CaptionCheckOptions } from '../stages/recaption/caption-check.js';
import { captionCacheKey, captionRequest, partsOf, readAnswer, requestImageUrl, type CaptionRequestOptions } from '../stages/recaption/caption-request.js';
import { isCaptionCacheEntry, recaptionStage, type CaptionCacheEntry } from '../stages/recaption/recaption-stage.js';
import { batchCustomId, batchRequestLine, parseBatchCustomId, parseBatchOutputLine } from '../stages/recaption/run-batch.js';
import { writeImageShards } from '../stages/sinks/image-shards.js';
import { planWebDatasetUnits, webDatasetSource } from '../stages/sources/webdataset-source.js';
import { unitRows } from './config-parts.js';
import { checkTarInputs, shown } from './checks.js';
import { stat } from 'node:fs/promises';

const DEFAULT_PROMPTS = {
  version: 'v1',
  json:
    'Describe this image for a text-to-image training set. Answer with JSON with two fields. ' +
    '"long_caption": 3 to 6 sentences on the main subjects, their attributes and actions, the setting, composition, colours, lighting and style, quoting any legible text exactly. ' +
    '"short_caption": one sentence of at most 20 words naming the main subject and the setting. ' +
    'Describe only what is visible, and start directly with the subject, not with "The image shows".',
  long:
    'Describe this image in 3 to 6 sentences for a text-to-image training set: the main subjects, their attributes and actions, the setting, composition, colours, lighting and style, quoting any legible text exactly. ' +
    'Describe only what is visible, and start directly with the subject, not with "The image shows".',
  short: 'Caption this image in one sentence of at most 20 words naming the main subject and the setting. Start directly with the subject.',
};

const captionRules = z.object({ min_words: z.number().int().min(0), max_words: z.number().int().min(1) }).strict();

export const recaptionConfig = baseJobConfig.extend({
  job: z.literal('recaption'),
  /** Image shards (WebDataset tars, e.g. laion-filter's output): files, folders or s3:// prefixes. One unit per tar; keys are kept. */
  input: z.object({
    paths: z.array(z.string()).min(1),
    /** Samples per tar at most (bitprep's shards: the producing job's unit_rows). */
    unit_rows: unitRows,
  }).strict(),
  /** The OpenAI-compatible server (vLLM serving Qwen2.5-VL-7B-Instruct). */
  server: z.object({
    /** Up to and including /v1. */
    base_url: z.string().url(),
    /** The served model name (vLLM's --served-model-name); part of the cache key. */
    model: z.string().min(1).default('Qwen/Qwen2.5-VL-7B-Instruct'),
    /** Environment variable holding the API key, if the server wants one (keys never go in configs). */
    api_key_env: z.string().default('OPENAI_API_KEY'),
    /** Requests in flight: vLLM batches continuously, so throughput comes from many at once. */
    max_in_flight: z.number().int().min(1).default(256),
    timeout_ms: z.number().int().min(1).default(300_000),
    /**
     * Retries of a request after a transient failure (429, 5xx, resets, refused connections,
     * timeouts), with exponential backoff from 250 ms; a server still unreachable after them is an
     * outage that stops the run.
     */
    retries: z.number().int().min(0).default(DEFAULT_RETRY.retries),
  }).strict(),
  /** `json`: one request per image, both captions under a JSON schema; `two_requests`: one plain request per caption. */
  mode: z.enum(['json', 'two_requests']).default('json'),
  /** Versioned prompts; bump `version` whenever a text changes (it is part of the cache key). */
  prompts: z.object({
    version: z.string().min(1),
    system: z.string().optional(),
    json: z.string().min(1),
    long: z.string().min(1),
    short: z.string().min(1),
  }).strict().default(DEFAULT_PROMPTS),
  sampling: z.object({
    max_tokens: z.number().int().min(16).default(512),
    /** Above 0 so that a retry with the next seed gives a different answer. */
    temperature: z.number().min(0).default(0.3),
    /** Seed of each image's first attempt; attempt n uses seed + n. */
    seed: z.number().int().min(0).default(0),
    /** Extra top-level request fields, e.g. {top_p: 0.9, repetition_penalty: 1.05}. */
    extra: z.record(z.string(), z.unknown()).default({}),
  }).strict().prefault({}),
  /** The image as sent: fitted inside max_side (Qwen2.5-VL spends a visual token per 28×28 pixels), JPEG. */
  request_image: z.object({
    max_side: z.number().int().min(28).default(448),
    quality: z.number().int().min(1).max(100).default(90),
  }).strict().prefault({}),
  /** What a caption must satisfy (stages/recaption/caption-check.ts). */
  validation: z.object({
    long: captionRules.default(CAPTION_CHECK_DEFAULTS.long),
    short: captionRules.default(CAPTION_CHECK_DEFAULTS.short),
    boilerplate: z.array(z.string()).default(CAPTION_CHECK_DEFAULTS.boilerplate),
    strip_boilerplate: z.boolean().default(CAPTION_CHECK_DEFAULTS.strip_boilerplate),
    refusals: z.array(z.string()).default(CAPTION_CHECK_DEFAULTS.refusals),
    min_distinct_trigrams: z.number().min(0).max(1).default(CAPTION_CHECK_DEFAULTS.min_distinct_trigrams),
  }).strict().default(CAPTION_CHECK_DEFAULTS),
  /** Requests per caption (each with the next seed) before the image fails with the last answer's problem. */
  attempts: z.number().int().min(1).default(3),
  /**
   * Content-addressed caption cache (local directory or s3:// prefix), keyed by image SHA-256,
   * model, prompt version, mode and the image as sent. Point several jobs at one cache and none
   * pays for the same caption twice. Default: `<output>/caption-cache`.
   */
  cache: z.string().optional(),
  /** `server`: ask the model for what the cache lacks; `cache`: captions only from the cache (after `recaption import`), a miss fails. */
  captions_from: z.enum(['server', 'cache']).default('server'),
  /** Images captioned at once (the client's max_in_flight caps requests too). */
  concurrency: z.number().int().min(1).default(256),
}).strict();

export type RecaptionConfig = z.infer<typeof recaptionConfig>;

export function cacheUrl(cfg: RecaptionConfig): string {
  return cfg.cache ?? `${cfg.output.replace(/\/+$/, '')}/caption-cache`;
}

export function requestOptions(cfg: RecaptionConfig): CaptionRequestOptions {
  return { model: cfg.server.model, mode: cfg.mode, prompts: cfg.prompts, ...cfg.sampling, ...cfg.request_image };
}

function checkOptions(cfg: RecaptionConfig): CaptionCheckOptions {
  return cfg.validation;
}

function openCache(cfg: RecaptionConfig): ContentCache<CaptionCacheEntry> {
  return new ContentCache(openStore(cacheUrl(cfg)), isCaptionCacheEntry);
}

function chatClient(cfg: RecaptionConfig): ChatClient {
  return new ChatClient({
    baseUrl: cfg.server.base_url,
    model: cfg.server.model,
    apiKey: process.env[cfg.server.api_key_env] || undefined,
    maxInFlight: cfg.server.max_in_flight,
    timeoutMs: cfg.server.timeout_ms,
    retry: { ...DEFAULT_RETRY, retries: cfg.server.retries },
    breaker: modelBreaker(cfg.breaker),
  });
}

/** A recaption session: one chat client for all its units, so its in-flight cap holds across parallel units. */
function openRecaption(cfg: RecaptionConfig): JobSession {
  const client = cfg.captions_from === 'cache' ? undefined : chatClient(cfg);
  const stagesOf = () => [recaptionStage({ client, cache: openCache(cfg), request: requestOptions(cfg), check: checkOptions(cfg), attempts: cfg.attempts, concurrency: cfg.concurrency })];
  return {
    async run(unit, ctx) {
      const started = new Date();
      const stats = new StatsCollector();
      const stream = pipe(webDatasetSource(unit, sourceOptions(cfg)), stagesOf(), { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
      return writeImageShards(stream, { output: ctx.output, job: 'recaption', unitId: unit.id, stats, started, onRows: ctx.onRows });
    },
    async *rerun(unit, keys, ctx) {
      async function* only() {
        for await (const s of webDatasetSource(unit, sourceOptions(cfg))) if (keys.has(s.key)) yield s;
      }
      yield* pipe(only(), stagesOf(), { unitId: unit.id, stats: ctx.stats, log: ctx.log });
    },
    async close() {
      client?.close();
    },
  };
}

const sourceOptions = (cfg: RecaptionConfig) => ({ paths: cfg.input.paths, unit_rows: cfg.input.unit_rows, keep_keys: true });

/** Image shards → one long and one short caption per image (original captions kept) → image shards. */
export const recaptionJob: Job<RecaptionConfig> = {
  name: 'recaption',
  description: 'add a long and a short caption to every image of image shards with Qwen2.5-VL through vLLM (or an imported batch)',
  schema: recaptionConfig,
  // How the run goes, not what it writes: these may change on a rerun of an output.
  operational: ['server.base_url', 'server.api_key_env', 'server.max_in_flight', 'server.timeout_ms', 'server.retries', 'concurrency', 'cache', 'captions_from'],
  plan: (cfg) => planWebDatasetUnits(sourceOptions(cfg)),
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkRecaption,
  open: openRecaption,
  transientFailures: ['recaption:timeout', 'recaption:network', 'recaption:http_status', 'recaption:malformed_response'],
};

/** Every funnel reason a recaption row can fail with that a newly imported batch answer may cure. */
export const RECAPTION_ANSWER_FAILURES = ['not_in_batch', 'batch_error', 'malformed_response', 'truncated', 'bad_json', 'empty', 'too_short', 'too_long', 'refusal', 'boilerplate', 'repetition'].map((c) => `recaption:${c}`);

/** Which units of a plan an export or import covers. */
export interface UnitSelection {
  shardIndex?: number;
  shardCount?: number;
}

function selectUnits(units: Unit[], sel: UnitSelection): Unit[] {
  if (sel.shardCount === undefined) return units;
  const n = sel.shardCount;
  const i = sel.shardIndex ?? 0;
  if (n < 1 || i >= n) throw new Error(`shard index ${i} is not below shard count ${n}`);
  return units.filter((_, k) => k % n === i);
}

export interface ExportResult {
  images: number;
  /** Request lines written. */
  requests: number;
  /** Caption parts already in the cache (not exported). */
  cached: number;
  /** Samples without a usable image (recorded as failed by a run). */
  skipped: number;
}

/**
 * `bitprep recaption export`: writes the `vllm run-batch` JSONL input for every caption the
 * cache lacks, in the exact request shape the online job sends. `attempt` picks the seed
 * (seed + attempt): export again with `attempt` 1, 2… for the images a previous import refused.
 */
export async function exportRecaptionBatch(cfg: RecaptionConfig, out: string, opts: UnitSelection & { attempt?: number }, log: Logger): Promise<ExportResult> {
  const o = requestOptions(cfg);
  const cache = openCache(cfg);
  const attempt = opts.attempt ?? 0;
  const units = selectUnits(await planWebDatasetUnits(sourceOptions(cfg)), opts);
  const { store, name } = openInputFile(out);
  const writer = await store.putStream(name);
  const res: ExportResult = { images: 0, requests: 0, cached: 0, skipped: 0 };
  try {
    for (const unit of units) {
      const lines = mapConcurrent(
        webDatasetSource(unit, sourceOptions(cfg)),
        async (s) => {
          if (s.status.kind !== 'ok' || !s.image) return { skipped: true, lines: [] as string[], cached: 0 };
          const sha = createHash('sha256').update(s.image).digest('hex');
          const lines: string[] = [];
          let cached = 0;
          let url: string | undefined;
          for (const part of partsOf(o.mode)) {
            const key = captionCacheKey(sha, part, o);
            if ((await cache.get(key))?.ok) {
              cached++;
              continue;
            }
            url ??= await requestImageUrl(s.image, o);
            lines.push(batchRequestLine(o.model, batchCustomId(part, attempt, key), captionRequest(url, part, attempt, o)));
          }
          return { skipped: false, lines, cached };
        },
        { concurrency: 8, ordered: true },
      );
      for await (const r of lines) {
        if (r.skipped) res.skipped++;
        else res.images++;
        res.cached += r.cached;
        for (const l of r.lines) await writer.write(Buffer.from(l + '\n'));
        res.requests += r.lines.length;
      }
      log.info(`recaption export: unit ${unit.id} done (${res.requests} requests so far)`);
    }
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return res;
}

export interface ImportResult {
  lines: number;
  /** Answers that passed validation and went into the cache. */
  accepted: number;
  /** Answers refused, by problem (their reasons go into the cache for the cache-only run). */
  refused: Record<string, number>;
  /** Lines whose custom_id is not one of bitprep's (ignored). */
  foreign: number;
}

/**
 * `bitprep recaption import`, first half: reads a `vllm run-batch` output file, validates every
 * answer exactly as the online job does, and stores accepted captions (and the reasons of
 * refused ones) in the caption cache. The command then runs the job with captions_from=cache.
 */
export async function importRecaptionBatch(cfg: RecaptionConfig, batchOutput: string, log: Logger): Promise<ImportResult> {
  const o = requestOptions(cfg);
  const cache = openCache(cfg);
  const { store, name } = openInputFile(batchOutput);
  const res: ImportResult = { lines: 0, accepted: 0, refused: {}, foreign: 0 };
  const rl = createInterface({ input: await store.getStream(name), crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    res.lines++;
    const answer = parseBatchOutputLine(line, `${batchOutput}:${res.lines}`);
    const id = parseBatchCustomId(answer.customId);
    if (!id) {
      res.foreign++;
      continue;
    }
    const verdict = answer.ok ? readAnswer(id.part, answer.result, checkOptions(cfg)) : answer;
    if (verdict.ok) {
      const usage = answer.ok ? answer.result.usage : { promptTokens: 0, completionTokens: 0 };
      await cache.put(id.cacheKey, { ok: true, ...verdict.captions, seed: o.seed + id.attempt, attempts: id.attempt + 1, model: o.model, prompt_version: o.prompts.version, prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens });
      res.accepted++;
    } else {
      // Never overwrite a caption an earlier import or run accepted with a later refusal.
      if (!(await cache.get(id.cacheKey))?.ok) await cache.put(id.cacheKey, { ok: false, problem: verdict.problem, detail: `${verdict.detail} (batch attempt ${id.attempt})` });
      res.refused[verdict.problem] = (res.refused[verdict.problem] ?? 0) + 1;
    }
  }
  log.info(`recaption import: ${res.lines} answers, ${res.accepted} accepted, ${Object.values(res.refused).reduce((a, b) => a + b, 0)} refused`);
  return res;
}

/** recaption: the tars exist; a cache-only run has a local cache to read. */
async function checkRecaption(cfg: RecaptionConfig): Promise<string[]> {
  const problems = await checkTarInputs(cfg.input.paths);
  // As recaption's cacheUrl: the cache key, else `<output>/caption-cache`.
  const cache = cfg.cache ?? `${cfg.output.replace(/\/+$/, '')}/caption-cache`;
  if (cfg.captions_from === 'cache' && !cache.startsWith('s3://')) {
    const st = await stat(cache).catch(() => undefined);
    if (!st?.isDirectory()) problems.push(`${cfg.cache === undefined ? 'cache (default <output>/caption-cache)' : 'cache'}: ${shown(cache)} does not exist, and captions_from: cache reads every caption from it (run bitprep recaption import first)`);
  }
  return problems;
}
