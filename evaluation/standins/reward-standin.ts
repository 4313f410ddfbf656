/**
 * STAND-IN ImageReward model and BERT tokenizer, for tests and the offline demo: NOT ImageReward,
 * and the "rewards" they give mean nothing. They have the real contract (see image-reward.ts), so
 * `bitprep eval imagereward` runs end to end on ONNX Runtime without downloading weights.
 *
 * Model graph: raw = mean-pooled pixels (per channel) · w_pixel + (input_ids · attention_mask) ·
 * w_text + bias, linear on purpose so a test can recompute it in float64; seeded weights, text
 * weights scaled by 1/vocab_size so realistic ids (up to 30 521) keep the output near ±1.
 *
 * Tokenizer: a BERT-style WordPiece tokenizer.json (BertNormalizer lower-casing, BertPreTokenizer,
 * WordPiece with `##` pieces, `[CLS] $A [SEP]` TemplateProcessing), with `[PAD]` 0, `[UNK]` 1,
 * `[CLS]` 2, `[SEP]` 3, `[MASK]` 4, then single characters (so any ASCII word splits into known
 * pieces) and a few words and suffixes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OnnxGraphBuilder } from '../../src/models/onnx-builder.js';
import { seededRandom } from '../../src/seeded-random.js';
import { IMAGEREWARD_MAX_LENGTH } from '../models/bert-text.js';

/** Says what the files are wherever a result mentions them. */
export const REWARD_STANDIN_LABEL = 'STAND-IN reward model (not ImageReward: its scores mean nothing)';
/** File names writeRewardStandin uses; "STANDIN" in the name marks results as stand-in (image-reward.ts). */
export const REWARD_STANDIN_FILES = { model: 'imagereward-STANDIN.onnx', tokenizer: 'bert-tokenizer-STANDIN.json' } as const;

export interface RewardStandinOptions {
  /** Tensor names (defaults: the real contract's pixel_values, input_ids, attention_mask, reward). */
  names?: { pixelValues?: string; inputIds?: string; attentionMask?: string; reward?: string };
  /** Output [N] instead of [N, 1] (both are allowed by the contract). */
  flatOutput?: boolean;
  /** Largest id expected, for the text weights' scale (default 30 522, bert-base-uncased's). */
  vocabSize?: number;
  /** Ids per prompt (default 35). */
  maxLength?: number;
}

/** Weights of the stand-in, for recomputing its output independently. */
export interface RewardStandinWeights {
  pixel: Float32Array;
  text: Float32Array;
  bias: number;
}

/** ONNX bytes of the stand-in reward model and its weights; the same seed gives the same bytes. */
export function buildRewardStandinModel(seed: number, opts: RewardStandinOptions = {}): { bytes: Uint8Array; weights: RewardStandinWeights } {
  const len = opts.maxLength ?? IMAGEREWARD_MAX_LENGTH;
  const n = {
    pixelValues: opts.names?.pixelValues ?? 'pixel_values',
    inputIds: opts.names?.inputIds ?? 'input_ids',
    attentionMask: opts.names?.attentionMask ?? 'attention_mask',
    reward: opts.names?.reward ?? 'reward',
  };
  const rand = seededRandom(seed);
  const pixel = Float32Array.from({ length: 3 }, () => rand() * 2 - 1);
  const textScale = 1 / ((opts.vocabSize ?? 30522) * Math.sqrt(len));
  const text = Float32Array.from({ length: len }, () => (rand() * 2 - 1) * textScale);
  const bias = Math.fround((rand() * 2 - 1) * 0.2);

  const g = new OnnxGraphBuilder(`imagereward-STANDIN-${seed}`);
  const px = g.input(n.pixelValues, 'FP32', [-1, 3, 224, 224]);
  const ids = g.input(n.inputIds, 'INT64', [-1, len]);
  const mask = g.input(n.attentionMask, 'INT64', [-1, len]);
  const pooled = g.reduceMean(px, [2, 3], false);
  const imageTerm = g.gemm(pooled, g.initializer('w_pixel', 'FP32', [3, 1], pixel), g.initializer('bias', 'FP32', [1], [bias]));
  const masked = g.op('Mul', [g.cast(ids, 'FP32'), g.cast(mask, 'FP32')]);
  const textTerm = g.matMul(masked, g.initializer('w_text', 'FP32', [len, 1], text));
  if (opts.flatOutput) {
    g.output(g.reshape(g.add(imageTerm, textTerm), [-1], n.reward), 'FP32', [-1]);
  } else {
    g.output(g.add(imageTerm, textTerm, n.reward), 'FP32', [-1, 1]);
  }
  return { bytes: g.build(), weights: { pixel, text, bias } };
}

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';
const PUNCT = '.,!?\'"-()/:;&';
const WORDS = ['a', 'an', 'the', 'of', 'on', 'in', 'and', 'with', 'photo', 'cat', 'dog', 'red', 'blue', 'green', 'house', 'tree', 'car', 'sky', 'city', 'night', 'portrait', 'painting', 'sitting', 'table', 'mountain', 'lake', 'sun', 'flower'];
const SUFFIXES = ['##s', '##es', '##ed', '##ing', '##ly', '##er'];

/**
 * A BERT-style WordPiece tokenizer.json (as an object) over a small vocabulary: specials, then
 * `extraWords`, then the built-in words, suffixes, characters and `##` characters. Ids follow
 * that order; duplicates keep their first id.
 */
export function buildBertStandinTokenizer(extraWords: string[] = []): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  for (const t of [...SPECIAL, ...extraWords, ...WORDS, ...SUFFIXES, ...CHARS, ...PUNCT]) add(t);
  for (const c of CHARS) add(`##${c}`);
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenSpec = (t: string) => ({ id: t, ids: [vocab[t]], tokens: [t] });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map(special),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: { '[CLS]': tokenSpec('[CLS]'), '[SEP]': tokenSpec('[SEP]') },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/** Writes the stand-in model and tokenizer into `dir`; returns their paths. */
export async function writeRewardStandin(dir: string, seed = 0): Promise<{ model: string; tokenizer: string; label: string }> {
  await mkdir(dir, { recursive: true });
  const model = join(dir, REWARD_STANDIN_FILES.model);
  const tokenizer = join(dir, REWARD_STANDIN_FILES.tokenizer);
  await writeFile(model, buildRewardStandinModel(seed).bytes);
  await writeFile(tokenizer, JSON.stringify(buildBertStandinTokenizer(), null, 2) + '\n');
  return { model, tokenizer, label: REWARD_STANDIN_LABEL };
}
