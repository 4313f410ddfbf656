import sharp from 'sharp';
import { findTextCandidates, type TextLine } from './text-candidates.js';
import type { TextBox } from './text-boxes.js';
import type { RecognizedWord, TesseractPool } from './tesseract-pool.js';

/**
 * Text over photographs, read by tesseract and completed by geometry. Tesseract's own layout
 * analysis misses much of the text drawn over busy photographs (measured: a dense paragraph over
 * a photo comes back with a third of its words) and cannot see small text at all; the stroke
 * geometry of text-candidates.ts sees nearly all of it but also sees text in gravel. So tesseract
 * supplies the evidence (confident words) and the geometry supplies the extent: a candidate line
 * counts as text when a confident word lies on it, or when it continues a block that does, or
 * when tesseract confirms it after an upscale (small text).
 */
export interface ReaderOptions {
  /** Tesseract word confidence (0..1) for a word to count. */
  minConfidence?: number;
  /** Page segmentation mode of the full-image pass (11: sparse text, which finds scattered captions and logos). */
  psm?: number;
  /** Longer side the full-image pass reads at; 0 reads the image as it is. Tesseract's time grows with pixels. */
  passSize?: number;
  /** Candidate lines shorter than this (px) are checked one by one at `upscale`; 0 turns the check off. */
  smallTextPx?: number;
  /** At most this many small candidate lines are checked per image. */
  maxSmallChecks?: number;
  upscale?: number;
}

const DEFAULTS: Required<ReaderOptions> = { minConfidence: 0.7, psm: 11, passSize: 0, smallTextPx: 18, maxSmallChecks: 3, upscale: 3 };

/** Words that are words: confident, with two letters or digits in a row, and a plausible shape. */
export function confidentWords(words: readonly RecognizedWord[], minConfidence: number, imageHeight: number): RecognizedWord[] {
  return words.filter((w) => {
    const h = w.y1 - w.y0;
    return w.confidence >= minConfidence && /[A-Za-z0-9]{2,}/.test(w.text) && h >= 4 && h <= imageHeight * 0.6 && w.x1 - w.x0 >= h * 0.4;
  });
}

const overlapArea = (a: TextBox, b: TextBox): number =>
  Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0)) * Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
const area = (b: TextBox): number => (b.x1 - b.x0) * (b.y1 - b.y0);

/** Lines that carry a confident word, then lines stacked on accepted ones with a like height (paragraphs). */
function grow(lines: TextLine[], seeds: TextBox[], accepted: Set<TextLine>): void {
  for (const l of lines) {
    if (accepted.has(l)) continue;
    const onIt = seeds.some((s) => {
      const sh = s.y1 - s.y0;
      return overlapArea(s, l.box) >= 0.3 * area(s) && l.charHeight <= sh * 2 && l.charHeight >= sh * 0.35;
    });
    if (onIt) accepted.add(l);
  }
  // One step from the lines that carry words, not a chain: chains walk through gravel.
  const carriers = [...accepted];
  for (const l of lines) {
    if (accepted.has(l) || l.regularity < 0.75 || l.chars < 4) continue;
    {
      for (const a of carriers) {
        const ratio = l.charHeight / a.charHeight;
        const gap = Math.max(l.box.y0 - a.box.y1, a.box.y0 - l.box.y1);
        const xOverlap = Math.min(l.box.x1, a.box.x1) - Math.max(l.box.x0, a.box.x0);
        const sameLine = Math.min(l.box.y1, a.box.y1) - Math.max(l.box.y0, a.box.y0) > 0.5 * Math.min(l.box.y1 - l.box.y0, a.box.y1 - a.box.y0);
        const hGap = Math.max(l.box.x0 - a.box.x1, a.box.x0 - l.box.x1);
        if (ratio > 0.75 && ratio < 1.33 && ((gap <= 1.5 * a.charHeight && xOverlap > 0) || (sameLine && hGap <= 2 * a.charHeight))) {
          accepted.add(l);
          break;
        }
      }
    }
  }
}

export interface ReadResult {
  boxes: TextBox[];
  /** Tesseract calls made (1 + small-text checks), for the stage's stats. */
  calls: number;
}

/** Reads one image: `png` for tesseract, `gray` (w×h luminance) for the geometry. */
export async function readText(pool: TesseractPool, png: Uint8Array, gray: Uint8Array, w: number, h: number, options: ReaderOptions = {}): Promise<ReadResult> {
  const o = { ...DEFAULTS, ...options };
  let calls = 1;
  const scale = o.passSize > 0 && Math.max(w, h) > o.passSize ? o.passSize / Math.max(w, h) : 1;
  const passImage = scale === 1 ? png : await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).resize(Math.round(w * scale), Math.round(h * scale)).png({ compressionLevel: 0 }).toBuffer();
  const seeds: TextBox[] = confidentWords(await pool.recognize(passImage, { psm: o.psm }), o.minConfidence, h * scale).map((b) => ({
    ...b, x0: b.x0 / scale, y0: b.y0 / scale, x1: b.x1 / scale, y1: b.y1 / scale,
  }));
  const lines = findTextCandidates(gray, w, h);
  const accepted = new Set<TextLine>();
  grow(lines, seeds, accepted);

  if (o.smallTextPx > 0) {
    const small = lines
      .filter((l) => !accepted.has(l) && l.charHeight < o.smallTextPx && l.chars >= 4 && l.regularity >= 0.8)
      .sort((a, b) => b.chars * b.regularity - a.chars * a.regularity)
      .slice(0, o.maxSmallChecks);
    const confirmed: TextBox[] = [];
    for (const l of small) {
      if (accepted.has(l)) continue;
      const pad = Math.ceil(l.charHeight * 0.6);
      const left = Math.max(0, Math.floor(l.box.x0 - pad));
      const top = Math.max(0, Math.floor(l.box.y0 - pad));
      const width = Math.min(w, Math.ceil(l.box.x1 + pad)) - left;
      const height = Math.min(h, Math.ceil(l.box.y1 + pad)) - top;
      const crop = await sharp(gray, { raw: { width: w, height: h, channels: 1 } })
        .extract({ left, top, width, height })
        .resize(width * o.upscale, height * o.upscale, { kernel: 'cubic' })
        .png({ compressionLevel: 0 })
        .toBuffer();
      calls++;
      const words = confidentWords(await pool.recognize(crop, { psm: 7 }), o.minConfidence, height * o.upscale);
      if (words.some((x) => /[A-Za-z0-9]{3,}/.test(x.text))) {
        accepted.add(l);
        confirmed.push(l.box);
        grow(lines, confirmed, accepted);
      }
    }
  }

  // Tesseract's own boxes where it read a word; the geometry's word boxes elsewhere on accepted lines.
  const boxes: TextBox[] = [...seeds];
  for (const l of accepted) {
    for (const wb of l.words) {
      if (!seeds.some((s) => overlapArea(s, wb) >= 0.5 * area(wb))) boxes.push(wb);
    }
  }
  return { boxes, calls };
}
