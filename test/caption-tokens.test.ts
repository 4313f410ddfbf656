import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { TarWriter } from '../src/formats/tar-write.js';
import { silentLogger } from '../src/log.js';
import { newSample, type Sample } from '../src/sample.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { captionTokensStage, idsToBlob, loadCaptionTokenizer, type CaptionTokenizer } from '../stages/caption-tokens.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { duckRows } from './helpers/duckdb.js';

/** GPT-2's byte → printable character map, which byte-level BPE vocabularies (GPT-2, GPT-NeoX, OLMo) are written in. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const map: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(bs.includes(b) ? b : 256 + n++);
  return map;
}

const EOS = 0;
const PAD = 1;
/** Byte b is token 2 + b. */
const byte = (c: string) => 2 + c.codePointAt(0)!;
const SP = byte(' ');
// Merged tokens, ids in merge order: "c a" outranks "a t", so "cat" becomes ca+t and never c+at.
const MERGES = ['c a', 'ca t', 'Ġ cat', 'Ġ a', 'a t', 'Ġ m', 'Ġm at'];
const [CA, CAT, G_CAT, G_A, AT, G_M, G_MAT] = [258, 259, 260, 261, 262, 263, 264];

/** A real byte-level BPE tokenizer.json shaped like OLMo's (NFC, ByteLevel, GPT-NeoX specials at 0 and 1). */
function tokenizerJson(opts: { eos?: boolean; pad?: boolean } = {}) {
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = { '<|endoftext|>': EOS, '<|padding|>': PAD };
  chars.forEach((c, b) => (vocab[c] = 2 + b));
  MERGES.forEach((m, i) => (vocab[m.replace(' ', '')] = 258 + i));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(EOS, '<|endoftext|>'), ...(opts.pad === false ? [] : [special(PAD, '<|padding|>')])],
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: opts.eos
      ? {
          type: 'TemplateProcessing',
          single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|endoftext|>', type_id: 0 } }],
          pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '<|endoftext|>', type_id: 1 } }],
          special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [EOS], tokens: ['<|endoftext|>'] } },
        }
      : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: MERGES },
  };
}

// Hand-computed from the vocab and merges above (pre-tokens split at spaces, Ġ = the space byte).
const A_CAT = [byte('a'), G_CAT];
const LONG = 'a red cat on a mat';
const LONG_IDS = [byte('a'), SP, byte('r'), byte('e'), byte('d'), G_CAT, SP, byte('o'), byte('n'), G_A, G_MAT];
// é is two bytes, C3 A9, each a byte token; "ca" still merges inside the word.
const CAFE_IDS = [CA, byte('f'), 2 + 0xc3, 2 + 0xa9];

let dir: string;
let eosPath: string;
let plainPath: string;
let noPadPath: string;

beforeAll(async () => {
  dir = await tempDir('caption-tokens');
  eosPath = join(dir, 'tokenizer.json');
  plainPath = join(dir, 'plain-tokenizer.json');
  noPadPath = join(dir, 'nopad-tokenizer.json');
  await writeFile(eosPath, JSON.stringify(tokenizerJson({ eos: true })));
  await writeFile(plainPath, JSON.stringify(tokenizerJson()));
  await writeFile(noPadPath, JSON.stringify(tokenizerJson({ pad: false })));
});

const unpadded = (r: { ids: Int32Array; length: number }, side: 'left' | 'right') => [...(side === 'left' ? r.ids.slice(r.ids.length - r.length) : r.ids.slice(0, r.length))];

