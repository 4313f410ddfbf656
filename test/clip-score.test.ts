import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { startKServeServer } from '../src/models/kserve-server.js';
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { silentLogger } from '../src/log.js';
import { clipNormalize, clipResizeCrop } from '../stages/clip-preprocess.js';
import { readRgb } from '../evaluation/images/image-folder.js';
import { gigaganImage, gigaganPixels, gigaganTokens, GIGAGAN_ROUND_TRIP } from '../evaluation/metrics/clip-score.js';
import { clipScoreCommand, runClipScore } from '../evaluation/metrics/clip-score-command.js';
import { assembleClipIds, gigaganPrefixIds, insertPrefix, loadClipTokenizer, type ClipTokenizer } from '../evaluation/models/clip-text.js';
import { ClipImageTower } from '../evaluation/models/clip-towers.js';
import { buildClipImageStandin, buildClipStandinTokenizer, buildClipTextStandin, STANDIN_IMAGE_GRID, TEXT_TABLE_ROWS } from '../evaluation/standins/clip-standin.js';
import { readResults } from '../evaluation/tables/results.js';
import { tempDir } from './helpers/temp-dir.js';

const PY = '/usr/bin/python3';
const py = (script: string, args: string[] = []): string => execFileSync(PY, ['-', ...args], { input: script, encoding: 'utf8', maxBuffer: 64 << 20 });

const WORDS = ['a', 'photo', 'depicts', 'dog', 'on', 'the', 'beach', 'red', 'car', 'parked'];
const DIM = 8;
const SOT = 49406;
const EOT = 49407;

let dir: string;
let tok: ClipTokenizer;
let id: (w: string) => number;
let imagePath: string;
let textPath: string;
let image: ReturnType<typeof buildClipImageStandin>;
let text: ReturnType<typeof buildClipTextStandin>;

/** A deterministic non-square RGB picture: gradients, a disc and per-pixel texture. */
async function drawImage(path: string, w: number, h: number, seed: number): Promise<void> {
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inDisc = (x - w / 3) ** 2 + (y - h / 2) ** 2 < (h / 4) ** 2;
      px[i] = (x * 255) / (w - 1);
      px[i + 1] = inDisc ? 30 + seed * 40 : (y * 255) / (h - 1);
      px[i + 2] = ((x * 7 + y * 13 + seed * 31) * 37) & 255;
    }
  }
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

/** The stand-in towers' embeddings recomputed in float64 from the preprocessed pixels / ids. */
function handImage(pixels: Float32Array, size = 224): Float64Array {
  const g = STANDIN_IMAGE_GRID;
  const block = size / g;
  const feats = new Float64Array(3 * g * g);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) feats[c * g * g + Math.floor(y / block) * g + Math.floor(x / block)] += pixels[c * size * size + y * size + x] / (block * block);
    }
  }
  const out = Float64Array.from(image.b);
  for (let k = 0; k < feats.length; k++) for (let d = 0; d < DIM; d++) out[d] += feats[k] * image.w[k * DIM + d];
  return out;
}
function handText(ids: Int32Array): Float64Array {
  const out = new Float64Array(DIM);
  for (const t of ids) for (let d = 0; d < DIM; d++) out[d] += text.table[(t % TEXT_TABLE_ROWS) * DIM + d];
  return out;
}
function cosine(a: Float64Array, b: Float64Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

beforeAll(async () => {
  dir = await tempDir('clip-score');
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(buildClipStandinTokenizer(WORDS)));
  tok = await loadClipTokenizer(join(dir, 'tokenizer.json'));
  const ids = new Map(WORDS.map((w) => [w, tok.encode(w)]));
  id = (w) => {
    const x = ids.get(w)!;
    if (x.length !== 1) throw new Error(`test tokenizer: "${w}" is ${x.length} tokens`);
    return x[0];
  };
  image = buildClipImageStandin(7, DIM);
  text = buildClipTextStandin(8, DIM);
  imagePath = join(dir, 'image.onnx');
  textPath = join(dir, 'text.onnx');
  await writeFile(imagePath, image.bytes);
  await writeFile(textPath, text.bytes);
});

