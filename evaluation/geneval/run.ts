import { writeFileAtomic } from '../../src/write-file-atomic.js';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../src/log.js';
import { FromDetections, type ColorClassifier } from './color.js';
import { readDetections } from './detections.js';
import { readGenevalLayout } from '../geneval-format/layout.js';
import type { GenevalProtocol } from './protocol.js';
import { pythonJsonDumps } from './python-json.js';
import { evaluateImage } from './rules.js';
import { selectDetections } from './selection.js';
import { summarizeResults, type GenevalSummary, type ImageResult } from './summary.js';

export interface GenevalRunOptions {
  /** Folder in GenEval's layout (<00000>/metadata.jsonl, <00000>/samples/0000.png…). */
  imagesDir: string;
  /** Detections file (see detections.ts). */
  detections: string;
  /** Folder that receives results.jsonl and summary.json. */
  out: string;
  protocol: GenevalProtocol;
  /** Default: the detections file's color labels. */
  colors?: ColorClassifier;
  /** Score images that have no detections line as absent instead of failing. */
  skipMissing?: boolean;
  /** GenEval's object_names.txt: when given, every class name must be one of them and `details` follow its order. */
  objectNames?: string[];
  bootstrap?: { resamples: number; seed: number };
  log: Logger;
}

export interface GenevalRunSummary extends GenevalSummary {
  benchmark: 'geneval';
  images_dir: string;
  detections: string;
  protocol: GenevalProtocol;
  color_source: string;
  /** Images in the folder that had no detections line (only with skipMissing). */
  skipped_images: string[];
  /** Detections lines whose image is not in the folder. */
  unused_detections: number;
}

/** Reads an object_names.txt (one class a line, detector order). */
export async function readObjectNames(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean);
}

/**
 * Scores a folder of generated images with GenEval's rules from a detections file: writes
 * `<out>/results.jsonl` (one line per image, the official fields) and `<out>/summary.json`.
 */
export async function scoreGeneval(o: GenevalRunOptions): Promise<{ summary: GenevalRunSummary; resultsPath: string; summaryPath: string }> {
  const prompts = await readGenevalLayout(o.imagesDir);
  const images = prompts.flatMap((p) => p.images);
  if (images.length === 0) throw new Error(`${o.imagesDir} holds no images in GenEval's layout (<00000>/metadata.jsonl and <00000>/samples/0000.png…)`);
  const detections = await readDetections(o.detections);

  if (o.objectNames) {
    const known = new Set(o.objectNames);
    for (const p of prompts) {
      for (const c of [...(p.metadata.value.include ?? []), ...(p.metadata.value.exclude ?? [])]) {
        if (!known.has(c.class)) throw new Error(`${join(o.imagesDir, p.folder, 'metadata.jsonl')}: class "${c.class}" is not in the object names`);
      }
    }
    for (const [image, d] of detections) {
      for (const cls of d.byClass.keys()) if (!known.has(cls)) throw new Error(`${o.detections}:${d.line}: class "${cls}" (image ${image}) is not in the object names`);
    }
  }

  const missing = images.filter((i) => !detections.has(i.rel)).map((i) => i.rel);
  if (missing.length > 0 && !o.skipMissing) {
    const shown = missing.slice(0, 20).join(', ');
    throw new Error(`${missing.length} of ${images.length} image(s) have no line in ${o.detections}: ${shown}${missing.length > 20 ? `, … ${missing.length - 20} more` : ''} (run the detector on them, or pass --skip-missing to score without them)`);
  }
  if (missing.length > 0) o.log.warn(`skipping ${missing.length} image(s) without detections, e.g. ${missing[0]}: the score is not over the full set`);
  const inFolder = new Set(images.map((i) => i.rel));
  const unused = [...detections.keys()].filter((k) => !inFolder.has(k));
  if (unused.length > 0) o.log.warn(`${unused.length} detections line(s) name images not in ${o.imagesDir}, e.g. ${unused[0]}; they are ignored`);

  const colors = o.colors ?? new FromDetections();
  const order = o.objectNames ? new Map(o.objectNames.map((n, i) => [n, i])) : undefined;
  const results: ImageResult[] = [];
  for (const p of prompts) {
    const meta = p.metadata.value;
    const metadataText = pythonJsonDumps(p.metadata.raw);
    for (const image of p.images) {
      const d = detections.get(image.rel);
      if (!d) continue;
      const kept = selectDetections(d.byClass, meta.tag, o.protocol);
      const verdict = await evaluateImage(image.filename, kept, meta, colors, o.protocol.position_threshold);
      const classes = [...kept.keys()];
      if (order) classes.sort((a, b) => order.get(a)! - order.get(b)!);
      // Float32, as the official `box.tolist()` of Mask2Former's float32 rows prints them.
      const details = Object.fromEntries(classes.map((c) => [c, kept.get(c)!.map((k) => [...k.box, k.score].map(Math.fround))]));
      results.push({ filename: image.filename, tag: meta.tag, prompt: meta.prompt, correct: verdict.correct, reason: verdict.reason, metadata: metadataText, details: pythonJsonDumps(details, true) });
    }
  }

  const summary: GenevalRunSummary = {
    benchmark: 'geneval',
    ...summarizeResults(results, o.bootstrap),
    images_dir: o.imagesDir,
    detections: o.detections,
    protocol: { ...o.protocol },
    color_source: colors.name,
    skipped_images: missing,
    unused_detections: unused.length,
  };
  await mkdir(o.out, { recursive: true });
  const resultsPath = join(o.out, 'results.jsonl');
  const summaryPath = join(o.out, 'summary.json');
  await writeFileAtomic(resultsPath, results.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await writeFileAtomic(summaryPath, JSON.stringify(summary, null, 2) + '\n');
  return { summary, resultsPath, summaryPath };
}
