import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { TensorModel } from '../src/models/tensor.js';
import { newSample, type Sample } from '../src/sample.js';
import { StatsCollector } from '../src/stats.js';
import { dbPostprocess } from '../stages/ocr/db-postprocess.js';
import { textDetectorStage } from '../stages/ocr/detector-stage.js';
import { loadPpocrRecognizer, PPOCR_CONFIRM, PPOCR_DETECTOR, ppocrPath } from '../stages/ocr/ppocr-models.js';
import { median, type TextBox } from '../stages/ocr/text-boxes.js';
import { TextDetector } from '../stages/ocr/text-detector.js';
import type { TextRecognizer } from '../stages/ocr/text-recognizer.js';
import { hasSkimagePhotos, makeTextImages, type TextImage } from './helpers/text-images.js';

describe('DB line boxes calibrated to their ink', () => {
  it('shrinks a box about its centre to (height − ink_offset) / ink_scale, and its sides by as much', () => {
    const map = { data: new Float32Array(200 * 60), width: 200, height: 60 };
    for (let y = 20; y < 40; y++) map.data.fill(0.9, y * 200 + 50, y * 200 + 150);
    const [raw] = dbPostprocess(map, { width: 200, height: 60 });
    // DB's unclip: 100 × 20 × 1.5 / (2 × 120) = 12.5 on every side.
    expect([raw.x0, raw.y0, raw.x1, raw.y1]).toEqual([37.5, 7.5, 162.5, 52.5]);
    const [ink] = dbPostprocess(map, { width: 200, height: 60 }, { ink_scale: 0.972, ink_offset: 4.6 });
    const height = (45 - 4.6) / 0.972;
    const cut = (45 - height) / 2;
    expect(ink.y1 - ink.y0).toBeCloseTo(height, 9);
    expect((ink.y0 + ink.y1) / 2).toBeCloseTo(30, 9);
    expect([ink.x0, ink.x1].map((v) => Number(v.toFixed(9)))).toEqual([37.5 + cut, 162.5 - cut].map((v) => Number(v.toFixed(9))));
    expect(() => dbPostprocess(map, { width: 200, height: 60 }, { ink_scale: 0 })).toThrow(/ink_scale must be a positive number/);
  });
});

/** The drawn words whose centre lies inside a box: the ink a line box holds. */
const wordsIn = (b: TextBox, words: readonly TextBox[]): TextBox[] =>
  words.filter((w) => {
    const cx = (w.x0 + w.x1) / 2;
    const cy = (w.y0 + w.y1) / 2;
    return cx >= b.x0 && cx <= b.x1 && cy >= b.y0 && cy <= b.y1;
  });

describe.skipIf(!hasSkimagePhotos())('PP-OCRv4 as the ppocr backend runs it (packaged models)', () => {
  let model: OnnxTensorModel;
  let recognizer: TextRecognizer;
  let images: TextImage[];

  beforeAll(async () => {
    model = await OnnxTensorModel.load(ppocrPath('detector'), { name: 'ppocr-v4-det', intraOpThreads: 1 });
    recognizer = await loadPpocrRecognizer({ intraOpThreads: 1 });
    // 36 images: 12 text-free photographs, 6 each of captions, logos, dense paragraphs and small print.
    images = await makeTextImages(36, 2026);
  }, 60_000);
  afterAll(async () => {
    await model?.close();
    await recognizer?.model.close();
  });

  it('boxes each drawn line of text at the height of its ink, within 15% (plain and gradient fills)', async () => {
    const calibrated = new TextDetector(model, PPOCR_DETECTOR);
    const raw = new TextDetector(model, { ...PPOCR_DETECTOR, ink_scale: 1, ink_offset: 0 });
    const ratios: number[] = [];
    const rawRatios: number[] = [];
    const onFills = images.filter((m) => m.background !== 'photo' && m.words.length > 0);
    expect(onFills.length).toBeGreaterThanOrEqual(8);
    for (const m of onFills) {
      const lineRatios = async (d: TextDetector, out: number[]) => {
        for (const b of await d.detect(new Uint8Array(m.png))) {
          const words = wordsIn(b, m.words);
          if (words.length === 0) continue;
          const ink = Math.max(...words.map((w) => w.y1)) - Math.min(...words.map((w) => w.y0));
          // One line of text per box (DB joins the lines of a tight paragraph now and then).
          if (ink > 1.5 * Math.max(...words.map((w) => w.y1 - w.y0))) continue;
          out.push((b.y1 - b.y0) / ink);
        }
      };
      await lineRatios(calibrated, ratios);
      await lineRatios(raw, rawRatios);
    }
    expect(ratios.length).toBeGreaterThanOrEqual(30);
    // Measured on this set: 47 of 56 lines within 15%, median 1.00; DB's own boxes run ~15% taller.
    const within = ratios.filter((r) => Math.abs(r - 1) <= 0.15).length / ratios.length;
    expect(within, JSON.stringify(ratios.map((r) => r.toFixed(2)))).toBeGreaterThanOrEqual(0.75);
    expect(Math.abs(median(ratios)! - 1)).toBeLessThanOrEqual(0.05);
    expect(median(rawRatios)!).toBeGreaterThan(1.1);
  }, 60_000);

  it('counts only the lines its recogniser reads words in: text found, textured photographs left clean', async () => {
    const pool = new ReplicaPool<TensorModel>([{ name: 'cpu', client: model }]);
    const stage = textDetectorStage({ pool, ...PPOCR_DETECTOR, recognizer, confirm: PPOCR_CONFIRM, backend: 'ppocr', batch_size: 4, max_wait_ms: 5 });
    const ctx = { unitId: 'u', stats: new StatsCollector(), log: silentLogger };
    async function* source(): AsyncGenerator<Sample> {
      for (const m of images) yield Object.assign(newSample(m.name), { image: new Uint8Array(m.png) });
    }
    const out = new Map<string, Sample>();
    for await (const s of stage(source(), ctx)) out.set(s.key, s);
    const words = (m: TextImage) => out.get(m.name)!.fields.ocr_words as number;
    for (const m of images) expect(out.get(m.name)!.fields.ocr_backend).toBe('ppocr');
    const clean = images.filter((m) => m.kind === 'none');
    expect(clean.filter((m) => words(m) > 0).map((m) => m.name)).toEqual([]);
    const big = images.filter((m) => m.kind === 'caption' || m.kind === 'logo' || m.kind === 'dense');
    expect(big.filter((m) => words(m) === 0).length).toBeLessThanOrEqual(2);
  }, 60_000);
});