describe('CLIP tokens (openai tokenize + GigaGAN prefix)', () => {
  it('lays out CLIP ids: byte chars in bytes_to_unicode order, a</w> = 320 as in CLIP, SOT/EOT 49406/49407', () => {
    expect(tok.sot).toBe(SOT);
    expect(tok.eot).toBe(EOT);
    expect(tok.encode('a')).toEqual([320]);
    // Unmerged words fall apart into characters, the last one with </w>: "xy" → x, y</w>.
    expect(tok.encode('xy')).toEqual(['x'.charCodeAt(0) - 33, 256 + 'y'.charCodeAt(0) - 33]);
    expect(new Set(WORDS.map(id)).size).toBe(WORDS.length);
    // Lower-cased, whitespace collapsed, as both CLIP tokenizers do.
    expect(tok.encode('  A   Dog\n')).toEqual([320, id('dog')]);
  });

  it('tokenize pads with zeros and truncates at 77 with EOT last', () => {
    const short = tok.tokenize('a red car');
    expect(Array.from(short.subarray(0, 6))).toEqual([SOT, 320, id('red'), id('car'), EOT, 0]);
    expect(short.length).toBe(77);
    expect(short.subarray(5).every((x) => x === 0)).toBe(true);
    const long = tok.tokenize(Array(80).fill('dog').join(' '));
    expect(long[0]).toBe(SOT);
    expect(Array.from(long.subarray(1, 76))).toEqual(Array(75).fill(id('dog')));
    expect(long[76]).toBe(EOT);
    expect(Array.from(assembleClipIds([5, 6, 7], 1, 2, 4))).toEqual([1, 5, 6, 2]);
  });

  it('inserts the three ids of "A photo depicts " after SOT and forces EOT at 76 only when occupied', () => {
    const prefix = gigaganPrefixIds(tok);
    expect(prefix).toEqual([320, id('photo'), id('depicts')]);
    const p = [SOT, 320, id('photo'), id('depicts')];
    expect(Array.from(gigaganTokens(tok, 'a dog on the beach').subarray(0, 11))).toEqual([...p, 320, id('dog'), id('on'), id('the'), id('beach'), EOT, 0]);
    // 72 words: SOT + 3 + 72 + EOT = 77, EOT already at 76.
    const fits = gigaganTokens(tok, Array(72).fill('car').join(' '));
    expect(Array.from(fits)).toEqual([...p, ...Array(72).fill(id('car')), EOT]);
    // 73 words: the caption's EOT falls off at 77; the 73rd word at 76 becomes EOT.
    const cut = gigaganTokens(tok, Array(73).fill('car').join(' '));
    expect(Array.from(cut)).toEqual([...p, ...Array(72).fill(id('car')), EOT]);
    // 71 words: position 76 is padding and stays 0.
    const pad = gigaganTokens(tok, Array(71).fill('car').join(' '));
    expect(Array.from(pad)).toEqual([...p, ...Array(71).fill(id('car')), EOT, 0]);
    // Truncated caption: tokenize's EOT at 76 is pushed out, the word there becomes EOT.
    const long = gigaganTokens(tok, Array(90).fill('red').join(' '));
    expect(Array.from(long)).toEqual([...p, ...Array(72).fill(id('red')), EOT]);
    expect(Array.from(insertPrefix(Int32Array.from([1, 9, 2, 0, 0]), [7, 8], 2))).toEqual([1, 7, 8, 9, 2]);
  });
});

