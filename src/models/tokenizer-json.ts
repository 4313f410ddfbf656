import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';

/** What bitprep uses of Tokenizers.js; its bundled .d.ts has extensionless imports that NodeNext cannot resolve. */
export interface HfTokenizer {
  encode(text: string, opts?: { add_special_tokens?: boolean }): { ids: (number | undefined)[]; tokens: string[] };
}
const HfTokenizerClass = Tokenizer as unknown as new (json: object, config: object) => HfTokenizer;

/** The parts of a Hugging Face tokenizer.json that bitprep reads itself. */
export interface TokenizerJson {
  model?: { vocab?: Record<string, number> } | null;
  added_tokens?: { id: number; content: string }[];
  padding?: { pad_id?: number } | null;
}

/** A tokenizer.json built for Tokenizers.js, with what every user of it needs. */
export interface LoadedTokenizer {
  json: TokenizerJson;
  tokenizer: HfTokenizer;
  /** SHA-256 (hex) of the file's bytes, for records and result files. */
  sha256: string;
  /** The text's ids without the post_processor's special tokens. */
  encodePlain(text: string): number[];
  /** The id of a token by its text, from the vocab or the added tokens. */
  idOf(content: string): number | undefined;
  /**
   * What the post_processor puts before and after a single text (none for byte-level ones),
   * found with one probe since the single-sequence template does not depend on the text.
   */
  specialAround(): { prefix: number[]; suffix: number[] };
}

/**
 * Reads a local tokenizer.json (nothing is fetched). Every problem is an error starting with
 * `where`; `hint` says which file to give (e.g. the model's Hugging Face repo).
 */
export async function loadTokenizerJson(path: string, where: string, hint: string): Promise<LoadedTokenizer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a folder, not the tokenizer.json in it' : e.message;
    throw new Error(`${where}: ${why} (${hint})`);
  }
  return parseTokenizerJson(bytes, where);
}

/** Builds a tokenizer from tokenizer.json bytes or text; errors start with `where`. */
export function parseTokenizerJson(source: Uint8Array | string, where: string): LoadedTokenizer {
  const text = typeof source === 'string' ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength).toString('utf8');
  let json: TokenizerJson;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON, so not a Hugging Face tokenizer.json (${(err as Error).message})`);
  }
  if (!json || typeof json !== 'object' || typeof json.model !== 'object' || json.model === null || !Array.isArray(json.added_tokens)) {
    throw new Error(`${where}: not a Hugging Face tokenizer.json (it needs "model" and "added_tokens"; vocab files and tokenizer_config.json are other files)`);
  }
  // Tokenizers.js requires these keys even when a file's components are absent (null).
  const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json };
  let tokenizer: HfTokenizer;
  try {
    tokenizer = new HfTokenizerClass(full, {});
  } catch (err) {
    throw new Error(`${where}: Tokenizers.js cannot build it: ${(err as Error).message}`);
  }
  const encodePlain = (t: string): number[] => {
    const r = tokenizer.encode(t, { add_special_tokens: false });
    const i = r.ids.findIndex((id) => id === undefined);
    // A token with no id means a vocab without that piece and no unk token: the file is broken.
    if (i >= 0) throw new Error(`${where}: token ${JSON.stringify(r.tokens[i])} of ${JSON.stringify(t)} has no id in the vocab and the model has no unk_token`);
    return r.ids as number[];
  };
  const specialAround = () => {
    const probe = 'a';
    const plain = encodePlain(probe);
    const withSpecial = tokenizer.encode(probe).ids as number[];
    const at = Array.from({ length: withSpecial.length - plain.length + 1 }, (_, k) => k).find((k) => plain.every((id, j) => withSpecial[k + j] === id));
    if (at === undefined) throw new Error(`${where}: its post_processor changes the text's own tokens; only post-processors that add special tokens around the text are supported`);
    return { prefix: withSpecial.slice(0, at), suffix: withSpecial.slice(at + plain.length) };
  };
  return {
    json,
    tokenizer,
    sha256: createHash('sha256').update(source).digest('hex'),
    encodePlain,
    idOf: (content) => json.model?.vocab?.[content] ?? json.added_tokens?.find((t) => t.content === content)?.id,
    specialAround,
  };
}
