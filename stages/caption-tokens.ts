import { z } from 'zod';
import type { ColumnType } from '../src/formats/parquet-write.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { addCount } from '../src/stats.js';
import { loadTokenizerJson } from '../src/models/tokenizer-json.js';

/**
 * `text_tokens` of pre-encode: caption token ids stored beside the latent so the trainer skips
 * tokenization. The Instella-T2I text side is the AMD-OLMo-1B tokenizer, at most 128 tokens,
 * padded on the left (the reference loads it with `padding_side='left'`).
 */
export const textTokensConfig = z.object({
  /**
   * A local Hugging Face `tokenizer.json` (for Instella-T2I: the one in huggingface.co/amd/AMD-OLMo-1B,
   * downloaded by the user; nothing is fetched at run time). Its SHA-256 goes into every row.
   */
  tokenizer: z.string().min(1),
  /** Ids per caption, special tokens included: the width of every `tokens_*` blob (× 4 bytes). */
  max_length: z.number().int().min(1).default(128),
  /** Where the pad ids go. `left` as the reference trainer pads, so the last position is the caption's last token. */
  padding: z.enum(['left', 'right']).default('left'),
  /**
   * Add the special tokens the tokenizer.json's post_processor declares (BOS/EOS), as
   * transformers' `tokenizer(text)` does by default: the stored ids are then what the reference
   * trainer computes online. pre-encode logs the ids added before and after the text at start-up
   * (a byte-level post_processor adds none). transformers may rebuild the post_processor from
   * tokenizer_config.json's `add_bos_token`/`add_eos_token`; bitprep reads tokenizer.json only.
   */
  add_special_tokens: z.boolean().default(true),
  /**
   * The id that fills the padding. By default the tokenizer's own: its `padding.pad_id` when the
   * file sets one, else its added token `<|padding|>` (GPT-NeoX-style vocabularies such as OLMo's:
   * id 1), `<pad>`, `<|pad|>` or `[PAD]`. A tokenizer without one is refused
   * at start-up until this is set (the EOS id is the usual choice). Pads are masked out by
   * `tokens_<field>_len`, so the choice only has to be a valid id.
   */
  pad_id: z.number().int().min(0).optional(),
  /** Caption fields to tokenize, each when present on a sample (a non-empty string): `tokens_<field>` and `tokens_<field>_len`. */
  fields: z.array(z.string().regex(/^\w+$/)).min(1).default(['caption_long', 'caption_short', 'caption']),
}).strict();

export type TextTokensConfig = z.infer<typeof textTokensConfig>;

/** One caption's ids, padded to max_length, and how many of them are real tokens. */
export interface CaptionIds {
  ids: Int32Array;
  length: number;
  /** The text had more tokens than fit (they were cut from its end). */
  truncated: boolean;
}

export interface CaptionTokenizer {
  path: string;
  /** SHA-256 (hex) of the tokenizer.json bytes. */
  sha256: string;
  maxLength: number;
  padding: 'left' | 'right';
  padId: number;
  /** Special ids the post_processor puts before and after the text (empty when add_special_tokens is off). */
  prefix: number[];
  suffix: number[];
  /**
   * Tokenizes, right-truncates the text's tokens so that they and the special tokens fit
   * max_length (the special tokens are kept, as transformers' `truncation=True` does), and pads.
   */
  encodeCaption(text: string): CaptionIds;
}

const PAD_TOKEN_NAMES = ['<|padding|>', '<pad>', '<|pad|>', '[PAD]'];

