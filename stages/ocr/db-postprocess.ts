/**
 * DBNet's post-processing in TypeScript: a text probability map becomes word/line boxes.
 *
 * It follows PaddleOCR's DBPostProcess (binarise, components, min size, box score, unclip, clip,
 * scale back) with two deliberate simplifications, both because the OCR stage only measures
 * axis-aligned area and height:
 * - components stand in for OpenCV contours, and each is boxed by its axis-aligned pixel extent
 *   rather than by a minimum-area rotated rectangle, so a rotated word is approximated by the
 *   axis-aligned box around it (larger than its rotated box);
 * - the box score is the mean probability over the component's own pixels (PaddleOCR's "slow"
 *   polygon score), not over its bounding box (the "fast" score, which also averages in the
 *   background inside the box and so reads lower).
 * The unclip offset is DB's: area × unclip_ratio / perimeter, added on every side. On a rectangle
 * this equals the rotated-rectangle fit of pyclipper's rounded offset polygon.
 */
import type { TextBox } from './text-boxes.js';

/** A row-major height × width map of text probabilities in 0..1 (one image of the model's output). */
export interface ProbabilityMap {
  data: Float32Array;
  width: number;
  height: number;
}

export interface DbPostprocessOptions {
  /** Pixels with probability above this are text (default 0.3, PaddleOCR's det_db_thresh). */
  threshold?: number;
  /** Components whose mean probability is below this are dropped (default 0.6, det_db_box_thresh). */
  box_threshold?: number;
  /** Components whose shorter side is below this many map pixels are dropped (default 3). */
  min_size?: number;
  /** DB's expansion ratio: offset = area × ratio / perimeter (default 1.5, det_db_unclip_ratio). */
  unclip_ratio?: number;
  /** At most this many components are considered, in raster order of their first pixel (default 1000). */
  max_candidates?: number;
  /**
   * Calibration of line boxes to the ink they hold: a box of height h (map pixels, after unclip)
   * holds ink (h − ink_offset) / ink_scale high; the box is shrunk about its centre to that, and
   * by as much on the left and right, where unclip added as much. Default 1 and 0: DB's boxes as
   * they are. PP-OCRv4's fit: PPOCR_V4_INK (ppocr-models.ts).
   */
  ink_scale?: number;
  ink_offset?: number;
}

export const DB_DEFAULTS: Required<DbPostprocessOptions> = { threshold: 0.3, box_threshold: 0.6, min_size: 3, unclip_ratio: 1.5, max_candidates: 1000, ink_scale: 1, ink_offset: 0 };

/** Fills in defaults and rejects nonsense, so a typo fails at start-up rather than on every image. */
export function resolveDbOptions(opts: DbPostprocessOptions = {}): Required<DbPostprocessOptions> {
  const o = { ...DB_DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as Required<DbPostprocessOptions>;
  const inUnit = (k: 'threshold' | 'box_threshold') => {
    if (!(o[k] >= 0 && o[k] < 1)) throw new Error(`db-postprocess: ${k} must be in [0, 1), got ${o[k]}`);
  };
  inUnit('threshold');
  inUnit('box_threshold');
  if (!(o.min_size >= 0 && Number.isFinite(o.min_size))) throw new Error(`db-postprocess: min_size must be a non-negative number, got ${o.min_size}`);
  if (!(o.unclip_ratio >= 0 && Number.isFinite(o.unclip_ratio))) throw new Error(`db-postprocess: unclip_ratio must be a non-negative number, got ${o.unclip_ratio}`);
  if (!(Number.isInteger(o.max_candidates) && o.max_candidates >= 1)) throw new Error(`db-postprocess: max_candidates must be a positive integer, got ${o.max_candidates}`);
  if (!(o.ink_scale > 0 && Number.isFinite(o.ink_scale))) throw new Error(`db-postprocess: ink_scale must be a positive number, got ${o.ink_scale}`);
  if (!Number.isFinite(o.ink_offset)) throw new Error(`db-postprocess: ink_offset must be a number, got ${o.ink_offset}`);
  return o;
}

/**
 * Boxes of the text components of `map`, in the pixels of a `target` image of which the map is a
 * (possibly stretched) rendition; confidence is the component's mean probability. Coordinates
 * are not rounded, so densities computed from them do not depend on the map's resolution steps.
 */
export function dbPostprocess(map: ProbabilityMap, target: { width: number; height: number }, opts: DbPostprocessOptions = {}): TextBox[] {
  const o = resolveDbOptions(opts);
  const { data, width: w, height: h } = map;
  if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0)) throw new Error(`db-postprocess: map size must be positive integers, got ${w}×${h}`);
  if (data.length !== w * h) throw new Error(`db-postprocess: map of ${w}×${h} needs ${w * h} values, got ${data.length}`);
  const sx = target.width / w;
  const sy = target.height / h;

  const n = w * h;
  // 1 = text not yet visited. Cleared when pushed, so each pixel enters the stack at most once
  // and the stack never outgrows the map.
  const open = new Uint8Array(n);
  const thr = o.threshold;
  for (let i = 0; i < n; i++) open[i] = data[i] > thr ? 1 : 0;
  let stack: Int32Array | undefined;
  const boxes: TextBox[] = [];
  let candidates = 0;

  for (let start = open.indexOf(1); start >= 0; start = open.indexOf(1, start + 1)) {
    if (candidates++ === o.max_candidates) break;
    stack ??= new Int32Array(n);
    let top = 0;
    stack[top++] = start;
    open[start] = 0;
    let x0 = w;
    let x1 = -1;
    let y0 = h;
    let y1 = -1;
    let sum = 0;
    let count = 0;
    while (top > 0) {
      const p = stack[--top];
      const y = (p / w) | 0;
      const x = p - y * w;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      sum += data[p];
      count++;
      const ya = y > 0 ? y - 1 : 0;
      const yb = y < h - 1 ? y + 1 : h - 1;
      const xa = x > 0 ? x - 1 : 0;
      const xb = x < w - 1 ? x + 1 : w - 1;
      for (let ny = ya; ny <= yb; ny++) {
        const row = ny * w;
        for (let nx = xa; nx <= xb; nx++) {
          const q = row + nx;
          if (open[q] === 0) continue;
          open[q] = 0;
          stack[top++] = q;
        }
      }
    }

    // Exclusive right and bottom edges, as TextBox has them.
    const bw = x1 + 1 - x0;
    const bh = y1 + 1 - y0;
    if (Math.min(bw, bh) < o.min_size) continue;
    const score = sum / count;
    if (score < o.box_threshold) continue;
    const d = (bw * bh * o.unclip_ratio) / (2 * (bw + bh));
    let bx0 = Math.max(0, x0 - d);
    let by0 = Math.max(0, y0 - d);
    let bx1 = Math.min(w, x1 + 1 + d);
    let by1 = Math.min(h, y1 + 1 + d);
    if (o.ink_scale !== 1 || o.ink_offset !== 0) {
      const ink = Math.max(1, Math.min(by1 - by0, (by1 - by0 - o.ink_offset) / o.ink_scale));
      const cut = (by1 - by0 - ink) / 2;
      by0 += cut;
      by1 -= cut;
      const side = Math.min(cut, Math.max(0, (bx1 - bx0 - 1) / 2));
      bx0 += side;
      bx1 -= side;
    }
    boxes.push({ x0: bx0 * sx, y0: by0 * sy, x1: bx1 * sx, y1: by1 * sy, confidence: score });
  }
  return boxes;
}
