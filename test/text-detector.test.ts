import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KServeTensorModel } from '../src/models/kserve-client.js';
import { startKServeServer, type KServeServer } from '../src/models/kserve-server.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { NamedTensors, TensorModel } from '../src/models/tensor.js';
import { silentLogger } from '../src/log.js';
import { drop, newSample, type Sample } from '../src/sample.js';
import type { StageContext } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { dbPostprocess, type ProbabilityMap } from '../stages/ocr/db-postprocess.js';
import { textDetectorStage } from '../stages/ocr/detector-stage.js';
import { measureText, median, unionArea, type TextBox } from '../stages/ocr/text-boxes.js';
import { detectorInputSize, TextDetector } from '../stages/ocr/text-detector.js';
import { buildToyTextDetectorModel } from '../stages/ocr/toy-text-detector.js';

// ---- probability maps drawn by hand ----

function blankMap(width: number, height: number): ProbabilityMap {
  return { data: new Float32Array(width * height), width, height };
}

/** Fills columns x0..x1-1 and rows y0..y1-1 with p. */
function fill(m: ProbabilityMap, x0: number, y0: number, x1: number, y1: number, p: number): ProbabilityMap {
  for (let y = y0; y < y1; y++) m.data.fill(p, y * m.width + x0, y * m.width + x1);
  return m;
}

const f32 = (v: number) => Math.fround(v);
const coords = (b: TextBox) => [b.x0, b.y0, b.x1, b.y1];

