/**
 * CLIP text tokenization from a local Hugging Face `tokenizer.json`, assembled as
 * openai/CLIP's and open_clip's `tokenize()` do: [SOT, text ids…, EOT, 0, 0, …] in 77 slots.
 *
 * The tokenizer.json is the user's (e.g. the one in huggingface.co/laion/CLIP-ViT-g-14-laion2B-s12B-b42K
 * or huggingface.co/openai/clip-vit-large-patch14; nothing is fetched at run time). It is run
 * WITHOUT its own special tokens: its post_processor (RobertaProcessing) would add SOT/EOT but
 * neither truncate nor pad the way CLIP does, so this module places them itself. SOT and EOT are
 * the vocab's `<|startoftext|>` / `<|endoftext|>` ids (49406 / 49407 in every CLIP vocabulary).
 *
 * Where HF's CLIP tokenizer differs from openai's SimpleTokenizer: openai runs `ftfy.fix_text` and
 * `html.unescape` (twice) before collapsing whitespace and lower-casing; HF's normalizer does NFC,
 * whitespace collapsing and lower-casing only. So mojibake ("cafÃ©") and HTML entities ("&amp;")
 * tokenize differently. MS-COCO captions are plain ASCII/UTF-8 sentences without entities, for
 * which both give the same ids.
 */
import { loadTokenizerJson } from '../../src/models/tokenizer-json.js';

/** CLIP's text context: every tokenized text is this many ids. */
export const CLIP_CONTEXT_LENGTH = 77;
/** `<|startoftext|>` and `<|endoftext|>` in the openai/open_clip vocabularies, used when a vocab lacks them. */
export const CLIP_SOT = 49406;
export const CLIP_EOT = 49407;

export interface ClipTokenizer {
  path: string;
  /** SHA-256 (hex) of the tokenizer.json bytes, for result files. */
  sha256: string;
  sot: number;
  eot: number;
  /** The text's BPE ids, no special tokens. */
  encode(text: string): number[];
  /** openai `clip.tokenize(text, truncate=True)`: [SOT, ids…, EOT] cut to `contextLength` with the last set to EOT, zero-padded. */
  tokenize(text: string, contextLength?: number): Int32Array;
}

/**
 * openai/open_clip tokenize of already-encoded ids: [SOT, ids…, EOT]; longer than
 * `contextLength` is cut there and its last id becomes EOT (truncate=True); zero padding.
 */
export function assembleClipIds(ids: readonly number[], sot: number, eot: number, contextLength = CLIP_CONTEXT_LENGTH): Int32Array {
  const all = [sot, ...ids, eot];
  const out = new Int32Array(contextLength);
  if (all.length > contextLength) {
    out.set(all.slice(0, contextLength));
    out[contextLength - 1] = eot;
  } else out.set(all);
  return out;
}

/**
 * GigaGAN's "A photo depicts " prefix (evaluation.py, compute_clip_score): `prefix` are ids 1..3
 * of `tokenize("A photo depicts ")`, put right after SOT; the result is cut to 77 and, when
 * position 76 then holds anything but padding, it becomes EOT (so a long caption still ends in
 * EOT, which is where CLIP's text tower reads its embedding).
 */
export function insertPrefix(tokens: Int32Array, prefix: readonly number[], eot: number): Int32Array {
  const n = tokens.length;
  const out = new Int32Array(n);
  out.set([tokens[0], ...prefix, ...tokens.subarray(1)].slice(0, n));
  if (out[n - 1] > 0) out[n - 1] = eot;
  return out;
}

/** The prefix GigaGAN prepends to each caption for the CLIP score. */
export const GIGAGAN_PREFIX = 'A photo depicts ';

/** The three ids GigaGAN inserts: `tokenize(GIGAGAN_PREFIX)[:, 1:4]`, whatever they are for this vocab. */
export function gigaganPrefixIds(tok: ClipTokenizer): number[] {
  return Array.from(tok.tokenize(GIGAGAN_PREFIX).subarray(1, 4));
}

/** Loads a CLIP tokenizer.json; errors name the file and what to give instead. */
export async function loadClipTokenizer(path: string): Promise<ClipTokenizer> {
  const where = `CLIP tokenizer ${path}`;
  const t = await loadTokenizerJson(path, where, 'download tokenizer.json of the CLIP model, e.g. from huggingface.co/laion/CLIP-ViT-g-14-laion2B-s12B-b42K, and give its path');
  const sot = t.idOf('<|startoftext|>') ?? CLIP_SOT;
  const eot = t.idOf('<|endoftext|>') ?? CLIP_EOT;
  const encode = t.encodePlain;
  return {
    path,
    sha256: t.sha256,
    sot,
    eot,
    encode,
    tokenize: (text, contextLength = CLIP_CONTEXT_LENGTH) => assembleClipIds(encode(text), sot, eot, contextLength),
  };
}
