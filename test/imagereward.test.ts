import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageFolder, requirePrompts } from '../evaluation/images/image-folder.js';
import { imageRewardCommand, runImageReward } from '../evaluation/metrics/imagereward-command.js';
import { checkRewardModel, DEFAULT_REWARD_NAMES, IMAGEREWARD_NORMALISATION, scoreImageReward } from '../evaluation/metrics/image-reward.js';
import { bertTokenizerFromJson, loadBertTokenizer } from '../evaluation/models/bert-text.js';
import { buildBertStandinTokenizer, buildRewardStandinModel, writeRewardStandin } from '../evaluation/standins/reward-standin.js';
import { readResults } from '../evaluation/tables/results.js';
import { tinyMlpModel } from '../src/models/onnx-builder.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { startKServeServer, type KServeServer } from '../src/models/kserve-server.js';
import { tempDir } from './helpers/temp-dir.js';

const TOKENIZER_JSON = buildBertStandinTokenizer(['sitting']);
const VOCAB = (TOKENIZER_JSON.model as { vocab: Record<string, number> }).vocab;
const id = (t: string) => {
  const v = VOCAB[t];
  if (v === undefined) throw new Error(`test vocab has no ${t}`);
  return v;
};
/** Hand-tokenised ids, padded to 35 with [PAD] 0. */
const expectedIds = (tokens: string[]) => [...['[CLS]', ...tokens, '[SEP]'].map(id), ...new Array(35 - tokens.length - 2).fill(0)];
const expectedMask = (tokens: string[]) => [...new Array(tokens.length + 2).fill(1), ...new Array(35 - tokens.length - 2).fill(0)];

describe('BERT text input (ImageReward: max_length 35)', () => {
  const tok = bertTokenizerFromJson(JSON.stringify(TOKENIZER_JSON), 'standin');

  it('lower-cases, splits punctuation and word pieces, adds [CLS]/[SEP] and pads with [PAD] = 0', () => {
    expect(VOCAB['[PAD]']).toBe(0);
    const tokens = ['a', 'photo', 'of', 'cat', '##s', ',', 'sitting', '!'];
    const e = tok.encode('A Photo of CATS, sitting!');
    expect(e.ids).toEqual(expectedIds(tokens));
    expect(e.mask).toEqual(expectedMask(tokens));
    expect(e.length).toBe(10);
    expect(e.truncated).toBe(false);
    // Unknown words fall back to single-character pieces.
    expect(tok.encode('qz').ids.slice(0, 4)).toEqual([id('[CLS]'), id('q'), id('##z'), id('[SEP]')]);
  });

  it('truncates a long prompt to 35 ids, keeping [CLS] first and [SEP] last', () => {
    const words = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'red' : 'cat'));
    const e = tok.encode(words.join(' '));
    expect(e.ids).toHaveLength(35);
    expect(e.ids).toEqual([id('[CLS]'), ...words.slice(0, 33).map(id), id('[SEP]')]);
    expect(e.mask).toEqual(new Array(35).fill(1));
    expect(e.truncated).toBe(true);
    // Exactly 33 text tokens fit without truncation.
    const fit = tok.encode(words.slice(0, 33).join(' '));
    expect(fit.truncated).toBe(false);
    expect(fit.ids[34]).toBe(id('[SEP]'));
  });

  it('writes INT64 rows and takes the pad id from the tokenizer', () => {
    const ids = new BigInt64Array(2 * 35);
    const mask = new BigInt64Array(2 * 35);
    tok.encodeInto('blue sky', ids, mask, 1);
    expect(Array.from(ids.subarray(35, 40), Number)).toEqual([id('[CLS]'), id('blue'), id('sky'), id('[SEP]'), 0]);
    expect(Array.from(mask.subarray(35, 40), Number)).toEqual([1, 1, 1, 1, 0]);
    expect(Array.from(ids.subarray(0, 35), Number)).toEqual(new Array(35).fill(0));
    const padded = bertTokenizerFromJson(JSON.stringify({ ...TOKENIZER_JSON, padding: { pad_id: 4 } }), 'pad4');
    expect(padded.padId).toBe(4);
    expect(padded.encode('sky').ids.slice(3, 6)).toEqual([4, 4, 4]);
  });

  it('names the file when the tokenizer is missing or not a tokenizer.json', async () => {
    const dir = await tempDir('ir-tok');
    await expect(loadBertTokenizer(join(dir, 'nope.json'))).rejects.toThrow(/nope\.json: no such file/);
    await writeFile(join(dir, 'vocab.json'), '{"a": 1}');
    await expect(loadBertTokenizer(join(dir, 'vocab.json'))).rejects.toThrow(/vocab\.json: not a Hugging Face tokenizer\.json/);
  });
});

