import { modelBreaker } from '../src/outage.js';
import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job, JobSession } from '../src/job.js';
import type { Logger } from '../src/log.js';
import { IMAGE_REQUEST_TIMEOUT_MS, ImageClient } from '../src/models/openai-images.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import type { Unit } from '../src/units/unit.js';
import { decodeConcurrency, decodeResize } from '../stages/decode-resize.js';
import { buildPromptSelection, layoutPromptInputs, promptSelection, promptSource, setUnitId, type PromptSelection } from '../stages/prompt-selection.js';
import { writeImageShards } from '../stages/sinks/image-shards.js';
import { IMAGE_MODEL_PRESETS, synthesize, type GenerationSettings } from '../stages/synthesize.js';
import { imageOptions, unitRows } from './config-parts.js';
import { listInputFiles, missingColumnProblem, readSchemas } from './checks.js';

/** Fields the client sets itself; `extra` may not override them. */
/** Float columns whose values are often whole (cfg 7, guidance 0): pinned so every shard has one type. */
const FLOAT_COLUMNS = { cfg: 'DOUBLE', image_nsfw: 'DOUBLE', prompt_nsfw: 'DOUBLE', gen_guidance: 'DOUBLE' } as const;

const TYPED_FIELDS = ['model', 'prompt', 'size', 'n', 'seed', 'response_format'];

/** One image model: where it is served and how to ask it. Unset settings come from the preset. */
const modelConfig = z.object({
  /** Names the model's shard set (`<name>-00003.tar`) and derives its seeds: letters, digits, `_` and `-` only. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'must be key-safe: letters, digits, "_" and "-" (no dots, slashes or spaces)'),
  /** Defaults for served_model, steps, guidance and size; `custom` has none (set them all). */
  preset: z.enum([...(Object.keys(IMAGE_MODEL_PRESETS) as (keyof typeof IMAGE_MODEL_PRESETS)[]), 'custom']),
  /** The request's `model` field, as the server knows the model. */
  served_model: z.string().min(1).optional(),
  /** OpenAI-compatible base URLs up to and including /v1, e.g. one per GPU; the load is spread over them. */
  endpoints: z.array(z.string().url()).min(1),
  /** WIDTHxHEIGHT asked for; every answer is checked to have it. */
  size: z.string().regex(/^\d+x\d+$/, 'must be WIDTHxHEIGHT').optional(),
  steps: z.number().int().min(1).optional(),
  guidance: z.number().min(0).optional(),
  /** Request field names of steps and guidance on this server (null: do not send). */
  steps_field: z.string().min(1).nullable().default('num_inference_steps'),
  guidance_field: z.string().min(1).nullable().default('guidance_scale'),
  /** More top-level request fields, e.g. { negative_prompt: "", max_sequence_length: 256 }. */
  extra: z.record(z.string(), z.unknown()).default({}),
  /** Environment variable holding the API key, if the servers want one (keys never go in configs). */
  api_key_env: z.string().optional(),
  /** Requests one endpoint gets at once; 2 keeps a GPU busy across the round trip. */
  max_in_flight_per_endpoint: z.number().int().min(1).default(2),
  /** Per request; a queue on a busy server counts too. */
  timeout_ms: z.number().int().min(1).default(IMAGE_REQUEST_TIMEOUT_MS),
  /** Retries of a transient failure on the same endpoint before the call moves to another. */
  retries: z.number().int().min(0).default(2),
  /** First retry backoff; doubles per retry with jitter. */
  retry_delay_ms: z.number().int().min(0).default(1000),
  /** How long an endpoint that failed 3 times running is left out. */
  endpoint_cooldown_ms: z.number().int().min(1).default(30_000),
}).strict();

type ModelConfig = z.infer<typeof modelConfig>;

/** Prompt clean-up, NSFW filter and sample (stages/prompt-selection.ts). */
const promptsConfig = z.object({
  /**
   * Prompts whose `prompt_nsfw` is above this are dropped (null: no filter). DiffusionDB's score
   * is Detoxify's probability that the prompt is toxic or sexually explicit (the larger of the
   * two); 0.5 is the classifier's own decision boundary and matches laion-filter's punsafe < 0.5.
   * Rows without a score are dropped while the filter is on.
   */
  max_prompt_nsfw: z.number().min(0).max(1).nullable().default(0.5),
  /** At most this many distinct prompts (the sample's lowest ranks); unset: all. */
  max_prompts: z.number().int().min(1).optional(),
  /** Share of distinct prompts kept, drawn by seeded rank (1: all). */
  sample_fraction: z.number().gt(0).max(1).default(1),
  /** Seed of the sample's ranks. */
  sample_seed: z.number().int().default(0),
}).strict();