describe('dbPostprocess', () => {
  it('boxes two separated blobs, unclipped by area × 1.5 / perimeter and clipped to the map', () => {
    // 20×10 blobs: offset = 200 × 1.5 / 60 = 5 on every side.
    const m = fill(fill(blankMap(64, 48), 10, 5, 30, 15, 0.9), 40, 30, 60, 40, 0.8);
    const boxes = dbPostprocess(m, { width: 64, height: 48 });
    expect(boxes.map(coords)).toEqual([[5, 0, 35, 20], [35, 25, 64, 45]]);
    expect(boxes[0].confidence).toBeCloseTo(f32(0.9), 6);
    expect(boxes[1].confidence).toBeCloseTo(f32(0.8), 6);
  });

  it('uses the exact DB offset for a non-square blob and none with unclip_ratio 0', () => {
    const m = fill(blankMap(100, 100), 20, 40, 50, 52, 0.95); // 30×12: offset = 360 × 2 / 84
    const d = (360 * 2) / 84;
    const [b] = dbPostprocess(m, { width: 100, height: 100 }, { unclip_ratio: 2 });
    expect(b.x0).toBeCloseTo(20 - d, 10);
    expect(b.x1).toBeCloseTo(50 + d, 10);
    expect(b.y0).toBeCloseTo(40 - d, 10);
    expect(b.y1).toBeCloseTo(52 + d, 10);
    expect(dbPostprocess(m, { width: 100, height: 100 }, { unclip_ratio: 0 }).map(coords)).toEqual([[20, 40, 50, 52]]);
  });

  it('drops a blob whose mean probability is below box_threshold, scoring over the component only', () => {
    const m = blankMap(80, 40);
    fill(m, 5, 5, 25, 15, 0.9); // kept
    fill(m, 40, 5, 60, 15, 0.5); // above the 0.3 threshold, mean 0.5 < 0.6
    // A 6×6 rim at 0.35 around a 4×4 core at 0.9: mean (16 × 0.9 + 20 × 0.35) / 36 = 0.594.
    fill(m, 65, 20, 71, 26, 0.35);
    fill(m, 66, 21, 70, 25, 0.9);
    const boxes = dbPostprocess(m, { width: 80, height: 40 });
    expect(boxes).toHaveLength(1);
    expect(boxes[0].confidence).toBeCloseTo(f32(0.9), 6);
    const lenient = dbPostprocess(m, { width: 80, height: 40 }, { box_threshold: 0.45 });
    expect(lenient).toHaveLength(3);
    expect(lenient[1].confidence).toBeCloseTo(f32(0.5), 6);
    expect(lenient[2].confidence).toBeCloseTo((16 * f32(0.9) + 20 * f32(0.35)) / 36, 6);
  });

  it('merges blobs that touch, diagonally included (8-connectivity), and keeps a one-pixel gap apart', () => {
    const touching = fill(fill(blankMap(60, 30), 5, 5, 15, 15, 0.9), 15, 15, 25, 25, 0.9); // corners meet at (14,14)-(15,15)
    expect(dbPostprocess(touching, { width: 60, height: 30 }, { unclip_ratio: 0 }).map(coords)).toEqual([[5, 5, 25, 25]]);
    const side = fill(fill(blankMap(60, 30), 5, 5, 15, 15, 0.9), 15, 8, 30, 12, 0.7);
    const [merged] = dbPostprocess(side, { width: 60, height: 30 }, { unclip_ratio: 0 });
    expect(coords(merged)).toEqual([5, 5, 30, 15]);
    expect(merged.confidence).toBeCloseTo((100 * f32(0.9) + 60 * f32(0.7)) / 160, 6);
    const apart = fill(fill(blankMap(60, 30), 5, 5, 15, 15, 0.9), 16, 16, 26, 26, 0.9);
    expect(dbPostprocess(apart, { width: 60, height: 30 }, { unclip_ratio: 0 }).map(coords)).toEqual([[5, 5, 15, 15], [16, 16, 26, 26]]);
  });

  it('binarises strictly above threshold', () => {
    // 0.25 is exact in float32, so "equal to the threshold" is really equal.
    const m = fill(fill(blankMap(40, 20), 5, 5, 15, 15, 0.9), 15, 5, 25, 15, 0.25);
    expect(dbPostprocess(m, { width: 40, height: 20 }, { unclip_ratio: 0, threshold: 0.25 }).map(coords)).toEqual([[5, 5, 15, 15]]);
    expect(dbPostprocess(m, { width: 40, height: 20 }, { unclip_ratio: 0, threshold: 0.24, box_threshold: 0.5 }).map(coords)).toEqual([[5, 5, 25, 15]]);
  });

  it('drops components whose shorter side is under min_size', () => {
    const m = fill(fill(blankMap(50, 50), 5, 5, 25, 7, 0.9), 5, 20, 25, 23, 0.9); // 20×2 and 20×3
    expect(dbPostprocess(m, { width: 50, height: 50 }, { unclip_ratio: 0 }).map(coords)).toEqual([[5, 20, 25, 23]]);
    expect(dbPostprocess(m, { width: 50, height: 50 }, { unclip_ratio: 0, min_size: 2 })).toHaveLength(2);
  });

  it('scales boxes back to the original size, per axis', () => {
    const m = fill(blankMap(64, 48), 10, 5, 30, 15, 0.9);
    expect(dbPostprocess(m, { width: 640, height: 480 }).map(coords)).toEqual([[50, 0, 350, 200]]);
    expect(dbPostprocess(m, { width: 320, height: 96 }).map(coords)).toEqual([[25, 0, 175, 40]]);
  });

  it('considers at most max_candidates components, in raster order', () => {
    const m = blankMap(100, 20);
    for (let i = 0; i < 5; i++) fill(m, 5 + i * 20, 5 + i, 15 + i * 20, 15, 0.9);
    expect(dbPostprocess(m, { width: 100, height: 20 }, { unclip_ratio: 0 })).toHaveLength(5);
    const three = dbPostprocess(m, { width: 100, height: 20 }, { unclip_ratio: 0, max_candidates: 3 });
    expect(three.map((b) => b.x0)).toEqual([5, 25, 45]);
  });

  it('walks a map-sized component and a serpentine one without recursion', () => {
    const full = fill(blankMap(736, 736), 0, 0, 736, 736, 0.99);
    expect(dbPostprocess(full, { width: 1472, height: 736 }).map(coords)).toEqual([[0, 0, 1472, 736]]);
    // One-pixel-wide rows joined alternately at the ends: a single component of maximal path length.
    const snake = blankMap(301, 301);
    for (let y = 0; y < 301; y += 2) {
      fill(snake, 0, y, 301, y + 1, 0.9);
      if (y + 2 < 301) fill(snake, (y / 2) % 2 === 0 ? 300 : 0, y + 1, (y / 2) % 2 === 0 ? 301 : 1, y + 2, 0.9);
    }
    expect(dbPostprocess(snake, { width: 301, height: 301 }, { unclip_ratio: 0, min_size: 1 }).map(coords)).toEqual([[0, 0, 301, 301]]);
  });

  it('rejects invalid options and maps', () => {
    const m = blankMap(8, 8);
    expect(() => dbPostprocess(m, { width: 8, height: 8 }, { threshold: 1.5 })).toThrow(/threshold must be in \[0, 1\)/);
    expect(() => dbPostprocess(m, { width: 8, height: 8 }, { max_candidates: 0 })).toThrow(/max_candidates/);
    expect(() => dbPostprocess({ data: new Float32Array(10), width: 8, height: 8 }, { width: 8, height: 8 })).toThrow(/needs 64 values, got 10/);
  });
});

