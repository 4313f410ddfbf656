import type { RawImage } from '../../src/sample.js';
import type { TextBox } from './text-boxes.js';
import type { TextLine } from './text-candidates.js';
import type { TextRecognizer } from './text-recognizer.js';
import { textRows } from './text-rows.js';
import { firstWordsEnd, longestWordRun, type LineReadout, type LineVerdict, type LineVerifier, type ReaderOptions, type ReaderPage } from './text-reader.js';

/**
 * Confirms a candidate line with a CTC recognition model (PP-OCRv4's, text-recognizer.ts): the
 * line's first words are cut out of the decoded image itself (colour, anti-aliasing and all, with
 * a margin as PaddleOCR's detector boxes have) and read. A model trained on scene text reads
 * small, faint and JPEG-worn text that tesseract cannot, and reads textures as a character or two
 * at low scores. Tuned with bench/ocr-tune.ts on makeTuningImages seed 7 (seed 8 as a check): reading
 * a paragraph's lines one at a time and confirming long words at 0.45 took text 1–2% of the height
 * from 0.81 to 0.86 (seed 8: 0.75 → 0.78), text-free dropped 1 → 2 of 212 (the second a real
 * "YAMAHA" on a motorcycle), for 2–3 ms more CPU an image.
 */
export interface RecognizerVerifierOptions {
  /** Mean step score (0..1) of a reading for its word to confirm the line. */
  minConfidence?: number;
  /** Mean step score for a weak read (ReaderOptions.weakReads of them in one image confirm together). */
  weakConfidence?: number;
  /** A confirming word has at least this many letters or digits in a run, cased as a word. */
  minWordLength?: number;
  /** The crop holds whole words up to this many line heights wide (the model's time grows with width). */
  aspect?: number;
  /** Margin around the line's box, in line heights, on every side. */
  margin?: number;
  /**
   * A crop holding several lines of text (a paragraph of 5–8 px text the geometry saw as one line,
   * text-rows.ts) is read a line at a time, at most this many lines (the strongest); 0: read whole.
   */
  rowReads?: number;
  /** A run of this many letters or digits cased as a word confirms at `longConfidence`: textures read as a letter or two, tiny text as long words at low scores. */
  longWordLength?: number;
  /** Mean step score for a long word to confirm the line. */
  longConfidence?: number;
}

export const RECOGNIZER_VERIFIER_DEFAULTS: Readonly<Required<RecognizerVerifierOptions>> = {
  minConfidence: 0.7,
  weakConfidence: 0.5,
  minWordLength: 3,
  aspect: 8,
  margin: 0.3,
  rowReads: 2,
  longWordLength: 6,
  longConfidence: 0.45,
};

/**
 * The reader's settings with this verifier: a read costs ~10 ms of CPU, so up to four an image,
 * of lines scoring 150 or more; two weak reads confirm together (tuned with bench/ocr-tune.ts on
 * makeTuningImages seed 7: text 1–2% of the height 0.69 → 0.81, text-free dropped 0 → 1 of 212).
 */
export const RECOGNIZER_READER: Readonly<ReaderOptions> = { maxReads: 4, minScore: 150, weakReads: 2 };

/** Whether a reading holds a word: a run of `minWordLength` or more letters or digits cased as words are, read at `minConfidence` or more. */
export const readsAsWord = (r: { text: string; confidence: number }, minConfidence: number, minWordLength: number): boolean =>
  r.confidence >= minConfidence && longestWordRun(r.text) >= minWordLength;

/** The boxes of `image` (a detector's text lines) that `recognizer` reads as holding a word (minConfidence, minWordLength). */
export async function confirmedLines(recognizer: TextRecognizer, image: RawImage, boxes: readonly TextBox[], options: RecognizerVerifierOptions = {}, signal?: AbortSignal): Promise<TextBox[]> {
  const o = { ...RECOGNIZER_VERIFIER_DEFAULTS, ...options };
  const reads = await recognizer.read(image, boxes, signal);
  return boxes.filter((_, i) => readsAsWord(reads[i], o.minConfidence, o.minWordLength));
}

/** A LineVerifier reading crops of the page's own pixels with `recognizer`. */
export function recognizerVerifier(recognizer: TextRecognizer, options: RecognizerVerifierOptions = {}): LineVerifier {
  const o = { ...RECOGNIZER_VERIFIER_DEFAULTS, ...options };
  return {
    verify: async (line: TextLine, page: ReaderPage): Promise<LineVerdict> => {
      const lh = line.box.y1 - line.box.y0;
      const m = o.margin * lh;
      const box = {
        x0: Math.max(0, line.box.x0 - m),
        y0: Math.max(0, line.box.y0 - m),
        x1: Math.min(page.width, firstWordsEnd(line, o.aspect) + m),
        y1: Math.min(page.height, line.box.y1 + m),
        confidence: 0,
      };
      const image = page.pixels
        ? { data: page.pixels.data, width: page.width, height: page.height, channels: page.pixels.channels as 1 | 2 | 3 | 4 }
        : { data: page.gray, width: page.width, height: page.height, channels: 1 as const };
      const rows = o.rowReads > 0 ? textRows(page.gray, page.width, page.height, box) : [];
      const crops = rows.length > 0 ? [...rows].sort((a, b) => b.peak - a.peak).slice(0, o.rowReads).map((r) => r.box) : [box];
      const readings = await recognizer.read(image, crops);
      const readout: LineReadout = readings.some((r) => readsAsWord(r, o.minConfidence, o.minWordLength) || readsAsWord(r, o.longConfidence, o.longWordLength)) ? 'text'
        : readings.some((r) => readsAsWord(r, o.weakConfidence, o.minWordLength)) ? 'weak' : 'none';
      return rows.length > 0 ? { readout, rows: rows.map((r) => r.box) } : { readout };
    },
  };
}
