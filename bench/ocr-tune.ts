import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { mapConcurrent } from '../src/concurrency.js';
import { measureText, type TextBox } from '../stages/ocr/text-boxes.js';
import { findTextCandidates, chroma, luminance } from '../stages/ocr/text-candidates.js';
import { loadPpocrRecognizer } from '../stages/ocr/ppocr-models.js';
import { RECOGNIZER_READER, recognizerVerifier } from '../stages/ocr/recognizer-verifier.js';
import { TesseractPool } from '../stages/ocr/tesseract-pool.js';
import { TESSERACT_READER, tesseractVerifier } from '../stages/ocr/tesseract-verifier.js';
import { lineScore, READER_DEFAULTS, readText, type LineVerifier, type ReaderOptions } from '../stages/ocr/text-reader.js';
import { makeTuningImages, type TextImage } from '../test/helpers/text-images.js';
import { agreement, decide } from './ocr-agreement.js';

/**
 * The OCR reader on its tuning set (test/helpers/text-images.ts makeTuningImages: librsvg and
 * DejaVu faces, never the held-out set of `npm run bench -- ocr`), with where each wrong decision
 * comes from. For choosing the reader's defaults:
 *
 *   node --import tsx bench/ocr-tune.ts [--verifier ppocr-rec|tesseract] [--count 420] [--seed 7]
 *     [--set '{"maxReads":3}'] [--verify '{"minConfidence":0.8}'] [--rec '{"max_width":640}'] [--show]
 */
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '420' },
    seed: { type: 'string', default: '7' },
    set: { type: 'string', default: '{}' },
    verify: { type: 'string', default: '{}' },
    verifier: { type: 'string', default: 'ppocr-rec' },
    rec: { type: 'string', default: '{}' },
    show: { type: 'boolean', default: false },
  },
});
// The reader's settings tuned with each verifier, then any asked for.
const options: ReaderOptions = { ...(values.verifier === 'tesseract' ? TESSERACT_READER : RECOGNIZER_READER), ...(JSON.parse(values.set!) as ReaderOptions) };
const o = { ...READER_DEFAULTS, ...options };
const images: TextImage[] = await makeTuningImages(Number(values.count), Number(values.seed));
const cores = availableParallelism();
const pool = values.verifier === 'tesseract' ? new TesseractPool({ workers: cores }) : undefined;
const recognizer = pool ? undefined : await loadPpocrRecognizer({ intraOpThreads: 1 }, JSON.parse(values.rec!));
const verifier: LineVerifier = pool ? tesseractVerifier(pool, JSON.parse(values.verify!)) : recognizerVerifier(recognizer!, JSON.parse(values.verify!));

const overlaps = (a: TextBox, b: TextBox): boolean => Math.min(a.x1, b.x1) > Math.max(a.x0, b.x0) && Math.min(a.y1, b.y1) > Math.max(a.y0, b.y0);

interface Outcome {
  boxes: TextBox[];
  reads: number;
  /** For text images: the best score of a candidate line over the drawn words, and how many lines outscore it elsewhere. */
  best: number;
  rank: number;
  lines: number;
}

const c0 = process.cpuUsage();
const t0 = Date.now();
const outcomes: Outcome[] = [];
for await (const r of mapConcurrent(images, async (m): Promise<Outcome> => {
  const { data, info } = await sharp(m.png).raw().toBuffer({ resolveWithObject: true });
  const gray = luminance(data, info.width, info.height, info.channels);
  const res = await readText(verifier, gray, info.width, info.height, options, { data, channels: info.channels });
  let best = 0;
  let rank = 0;
  let lines = 0;
  if (m.words.length > 0 || values.show) {
    const channels = o.useChroma ? [chroma(data, info.width, info.height, info.channels)] : [];
    const cands = findTextCandidates(gray, info.width, info.height, { ...o.candidates, channels });
    lines = cands.filter((l) => lineScore(l) >= o.minScore).length;
    const onText = cands.filter((l) => m.words.some((w) => overlaps(w, l.box)));
    best = Math.max(0, ...onText.map(lineScore));
    rank = cands.filter((l) => !onText.includes(l) && lineScore(l) > best).length;
  }
  return { ...res, best, rank, lines };
}, { concurrency: cores * 2 })) outcomes.push(r);
const cpu = process.cpuUsage(c0);
await pool?.close();
await recognizer?.model.close();

const measures = outcomes.map((r, i) => measureText(r.boxes, images[i].size, images[i].height));
const a = agreement(images, measures);
console.log(`tuning set: ${images.length} images, seed ${values.seed}; verifier ${values.verifier} ${values.verify}; reader options ${JSON.stringify(options)}`);
console.log(`agreement ${a.all.toFixed(3)}; text 1–2% of the height ${a.smallText.toFixed(3)}; clean dropped ${a.cleanDropped}; text missed ${a.textMissed}; density ratio ${a.densityRatio.toFixed(3)}`);
console.log(`per kind: ${Object.entries(a.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}`);
console.log(`reads per image ${(outcomes.reduce((s, r) => s + r.reads, 0) / images.length).toFixed(2)}; CPU s per image ${((cpu.user + cpu.system) / 1e6 / images.length).toFixed(4)}; wall ${((Date.now() - t0) / 1000).toFixed(1)} s`);
const why: Record<string, number> = {};
images.forEach((m, i) => {
  const r = outcomes[i];
  if (decide(m.truth) === decide(measures[i])) return;
  const cause =
    m.words.length === 0 ? 'text-free dropped'
    : r.boxes.length > 0 ? (decide(m.truth) === 'drop' ? 'found, measured as kept' : 'found, measured as dropped')
    : r.best === 0 ? 'no candidate on the text'
    : r.best < o.minScore ? 'candidates below minScore'
    : r.rank >= o.maxReads ? 'outranked by other lines'
    : 'read, not confirmed';
  why[cause] = (why[cause] ?? 0) + 1;
  if (values.show) {
    const t = m.truth;
    const g = measures[i];
    console.log(`  ${m.name} ${m.size}x${m.height} ${cause}: truth d=${t.ocr_density.toFixed(3)} h=${t.ocr_median_height?.toFixed(4)} | found ${g.ocr_words} d=${g.ocr_density.toFixed(3)} h=${g.ocr_median_height?.toFixed(4)} | best ${r.best.toFixed(0)} rank ${r.rank} lines ${r.lines} reads ${r.reads}`);
  }
});
console.log(`wrong decisions by cause: ${Object.entries(why).map(([k, v]) => `${k} ${v}`).join(', ')}`);
