import { createHash } from 'node:crypto';
import type { ContentCache } from '../../src/content-cache.js';
import type { ChatClient } from '../../src/models/openai-chat.js';
import { SampleError } from '../../src/sample.js';
import { sampleStage, type Stage } from '../../src/stage.js';
import { addCount, type StageStats } from '../../src/stats.js';
import type { CaptionCheckOptions } from './caption-check.js';
import { captionCacheKey, captionRequest, partsOf, readAnswer, requestImageUrl, type AnswerProblem, type CaptionPart, type CaptionRequestOptions } from './caption-request.js';

/**
 * What the caption cache holds per image and part: the validated captions, or (written only by
 * `recaption import`) why the batch answer was refused, so a cache-only run can say so.
 */
export type CaptionCacheEntry =
  | { ok: true; long?: string; short?: string; seed: number; attempts: number; model: string; prompt_version: string; prompt_tokens: number; completion_tokens: number }
  | { ok: false; problem: string; detail: string };

export function isCaptionCacheEntry(v: unknown): v is CaptionCacheEntry {
  const e = v as Record<string, unknown> | null;
  if (!e || typeof e !== 'object') return false;
  if (e.ok === false) return typeof e.problem === 'string' && typeof e.detail === 'string';
  return e.ok === true && typeof e.seed === 'number' && (typeof e.long === 'string' || typeof e.short === 'string');
}

export interface RecaptionStageOptions {
  /** The chat model; absent in cache-only runs (after `recaption import`). */
  client?: ChatClient;
  cache: ContentCache<CaptionCacheEntry>;
  request: CaptionRequestOptions;
  check: CaptionCheckOptions;
  /** Requests per caption part before the sample fails with the last answer's problem. */
  attempts: number;
  /** Images captioned at once; requests in flight are capped by the client as well. */
  concurrency: number;
}

type PartOutcome = { ok: true; entry: Extract<CaptionCacheEntry, { ok: true }> } | { ok: false; problem: AnswerProblem | 'not_in_batch' | string; detail: string };

/**
 * Adds `caption_long` and `caption_short` to every sample with an image, from the cache or the
 * chat model; the original caption and fields stay as they were. An answer that fails
 * validation is asked again with the next seed, up to `attempts`; then the sample fails with
 * the last problem (`recaption:refusal`, `recaption:truncated`…). Model errors that survive the
 * client's retries fail the sample with the client's code (`recaption:timeout`…).
 * Stats units: captions, requests, prompt_tokens, completion_tokens, cache_hits, invalid_<problem>.
 */
export function recaptionStage(opts: RecaptionStageOptions): Stage {
  const o = opts.request;
  return sampleStage(
    'recaption',
    async (s, stats, ctx) => {
      if (!s.image) throw new SampleError('no_image', `sample ${s.key} has no image to caption`);
      const image = s.image;
      const sha = createHash('sha256').update(image).digest('hex');
      let imageUrl: Promise<string> | undefined;
      const url = () =>
        (imageUrl ??= requestImageUrl(image, o).then((u) => {
          addCount(stats, 'image_bytes_sent', u.length);
          return u;
        }));
      const outcomes: PartOutcome[] = [];
      for (const part of partsOf(o.mode)) {
        const out = await captionPart(part, sha, url, stats, ctx.signal);
        if (!out.ok) throw new SampleError(out.problem, `sample ${s.key}: ${out.detail}`);
        outcomes.push(out);
      }
      const entries = outcomes.map((x) => (x as Extract<PartOutcome, { ok: true }>).entry);
      const long = entries.find((e) => e.long !== undefined)!;
      const short = entries.find((e) => e.short !== undefined)!;
      Object.assign(s.fields, {
        caption_long: long.long,
        caption_short: short.short,
        caption_model: o.model,
        caption_prompt_version: o.prompts.version,
        caption_seed: long.seed,
        caption_attempts: entries.reduce((a, e) => a + e.attempts, 0),
      });
      if (o.mode === 'two_requests') s.fields.caption_short_seed = short.seed;
      addCount(stats, 'captions');
    },
    { concurrency: opts.concurrency },
  );

  async function captionPart(part: CaptionPart, sha: string, url: () => Promise<string>, stats: StageStats, signal?: AbortSignal): Promise<PartOutcome> {
    const key = captionCacheKey(sha, part, o);
    const hit = await opts.cache.get(key);
    if (hit?.ok) {
      addCount(stats, 'cache_hits');
      return { ok: true, entry: hit };
    }
    if (!opts.client) {
      return hit ? { ok: false, problem: hit.problem, detail: `batch answer refused: ${hit.detail}` } : { ok: false, problem: 'not_in_batch', detail: `no ${part} caption for this image in the imported batch output (cache key ${key})` };
    }
    let last: PartOutcome | undefined;
    let promptTokens = 0;
    let completionTokens = 0;
    for (let attempt = 0; attempt < opts.attempts; attempt++) {
      const req = captionRequest(await url(), part, attempt, o);
      const r = await opts.client.complete({ ...req, signal });
      addCount(stats, 'requests');
      addCount(stats, 'prompt_tokens', r.usage.promptTokens);
      addCount(stats, 'completion_tokens', r.usage.completionTokens);
      promptTokens += r.usage.promptTokens;
      completionTokens += r.usage.completionTokens;
      const v = readAnswer(part, r, opts.check);
      if (v.ok) {
        const entry = { ok: true as const, ...v.captions, seed: req.seed!, attempts: attempt + 1, model: o.model, prompt_version: o.prompts.version, prompt_tokens: promptTokens, completion_tokens: completionTokens };
        await opts.cache.put(key, entry);
        return { ok: true, entry };
      }
      addCount(stats, `invalid_${v.problem}`);
      last = { ok: false, problem: v.problem, detail: `${v.detail} (attempt ${attempt + 1} of ${opts.attempts}, seed ${req.seed})` };
    }
    return last ?? { ok: false, problem: 'no_attempts', detail: 'attempts is 0' };
  }
}