export const diffusionDbSynthConfig = baseJobConfig.extend({
  job: z.literal('diffusiondb-synth'),
  /** DiffusionDB metadata parquet (metadata.parquet, metadata-large.parquet) or any prompt table. */
  input: z.object({
    /** Files, folders of *.parquet, or s3:// URLs; read in sorted order (first occurrence = earliest). */
    paths: z.array(z.string()).min(1),
    prompt_column: z.string().default('prompt'),
    nsfw_column: z.string().default('prompt_nsfw'),
    /** Rows per unit, and per output shard, of each model. */
    unit_rows: unitRows,
  }).strict(),
  prompts: promptsConfig.default(promptsConfig.parse({})),
  /** One image per kept prompt from each model; each model writes its own shard set. */
  models: z.array(modelConfig).min(1),
  /** Resize and re-encode of the generated images (stages/decode-resize.ts). */
  image: imageOptions.default(imageOptions.parse({})),
  decode_concurrency: decodeConcurrency,
}).strict().superRefine((cfg, ctx) => {
  const names = new Set<string>();
  cfg.models.forEach((m, i) => {
    if (names.has(m.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `duplicate model name ${JSON.stringify(m.name)}` });
    names.add(m.name);
    const urls = new Set(m.endpoints.map((u) => u.replace(/\/+$/, '')));
    if (urls.size !== m.endpoints.length) ctx.addIssue({ code: 'custom', path: ['models', i, 'endpoints'], message: 'lists an endpoint twice (raise max_in_flight_per_endpoint instead)' });
    if (m.preset === 'custom') {
      for (const k of ['served_model', 'steps', 'guidance', 'size'] as const) {
        if (m[k] === undefined) ctx.addIssue({ code: 'custom', path: ['models', i, k], message: 'required with preset custom' });
      }
    }
    const own = [...TYPED_FIELDS, m.steps_field, m.guidance_field].filter((f): f is string => !!f);
    for (const k of Object.keys(m.extra)) {
      if (own.includes(k)) ctx.addIssue({ code: 'custom', path: ['models', i, 'extra', k], message: `set by the job (use ${k === m.steps_field ? 'steps' : k === m.guidance_field ? 'guidance' : 'the model settings'}), not by extra` });
    }
  });
});

export type DiffusionDbSynthConfig = z.infer<typeof diffusionDbSynthConfig>;

/** A model entry with its preset's defaults filled in. */
export function generationSettings(m: ModelConfig): GenerationSettings {
  const p = m.preset === 'custom' ? undefined : IMAGE_MODEL_PRESETS[m.preset];
  return {
    name: m.name,
    preset: m.preset,
    served_model: m.served_model ?? p!.served_model,
    size: m.size ?? p!.size,
    steps: m.steps ?? p!.steps,
    guidance: m.guidance ?? p!.guidance,
    steps_field: m.steps_field,
    guidance_field: m.guidance_field,
    extra: m.extra,
  };
}

/**
 * DiffusionDB prompts → normalised, NSFW-filtered, deduplicated, sampled (computed once over the
 * whole input) → one image per prompt from each configured model over OpenAI-compatible
 * /v1/images/generations → decode and resize → one WebDataset shard set per model, with a record
 * of every input row in each.
 *
 * Units are models × row ranges (`<model>-<range>`), listed range by range so that several units
 * at once keep every model's servers busy; each model's shard set holds every input row once.
 */
export const diffusionDbSynthJob: Job<DiffusionDbSynthConfig> = {
  name: 'diffusiondb-synth',
  description: 'generate one image per distinct, safe DiffusionDB prompt from each configured image model',
  schema: diffusionDbSynthConfig,
  // How the run goes, not what it writes: these may change on a rerun of an output.
  operational: ['models.*.endpoints', 'models.*.api_key_env', 'models.*.max_in_flight_per_endpoint', 'models.*.retries', 'models.*.retry_delay_ms', 'models.*.endpoint_cooldown_ms'],
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkDiffusionDbSynth,
  async plan(cfg) {
    const layout = await layoutPromptInputs(cfg.input, cfg.prompts.max_prompt_nsfw !== null);
    const units: Unit[] = [];
    layout.ranges.forEach((r, i) => {
      for (const m of cfg.models) units.push({ id: setUnitId(m.name, i, layout), inputs: [{ uri: r.uri, rowStart: r.rowStart, rowEnd: r.rowEnd }] });
    });
    return units;
  },
  open: openDiffusionDbSynth,
  transientFailures: ['timeout', 'network', 'http_status', 'malformed_response'].map((c) => `synthesize:${c}`),
};

/**
 * A diffusiondb-synth session: the prompt selection, computed once (whichever unit asks first;
 * units of every model share it), and one endpoint pool per model, so parallel units share its caps.
 */
