import { drawGlyphsSharp, type TextLine } from './text-candidates.js';
import type { RecognizedWord, TesseractPool } from './tesseract-pool.js';
import { firstWordsEnd, longestWordRun, type LineVerdict, type LineVerifier, type ReaderOptions, type ReaderPage } from './text-reader.js';

/**
 * Confirms a candidate line with tesseract.js: its first words (about four line heights), drawn
 * dark on white from the line's own strokes at full resolution with the photograph around them
 * blanked out, scaled to a fixed height, read as one line. One confident word confirms.
 */
export interface TesseractVerifierOptions {
  /** Tesseract word confidence (0..1) for a word of three or four letters or digits to confirm a line. */
  minConfidence?: number;
  /** Confidence enough for a word of five or more (long garbage is rare; long words read from small or busy text often score lower). */
  longConfidence?: number;
  /** Page segmentation mode of the reads (7: one text line). */
  psm?: number;
  /** A snippet holds whole words up to this many line heights wide (tesseract's time grows with width). */
  snippetAspect?: number;
  /** Height (px) the snippet's line is scaled to before reading. */
  snippetHeight?: number;
  /** How far around the line's strokes (in character heights) the grey image is kept in a snippet. */
  reach?: number;
}

export const TESSERACT_VERIFIER_DEFAULTS: Readonly<Required<TesseractVerifierOptions>> = {
  minConfidence: 0.6,
  longConfidence: 0.45,
  psm: 7,
  snippetAspect: 4,
  snippetHeight: 40,
  reach: 0.15,
};

/**
 * The reader's settings with this verifier: a tesseract.js read costs ~30 ms of CPU, so at most
 * two an image, of lines scoring 260 or more (tuned on makeTextImages seeds 11 and 23).
 */
export const TESSERACT_READER: Readonly<ReaderOptions> = { maxReads: 2, minScore: 260 };

/**
 * Words that are words: a run of three letters or digits cased as words are (lower, Capitalised,
 * UPPER, or digits), read with `minConfidence`; a run of five or more with `longConfidence`.
 */
export function confidentWords<W extends { text: string; confidence: number }>(words: readonly W[], minConfidence: number, longConfidence = minConfidence): W[] {
  return words.filter((w) => {
    const longest = longestWordRun(w.text);
    return longest > 0 && w.confidence >= (longest >= 5 ? Math.min(minConfidence, longConfidence) : minConfidence);
  });
}

/** Bilinear resize of a grey image. */
function resize(src: Uint8Array, w: number, h: number, ow: number, oh: number): Uint8Array {
  const out = new Uint8Array(ow * oh);
  const sx = w / ow;
  const sy = h / oh;
  for (let y = 0; y < oh; y++) {
    const fy = Math.min(h - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(h - 1, y0 + 1);
    const dy = fy - y0;
    for (let x = 0; x < ow; x++) {
      const fx = Math.min(w - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(w - 1, x0 + 1);
      const dx = fx - x0;
      const top = src[y0 * w + x0] * (1 - dx) + src[y0 * w + x1] * dx;
      const bot = src[y1 * w + x0] * (1 - dx) + src[y1 * w + x1] * dx;
      out[y * ow + x] = Math.round(top * (1 - dy) + bot * dy);
    }
  }
  return out;
}

/** A binary PGM (P5): tesseract's image reader takes it as is, with no encoding cost. */
function pgm(data: Uint8Array, w: number, h: number): Uint8Array {
  const head = new TextEncoder().encode(`P5\n${w} ${h}\n255\n`);
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/** The first words of a line (up to `aspect` line heights wide), drawn for reading (see drawGlyphsSharp), scaled to `height` and padded: a PGM. */
export function snippet(line: TextLine, w: number, h: number, aspect: number, height: number, reach: number): Uint8Array {
  const lh = line.box.y1 - line.box.y0;
  const d = drawGlyphsSharp(line, w, h, firstWordsEnd(line, aspect), 2, reach);
  const f = height / lh;
  const ow = Math.max(8, Math.round(d.width * f));
  const oh = Math.max(8, Math.round(d.height * f));
  const scaled = resize(d.data, d.width, d.height, ow, oh);
  const pad = 10;
  const pw = ow + 2 * pad;
  const ph = oh + 2 * pad;
  const padded = new Uint8Array(pw * ph).fill(255);
  for (let y = 0; y < oh; y++) padded.set(scaled.subarray(y * ow, y * ow + ow), (y + pad) * pw + pad);
  return pgm(padded, pw, ph);
}

/** A LineVerifier reading snippets with a TesseractPool. */
export function tesseractVerifier(pool: TesseractPool, options: TesseractVerifierOptions = {}): LineVerifier {
  const o = { ...TESSERACT_VERIFIER_DEFAULTS, ...options };
  return {
    verify: async (line: TextLine, page: ReaderPage): Promise<LineVerdict> => {
      const words: RecognizedWord[] = await pool.recognize(snippet(line, page.width, page.height, o.snippetAspect, o.snippetHeight, o.reach), { psm: o.psm });
      return { readout: confidentWords(words, o.minConfidence, o.longConfidence).length > 0 ? 'text' : 'none' };
    },
  };
}