describe("GigaGAN's image path", () => {
  it('the [-1, 1] round-trip table equals numpy float32 arithmetic with uint8 truncation', () => {
    const out = py(`
import numpy as np
v = np.arange(256, dtype=np.float32)
x = (v / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
y = np.clip((x + np.float32(1.0)) * np.float32(127.5), 0, 255).astype(np.uint8)
print(' '.join(map(str, y.tolist())))
`);
    const numpy = out.trim().split(' ').map(Number);
    expect(Array.from(GIGAGAN_ROUND_TRIP)).toEqual(numpy);
    // The point of reproducing it: some bytes do drop by one.
    expect(numpy.some((y, v) => y === v - 1)).toBe(true);
    expect(numpy.every((y, v) => y === v || y === v - 1)).toBe(true);
  });

  it('crop, Lanczos 256, round trip, bicubic 224 and normalisation equal Pillow + numpy on non-square images', async () => {
    for (const [w, h] of [[301, 217], [180, 250]] as const) {
      const file = join(dir, `pic-${w}x${h}.png`);
      await drawImage(file, w, h, 1);
      const rgb = await readRgb(file);
      const ours256 = gigaganImage(rgb);
      const ours224 = clipResizeCrop(ours256);
      const oursPx = gigaganPixels(rgb);
      const out = py(`
import sys, numpy as np
from PIL import Image
im = Image.open(sys.argv[1]).convert('RGB')
w, h = im.size; s = min(w, h)
top = int(round((h - s) / 2.0)); left = int(round((w - s) / 2.0))
im = im.crop((left, top, left + s, top + s)).resize((256, 256), Image.LANCZOS)
x = np.asarray(im).astype(np.float32) / np.float32(255)
x = (x - np.float32(0.5)) / np.float32(0.5)
im = Image.fromarray(np.clip((x + np.float32(1.0)) * np.float32(127.5), 0, 255).astype(np.uint8))
a = np.asarray(im)
im2 = im.resize((224, 224), Image.BICUBIC)
b = np.asarray(im2)
mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32); std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
t = ((b.astype(np.float32) / np.float32(255) - mean) / std).transpose(2, 0, 1)
sys.stdout.write(a.tobytes().hex() + '\\n' + b.tobytes().hex() + '\\n' + t.astype('<f4').tobytes().hex() + '\\n')
`, [file]);
      const [a, b, t] = out.trim().split('\n');
      expect(Buffer.from(ours256.data).toString('hex')).toBe(a);
      expect(Buffer.from(ours224.data).toString('hex')).toBe(b);
      expect(Buffer.from(oursPx.buffer, oursPx.byteOffset, oursPx.byteLength).toString('hex')).toBe(t);
      expect(Array.from(clipNormalize(ours224).subarray(0, 5))).toEqual(Array.from(oursPx.subarray(0, 5)));
    }
  });

  it('leaves a 256×256 image unresized (only the round trip applies)', async () => {
    const file = join(dir, 'square256.png');
    await drawImage(file, 256, 256, 2);
    const rgb = await readRgb(file);
    expect(Array.from(gigaganImage(rgb).data)).toEqual(Array.from(rgb.data, (v) => GIGAGAN_ROUND_TRIP[v]));
  });
});