// ---- scoring ------------------------------------------------------------------------------------

/** (prompt index, prompt, hand tokens): unequal groups (3, 1, 2) so a plain mean would differ. */
const PROMPTS: [string, string[]][] = [
  ['a red cat', ['a', 'red', 'cat']],
  ['Blue sky over the city', ['blue', 'sky', 'o', '##v', '##er', 'the', 'city']],
  ['a dog on the table', ['a', 'dog', 'on', 'the', 'table']],
];
const IMAGES: { prompt: number; w: number; h: number; seed: number }[] = [
  { prompt: 0, w: 300, h: 250, seed: 1 },
  { prompt: 0, w: 160, h: 240, seed: 2 },
  { prompt: 0, w: 224, h: 224, seed: 3 },
  { prompt: 1, w: 257, h: 301, seed: 4 },
  { prompt: 2, w: 400, h: 180, seed: 5 },
  { prompt: 2, w: 120, h: 150, seed: 6 },
];
const SEED = 7;

/** A textured RGB image: a gradient per channel plus a seeded square, so resize and crop matter. */
async function drawImage(path: string, w: number, h: number, seed: number): Promise<void> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      const inSq = x > w / 4 && x < w / 2 && y > h / 3 && y < (2 * h) / 3;
      raw[o] = (x * 255) / w;
      raw[o + 1] = inSq ? (seed * 37) % 256 : (y * 255) / h;
      raw[o + 2] = ((x + y) * seed * 3) % 256;
    }
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

/** Per-image channel means of the normalised 224×224 tensor, computed by Pillow + numpy in float64. */
function pythonChannelMeans(paths: string[]): number[][] {
  const script = `
import json, sys
import numpy as np
from PIL import Image
mean = np.array([0.48145466, 0.4578275, 0.40821073]); std = np.array([0.26862954, 0.26130258, 0.27577711])
out = []
for p in json.load(sys.stdin):
    im = Image.open(p).convert('RGB')
    w, h = im.size
    if w <= h: nw, nh = 224, int(224 * h / w)
    else: nw, nh = int(224 * w / h), 224
    if (nw, nh) != (w, h): im = im.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - 224) / 2.0)); left = int(round((nw - 224) / 2.0))
    a = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255.0
    out.append((((a - mean) / std).mean(axis=(0, 1))).tolist())
print(json.dumps(out))
`;
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(paths) }).toString());
}

