import type { TextBox } from './text-boxes.js';

/**
 * Splits a crop holding several lines of text into one band per line. Candidate lines found at a
 * coarse level of the stroke pyramid can hold a whole paragraph of tiny text (5–8 px lines set
 * 7–10 px apart blur into one run), and a one-line recogniser reads such a crop as nothing. Inside
 * text, rows cross strokes, so the mean horizontal change of luminance along a row peaks on each
 * line's x-height and falls between lines; the crop is cut at the lowest row between peaks.
 */
export interface TextRowOptions {
  /** A row belongs to a line's core when its profile is at least this share of the way from the crop's lowest to its highest row. */
  core?: number;
  /** A cut between two cores is made only where the profile falls to this share of the lower core's peak. */
  valley?: number;
  /** Cores thinner than this many rows are noise (a line of 5 px text has a core of 2–3 rows). */
  minCore?: number;
}

export const TEXT_ROW_DEFAULTS: Readonly<Required<TextRowOptions>> = { core: 0.5, valley: 0.6, minCore: 2 };

/** One line's band of a crop, and the height of its profile's peak (how strongly it crosses strokes). */
export interface TextRow {
  box: TextBox;
  peak: number;
}

/** The mean absolute horizontal difference of `gray` along each row of `box` (whole pixels, clipped to the image). */
export function rowProfile(gray: Uint8Array, width: number, height: number, box: TextBox): { y0: number; profile: Float64Array } {
  const x0 = Math.max(0, Math.floor(box.x0));
  const x1 = Math.min(width, Math.ceil(box.x1));
  const y0 = Math.max(0, Math.floor(box.y0));
  const y1 = Math.min(height, Math.ceil(box.y1));
  const profile = new Float64Array(Math.max(0, y1 - y0));
  if (x1 - x0 < 2) return { y0, profile };
  for (let y = y0; y < y1; y++) {
    let s = 0;
    const row = y * width;
    for (let x = x0; x < x1 - 1; x++) s += Math.abs(gray[row + x + 1] - gray[row + x]);
    profile[y - y0] = s / (x1 - x0 - 1);
  }
  return { y0, profile };
}

/**
 * The bands of `box` that hold one line of text each, top to bottom; `[]` when the crop holds one
 * line (or no clear lines), so the caller reads the crop as it is.
 */
export function textRows(gray: Uint8Array, width: number, height: number, box: TextBox, options: TextRowOptions = {}): TextRow[] {
  const o = { ...TEXT_ROW_DEFAULTS, ...options };
  const { y0, profile: p } = rowProfile(gray, width, height, box);
  if (p.length < 2 * o.minCore + 1) return [];
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of p) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (!(hi > lo)) return [];
  const t = lo + o.core * (hi - lo);
  // Cores: runs of rows at or above t.
  const cores: { a: number; b: number; peak: number }[] = [];
  for (let y = 0; y < p.length; y++) {
    if (p[y] < t) continue;
    const a = y;
    let peak = 0;
    while (y < p.length && p[y] >= t) peak = Math.max(peak, p[y++]);
    if (y - a >= o.minCore) cores.push({ a, b: y, peak });
  }
  // Merge neighbours with no real valley between them (a line's ascenders and x-height).
  const merged: typeof cores = [];
  for (const c of cores) {
    const prev = merged.at(-1);
    if (prev) {
      let valley = Infinity;
      for (let y = prev.b; y < c.a; y++) valley = Math.min(valley, p[y]);
      if (valley > o.valley * Math.min(prev.peak, c.peak)) {
        prev.b = c.b;
        prev.peak = Math.max(prev.peak, c.peak);
        continue;
      }
    }
    merged.push({ ...c });
  }
  if (merged.length < 2) return [];
  // Cut each gap at its lowest row.
  const cuts = [0];
  for (let i = 1; i < merged.length; i++) {
    let at = merged[i - 1].b;
    for (let y = merged[i - 1].b; y < merged[i].a; y++) if (p[y] < p[at]) at = y;
    cuts.push(at + 1);
  }
  cuts.push(p.length);
  return merged.map((c, i) => ({ box: { x0: box.x0, x1: box.x1, y0: y0 + cuts[i], y1: y0 + cuts[i + 1], confidence: 0 }, peak: c.peak }));
}