describe('detectorInputSize (PaddleOCR DetResizeForTest, limit type max)', () => {
  it('keeps small images at scale, caps the longer side and rounds to multiples of 32', () => {
    expect(detectorInputSize(512, 512, 736)).toEqual({ width: 512, height: 512 });
    expect(detectorInputSize(1600, 1200, 736)).toEqual({ width: 736, height: 544 }); // 1200 × 0.46 = 552 → 17 × 32
    expect(detectorInputSize(700, 300, 736)).toEqual({ width: 704, height: 288 });
    expect(detectorInputSize(100, 20, 736)).toEqual({ width: 96, height: 32 });
    expect(detectorInputSize(10, 10, 736)).toEqual({ width: 32, height: 32 });
  });
});

// ---- drawn text images with known ink boxes ----

const W = 512;
const H = 512;
interface Word { text: string; x: number; y: number; size: number }
/** Five lines, 13–64 px DejaVu Sans, far enough apart that the detector keeps them separate. */
const LINES: Word[][] = [
  [{ text: 'Summer', x: 40, y: 100, size: 48 }, { text: 'SALE', x: 260, y: 100, size: 48 }],
  [{ text: 'fresh', x: 40, y: 200, size: 28 }, { text: 'bread', x: 125, y: 200, size: 28 }, { text: 'daily', x: 215, y: 200, size: 28 }],
  [{ text: 'open', x: 60, y: 300, size: 18 }, { text: 'until', x: 110, y: 300, size: 18 }, { text: '5pm', x: 160, y: 300, size: 18 }],
  [{ text: 'bitprep', x: 200, y: 430, size: 64 }],
  [{ text: 'small', x: 40, y: 490, size: 13 }, { text: 'print', x: 80, y: 490, size: 13 }],
];
const WORDS = LINES.flat();
/** One box per line, except that the 19 px gap between "Summer" and "SALE" (0.4 em) splits the first. */
const EXPECTED_BOXES = 6;

const textSvg = (words: Word[], fillColour: string) => Buffer.from(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">` +
  words.map((w) => `<text x="${w.x}" y="${w.y}" font-family="DejaVu Sans" font-size="${w.size}" fill="${fillColour}">${w.text}</text>`).join('') +
  '</svg>',
);

/** The word's ink box: rendered alone on a transparent canvas, the extent of alpha ≥ 32. */
async function inkBox(w: Word): Promise<TextBox> {
  const { data, info } = await sharp(textSvg([w], '#000')).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  let [x0, y0, x1, y1] = [info.width, info.height, -1, -1];
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width; x++) {
      if (data[(y * info.width + x) * 4 + 3] < 32) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (x1 < 0) throw new Error(`word ${w.text} rendered no ink (is DejaVu Sans installed?)`);
  return { x0, y0, x1: x1 + 1, y1: y1 + 1, confidence: 1 };
}

/** Uniform noise around `mean` (±amp), from a fixed LCG so the fixture is the same on every run. */
function noise(seed: number, mean: number, amp: number): Buffer {
  let s = seed;
  const b = Buffer.alloc(W * H * 3);
  for (let i = 0; i < b.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    b[i] = Math.max(0, Math.min(255, Math.round(mean + ((s / 2 ** 32) * 2 - 1) * amp)));
  }
  return b;
}

type Background = 'plain' | 'gradient' | 'noise' | 'dark';
const INK: Record<Background, string> = { plain: '#111111', gradient: '#1a1a1a', noise: '#000000', dark: '#ffffff' };

