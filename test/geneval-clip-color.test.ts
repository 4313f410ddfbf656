import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { readRgb } from '../evaluation/images/image-folder.js';
import { ClipColorClassifier, objectCrop } from '../evaluation/geneval/clip-color.js';
import { COLORS, type Color } from '../evaluation/geneval-format/colors.js';
import type { Detection } from '../evaluation/geneval/detections.js';
import { genevalCommand } from '../evaluation/geneval/geneval-command.js';
import type { CocoRle } from '../evaluation/geneval/rle.js';
import { loadClipTokenizer, type ClipTokenizer } from '../evaluation/models/clip-text.js';
import { ClipImageTower, ClipTextTower } from '../evaluation/models/clip-towers.js';
import { buildClipImageStandin, buildClipStandinTokenizer, buildClipTextStandin, STANDIN_IMAGE_GRID, TEXT_TABLE_ROWS } from '../evaluation/standins/clip-standin.js';
import { clipNormalize, clipResizeCrop } from '../stages/clip-preprocess.js';
import type { RawImage } from '../src/sample.js';
import { tempDir } from './helpers/temp-dir.js';

const PY = '/usr/bin/python3';
const DIM = 6;
const W = 90;
const H = 70;

let dir: string;
let pic: string;
let tok: ClipTokenizer;
const image = buildClipImageStandin(21, DIM);
const text = buildClipTextStandin(22, DIM);

/** Column-major COCO RLE of a row-major mask, starting with a run of zeros. */
function toRle(mask: Uint8Array, w: number, h: number): CocoRle {
  const counts: number[] = [];
  let cur = 0;
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== cur) {
        counts.push(run);
        run = 0;
        cur = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

const MASK = (() => {
  const m = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if ((x - 60) ** 2 + (y - 30) ** 2 < 22 ** 2) m[y * W + x] = 1;
  return m;
})();

/** Boxes with .5 coordinates (banker's rounding) and one reaching past the right and bottom edges. */
const BOXES: [number, number, number, number][] = [
  [2.5, 3.5, 40.5, 33.5],
  [44.2, 6.7, 97.5, 75.5],
  [-3.5, 40.5, 30.49, 69.51],
];

function handEmbedImage(pixels: Float32Array): Float64Array {
  const g = STANDIN_IMAGE_GRID;
  const s = 224;
  const block = s / g;
  const feats = new Float64Array(3 * g * g);
  for (let c = 0; c < 3; c++) for (let y = 0; y < s; y++) for (let x = 0; x < s; x++) feats[c * g * g + Math.floor(y / block) * g + Math.floor(x / block)] += pixels[c * s * s + y * s + x] / (block * block);
  const out = Float64Array.from(image.b);
  for (let k = 0; k < feats.length; k++) for (let d = 0; d < DIM; d++) out[d] += feats[k] * image.w[k * DIM + d];
  return out;
}
function handEmbedText(ids: Int32Array): Float64Array {
  const out = new Float64Array(DIM);
  for (const t of ids) for (let d = 0; d < DIM; d++) out[d] += text.table[(t % TEXT_TABLE_ROWS) * DIM + d];
  return out;
}
const unit = (v: Float64Array) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

/** GenEval's classification recomputed by hand: crop → CLIP pixels → stand-in embeddings in float64 → template average → arg-max. */
function handColor(img: RawImage, det: Detection, cls: string): Color {
  const e = unit(handEmbedImage(clipNormalize(clipResizeCrop(objectCrop(img, det)))));
  const scores = COLORS.map((c) => {
    const t = [`a photo of a ${c} ${cls}`, `a photo of a ${c}-colored ${cls}`, `a photo of a ${c} object`].map((s) => unit(handEmbedText(tok.tokenize(s))));
    const avg = unit(t[0].map((_, j) => (t[0][j] + t[1][j] + t[2][j]) / 3));
    return avg.reduce((s, x, j) => s + x * e[j], 0);
  });
  return COLORS[scores.indexOf(Math.max(...scores))];
}

beforeAll(async () => {
  dir = await tempDir('geneval-clip');
  const px = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      // Left: red, right: blue, bottom: green-yellow stripes, and per-pixel texture.
      px[i] = x < 45 ? 220 : 20 + ((x * 5) & 63);
      px[i + 1] = y > 40 ? 200 - ((x * 3) & 31) : (x * y) & 63;
      px[i + 2] = x >= 45 ? 230 : (y * 7) & 127;
    }
  }
  pic = join(dir, 'pic.png');
  await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toFile(pic);
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(buildClipStandinTokenizer(['a', 'photo', 'of', 'object', 'dog', 'car', ...COLORS])));
  tok = await loadClipTokenizer(join(dir, 'tokenizer.json'));
  await writeFile(join(dir, 'image.onnx'), image.bytes);
  await writeFile(join(dir, 'text.onnx'), text.bytes);
});