describe('loadCaptionTokenizer / encodeCaption', () => {
  it('gives the hand-computed byte-level BPE ids, with the post_processor EOS last', async () => {
    const tok = await loadCaptionTokenizer(eosPath);
    expect([tok.maxLength, tok.padding, tok.padId, tok.prefix, tok.suffix]).toEqual([128, 'left', PAD, [], [EOS]]);
    expect(unpadded(tok.encodeCaption('a cat'), 'left')).toEqual([...A_CAT, EOS]);
    expect(unpadded(tok.encodeCaption(LONG), 'left')).toEqual([...LONG_IDS, EOS]);
    expect(unpadded(tok.encodeCaption('café'), 'left')).toEqual([...CAFE_IDS, EOS]);
    // NFC: the decomposed e + combining acute becomes the same two bytes.
    expect(unpadded(tok.encodeCaption('cafe\u0301'), 'left')).toEqual([...CAFE_IDS, EOS]);
    expect(tok.sha256).toBe(createHash('sha256').update(await readFile(eosPath)).digest('hex'));
  });

  it('pads on the left by default (pads first, ids last) and on the right when asked', async () => {
    const left = (await loadCaptionTokenizer(eosPath, { max_length: 8 })).encodeCaption('a cat');
    expect([...left.ids]).toEqual([PAD, PAD, PAD, PAD, PAD, ...A_CAT, EOS]);
    expect(left).toMatchObject({ length: 3, truncated: false });
    const right = (await loadCaptionTokenizer(eosPath, { max_length: 8, padding: 'right' })).encodeCaption('a cat');
    expect([...right.ids]).toEqual([...A_CAT, EOS, PAD, PAD, PAD, PAD, PAD]);
  });

  it('truncates the text at its end and keeps the special tokens; without them, the plain ids', async () => {
    const cut = (await loadCaptionTokenizer(eosPath, { max_length: 8 })).encodeCaption(LONG);
    expect([...cut.ids]).toEqual([...LONG_IDS.slice(0, 7), EOS]);
    expect(cut).toMatchObject({ length: 8, truncated: true });
    const plain = await loadCaptionTokenizer(eosPath, { max_length: 8, add_special_tokens: false });
    expect([...plain.encodeCaption(LONG).ids]).toEqual(LONG_IDS.slice(0, 8));
    expect([...plain.encodeCaption('a cat').ids]).toEqual([PAD, PAD, PAD, PAD, PAD, PAD, ...A_CAT]);
    // Exactly full: nothing cut.
    expect((await loadCaptionTokenizer(eosPath, { max_length: 12 })).encodeCaption(LONG)).toMatchObject({ length: 12, truncated: false });
  });

  it('a byte-level post_processor (as in OLMo\'s file) adds nothing', async () => {
    const tok = await loadCaptionTokenizer(plainPath, { max_length: 4 });
    expect([tok.prefix, tok.suffix]).toEqual([[], []]);
    expect([...tok.encodeCaption('a cat').ids]).toEqual([PAD, PAD, ...A_CAT]);
  });

  it('the blob is max_length little-endian int32s that decode to the ids', async () => {
    const tok = await loadCaptionTokenizer(eosPath);
    const { ids } = tok.encodeCaption(LONG);
    const blob = idsToBlob(ids);
    expect(blob).toBeInstanceOf(Uint8Array);
    expect(blob.length).toBe(512);
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    expect(Array.from({ length: 128 }, (_, i) => view.getInt32(i * 4, true))).toEqual([...ids]);
    expect([...blob.subarray(508)]).toEqual([EOS, 0, 0, 0]);
    expect([...blob.subarray(0, 4)]).toEqual([PAD, 0, 0, 0]);
  });

  it('refuses, naming the file: a missing file, a folder, not JSON, not a tokenizer.json, no pad token, no room', async () => {
    const missing = join(dir, 'nowhere', 'tokenizer.json');
    await expect(loadCaptionTokenizer(missing)).rejects.toThrow(new RegExp(`${missing}: no such file`));
    await expect(loadCaptionTokenizer(dir)).rejects.toThrow(/is a folder/);
    const notJson = join(dir, 'bad.json');
    await writeFile(notJson, 'version: 1');
    await expect(loadCaptionTokenizer(notJson)).rejects.toThrow(new RegExp(`${notJson}: not JSON`));
    const config = join(dir, 'tokenizer_config.json');
    await writeFile(config, JSON.stringify({ tokenizer_class: 'GPTNeoXTokenizer', eos_token: '<|endoftext|>' }));
    await expect(loadCaptionTokenizer(config)).rejects.toThrow(new RegExp(`${config}: not a Hugging Face tokenizer.json`));
    await expect(loadCaptionTokenizer(noPadPath)).rejects.toThrow(/no pad token.*set text_tokens\.pad_id/);
    const withPadId = await loadCaptionTokenizer(noPadPath, { pad_id: EOS, max_length: 4 });
    expect([...withPadId.encodeCaption('a cat').ids]).toEqual([EOS, EOS, ...A_CAT]);
    await expect(loadCaptionTokenizer(eosPath, { max_length: 1 })).rejects.toThrow(/no room/);
  });
});

describe('captionTokensStage', () => {
  it('adds tokens_F and tokens_F_len for the captions present, and nothing to a sample without any', async () => {
    const tok = await loadCaptionTokenizer(eosPath);
    const samples: Sample[] = [
      newSample('s0', { caption_long: LONG, caption: 'a cat' }),
      newSample('s1', { url: 'x' }),
      newSample('s2', { caption_short: '', caption: 'café' }),
    ];
    const stats = new StatsCollector();
    const out: Sample[] = [];
    async function* src() {
      yield* samples;
    }
    for await (const s of pipe(src(), [captionTokensStage(tok, ['caption_long', 'caption_short', 'caption'])], { unitId: 'u', stats, log: silentLogger })) out.push(s);
    expect(out.map((s) => s.status.kind)).toEqual(['ok', 'ok', 'ok']);
    const [s0, s1, s2] = out;
    expect(s0.fields.tokens_caption_long).toEqual(idsToBlob(tok.encodeCaption(LONG).ids));
    expect(s0.fields.tokens_caption_long_len).toBe(12);
    expect(s0.fields.tokens_caption_len).toBe(3);
    expect(s0.fields).not.toHaveProperty('tokens_caption_short');
    expect(s0.fields).toMatchObject({ tokenizer_sha256: tok.sha256, tokens_padding: 'left' });
    expect(s1.fields).toEqual({ url: 'x' });
    expect(s2.fields).not.toHaveProperty('tokens_caption_short');
    expect(s2.fields.tokens_caption_len).toBe(5);
    expect(stats.stage('caption-tokens')).toMatchObject({ in: 3, ok: 3, counts: { captions: 3, tokens: 12 + 3 + 5, no_caption: 1 } });
  });
});

