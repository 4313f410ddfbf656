import sharp from 'sharp';
import type { ChatRequest, ChatResult, ResponseFormat } from '../../src/models/openai-chat.js';
import { contentKey } from '../../src/content-cache.js';
import { checkCaption, type CaptionCheckOptions, type CaptionProblem } from './caption-check.js';

/** Versioned prompts: change `version` whenever a text changes, or cached captions of the old prompt are reused. */
export interface RecaptionPrompts {
  version: string;
  /** Optional system message. */
  system?: string;
  /** One request for both captions, answered as JSON {long_caption, short_caption} (mode `json`). */
  json: string;
  /** The long caption alone (mode `two_requests`). */
  long: string;
  /** The short caption alone (mode `two_requests`). */
  short: string;
}

/**
 * `json`: one request per image, both captions under a response_format JSON schema (vLLM's
 * guided decoding). `two_requests`: one plain-text request per caption, for servers without
 * structured output.
 */
export type RecaptionMode = 'json' | 'two_requests';

/** What one request asks for. */
export type CaptionPart = 'both' | 'long' | 'short';

export interface CaptionRequestOptions {
  model: string;
  mode: RecaptionMode;
  prompts: RecaptionPrompts;
  max_tokens: number;
  temperature: number;
  /** Seed of the first attempt; attempt n uses seed + n, so a retry samples a different answer. */
  seed: number;
  /** Extra top-level request fields (top_p, repetition_penalty, …). */
  extra: Record<string, unknown>;
  /** The image sent is resized to fit this longest side (Qwen2.5-VL pays a token per 28×28 pixels). */
  max_side: number;
  /** JPEG quality of the image sent. */
  quality: number;
}

/** The JSON schema both captions are decoded under in mode `json`. */
export const CAPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    long_caption: { type: 'string' },
    short_caption: { type: 'string' },
  },
  required: ['long_caption', 'short_caption'],
  additionalProperties: false,
} as const;

const RESPONSE_FORMAT: ResponseFormat = { type: 'json_schema', json_schema: { name: 'captions', schema: CAPTIONS_SCHEMA } };

export function partsOf(mode: RecaptionMode): CaptionPart[] {
  return mode === 'json' ? ['both'] : ['long', 'short'];
}

/**
 * The cache key of one part of an image's captions: every input that changes the answer (the
 * image's bytes, model, prompt version, mode, the image as sent) and nothing that does not.
 */
export function captionCacheKey(imageSha256: string, part: CaptionPart, o: CaptionRequestOptions): string {
  return contentKey('recaption/1', imageSha256, o.model, o.prompts.version, o.mode, part, String(o.max_side), String(o.quality));
}

/** The image as sent: fitted inside `max_side` (never enlarged), JPEG, as a data URL. */
export async function requestImageUrl(image: Uint8Array, o: Pick<CaptionRequestOptions, 'max_side' | 'quality'>): Promise<string> {
  const jpeg = await sharp(image, { failOn: 'error' })
    .rotate()
    .resize({ width: o.max_side, height: o.max_side, fit: 'inside', withoutEnlargement: true })
    .flatten({ background: '#ffffff' })
    .jpeg({ quality: o.quality })
    .toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

/** One chat request: the image first, then the instruction (Qwen2.5-VL's documented order). */
export function captionRequest(imageUrl: string, part: CaptionPart, attempt: number, o: CaptionRequestOptions): ChatRequest {
  const text = part === 'both' ? o.prompts.json : part === 'long' ? o.prompts.long : o.prompts.short;
  const messages: ChatRequest['messages'] = [];
  if (o.prompts.system) messages.push({ role: 'system', content: o.prompts.system });
  messages.push({ role: 'user', content: [{ type: 'image_url', image_url: { url: imageUrl } }, { type: 'text', text }] });
  return {
    messages,
    maxTokens: o.max_tokens,
    temperature: o.temperature,
    seed: o.seed + attempt,
    responseFormat: part === 'both' ? RESPONSE_FORMAT : undefined,
    extra: o.extra,
  };
}

/** Captions read from one answer (a part request fills one of them). */
export interface CaptionAnswer {
  long?: string;
  short?: string;
}

export type AnswerProblem = CaptionProblem | 'truncated' | 'bad_json';

export type AnswerVerdict = { ok: true; captions: CaptionAnswer } | { ok: false; problem: AnswerProblem; detail: string };

/** Validates one answer: it ended by itself (finish_reason stop), parses, and each caption passes its checks. */
export function readAnswer(part: CaptionPart, result: Pick<ChatResult, 'text' | 'finishReason'>, check: CaptionCheckOptions): AnswerVerdict {
  if (result.finishReason !== 'stop') return { ok: false, problem: 'truncated', detail: `answer ended with finish_reason '${result.finishReason}', not 'stop'` };
  if (part !== 'both') {
    const v = checkCaption(result.text, part, check);
    return v.ok ? { ok: true, captions: { [part]: v.text } } : v;
  }
  let j: unknown;
  try {
    j = JSON.parse(result.text);
  } catch {
    return { ok: false, problem: 'bad_json', detail: `answer is not JSON: ${JSON.stringify(result.text.slice(0, 80))}` };
  }
  const o = j as { long_caption?: unknown; short_caption?: unknown } | null;
  if (typeof o?.long_caption !== 'string' || typeof o?.short_caption !== 'string') {
    return { ok: false, problem: 'bad_json', detail: 'answer lacks string fields long_caption and short_caption' };
  }
  const long = checkCaption(o.long_caption, 'long', check);
  if (!long.ok) return long;
  const short = checkCaption(o.short_caption, 'short', check);
  if (!short.ok) return short;
  return { ok: true, captions: { long: long.text, short: short.text } };
}