describe("GenEval's object crops", () => {
  it('mask on #999 grey then box crop equal Pillow composite + crop (banker\'s rounding, black past the edge)', async () => {
    const img = await readRgb(pic);
    const maskRows = Array.from({ length: H }, (_, y) => Array.from(MASK.subarray(y * W, (y + 1) * W)));
    const script = `
import sys, json, numpy as np
from PIL import Image
im = Image.open(sys.argv[1]).convert('RGB')
mask = np.array(json.loads(sys.argv[2]), dtype=bool)
boxes = json.loads(sys.argv[3])
blank = Image.new('RGB', im.size, color='#999')
out = []
for b in boxes:
    for use_mask in (True, False):
        x = Image.composite(im, blank, Image.fromarray(mask)) if use_mask else im
        c = x.crop(b[:4])
        out.append('%d %d %s' % (c.size[0], c.size[1], np.asarray(c).tobytes().hex()))
print('\\n'.join(out))
`;
    const lines = execFileSync(PY, ['-', pic, JSON.stringify(maskRows), JSON.stringify(BOXES)], { input: script, encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n');
    let k = 0;
    for (const box of BOXES) {
      for (const withMask of [true, false]) {
        const det: Detection = { box, score: 0.9, ...(withMask ? { mask: toRle(MASK, W, H) } : {}) };
        const c = objectCrop(img, det);
        expect(`${c.width} ${c.height} ${Buffer.from(c.data).toString('hex')}`).toBe(lines[k++]);
      }
    }
    // The edge box really has black and grey in it, so the comparison covers both fills.
    const edge = objectCrop(img, { box: BOXES[1], score: 1, mask: toRle(MASK, W, H) });
    expect(edge.data.includes(153)).toBe(true);
    expect(edge.data.at(-1)).toBe(0);
  });

  it('refuses a mask of another size and an empty box, naming the image', async () => {
    const img = await readRgb(pic);
    expect(() => objectCrop(img, { box: [0, 0, 5, 5], score: 1, mask: toRle(new Uint8Array(4 * 3), 4, 3) }, 'x.png')).toThrow(/x\.png: the mask is 4×3 but the image is 90×70/);
    expect(() => objectCrop(img, { box: [3.5, 0, 4.5, 5], score: 1 }, 'x.png')).toThrow(/x\.png: box .* crops to 0×5/);
  });
});

describe('CLIP color classifier', () => {
  it('predicts what a float64 recomputation of the zero-shot classifier predicts', async () => {
    const [imageTower, textTower] = [await ClipImageTower.open(join(dir, 'image.onnx'), { batchSize: 2 }), await ClipTextTower.open(join(dir, 'text.onnx'))];
    try {
      const clf = new ClipColorClassifier({ image: imageTower, text: textTower, tokenizer: tok });
      expect(clf.name).toMatch(/^clip ViT-L-14 openai \(image: .*image\.onnx, text: .*text\.onnx\)$/);
      const img = await readRgb(pic);
      const got: Color[] = [];
      const want: Color[] = [];
      for (const cls of ['dog', 'car', 'zebra']) {
        const dets: Detection[] = BOXES.flatMap((box) => [{ box, score: 0.9 }, { box, score: 0.8, mask: toRle(MASK, W, H) }]);
        got.push(...(await clf.classify(pic, cls, dets)));
        want.push(...dets.map((d) => handColor(img, d, cls)));
      }
      expect(got).toEqual(want);
      // Several colors among the answers: the comparison is not between constant outputs.
      expect(new Set(want).size).toBeGreaterThan(1);
    } finally {
      await Promise.all([imageTower.close(), textTower.close()]);
    }
  });

  it('bitprep eval geneval --clip-* scores color clauses with it and records its name', async () => {
    const images = join(dir, 'geneval');
    await mkdir(join(images, '00000', 'samples'), { recursive: true });
    const box = BOXES[0];
    const img = await readRgb(pic);
    const predicted = handColor(img, { box, score: 0.95 }, 'dog');
    const other = COLORS.find((c) => c !== predicted)!;
    const meta = (color: Color) => JSON.stringify({ tag: 'colors', include: [{ class: 'dog', count: 1, color }], prompt: `a photo of a ${color} dog` });
    await mkdir(join(images, '00001', 'samples'), { recursive: true });
    await writeFile(join(images, '00000', 'metadata.jsonl'), meta(predicted) + '\n');
    await writeFile(join(images, '00001', 'metadata.jsonl'), meta(other) + '\n');
    await writeFile(join(images, '00000', 'samples', '0000.png'), await readFile(pic));
    await writeFile(join(images, '00001', 'samples', '0000.png'), await readFile(pic));
    const det = (image: string) => JSON.stringify({ image, detections: { dog: [[...box, 0.95]] } });
    await writeFile(join(dir, 'detections.jsonl'), `${det('00000/samples/0000.png')}\n${det('00001/samples/0000.png')}\n`);
    const out = join(dir, 'geneval-out');
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      await genevalCommand().parseAsync([images, '--detections', join(dir, 'detections.jsonl'), '--out', out, '--clip-image', join(dir, 'image.onnx'), '--clip-text', join(dir, 'text.onnx'), '--clip-tokenizer', join(dir, 'tokenizer.json'), '--clip-name', 'STAND-IN clip', '--json'], { from: 'user' });
    } finally {
      process.stdout.write = write;
    }
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary.color_source).toBe('STAND-IN clip');
    const results = (await readFile(join(out, 'results.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(results.map((r) => r.correct)).toEqual([true, false]);
    expect(results[1].reason).toContain(`expected ${other} dog>=1, found 0 ${other}; and 1 ${predicted}`);
    await expect(genevalCommand().parseAsync([images, '--detections', join(dir, 'detections.jsonl'), '--out', out, '--clip-image', join(dir, 'image.onnx')], { from: 'user' })).rejects.toThrow(/needs all of --clip-image, --clip-text and --clip-tokenizer/);
  });
});
