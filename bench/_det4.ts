import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { PPOCR_V4_INK, ppocrPath } from '../stages/ocr/ppocr-models.js';
import { TextDetector } from '../stages/ocr/text-detector.js';
import { measureText } from '../stages/ocr/text-boxes.js';
import { makeTextImages, makeTuningImages } from '../test/helpers/text-images.js';
const model = await OnnxTensorModel.load(ppocrPath('detector'), { intraOpThreads: 2 });
const which = process.argv[2] ?? 'tune';
const imgs = (which === 'tune' ? await makeTuningImages(280, 7) : await makeTextImages(Number(process.argv[3] ?? 120), Number(process.argv[4] ?? 2026))).filter((m) => m.words.length > 0);
const det = new TextDetector(model, { channel_order: 'bgr', limit_side: 960, ...PPOCR_V4_INK });
const rs: [number, string, string][] = [];
const dens: number[] = [];
const meds: number[] = [];
for (const m of imgs) {
  const boxes = await det.detect(new Uint8Array(m.png));
  for (const b of boxes) {
    const cov = m.words.filter((w) => { const cx = (w.x0 + w.x1) / 2, cy = (w.y0 + w.y1) / 2; return cx >= b.x0 && cx <= b.x1 && cy >= b.y0 && cy <= b.y1; });
    if (cov.length === 0) continue;
    const ink = Math.max(...cov.map((w) => w.y1)) - Math.min(...cov.map((w) => w.y0));
    if (ink > 1.5 * Math.max(...cov.map((w) => w.y1 - w.y0))) continue;
    rs.push([(b.y1 - b.y0) / ink, m.background, m.name]);
  }
  const got = measureText(boxes, m.size, m.height);
  if (got.ocr_words > 0) { dens.push(got.ocr_density / m.truth.ocr_density); meds.push(got.ocr_median_height! / m.truth.ocr_median_height!); }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const w15 = (xs: [number, string, string][]) => (xs.filter((x) => Math.abs(x[0] - 1) <= 0.15).length / xs.length).toFixed(2);
console.log(`${which}: boxes ${rs.length}, ratio median ${med(rs.map((x) => x[0])).toFixed(3)}, within 15% ${w15(rs)}, non-photo ${w15(rs.filter((x) => x[1] !== 'photo'))} (${rs.filter((x) => x[1] !== 'photo').length}); density ratio median ${med(dens).toFixed(3)}; median-height ratio median ${med(meds).toFixed(3)}`);
if (process.argv[5]) for (const x of rs.filter((x) => x[1] !== 'photo' && Math.abs(x[0] - 1) > 0.15)) console.log('  off', x[2], x[0].toFixed(2));
await model.close();
