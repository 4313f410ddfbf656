import { writeFileAtomic } from '../../src/write-file-atomic.js';
import { open, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../src/log.js';
import { naturalCompare } from '../images/image-folder.js';
import { detectionsLineSchema, imageKey } from './detections.js';
import type { Detector } from './detector.js';
import { readGenevalLayout } from '../geneval-format/layout.js';

export interface DetectFolderOptions {
  /** Folder in GenEval's layout (<00000>/metadata.jsonl, <00000>/samples/0000.png…). */
  imagesDir: string;
  /** The detections file to write (see detections.ts); an existing one is resumed. */
  out: string;
  detector: Detector;
  /** Images in flight at once (default 4); the detector may cap its own calls lower. */
  concurrency?: number;
  /** Stops taking new images; lines already appended stay, and a rerun resumes after them. */
  signal?: AbortSignal;
  log?: Logger;
  /** Called after each image's line is appended, e.g. for progress. */
  onImage?: (rel: string, done: number, total: number) => void;
}

export interface DetectSummary {
  detector: string;
  images_dir: string;
  out: string;
  /** Images in the folder. */
  images: number;
  /** Images run through the detector in this call. */
  detected: number;
  /** Images whose line an earlier, interrupted run had already written. */
  resumed: number;
  /** Detections kept over all images (per class entries). */
  detections: number;
  /** Lines of the existing file naming images that are not in the folder (kept, ignored by the scorer). */
  foreign_lines: number;
}

interface Existing {
  lines: Map<string, string>;
  /** Byte length of the complete lines; anything after it is a torn write. */
  completeBytes: number;
  totalBytes: number;
}

/** Reads the complete lines of an earlier run; a last line without its newline was torn by a crash and is dropped. */
async function readExisting(out: string): Promise<Existing> {
  let buf: Buffer;
  try {
    buf = await readFile(out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: new Map(), completeBytes: 0, totalBytes: 0 };
    throw new Error(`cannot read the detections file ${out}: ${(err as Error).message}`);
  }
  // Each line is appended in one write ending in '\n', so only the last one can be incomplete.
  const completeBytes = buf.lastIndexOf(0x0a) + 1;
  const lines = new Map<string, string>();
  buf.subarray(0, completeBytes).toString('utf8').split('\n').forEach((text, i) => {
    if (text.trim() === '') return;
    const where = `${out}:${i + 1}`;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Error(`${where}: not JSON (${(err as Error).message}); this file cannot be resumed: fix or delete it`);
    }
    const r = detectionsLineSchema.safeParse(raw);
    const key = r.success ? imageKey(r.data.image) : undefined;
    if (key === undefined) throw new Error(`${where}: not a detections line; this file cannot be resumed: fix or delete it`);
    if (lines.has(key)) throw new Error(`${where}: a second line for ${key}; this file cannot be resumed: fix or delete it`);
    lines.set(key, text);
  });
  return { lines, completeBytes, totalBytes: buf.length };
}

/**
 * Runs a detector over a GenEval image folder and writes the detections file scoreGeneval reads:
 * one line per image, `{"image": "<rel>", "detections": {...}}`, keyed by the image's path
 * relative to the folder (GenevalImage.rel). Resumable: each image's line is appended as soon as
 * it is done, a rerun skips images that already have a line (a torn last line is dropped and
 * redone), and once every image is done the file is rewritten in folder order (prompt folder,
 * then sample, numerically), so an interrupted and resumed run gives the same bytes as one that
 * never stopped. Lines for images not in the folder are kept, after the folder's.
 */
export async function detectFolder(o: DetectFolderOptions): Promise<DetectSummary> {
  const log = o.log ?? silentLogger;
  const concurrency = o.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`concurrency must be an integer ≥ 1, got ${concurrency}`);
  const prompts = await readGenevalLayout(o.imagesDir);
  const images = prompts.flatMap((p) => p.images.map((i) => ({ rel: i.rel, path: join(o.imagesDir, i.rel) })));
  if (images.length === 0) throw new Error(`${o.imagesDir} holds no images in GenEval's layout (<00000>/metadata.jsonl and <00000>/samples/0000.png…)`);

  const existing = await readExisting(o.out);
  if (existing.completeBytes < existing.totalBytes) {
    log.warn(`${o.out}: dropping an incomplete last line (an interrupted write); its image is detected again`);
    await truncate(o.out, existing.completeBytes);
  }
  const lines = existing.lines;
  const inFolder = new Set(images.map((i) => i.rel));
  const resumed = images.filter((i) => lines.has(i.rel)).length;
  const todo = images.filter((i) => !lines.has(i.rel));
  if (resumed > 0) log.info(`${o.out}: resuming, ${resumed} of ${images.length} image(s) already detected`);

  const file = await open(o.out, 'a');
  let writing: Promise<void> = Promise.resolve();
  let next = 0;
  let detected = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && !o.signal?.aborted && next < todo.length) {
      const img = todo[next++];
      try {
        const detections = await o.detector.detect(img, o.signal);
        const text = JSON.stringify({ image: img.rel, detections });
        // Appends are chained so lines never interleave; one write per line keeps a crash to one torn line.
        writing = writing.then(() => file.write(`${text}\n`).then(() => undefined));
        await writing;
        lines.set(img.rel, text);
        detected++;
        o.onImage?.(img.rel, resumed + detected, images.length);
      } catch (err) {
        if (!failure && !o.signal?.aborted) failure = { err };
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(todo.length, 1)) }, worker));
    await writing;
  } finally {
    await file.close();
  }
  if (failure) throw failure.err;
  if (o.signal?.aborted) {
    throw new Error(`detection over ${o.imagesDir} aborted after ${resumed + detected} of ${images.length} image(s); rerun with the same --out to resume`, { cause: o.signal.reason });
  }

  const order = new Map(images.map((i, n) => [i.rel, n]));
  const foreign = [...lines.keys()].filter((k) => !inFolder.has(k)).sort(naturalCompare);
  if (foreign.length > 0) log.warn(`${o.out}: ${foreign.length} line(s) name images not in ${o.imagesDir}, e.g. ${foreign[0]}; kept`);
  const keys = [...lines.keys()].filter((k) => inFolder.has(k)).sort((a, b) => order.get(a)! - order.get(b)!).concat(foreign);
  await writeFileAtomic(o.out, keys.map((k) => `${lines.get(k)}\n`).join(''));

  let count = 0;
  for (const k of keys) if (inFolder.has(k)) for (const list of Object.values((JSON.parse(lines.get(k)!) as { detections: Record<string, unknown[]> }).detections)) count += list.length;
  return { detector: o.detector.name, images_dir: o.imagesDir, out: o.out, images: images.length, detected, resumed, detections: count, foreign_lines: foreign.length };
}
