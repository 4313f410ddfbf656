import { availableParallelism } from 'node:os';
import sharp, { type OutputInfo } from 'sharp';
import { SampleError } from '../../src/sample.js';
import { sampleStage, type Stage } from '../../src/stage.js';
import { addCount } from '../../src/stats.js';
import { measureText } from './text-boxes.js';
import { luminance } from './text-candidates.js';
import { readText, type LineVerifier, type ReaderOptions } from './text-reader.js';

export interface ReaderOcrStageOptions {
  /** Reads the candidate lines: recognizerVerifier (PP-OCRv4 recognition) or tesseractVerifier. */
  verifier: LineVerifier;
  /** What the records' `ocr_backend` says. */
  backend: string;
  /** The reader's settings for this verifier (each verifier file gives its own, tuned with it). */
  reader?: ReaderOptions;
  /** Images in flight; default twice the cores, so decoding overlaps reading. */
  concurrency?: number;
  name?: string;
}

/**
 * Annotates ok samples that carry an encoded image (`s.image`, after decode-resize) with
 * `ocr_density`, `ocr_words`, `ocr_median_height`, `ocr_min_height` (see text-boxes.ts) and
 * `ocr_backend`, from text-reader.ts: stroke geometry proposes lines, the verifier confirms them.
 * Annotating never drops; textFilter (stages/text-filter.ts) decides. Counts `line_reads`.
 * Failure codes: no_image, decode_error.
 */
export function readerOcrStage(opts: ReaderOcrStageOptions): Stage {
  const name = opts.name ?? 'ocr';
  return sampleStage(
    name,
    async (s, stats) => {
      if (!s.image) throw new SampleError('no_image', `sample ${s.key} has no image to read`);
      let raw: { data: Buffer; info: OutputInfo };
      try {
        // Colour as well as luminance: text that differs from its background only in hue shows in the colour channel.
        raw = await sharp(s.image).raw().toBuffer({ resolveWithObject: true });
      } catch (err) {
        throw new SampleError('decode_error', `sample ${s.key}: cannot decode its image for OCR: ${(err as Error).message}`);
      }
      const { width, height, channels } = raw.info;
      const gray = luminance(raw.data, width, height, channels);
      const r = await readText(opts.verifier, gray, width, height, opts.reader, { data: raw.data, channels });
      Object.assign(s.fields, measureText(r.boxes, width, height), { ocr_backend: opts.backend });
      addCount(stats, 'line_reads', r.reads);
    },
    { concurrency: opts.concurrency ?? 2 * availableParallelism() },
  );
}