async function background(kind: Background): Promise<Buffer> {
  if (kind === 'plain') return sharp({ create: { width: W, height: H, channels: 3, background: '#f4f1ea' } }).png().toBuffer();
  if (kind === 'dark') return sharp({ create: { width: W, height: H, channels: 3, background: '#203040' } }).png().toBuffer();
  if (kind === 'noise') return sharp(noise(7, 170, 45), { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">` +
    '<stop offset="0" stop-color="#ffffff"/><stop offset="1" stop-color="#8a9ac8"/></linearGradient></defs>' +
    `<rect width="${W}" height="${H}" fill="url(#g)"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

async function textImage(kind: Background): Promise<Buffer> {
  return sharp(await background(kind)).composite([{ input: textSvg(WORDS, INK[kind]) }]).removeAlpha().png().toBuffer();
}

const BACKGROUNDS: Background[] = ['plain', 'gradient', 'noise', 'dark'];
/** Detected union density may differ from the ink boxes' by this fraction of the truth. */
const DENSITY_TOLERANCE = 0.2;
/** Text-free images may report at most this density. */
const EMPTY_DENSITY = 0.001;

const density = (boxes: readonly TextBox[], w = W, h = H) => unionArea(boxes) / (w * h);
const overlaps = (a: TextBox, b: TextBox) => Math.min(a.x1, b.x1) > Math.max(a.x0, b.x0) && Math.min(a.y1, b.y1) > Math.max(a.y0, b.y0);
const centre = (b: TextBox) => [(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2];
const inside = ([x, y]: number[], b: TextBox) => x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1;

/** A real model that counts its calls and the batch sizes it was given. */
class CountingModel implements TensorModel {
  batches: number[][] = [];
  constructor(private readonly inner: TensorModel) {}
  get name() { return this.inner.name; }
  get inputs() { return this.inner.inputs; }
  get outputs() { return this.inner.outputs; }
  infer(inputs: NamedTensors, opts?: { outputs?: string[]; signal?: AbortSignal }): Promise<NamedTensors> {
    this.batches.push(Object.values(inputs)[0].shape);
    return this.inner.infer(inputs, opts);
  }
  close() { return this.inner.close(); }
}

let model: OnnxTensorModel;
let detector: TextDetector;
let truth: TextBox[];
let truthDensity: number;
const images = {} as Record<Background, { text: Buffer; empty: Buffer }>;
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  model = await OnnxTensorModel.load(buildToyTextDetectorModel(), { name: 'toy-det', intraOpThreads: 1 });
  opened.push(model);
  detector = new TextDetector(model);
  truth = await Promise.all(WORDS.map(inkBox));
  truthDensity = density(truth);
  for (const k of BACKGROUNDS) images[k] = { text: await textImage(k), empty: await background(k) };
});
afterAll(async () => {
  for (const o of opened.reverse()) await o.close();
});

describe('toy text detector through OnnxTensorModel', () => {
  it('declares the PaddleOCR det contract with independent dynamic dims', () => {
    expect(model.inputs).toEqual([{ name: 'x', dtype: 'FP32', shape: [-1, 3, -1, -1] }]);
    expect(model.outputs).toEqual([{ name: 'maps', dtype: 'FP32', shape: [-1, 1, -1, -1] }]);
    expect(truthDensity).toBeGreaterThan(0.1);
  });

  it.each(BACKGROUNDS)('finds the drawn text on a %s background: density within tolerance, every word covered, no stray box', async (kind) => {
    const boxes = await detector.detect(images[kind].text);
    expect(Math.abs(density(boxes) - truthDensity)).toBeLessThanOrEqual(DENSITY_TOLERANCE * truthDensity);
    for (const t of truth) expect(boxes.some((b) => inside(centre(t), b)), `word at ${coords(t)} not covered`).toBe(true);
    for (const b of boxes) expect(truth.some((t) => overlaps(b, t)), `box ${coords(b)} covers no word`).toBe(true);
    for (const b of boxes) expect(b.confidence).toBeGreaterThanOrEqual(0.6);
    expect(boxes).toHaveLength(EXPECTED_BOXES);
  });

  it.each(BACKGROUNDS)('reports (near) zero density on a text-free %s background', async (kind) => {
    expect(density(await detector.detect(images[kind].empty))).toBeLessThanOrEqual(EMPTY_DENSITY);
  });

  it('measures the same density after a 2× upscale (resized to the 736 limit, boxes scaled back)', async () => {
    const big = await sharp(images.plain.text).resize(1024, 1024, { kernel: 'lanczos3' }).png().toBuffer();
    const boxes = await detector.detect(big);
    expect(Math.max(...boxes.map((b) => b.x1))).toBeGreaterThan(W); // reported in 1024-px coordinates
    expect(Math.abs(density(boxes, 1024, 1024) - truthDensity)).toBeLessThanOrEqual(DENSITY_TOLERANCE * truthDensity);
    const scaledTruth = truth.map((t) => ({ ...t, x0: t.x0 * 2, y0: t.y0 * 2, x1: t.x1 * 2, y1: t.y1 * 2 }));
    for (const t of scaledTruth) expect(boxes.some((b) => inside(centre(t), b))).toBe(true);
  });

  it('gives the same boxes for decoded pixels as for the encoded image, any channel count', async () => {
    const encoded = await detector.detect(images.noise.text);
    const { data, info } = await sharp(images.noise.text).raw().toBuffer({ resolveWithObject: true });
    expect(await detector.detect({ data, width: info.width, height: info.height, channels: 3 })).toEqual(encoded);
    const rgba = await sharp(images.noise.text).ensureAlpha().raw().toBuffer();
    expect(await detector.detect({ data: rgba, width: W, height: H, channels: 4 })).toEqual(encoded);
    const gray = await sharp(images.plain.text).grayscale().raw().toBuffer();
    expect(Math.abs(density(await detector.detect({ data: gray, width: W, height: H, channels: 1 })) - truthDensity)).toBeLessThanOrEqual(DENSITY_TOLERANCE * truthDensity);
  });

  it('batches equal-sized images into one call and mixed sizes into one call per size, same boxes as one by one', async () => {
    const counting = new CountingModel(model);
    const batched = new TextDetector(counting);
    const odd = await sharp(images.gradient.text).resize(700, 300, { fit: 'fill' }).png().toBuffer();
    const inputs = [images.plain.text, odd, images.noise.text, images.dark.empty];
    const together = await batched.detectBatch(inputs);
    expect(counting.batches).toEqual([[3, 3, 512, 512], [1, 3, 288, 704]]);
    for (let i = 0; i < inputs.length; i++) expect(together[i]).toEqual(await detector.detect(inputs[i]));
    expect(Math.max(...together[1].map((b) => b.x1))).toBeLessThanOrEqual(700);
    expect(Math.max(...together[1].map((b) => b.y1))).toBeLessThanOrEqual(300);
  });

  it('fails clearly on a model that does not fit the contract or a bad image', async () => {
    expect(() => new TextDetector(model, { input_name: 'pixels' })).toThrow(/model toy-det has no input "pixels" \(inputs: x\)/);
    expect(() => new TextDetector(model, { limit_side: 10 })).toThrow(/limit_side must be an integer ≥ 32/);
    await expect(detector.detect(new TextEncoder().encode('not an image at all'))).rejects.toThrow(/unsupported image format/i);
    await expect(detector.detect({ data: new Uint8Array(5), width: 4, height: 4, channels: 3 })).rejects.toThrow(/needs 48 bytes, got 5/);
  });
});

// ---- the stage ----

const context = (): StageContext => ({ unitId: 'u', stats: new StatsCollector(), log: silentLogger });

async function collect(it: AsyncIterable<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

async function* source(samples: Sample[]): AsyncGenerator<Sample> {
  yield* samples;
}

function stageInput(): Sample[] {
  const withImage = (key: string, image: Uint8Array) => Object.assign(newSample(key), { image });
  const dropped = drop(withImage('dropped', images.plain.text), 'min_edge', 10);
  return [
    withImage('plain', images.plain.text),
    withImage('gradient', images.gradient.text),
    newSample('no-image'),
    withImage('corrupt', new TextEncoder().encode('\x89PNG but not really')),
    dropped,
    withImage('noise', images.noise.text),
    withImage('empty', images.dark.empty),
  ];
}

/** Line heights of the ink boxes, as fractions of the image height. */
const truthLineHeights = () => LINES.map((line) => {
  const boxes = line.map((w) => truth[WORDS.indexOf(w)]);
  return (Math.max(...boxes.map((b) => b.y1)) - Math.min(...boxes.map((b) => b.y0))) / H;
});

async function checkStageOutput(out: Sample[], ctx: StageContext, name: string) {
  expect(out.map((s) => s.key)).toEqual(['plain', 'gradient', 'no-image', 'corrupt', 'dropped', 'noise', 'empty']);
  const by = Object.fromEntries(out.map((s) => [s.key, s]));
  for (const key of ['plain', 'gradient', 'noise']) {
    const s = by[key];
    expect(s.status).toEqual({ kind: 'ok' });
    expect(s.fields.ocr_backend).toBe('detector');
    const direct = measureText(await detector.detect(s.image!), W, H);
    expect({ ...s.fields, ocr_backend: undefined }).toEqual({ ...direct, ocr_backend: undefined });
    expect(Math.abs((s.fields.ocr_density as number) - truthDensity)).toBeLessThanOrEqual(DENSITY_TOLERANCE * truthDensity);
    expect(s.fields.ocr_words).toBe(EXPECTED_BOXES);
    const heights = truthLineHeights();
    expect(Math.abs((s.fields.ocr_median_height as number) / median(heights)! - 1)).toBeLessThanOrEqual(0.3);
    expect(Math.abs((s.fields.ocr_min_height as number) / Math.min(...heights) - 1)).toBeLessThanOrEqual(0.3);
  }
  expect(by.empty.fields).toEqual({ ocr_density: 0, ocr_words: 0, ocr_median_height: null, ocr_min_height: null, ocr_backend: 'detector' });
  expect(by['no-image'].status).toMatchObject({ kind: 'failed', stage: name, code: 'no_image', error: expect.stringContaining('sample no-image') });
  expect(by.corrupt.status).toMatchObject({ kind: 'failed', stage: name, code: 'decode_error', error: expect.stringMatching(/sample corrupt: cannot decode image/) });
  expect(by.dropped.status).toEqual({ kind: 'dropped', by: 'min_edge', value: 10 });
  expect(by.dropped.fields).toEqual({});
  const st = ctx.stats.stage(name);
  expect([st.in, st.ok, st.failed, st.dropped]).toEqual([6, 4, 2, 0]);
  expect(st.counts.samples).toBe(4);
}

describe('textDetectorStage', () => {
  it('writes the text measures through modelBatchStage over two ONNX replicas, failing bad samples by name', async () => {
    const second = await OnnxTensorModel.load(buildToyTextDetectorModel(), { name: 'toy-det', intraOpThreads: 1 });
    opened.push(second);
    const pool = new ReplicaPool<TensorModel>([{ name: 'a', client: model }, { name: 'b', client: second }]);
    const ctx = context();
    const out = await collect(textDetectorStage({ pool, batch_size: 2, max_wait_ms: 5 })(source(stageInput()), ctx));
    await checkStageOutput(out, ctx, 'ocr-detector');
    expect(ctx.stats.stage('ocr-detector').counts.batches).toBe(2); // [plain, gradient] and [noise, empty]
  });

  it('rejects bad options at start-up', () => {
    const pool = new ReplicaPool<TensorModel>([{ name: 'a', client: model }]);
    expect(() => textDetectorStage({ pool, box_threshold: 2 })).toThrow(/box_threshold must be in \[0, 1\)/);
    expect(() => textDetectorStage({ pool, batch_size: 0 })).toThrow(/batch_size must be a positive integer/);
  });
});

describe('the remote path: KServe v2', () => {
  let server: KServeServer;
  beforeAll(async () => {
    server = await startKServeServer({ 'toy-det': model }, { port: 0, host: '127.0.0.1' });
    opened.push(server);
  });

  it('detects the same boxes through a KServe v2 server as in process', async () => {
    const remote = await KServeTensorModel.connect(server.url, 'toy-det');
    expect(remote.inputs).toEqual(model.inputs);
    const viaServer = new TextDetector(remote);
    for (const k of ['plain', 'noise'] as const) expect(await viaServer.detect(images[k].text)).toEqual(await detector.detect(images[k].text));
    expect(remote.stats.requests).toBe(2);
    expect(remote.stats.jsonFallbacks).toBe(0);
  });

  it('runs the stage against the remote replica', async () => {
    const remote = await KServeTensorModel.connect(server.url, 'toy-det');
    const pool = new ReplicaPool<TensorModel>([{ name: 'remote', client: remote }]);
    const ctx = context();
    const out = await collect(textDetectorStage({ pool, name: 'ocr', batch_size: 4, max_wait_ms: 5 })(source(stageInput()), ctx));
    await checkStageOutput(out, ctx, 'ocr');
    expect(remote.stats.requests).toBe(ctx.stats.stage('ocr').counts.batches);
  });
});
