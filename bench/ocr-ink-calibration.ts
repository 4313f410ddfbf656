import { parseArgs } from 'node:util';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { PPOCR_DETECTOR, PPOCR_V4_INK, ppocrPath } from '../stages/ocr/ppocr-models.js';
import { TextDetector } from '../stages/ocr/text-detector.js';
import { makeTuningImages } from '../test/helpers/text-images.js';

/**
 * Fits PP-OCRv4's line boxes to the ink they hold, on the tuning set (makeTuningImages, never the
 * held-out set): for each detected box holding one line of drawn words, box height against the
 * ink height of those words, both in model pixels, by least squares (box = ink_scale × ink +
 * ink_offset, the form db-postprocess.ts undoes), then how many boxes the shipped calibration
 * (PPOCR_V4_INK) brings within 15% of their ink.
 *
 *   node --import tsx bench/ocr-ink-calibration.ts [--count 280] [--seed 7]
 */
const { values } = parseArgs({ options: { count: { type: 'string', default: '280' }, seed: { type: 'string', default: '7' } } });
const model = await OnnxTensorModel.load(ppocrPath('detector'), { name: 'ppocr-v4-det', intraOpThreads: 2 });
const images = (await makeTuningImages(Number(values.count), Number(values.seed))).filter((m) => m.words.length > 0);
const raw = new TextDetector(model, { ...PPOCR_DETECTOR, ink_scale: 1, ink_offset: 0 });
const calibrated = new TextDetector(model, PPOCR_DETECTOR);

/** [box height, ink height] in model pixels, and whether the image has a plain or gradient fill, per single-line box. */
async function lines(d: TextDetector): Promise<[number, number, boolean][]> {
  const out: [number, number, boolean][] = [];
  for (const m of images) {
    // Model pixels: the detector scales the longer side down to limit_side.
    const r = Math.min(1, PPOCR_DETECTOR.limit_side / Math.max(m.size, m.height));
    for (const b of await d.detect(new Uint8Array(m.png))) {
      const words = m.words.filter((w) => {
        const cx = (w.x0 + w.x1) / 2;
        const cy = (w.y0 + w.y1) / 2;
        return cx >= b.x0 && cx <= b.x1 && cy >= b.y0 && cy <= b.y1;
      });
      if (words.length === 0) continue;
      const ink = Math.max(...words.map((w) => w.y1)) - Math.min(...words.map((w) => w.y0));
      if (ink > 1.5 * Math.max(...words.map((w) => w.y1 - w.y0))) continue; // two lines in one box
      out.push([(b.y1 - b.y0) * r, ink * r, m.background !== 'photo']);
    }
  }
  return out;
}

const fit = await lines(raw);
const n = fit.length;
const sx = fit.reduce((s, p) => s + p[1], 0);
const sy = fit.reduce((s, p) => s + p[0], 0);
const sxx = fit.reduce((s, p) => s + p[1] * p[1], 0);
const sxy = fit.reduce((s, p) => s + p[1] * p[0], 0);
const scale = (n * sxy - sx * sy) / (n * sxx - sx * sx);
const offset = (sy - scale * sx) / n;
const check = await lines(calibrated);
const within = (xs: [number, number, boolean][]) => (xs.filter(([h, ink]) => Math.abs(h / ink - 1) <= 0.15).length / xs.length).toFixed(2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
console.log(`tuning set seed ${values.seed}: ${n} single-line boxes in ${images.length} images with text`);
console.log(`fit: box height = ${scale.toFixed(3)} × ink height + ${offset.toFixed(2)} model px (shipped: ${PPOCR_V4_INK.ink_scale} × ink + ${PPOCR_V4_INK.ink_offset})`);
console.log(`DB's own boxes: median box / ink ${median(fit.map(([h, ink]) => h / ink)).toFixed(3)}, within 15% ${within(fit)}`);
console.log(`calibrated: median box / ink ${median(check.map(([h, ink]) => h / ink)).toFixed(3)}, within 15% ${within(check)} (plain and gradient fills ${within(check.filter((c) => c[2]))})`);
await model.close();