describe('bitprep eval clip-score', () => {
  const CAPTIONS = ['a dog on the beach', 'a red car parked on the beach', 'the dog', Array(80).fill('photo').join(' '), 'a red dog'];
  let images: string;

  beforeAll(async () => {
    images = join(dir, 'gen');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(images);
    const sizes: [number, number][] = [[300, 200], [200, 260], [256, 256], [97, 131], [240, 240]];
    for (let i = 0; i < CAPTIONS.length; i++) await drawImage(join(images, `img${i + 1}.png`), sizes[i][0], sizes[i][1], i);
    // GigaGAN's layout: natural sort (img10 after img2) and captions.txt line i for image i.
    await writeFile(join(images, 'captions.txt'), CAPTIONS.join('\n') + '\n');
  });

  it('writes clip-score.json (tables schema) and per-image cosines equal to a float64 recomputation', async () => {
    const out = join(dir, 'results');
    const { summary } = await runClipScore({ imagesDir: images, imageModel: imagePath, textModel: textPath, tokenizer: join(dir, 'tokenizer.json'), out, batchSize: 2, log: silentLogger });
    const rows = (await readFile(join(out, 'clip-score.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { file: string; prompt: string; cosine: number });
    expect(rows.map((r) => r.file)).toEqual(CAPTIONS.map((_, i) => `img${i + 1}.png`));
    expect(rows.map((r) => r.prompt)).toEqual(CAPTIONS);
    const expected = await Promise.all(CAPTIONS.map(async (c, i) => cosine(handImage(gigaganPixels(await readRgb(join(images, `img${i + 1}.png`)))), handText(gigaganTokens(tok, c)))));
    rows.forEach((r, i) => expect(Math.abs(r.cosine - expected[i])).toBeLessThan(1e-5));
    // Different images and captions give different cosines, so a mix-up of rows would show.
    expect(new Set(expected.map((e) => e.toFixed(4))).size).toBe(CAPTIONS.length);
    const meanExpected = expected.reduce((a, b) => a + b) / expected.length;
    expect(Math.abs(summary.clip_score - meanExpected)).toBeLessThan(1e-5);
    expect(summary.clip_score).toBe(rows.reduce((a, r) => a + r.cosine, 0) / rows.length);
    expect(summary).toMatchObject({ n: 5, protocol: 'gigagan', prefix: 'A photo depicts ', limit: null, folder_kind: 'captions.txt', ci95: { resamples: 1000, seed: 0 } });
    expect(summary.ci95!.low).toBeLessThanOrEqual(summary.clip_score);
    expect(summary.ci95!.high).toBeGreaterThanOrEqual(summary.clip_score);
    const tables = await readResults(out);
    expect(tables.tables['1'].cells.clip).toBe(summary.clip_score);
  });

  it('runs from the command line with --limit and --model-name, and through a KServe server with the same cosines', async () => {
    const out = join(dir, 'results-cli');
    const write = process.stdout.write;
    let printed = '';
    process.stdout.write = ((s: string) => ((printed += s), true)) as typeof process.stdout.write;
    try {
      await clipScoreCommand().parseAsync([images, '--image-model', imagePath, '--text-model', textPath, '--tokenizer', join(dir, 'tokenizer.json'), '--out', out, '--limit', '3', '--model-name', 'STAND-IN test', '--json'], { from: 'user' });
    } finally {
      process.stdout.write = write;
    }
    const file = JSON.parse(await readFile(join(out, 'clip-score.json'), 'utf8'));
    expect(JSON.parse(printed)).toEqual(file);
    expect(file).toMatchObject({ n: 3, limit: 3, model: 'STAND-IN test' });
    const local = (await readFile(join(out, 'clip-score.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).cosine as number);

    const models = { img: await OnnxTensorModel.load(image.bytes), txt: await OnnxTensorModel.load(text.bytes) };
    const server = await startKServeServer(models, { port: 0 });
    try {
      const remote = join(dir, 'results-kserve');
      const { summary } = await runClipScore({ imagesDir: images, imageModel: `${server.url}/v2/models/img`, textModel: `${server.url}/v2/models/txt`, tokenizer: join(dir, 'tokenizer.json'), out: remote, limit: 3, log: silentLogger });
      const cos = (await readFile(join(remote, 'clip-score.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).cosine as number);
      cos.forEach((c, i) => expect(Math.abs(c - local[i])).toBeLessThan(1e-6));
      expect(summary.image_model).toContain('/v2/models/img');
    } finally {
      await server.close();
      await Promise.all([models.img.close(), models.txt.close()]);
    }
  });

  it('refuses towers that break the contract, naming the model and the tensor', async () => {
    const g = new OnnxGraphBuilder('wrong');
    const x = g.input('pixels', 'FP32', [-1, 3, 224, 224]);
    g.output(g.reduceMean(x, [2, 3], false, 'image_embeds'), 'FP32', [-1, 3]);
    const wrong = join(dir, 'wrong.onnx');
    await writeFile(wrong, g.build());
    await expect(ClipImageTower.open(wrong)).rejects.toThrow(/model .*wrong\.onnx: no input tensor "pixel_values" \(inputs: pixels\)/);
    await expect(ClipImageTower.open(wrong, { imageSize: 256, input: 'pixels' })).rejects.toThrow(/model .*wrong\.onnx: input "pixels" is FP32 \[N, 3, 224, 224\], expected FP32 \[N, 3, 256, 256\]/);
    await expect(runClipScore({ imagesDir: images, imageModel: imagePath, textModel: imagePath, tokenizer: join(dir, 'tokenizer.json'), out: join(dir, 'never'), log: silentLogger })).rejects.toThrow(/image\.onnx: no input tensor "input_ids"/);
    await expect(runClipScore({ imagesDir: images, imageModel: imagePath, textModel: textPath, tokenizer: join(dir, 'nope.json'), out: join(dir, 'never'), log: silentLogger })).rejects.toThrow(/nope\.json: no such file/);
  });
});
