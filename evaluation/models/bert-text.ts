/**
 * BERT-style text input of ImageReward: BLIP's `BertTokenizer` (bert-base-uncased plus the added
 * `[DEC]`/`[ENC]` tokens) called as
 *
 *   tokenizer(prompt, padding='max_length', truncation=True, max_length=35)
 *
 * so every prompt becomes `[CLS] … [SEP]` followed by `[PAD]`s to 35 ids, with an attention mask of
 * 1 over the real tokens and 0 over the pads; a prompt longer than that loses its last word pieces,
 * never `[CLS]` or `[SEP]`. ImageReward's `score()` feeds these ids as they are (it does not swap
 * `[CLS]` for `[ENC]`), and the added tokens only matter to a prompt that spells them literally.
 *
 * The tokenizer comes from a local Hugging Face `tokenizer.json` (bert-base-uncased's: BertNormalizer
 * with lower-casing, BertPreTokenizer, WordPiece, a `[CLS] $A [SEP]` post-processor), run by
 * @huggingface/tokenizers; nothing is fetched.
 */
import { readFile } from 'node:fs/promises';
import { parseTokenizerJson } from '../../src/models/tokenizer-json.js';

/** ImageReward's `max_length` (ImageReward.py: `max_length=35`). */
export const IMAGEREWARD_MAX_LENGTH = 35;

/** One prompt's model inputs, each exactly `maxLength` long. */
export interface BertEncoding {
  ids: number[];
  mask: number[];
  /** Real tokens, special ones included (the number of 1s in `mask`). */
  length: number;
  /** Word pieces were cut from the end to fit. */
  truncated: boolean;
}

export interface BertTextTokenizer {
  /** Where the tokenizer.json came from (a path, or a label for an in-memory one). */
  source: string;
  /** SHA-256 (hex) of the tokenizer.json text. */
  sha256: string;
  maxLength: number;
  padId: number;
  /** Ids the post-processor puts before (`[CLS]`) and after (`[SEP]`) the text. */
  prefix: number[];
  suffix: number[];
  encode(text: string): BertEncoding;
  /** Writes `encode(text)` as INT64 into row `row` of [N, maxLength] id and mask tensors. */
  encodeInto(text: string, ids: BigInt64Array, mask: BigInt64Array, row: number): BertEncoding;
}

export interface BertTextOptions {
  /** Ids per prompt, special tokens included (default 35, ImageReward's). */
  maxLength?: number;
  /** The id the padding uses; default the tokenizer's `padding.pad_id`, else its `[PAD]` token, else 0. */
  padId?: number;
}

/** Reads a local tokenizer.json; errors name the file and say which file is meant. */
export async function loadBertTokenizer(path: string, opts: BertTextOptions = {}): Promise<BertTextTokenizer> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a folder, not the tokenizer.json in it' : e.message;
    throw new Error(`tokenizer ${path}: ${why} (give bert-base-uncased's tokenizer.json, as ImageReward's BLIP uses)`);
  }
  return bertTokenizerFromJson(text, path, opts);
}

/** Builds the tokenizer from tokenizer.json text; `source` names it in errors and results. */
export function bertTokenizerFromJson(text: string, source: string, opts: BertTextOptions = {}): BertTextTokenizer {
  const where = `tokenizer ${source}`;
  const t = parseTokenizerJson(text, where);
  const json = t.json;
  const plain = t.encodePlain;
  const { prefix, suffix } = t.specialAround();
  if (prefix.length === 0 || suffix.length === 0) {
    throw new Error(`${where}: its post_processor adds no [CLS]/[SEP] around the text (got ${prefix.length} before, ${suffix.length} after); ImageReward's BERT input needs both (bert-base-uncased's tokenizer.json has them)`);
  }

  const maxLength = opts.maxLength ?? IMAGEREWARD_MAX_LENGTH;
  const room = maxLength - prefix.length - suffix.length;
  if (!Number.isInteger(maxLength) || room < 1) throw new Error(`${where}: max length ${maxLength} leaves no room for text next to ${prefix.length + suffix.length} special tokens`);
  const padId = opts.padId ?? json.padding?.pad_id ?? t.idOf('[PAD]') ?? 0;

  const encode = (t: string): BertEncoding => {
    const content = plain(t);
    const kept = content.length > room ? content.slice(0, room) : content;
    const real = [...prefix, ...kept, ...suffix];
    const ids = new Array<number>(maxLength).fill(padId);
    const mask = new Array<number>(maxLength).fill(0);
    for (let i = 0; i < real.length; i++) {
      ids[i] = real[i];
      mask[i] = 1;
    }
    return { ids, mask, length: real.length, truncated: kept.length < content.length };
  };

  return {
    source,
    sha256: t.sha256,
    maxLength,
    padId,
    prefix,
    suffix,
    encode,
    encodeInto(t, ids, mask, row) {
      const e = encode(t);
      const off = row * maxLength;
      if (off + maxLength > ids.length || off + maxLength > mask.length) throw new Error(`${where}: row ${row} does not fit tensors of ${ids.length} ids / ${mask.length} mask values`);
      for (let i = 0; i < maxLength; i++) {
        ids[off + i] = BigInt(e.ids[i]);
        mask[off + i] = BigInt(e.mask[i]);
      }
      return e;
    },
  };
}