describe('ImageReward scoring', () => {
  let dir: string;
  let modelPath: string;
  let tokPath: string;
  let reference: { raw: number[]; reward: number[]; groupedMean: number; plainMean: number };
  let kserve: KServeServer | undefined;

  beforeAll(async () => {
    dir = await tempDir('ir');
    const imagesDir = join(dir, 'images');
    await mkdir(imagesDir);
    const manifest: string[] = [];
    const count = [0, 0, 0];
    for (const [i, img] of IMAGES.entries()) {
      const file = `img_${i}.png`;
      await drawImage(join(imagesDir, file), img.w, img.h, img.seed);
      manifest.push(JSON.stringify({ file, prompt: PROMPTS[img.prompt][0], prompt_index: img.prompt, sample_index: count[img.prompt]++ }));
    }
    await writeFile(join(imagesDir, 'manifest.jsonl'), manifest.join('\n') + '\n');
    const { bytes, weights } = buildRewardStandinModel(SEED, { vocabSize: Object.keys(VOCAB).length });
    modelPath = join(dir, 'reward-standin.onnx');
    await writeFile(modelPath, bytes);
    tokPath = join(dir, 'tokenizer.json');
    await writeFile(tokPath, JSON.stringify(TOKENIZER_JSON));

    // Independent float64 recomputation: Pillow preprocessing, hand token ids, the stand-in's weights.
    const means = pythonChannelMeans(IMAGES.map((_, i) => join(imagesDir, `img_${i}.png`)));
    const raw = IMAGES.map((img, i) => {
      const ids = expectedIds(PROMPTS[img.prompt][1]);
      const mask = expectedMask(PROMPTS[img.prompt][1]);
      let r = weights.bias;
      for (let c = 0; c < 3; c++) r += weights.pixel[c] * means[i][c];
      for (let j = 0; j < 35; j++) r += weights.text[j] * ids[j] * mask[j];
      return r;
    });
    const reward = raw.map((r) => (r - 0.16717362830052426) / 1.0333394966054072);
    const groups = PROMPTS.map((_, p) => reward.filter((_, i) => IMAGES[i].prompt === p));
    const avg = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
    reference = { raw, reward, groupedMean: avg(groups.map(avg)), plainMean: avg(reward) };
  }, 30_000);

  afterAll(async () => {
    await kserve?.close();
  });

  it('matches an independent float64 recomputation, averaging per prompt first', async () => {
    const folder = await readImageFolder(join(dir, 'images'));
    const model = await OnnxTensorModel.load(modelPath);
    const tokenizer = await loadBertTokenizer(tokPath);
    const { summary, rows } = await scoreImageReward({ images: requirePrompts(folder, 'ImageReward'), model, tokenizer, batchSize: 4 });
    await model.close();
    expect(rows.map((r) => r.file)).toEqual(IMAGES.map((_, i) => `img_${i}.png`));
    for (let i = 0; i < rows.length; i++) {
      expect(rows[i].raw).toBeCloseTo(reference.raw[i], 4);
      expect(rows[i].reward).toBe((rows[i].raw - IMAGEREWARD_NORMALISATION.mean) / IMAGEREWARD_NORMALISATION.std);
    }
    // The groups are unequal, so the two means differ clearly; the score is the per-prompt one.
    expect(Math.abs(reference.groupedMean - reference.plainMean)).toBeGreaterThan(0.01);
    expect(summary.image_reward).toBeCloseTo(reference.groupedMean, 4);
    expect(summary.n_images).toBe(6);
    expect(summary.n_prompts).toBe(3);
    expect(summary.images_per_prompt).toEqual({ min: 1, max: 3 });
    expect(summary.normalisation).toEqual({ mean: 0.16717362830052426, std: 1.0333394966054072 });
    expect(summary.ci95!.low).toBeLessThanOrEqual(summary.image_reward);
    expect(summary.ci95!.high).toBeGreaterThanOrEqual(summary.image_reward);
    expect(summary.ci95!.high).toBeGreaterThan(summary.ci95!.low);
  });

  it('writes imagereward.json that the tables read, and imagereward.jsonl per image', async () => {
    const out = join(dir, 'results');
    const { result } = await runImageReward({ imagesDir: join(dir, 'images'), model: modelPath, tokenizer: tokPath, out, batchSize: 16 });
    expect(result.image_reward).toBeCloseTo(reference.groupedMean, 4);
    expect(result.stand_in).toBe(true);
    const tables = await readResults(out);
    expect(tables.tables['1'].cells.image_reward).toBe(result.image_reward);
    expect(tables.tables['1'].notes.join('\n')).toMatch(/ImageReward 95% CI/);
    const lines = (await readFile(join(out, 'imagereward.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(lines[3]).toMatchObject({ file: 'img_3.png', prompt: 'Blue sky over the city', prompt_index: 1 });
    expect(lines[3].reward).toBeCloseTo(reference.reward[3], 4);
  });

  it('runs as a command with renamed tensors and a flat [N] output', async () => {
    const names = { pixelValues: 'image', inputIds: 'ids', attentionMask: 'mask', reward: 'score' };
    const flat = join(dir, 'renamed.onnx');
    await writeFile(flat, buildRewardStandinModel(SEED, { vocabSize: Object.keys(VOCAB).length, names, flatOutput: true }).bytes);
    const out = join(dir, 'cmd-results');
    const args = [join(dir, 'images'), '--model', flat, '--tokenizer', tokPath, '--out', out, '--batch-size', '5', '--pixel-input', 'image', '--ids-input', 'ids', '--mask-input', 'mask', '--reward-output', 'score'];
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      await imageRewardCommand().parseAsync(args, { from: 'user' });
    } finally {
      process.stdout.write = write;
    }
    const json = JSON.parse(await readFile(join(out, 'imagereward.json'), 'utf8'));
    expect(json.image_reward).toBeCloseTo(reference.groupedMean, 4);
    expect(json.tensor_names).toEqual(names);
    expect(json.batch_size).toBe(5);
    // Without the names the contract check says what is missing and how to name it.
    await expect(runImageReward({ imagesDir: join(dir, 'images'), model: flat, tokenizer: tokPath, out: join(dir, 'bad') })).rejects.toThrow(/no input "pixel_values" .*--pixel-input/);
  });

  it('checks the model contract before scoring', async () => {
    const mlp = await OnnxTensorModel.load(tinyMlpModel(4, 1, 1).bytes, { name: 'mlp' });
    expect(() => checkRewardModel(mlp, { ...DEFAULT_REWARD_NAMES, pixelValues: 'x' }, 35, 4)).toThrow(/reward model mlp: input "x" has shape \[-1, 4\], expected \[N, 3, 224, 224\]/);
    expect(() => checkRewardModel(mlp, DEFAULT_REWARD_NAMES, 35, 4)).toThrow(/reward model mlp: no input "pixel_values"/);
    await mlp.close();
    const short = await OnnxTensorModel.load(buildRewardStandinModel(1, { maxLength: 20 }).bytes, { name: 'short' });
    expect(() => checkRewardModel(short, DEFAULT_REWARD_NAMES, 35, 4)).toThrow(/input "input_ids" has shape \[-1, 20\], expected \[N, 35\]/);
    await short.close();
  });

  it('gives the same score through a KServe v2 server', async () => {
    const model = await OnnxTensorModel.load(modelPath);
    kserve = await startKServeServer({ reward: model }, { port: 0 });
    const out = join(dir, 'kserve-results');
    const { result } = await runImageReward({ imagesDir: join(dir, 'images'), model: `${kserve.url}/v2/models/reward`, tokenizer: tokPath, out, batchSize: 4 });
    expect(result.image_reward).toBeCloseTo(reference.groupedMean, 4);
    expect(result.model).toMatch(/\/v2\/models\/reward$/);
  });

  it('writes a stand-in pair that scores end to end', async () => {
    const sd = await tempDir('ir-standin');
    const standin = await writeRewardStandin(sd, 3);
    expect(standin.label).toMatch(/STAND-IN/);
    const { result } = await runImageReward({ imagesDir: join(dir, 'images'), model: standin.model, tokenizer: standin.tokenizer, out: join(sd, 'out') });
    expect(result.stand_in).toBe(true);
    expect(Number.isFinite(result.image_reward)).toBe(true);
  });
});