function openDiffusionDbSynth(cfg: DiffusionDbSynthConfig, log: Logger): JobSession {
  let selection: Promise<PromptSelection> | undefined;
  const selectionOnce = (): Promise<PromptSelection> => {
    if (!selection) {
      const s = buildPromptSelection(cfg.input, cfg.prompts, log);
      selection = s;
      // A failed scan (unreadable file) is not kept: the next unit tries again and reports it.
      s.catch(() => {
        if (selection === s) selection = undefined;
      });
    }
    return selection;
  };
  const pools = new Map<string, ModelPool>();
  const poolOnce = (m: ModelConfig): ModelPool => {
    let p = pools.get(m.name);
    if (!p) pools.set(m.name, (p = modelPool(cfg, m)));
    return p;
  };
  const stagesOf = async (unit: Unit) => {
    const m = modelOf(unit, cfg);
    const { pool, concurrency } = poolOnce(m);
    return [
      promptSelection(await selectionOnce(), m.name),
      synthesize({ settings: generationSettings(m), pool, concurrency }),
      decodeResize({ ...cfg.image, concurrency: cfg.decode_concurrency }),
    ];
  };
  return {
    async run(unit, ctx) {
      const started = new Date();
      const stats = new StatsCollector();
      const stream = pipe(promptSource(unit, cfg.input), await stagesOf(unit), { unitId: unit.id, stats, log: ctx.log, signal: ctx.signal });
      return writeImageShards(stream, { output: ctx.output, job: 'diffusiondb-synth', unitId: unit.id, stats, started, onRows: ctx.onRows, columnTypes: FLOAT_COLUMNS });
    },
    async *rerun(unit, keys, ctx) {
      yield* pipe(promptSource(unit, cfg.input, keys), await stagesOf(unit), { unitId: unit.id, stats: ctx.stats, log: ctx.log });
    },
    async close() {
      for (const p of pools.values()) p.close();
    },
  };
}

interface ModelPool {
  pool: ReplicaPool<ImageClient>;
  concurrency: number;
  close(): void;
}

/** One model's endpoints as a replica pool, each with its own client (caps, retries, breaker). */
function modelPool(cfg: DiffusionDbSynthConfig, m: ModelConfig): ModelPool {
  const settings = generationSettings(m);
  const apiKey = m.api_key_env ? process.env[m.api_key_env] || undefined : undefined;
  const clients = m.endpoints.map((url) => ({
    name: endpointName(url),
    client: new ImageClient({
      baseUrl: url,
      model: settings.served_model,
      apiKey,
      maxInFlight: m.max_in_flight_per_endpoint,
      timeoutMs: m.timeout_ms,
      retry: { retries: m.retries, minDelayMs: m.retry_delay_ms, maxDelayMs: Math.max(m.retry_delay_ms, 30_000) },
      breaker: modelBreaker(cfg.breaker),
    }),
  }));
  const pool = new ReplicaPool(clients, { maxInFlightPerReplica: m.max_in_flight_per_endpoint, cooldownMs: m.endpoint_cooldown_ms });
  return { pool, concurrency: clients.length * m.max_in_flight_per_endpoint, close: () => clients.forEach((c) => c.client.close()) };
}

/** The model a unit belongs to: its id is `<model name>-<range digits>`. */
function modelOf(unit: Unit, cfg: DiffusionDbSynthConfig): ModelConfig {
  const name = /^(.+)-\d+$/.exec(unit.id)?.[1];
  const m = cfg.models.find((x) => x.name === name);
  if (!m) throw new Error(`unit ${unit.id} names no configured model (models: ${cfg.models.map((x) => x.name).join(', ')})`);
  return m;
}

/** An endpoint's name in stats and errors: its URL without any user info. */
function endpointName(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/+$/, '');
}

/** diffusiondb-synth: the prompt tables exist and hold the prompt column (and the NSFW one while its filter is on). */
async function checkDiffusionDbSynth(cfg: DiffusionDbSynthConfig): Promise<string[]> {
  const listed = await listInputFiles('input.paths', cfg.input.paths, '.parquet');
  const read = await readSchemas('input.paths', listed.files);
  const problems = [...listed.problems, ...read.problems];
  const p = missingColumnProblem('input.prompt_column', cfg.input.prompt_column, read.schemas);
  if (p) problems.push(p);
  if (cfg.prompts.max_prompt_nsfw !== null) {
    const n = missingColumnProblem('input.nsfw_column', cfg.input.nsfw_column, read.schemas);
    if (n) problems.push(`${n}; or set prompts.max_prompt_nsfw: null to filter nothing`);
  }
  return problems;
}