/** Loads a tokenizer.json; every problem names the file and what to do, before any shard is read. */
export async function loadCaptionTokenizer(path: string, opts: Partial<Omit<TextTokensConfig, 'tokenizer' | 'fields'>> = {}): Promise<CaptionTokenizer> {
  const cfg = textTokensConfig.omit({ tokenizer: true, fields: true }).parse(opts);
  const where = `text_tokens.tokenizer ${path}`;
  const t = await loadTokenizerJson(path, where, 'download tokenizer.json of the text model, e.g. huggingface.co/amd/AMD-OLMo-1B, and give its path');
  const json = t.json;
  const encodePlain = t.encodePlain;
  let prefix: number[] = [];
  let suffix: number[] = [];
  if (cfg.add_special_tokens) {
    try {
      ({ prefix, suffix } = t.specialAround());
    } catch (err) {
      throw new Error(`${(err as Error).message} (set add_special_tokens: false)`);
    }
  }
  const room = cfg.max_length - prefix.length - suffix.length;
  if (room < 1) throw new Error(`text_tokens.max_length ${cfg.max_length} leaves no room for text next to ${prefix.length + suffix.length} special token(s)`);

  const padId = cfg.pad_id ?? json.padding?.pad_id ?? PAD_TOKEN_NAMES.map((n) => json.added_tokens!.find((t) => t.content === n)?.id).find((id) => id !== undefined);
  if (padId === undefined) throw new Error(`${where}: the tokenizer has no pad token (no padding.pad_id, no ${PAD_TOKEN_NAMES.join(' / ')} added token); set text_tokens.pad_id (its EOS id is the usual choice)`);

  const sha256 = t.sha256;
  const { max_length: maxLength, padding } = cfg;
  return {
    path,
    sha256,
    maxLength,
    padding,
    padId,
    prefix,
    suffix,
    encodeCaption(text) {
      const content = encodePlain(text);
      const kept = content.length > room ? content.slice(0, room) : content;
      const length = prefix.length + kept.length + suffix.length;
      const ids = new Int32Array(maxLength).fill(padId);
      ids.set([...prefix, ...kept, ...suffix], padding === 'left' ? maxLength - length : 0);
      return { ids, length, truncated: kept.length < content.length };
    },
  };
}

/** The ids as little-endian int32 bytes, whatever this machine's order: numpy reads them with `np.frombuffer(b, '<i4')`. */
export function idsToBlob(ids: Int32Array): Uint8Array {
  const out = new Uint8Array(ids.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) view.setInt32(i * 4, ids[i], true);
  return out;
}

/** The column name of a caption field's token blob; its unpadded length is `<name>_len`. */
export const tokensField = (field: string): string => `tokens_${field}`;

/** Parquet types of the blobs: FIXED_LEN_BYTE_ARRAY(max_length × 4) in every shard, whatever a unit holds. */
export function tokenColumnTypes(cfg: Pick<TextTokensConfig, 'fields' | 'max_length'>): Record<string, ColumnType> {
  return Object.fromEntries(cfg.fields.map((f) => [tokensField(f), { fixedLenByteArray: cfg.max_length * 4 }]));
}

/**
 * Adds, for each of `fields` present on a sample, `tokens_<field>` (the padded ids as a
 * little-endian int32 blob) and `tokens_<field>_len`, plus `tokenizer_sha256` and
 * `tokens_padding` so a dataset says which tokenizer made it and on which side the pads are.
 * A sample with none of the captions gets nothing and stays ok: it still has a latent to train on.
 * Units: captions, tokens (unpadded, summed), truncated (captions cut at max_length: many
 * means max_length is short for these captions), no_caption.
 */
export function captionTokensStage(tok: CaptionTokenizer, fields: string[]): Stage {
  return sampleStage('caption-tokens', (s, stats) => {
    let any = false;
    for (const f of fields) {
      const text = s.fields[f];
      if (typeof text !== 'string' || text.length === 0) continue;
      const { ids, length, truncated } = tok.encodeCaption(text);
      s.fields[tokensField(f)] = idsToBlob(ids);
      s.fields[`${tokensField(f)}_len`] = length;
      addCount(stats, 'captions');
      addCount(stats, 'tokens', length);
      if (truncated) addCount(stats, 'truncated');
      any = true;
    }
    if (any) {
      s.fields.tokenizer_sha256 = tok.sha256;
      s.fields.tokens_padding = tok.padding;
    } else {
      addCount(stats, 'no_caption');
    }
  });
}