let tok: CaptionTokenizer;


const CAPTIONS: Record<string, Record<string, string>> = {
  k000: { caption: 'a cat', caption_long: LONG, caption_short: 'a mat' },
  k001: { caption: 'café', caption_long: 'a cat on a mat, '.repeat(20) }, // over 128 tokens; no caption_short
  k002: {}, // no captions at all
  k003: { caption_long: 'cat' },
};

describe('pre-encode with text_tokens', () => {
  it('writes tokens_* as FIXED_LEN_BYTE_ARRAY(512) that DuckDB reads back as encodeCaption\'s ids', async () => {
    tok = await loadCaptionTokenizer(eosPath);
    const shards = join(dir, 'shards');
    await mkdir(shards, { recursive: true });
    const out = createWriteStream(join(shards, '00000.tar'));
    const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
    for (const [i, [key, caps]] of Object.entries(CAPTIONS).entries()) {
      const png = await sharp({ create: { width: 128, height: 128, channels: 3, background: { r: 40 * i, g: 200 - 30 * i, b: 90 } } }).png().toBuffer();
      await w.addSample(key, { png, json: JSON.stringify({ key, ...caps }) });
    }
    await w.finish();
    await new Promise<void>((ok) => out.end(ok));
    const model = join(dir, 'bit_encoder.onnx');
    await writeFile(model, buildBitEncoderStandin(5, 128).onnx);

    const cfg = await writeConfig(dir, 'pre-encode.json', { job: 'pre-encode', output: join(dir, 'latents'), input: { paths: [shards] }, source: 'test', encoder: { model: { onnx: model }, size: 128, batch_size: 4 }, text_tokens: { tokenizer: eosPath } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);

    const shard = join(dir, 'latents', '00000.latents.parquet');
    const schema = await duckRows(`select name, type, type_length from parquet_schema('${shard}') where name like 'tokens_%' order by name`);
    expect(schema.map((c) => [c.name, c.type, c.type_length === null ? null : Number(c.type_length)])).toEqual([
      ['tokens_caption', 'FIXED_LEN_BYTE_ARRAY', 512],
      ['tokens_caption_len', 'INT64', null],
      ['tokens_caption_long', 'FIXED_LEN_BYTE_ARRAY', 512],
      ['tokens_caption_long_len', 'INT64', null],
      ['tokens_caption_short', 'FIXED_LEN_BYTE_ARRAY', 512],
      ['tokens_caption_short_len', 'INT64', null],
      ['tokens_padding', 'BYTE_ARRAY', null],
    ]);
    const rows = await duckRows(`select key, caption_long, hex(tokens_caption_long) as blob, tokens_caption_long_len as len, tokens_caption_short_len as short_len, tokenizer_sha256 from read_parquet('${shard}') order by key`);
    expect(rows.map((x) => x.key)).toEqual(['k000', 'k001', 'k002', 'k003']);
    for (const row of rows) {
      if (row.key === 'k002') {
        expect(row).toMatchObject({ blob: null, len: null, tokenizer_sha256: null });
        continue;
      }
      const hex = String(row.blob);
      expect(hex).toHaveLength(1024);
      const bytes = Uint8Array.from({ length: 512 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
      const view = new DataView(bytes.buffer);
      const got = Array.from({ length: 128 }, (_, i) => view.getInt32(i * 4, true));
      const want = tok.encodeCaption(String(row.caption_long));
      expect(got, String(row.key)).toEqual([...want.ids]);
      expect(Number(row.len)).toBe(want.length);
      expect(row.tokenizer_sha256).toBe(tok.sha256);
    }
    expect(Number(rows[1].len)).toBe(128); // truncated to max_length, EOS kept last
    expect(rows[1].short_len).toBeNull();
    expect(Number(rows[0].short_len)).toBe(3);

    // The records keep the lengths, not the blobs (they would double the records' size).
    const [rec] = await duckRows(`select * from read_parquet('${join(dir, 'latents', '00000.parquet')}') where key = 'k000'`);
    expect(Object.keys(rec).filter((k) => k.startsWith('tokens_')).sort()).toEqual(['tokens_caption_len', 'tokens_caption_long_len', 'tokens_caption_short_len', 'tokens_padding']);
    const stats = JSON.parse(await readFile(join(dir, 'latents', '00000.stats.json'), 'utf8'));
    expect(stats.stages.find((s: { name: string }) => s.name === 'caption-tokens').counts).toMatchObject({ captions: 6, truncated: 1, no_caption: 1 });
  });

  it('refuses a missing tokenizer.json at start-up, naming it', async () => {
    const missing = join(dir, 'missing', 'tokenizer.json');
    const cfg = await writeConfig(dir, 'missing.json', { job: 'pre-encode', output: join(dir, 'latents-missing'), input: { paths: [join(dir, 'shards')] }, source: 'test', encoder: { model: { onnx: join(dir, 'bit_encoder.onnx') }, size: 128 }, text_tokens: { tokenizer: missing } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`text_tokens.tokenizer: ${missing} does not exist`);
  });
});
