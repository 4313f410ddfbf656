import { createHash } from 'node:crypto';
import { TransientError } from '../src/retry.js';
import { ModelResponseError } from '../src/models/openai-endpoint.js';
import type { ImageClient, ImageResult } from '../src/models/openai-images.js';
import type { ReplicaPool } from '../src/models/replica-pool.js';
import { findOutage } from '../src/outage.js';
import { toJson } from '../src/json-safe.js';
import { SampleError } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { addCount } from '../src/stats.js';

/** A model's published sampling settings, the defaults of a model entry that names it. */
export interface ImageModelPreset {
  /** The Hugging Face id, which servers usually take as the served model name. */
  served_model: string;
  steps: number;
  guidance: number;
  size: string;
}

/**
 * The settings each model's authors recommend (model cards, diffusers examples):
 * FLUX.1-schnell and SD3.5 Large Turbo are distilled for 4 steps without classifier-free guidance;
 * SD3.5 Large 28 steps at CFG 3.5; SD3.5 Medium 28 steps at CFG 4.5 (the card's example uses 40
 * steps; 28 is the common serving setting); PixArt-Σ 20 steps at CFG 4.5. All are 1024² models.
 */
export const IMAGE_MODEL_PRESETS = {
  'flux-schnell': { served_model: 'black-forest-labs/FLUX.1-schnell', steps: 4, guidance: 0, size: '1024x1024' },
  'sd35-large-turbo': { served_model: 'stabilityai/stable-diffusion-3.5-large-turbo', steps: 4, guidance: 0, size: '1024x1024' },
  'sd35-large': { served_model: 'stabilityai/stable-diffusion-3.5-large', steps: 28, guidance: 3.5, size: '1024x1024' },
  'sd35-medium': { served_model: 'stabilityai/stable-diffusion-3.5-medium', steps: 28, guidance: 4.5, size: '1024x1024' },
  'pixart-sigma': { served_model: 'PixArt-alpha/PixArt-Sigma-XL-2-1024-MS', steps: 20, guidance: 4.5, size: '1024x1024' },
} as const satisfies Record<string, ImageModelPreset>;

export type ImageModelPresetName = keyof typeof IMAGE_MODEL_PRESETS;

/** How every image of one model is asked for; all of it is recorded with the image. */
export interface GenerationSettings {
  /** Key-safe name of the model entry (e.g. `flux-schnell`); with the prompt, it derives the seed. */
  name: string;
  /** The preset the defaults came from, or `custom`. */
  preset: string;
  /** The `model` field of the request. */
  served_model: string;
  /** WIDTHxHEIGHT. */
  size: string;
  steps: number;
  guidance: number;
  /** Request field carrying `steps` (null: not sent). */
  steps_field: string | null;
  /** Request field carrying `guidance` (null: not sent). */
  guidance_field: string | null;
  /** Further top-level request fields (negative_prompt, max_sequence_length, …). */
  extra: Record<string, unknown>;
}

/**
 * Seeds lie in [0, 2^31 − 1]: every server accepts them, whether it parses the seed as a signed
 * 32-bit integer (many Go/Java/C++ front ends), an unsigned one (NumPy's legacy seeding) or a
 * 64-bit one (torch.Generator.manual_seed), and JSON carries them exactly.
 */
export const MAX_SEED = 2 ** 31 - 1;

/**
 * The seed of a prompt's image from one model: the first 31 bits of SHA-256 of the model entry's
 * name, a NUL and the normalised prompt. The same prompt and model always get the same seed, on
 * any machine and in any run; another model gets an independent one.
 */
export function generationSeed(prompt: string, model: string): number {
  return createHash('sha256').update(`${model}\0${prompt}`).digest().readUInt32BE(0) & MAX_SEED;
}

/** The request fields derived from the settings (steps, guidance, extra), as sent. */
export function requestExtra(g: GenerationSettings): Record<string, unknown> {
  const extra: Record<string, unknown> = { ...g.extra };
  if (g.steps_field) extra[g.steps_field] = g.steps;
  if (g.guidance_field) extra[g.guidance_field] = g.guidance;
  return extra;
}

export interface SynthesizeOptions {
  settings: GenerationSettings;
  /** The model's endpoints: calls go to the least busy one; one that keeps failing is set aside. */
  pool: ReplicaPool<ImageClient>;
  /** Images asked for at once by this stage (the pool's per-endpoint cap bounds requests too). */
  concurrency: number;
}

// Codes of a replica that may be unwell while the others are fine: worth trying elsewhere.
const MOVE_ON = new Set(['timeout', 'network', 'malformed_response']);

/**
 * One image per ok sample from `fields.caption`, at the settings and the seed from
 * generationSeed(caption, settings.name); the encoded image becomes `sample.image` for
 * decode-resize. Writes `gen_model`, `gen_preset`, `gen_served_model`, `gen_size`, `gen_steps`,
 * `gen_guidance`, `gen_extra` (JSON) and `gen_seed` on every sample it sees, failures included,
 * so each record says how its image was (or would have been) made. Which endpoint served an image
 * is left out of the records (it differs between runs) and counted in the stage stats instead.
 *
 * Failures (after the client's retries and the pool's moves): `synthesize:<client code>`
 * (timeout, network, http_status, malformed_response, not_an_image, wrong_size),
 * `synthesize:no_prompt`. Every endpoint set aside, refusing connections, unauthorised or not
 * serving the model is an outage (src/outage.ts): the unit stops and its rows stay untried.
 * Stats units: images, bytes, `endpoint:<name>`.
 */
export function synthesize(opts: SynthesizeOptions): Stage {
  const g = opts.settings;
  const extra = requestExtra(g);
  const recorded = {
    gen_model: g.name,
    gen_preset: g.preset,
    gen_served_model: g.served_model,
    gen_size: g.size,
    gen_steps: g.steps,
    gen_guidance: g.guidance,
    gen_extra: toJson(g.extra),
  };
  return sampleStage(
    'synthesize',
    async (s, stats, ctx) => {
      const prompt = s.fields.caption;
      if (typeof prompt !== 'string' || prompt === '') throw new SampleError('no_prompt', `sample ${s.key} has no caption to generate from`);
      const seed = generationSeed(prompt, g.name);
      Object.assign(s.fields, recorded, { gen_seed: seed });
      let result: { out: ImageResult; endpoint: string };
      try {
        result = await opts.pool.run(async (client, endpoint) => {
          try {
            return { out: await client.generate({ prompt, size: g.size, n: 1, seed, extra, signal: ctx.signal }), endpoint };
          } catch (err) {
            // The client reports these as final; to the pool they say "try another endpoint".
            if (err instanceof ModelResponseError && MOVE_ON.has(err.code)) throw Object.assign(new TransientError(err.message), { cause: err });
            throw err;
          }
        }, { signal: ctx.signal });
      } catch (err) {
        throw sampleErrorOf(err);
      }
      const image = result.out.images[0];
      s.image = image;
      addCount(stats, 'images');
      addCount(stats, 'bytes', image.length);
      addCount(stats, `endpoint:${result.endpoint}`);
    },
    { concurrency: opts.concurrency },
  );
}

/** The client's failure code, found through the pool's wrapping. */
function sampleErrorOf(err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  // Every endpoint down, refusing or not serving the model: the unit stops, the rows stay untried.
  const outage = findOutage(err);
  if (outage) return outage;
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof ModelResponseError) return new SampleError(e.code, message);
  }
  return new SampleError('model_error', message);
}
