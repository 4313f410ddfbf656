import { components, type Comp } from './components.js';
import { strokeResponsesFast } from './stroke-morphology.js';
import type { TextBox } from './text-boxes.js';

/**
 * A fast text-candidate finder: thin high-contrast strokes (top-hat and black-hat of a grey
 * channel) → connected components shaped like characters → runs of characters of one height on
 * one baseline → word boxes. It finds where text may be so the expensive recogniser only looks
 * there, and it tells text-free photographs apart cheaply. Textured photographs (gravel, foliage)
 * still produce candidates; the recogniser confirms them.
 *
 * Strokes of every width are found with one 5×5 structuring element on an image pyramid (full,
 * half and quarter size: strokes up to ~4, ~9 and ~18 px wide) rather than with large elements on
 * the full image. The morphology (stroke-morphology.ts) runs in a WebAssembly SIMD kernel
 * (stroke-simd.wat; 16 pixels an instruction; ~0.5 ms for both responses of a 512² image against
 * ~20 ms in plain TypeScript, which stays as the reference and the fallback); components are
 * labelled run by run (components.ts). Measured: ~5 ms a
 * 512² channel on this machine's cores, ~10 ms with the colourfulness channel the reader adds.
 */

export interface CandidateOptions {
  /** Stroke contrast (0..255) a pixel needs over its neighbourhood's lightest or darkest; one value, or one per pyramid level. */
  contrast?: number | number[];
  /** Smallest character height kept, px. */
  minCharHeight?: number;
  /** Fewest characters in a run. */
  minChars?: number;
  /** Pyramid levels searched: 1 full size only, 2 adds half size, 3 adds quarter size. */
  levels?: number;
  /**
   * Overlapping lines are deduplicated within one polarity (default) or across both. Outlined text
   * (light fill, dark outline) is found in both; keeping both lets a reader try the other.
   */
  dedupe?: 'polarity' | 'all';
  /** More full-size grey channels searched the same way (e.g. `chroma()`); lines remember their channel. */
  channels?: Uint8Array[];
  /** Contrast used instead on flat backgrounds (plain or gradient fills), where low-contrast text is still text; unset: no change. */
  flatContrast?: number;
}

/** A stroke response (top-hat or black-hat) of one pyramid level, in that level's pixels. */
export interface StrokeMap {
  data: Uint8Array;
  width: number;
  height: number;
  /** Original pixels per level pixel (1, 2, 4). */
  scale: number;
  polarity: 1 | -1;
  /** The stroke contrast its characters were cut at. */
  threshold: number;
  /** The full-size grey channel the map was computed from (luminance, or another channel). */
  image: Uint8Array;
}

export interface TextLine {
  /** In original pixels, as are the words. */
  box: TextBox;
  words: TextBox[];
  chars: number;
  /** Median character height, original px. */
  charHeight: number;
  /** 0..1: how regular the run is (heights, gaps, baseline); textures score low. */
  regularity: number;
  /** +1 light text on dark, -1 dark on light. */
  polarity: 1 | -1;
  /** The stroke response the line was found in (for rendering it cleanly to a recogniser). */
  strokes: StrokeMap;
  /** Mean stroke response (contrast) over the stroke pixels. */
  response: number;
  /** The run's components (characters or touching groups), level pixels, with their pixel indices. */
  glyphs: { x0: number; y0: number; x1: number; y1: number; pixels: Int32Array }[];
}

/** Luminance of interleaved 8-bit pixels (BT.601, as tesseract and most OCR do). */
export function luminance(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const n = width * height;
  if (channels === 1) return data.subarray(0, n);
  const out = new Uint8Array(n);
  if (channels === 2) {
    for (let i = 0; i < n; i++) out[i] = data[i * 2];
    return out;
  }
  for (let i = 0, j = 0; i < n; i++, j += channels) out[i] = (data[j] * 77 + data[j + 1] * 150 + data[j + 2] * 29) >> 8;
  return out;
}

/** Half-size image, each pixel the mean of a 2×2 block. */
function halve(src: Uint8Array, w: number, h: number): { data: Uint8Array; w: number; h: number } {
  const hw = w >> 1;
  const hh = h >> 1;
  const out = new Uint8Array(hw * hh);
  for (let y = 0; y < hh; y++) {
    const r0 = 2 * y * w;
    const r1 = r0 + w;
    const o = y * hw;
    for (let x = 0; x < hw; x++) out[o + x] = (src[r0 + 2 * x] + src[r0 + 2 * x + 1] + src[r1 + 2 * x] + src[r1 + 2 * x + 1] + 2) >> 2;
  }
  return { data: out, w: hw, h: hh };
}

const charLike = (x0: number, y0: number, x1: number, y1: number, area: number, minH: number, maxH: number): boolean => {
  const cw = x1 - x0;
  const ch = y1 - y0;
  if (ch < minH || ch > maxH || cw > ch * 12) return false;
  const fill = area / (cw * ch);
  // Strokes, not solid blobs or hairlines.
  return fill > 0.12 && fill < 0.9;
};

/**
 * Runs of characters along one text line: similar heights inside the line's band (the running mean
 * of the characters' tops and bottoms, so a run cannot drift into the next line), small gaps; split
 * into words at wide gaps. Level pixels in, original pixels out.
 */
function runsOf(chars: Comp[], polarity: 1 | -1, minChars: number, strokes: StrokeMap, pixels: Int32Array): TextLine[] {
  const s = strokes.scale;
  chars.sort((a, b) => a.x0 - b.x0);
  const used = new Uint8Array(chars.length);
  const lines: TextLine[] = [];
  for (let i = 0; i < chars.length; i++) {
    if (used[i]) continue;
    const run = [chars[i]];
    used[i] = 1;
    let top = chars[i].y0;
    let bot = chars[i].y1;
    let right = chars[i].x1;
    for (let j = i + 1; j < chars.length; j++) {
      if (used[j]) continue;
      const c = chars[j];
      const bandH = bot - top;
      const gap = c.x0 - right;
      if (gap > bandH * 1.5) {
        if (gap > bandH * 4) break;
        continue;
      }
      const ch = c.y1 - c.y0;
      if (ch > bandH * 1.8 || ch < bandH * 0.4) continue;
      const overlap = Math.min(c.y1, bot) - Math.max(c.y0, top);
      if (overlap < 0.6 * Math.min(ch, bandH)) continue;
      run.push(c);
      used[j] = 1;
      if (c.x1 > right) right = c.x1;
      top += (c.y0 - top) / run.length;
      bot += (c.y1 - bot) / run.length;
    }
    // Touching letters come out as one component: count them by width.
    const count = run.reduce((n, c) => n + Math.max(1, Math.round((c.x1 - c.x0) / (0.7 * (c.y1 - c.y0)))), 0);
    if (count < minChars) continue;
    const heights = run.map((c) => c.y1 - c.y0).sort((a, b) => a - b);
    const charHeight = heights[heights.length >> 1];
    const bottoms = run.map((c) => c.y1);
    const bMean = bottoms.reduce((a, b) => a + b, 0) / bottoms.length;
    const bDev = Math.sqrt(bottoms.reduce((a, b) => a + (b - bMean) ** 2, 0) / bottoms.length) / charHeight;
    const hDev = (heights[heights.length - 1] - heights[0]) / charHeight;
    const regularity = Math.max(0, 1 - bDev * 2) * Math.max(0, 1 - Math.max(0, hDev - 1) / 2);
    const words: TextBox[] = [];
    const out = (x0: number, y0: number, x1: number, y1: number): TextBox => ({ x0: x0 * s, y0: y0 * s, x1: x1 * s, y1: y1 * s, confidence: regularity });
    let cur: { x0: number; y0: number; x1: number; y1: number } | null = null;
    for (const c of run) {
      if (cur && c.x0 - cur.x1 <= charHeight * 0.45) {
        cur = { x0: cur.x0, y0: Math.min(cur.y0, c.y0), x1: Math.max(cur.x1, c.x1), y1: Math.max(cur.y1, c.y1) };
      } else {
        if (cur) words.push(out(cur.x0, cur.y0, cur.x1, cur.y1));
        cur = { x0: c.x0, y0: c.y0, x1: c.x1, y1: c.y1 };
      }
    }
    if (cur) words.push(out(cur.x0, cur.y0, cur.x1, cur.y1));
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    let area = 0, resp = 0;
    for (const c of run) {
      if (c.x0 < x0) x0 = c.x0;
      if (c.y0 < y0) y0 = c.y0;
      if (c.x1 > x1) x1 = c.x1;
      if (c.y1 > y1) y1 = c.y1;
      area += c.area;
      resp += c.resp;
    }
    const glyphs = run.map((c) => ({ x0: c.x0, y0: c.y0, x1: c.x1, y1: c.y1, pixels: pixels.subarray(c.p0, c.p0 + c.area) }));
    lines.push({ box: out(x0, y0, x1, y1), words, chars: count, charHeight: charHeight * s, regularity, polarity, strokes, response: resp / area, glyphs });
  }
  return lines;
}

/**
 * Candidate text lines of a grey image, in its pixels. Strokes up to ~4 px wide are found at full
 * size, wider ones at half and quarter size, so big display text and small captions are both covered.
 */
export function findTextCandidates(gray: Uint8Array, w: number, h: number, opts: CandidateOptions = {}): TextLine[] {
  const lines: TextLine[] = [];
  lines.push(...linesIn(gray, w, h, opts));
  // An extra channel with (next to) no pixel as strong as the lowest contrast cannot hold a stroke: skip it.
  const least = Math.min(opts.flatContrast ?? Infinity, ...(Array.isArray(opts.contrast) ? opts.contrast : [opts.contrast ?? 48]));
  for (const channel of opts.channels ?? []) if (countAtLeast(channel, least, Math.ceil(channel.length / 2000)) ) lines.push(...linesIn(channel, w, h, opts));
  return opts.dedupe === 'all' ? dedupeLines(lines) : [...dedupeLines(lines.filter((l) => l.polarity > 0)), ...dedupeLines(lines.filter((l) => l.polarity < 0))];
}

/** Whether at least `n` values reach `t`. */
function countAtLeast(data: Uint8Array, t: number, n: number): boolean {
  let c = 0;
  for (let i = 0; i < data.length; i++) if (data[i] >= t && ++c >= n) return true;
  return false;
}

/** Candidate lines of one grey channel, not yet deduplicated. */
function linesIn(gray: Uint8Array, w: number, h: number, opts: CandidateOptions): TextLine[] {
  const contrastOf = (level: number): number => (Array.isArray(opts.contrast) ? opts.contrast[Math.min(level, opts.contrast.length - 1)] : opts.contrast ?? 48);
  const minH = opts.minCharHeight ?? 5;
  const minChars = opts.minChars ?? 3;
  const levels = opts.levels ?? 3;
  const r = 2;
  const lines: TextLine[] = [];
  let img = { data: gray, w, h };
  let lower = Infinity;
  for (let level = 0, scale = 1; level < levels; level++, scale *= 2) {
    if (level > 0) img = halve(img.data, img.w, img.h);
    if (img.w < 16 || img.h < 16) break;
    const { bright, dark } = strokeResponsesFast(img.data, img.w, img.h);
    if (level === 0 && opts.flatContrast !== undefined) lower = flatness(bright, dark, opts.flatContrast);
    for (const [polarity, data] of [[1, bright], [-1, dark]] as const) {
      const threshold = Math.min(contrastOf(level), lower);
      const strokes: StrokeMap = { data, width: img.w, height: img.h, scale, polarity, threshold, image: gray };
      const lo = level === 0 ? minH : Math.max(minH / scale, r * 2.5);
      const hi = Math.min((h * 0.35) / scale, r * 12);
      const { comps, pixels } = components(data, threshold, img.w, img.h, (x0, y0, x1, y1, area) => charLike(x0, y0, x1, y1, area, lo, hi));
      lines.push(...runsOf(comps, polarity, minChars, strokes, pixels));
    }
  }
  return lines;
}

/**
 * Colourfulness (max − min of R, G, B) of interleaved 8-bit pixels: a second channel for the
 * candidate finder, where text differs from its background in hue more than in luminance (red on
 * a dark blue sky, black on saturated blue).
 */
export function chroma(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const n = width * height;
  const out = new Uint8Array(n);
  if (channels < 3) return out;
  for (let i = 0, j = 0; i < n; i++, j += channels) {
    const r = data[j], g = data[j + 1], b = data[j + 2];
    // Branch-free max and min (photographs make the comparisons unpredictable).
    let hi = r, lo = r, d = g - hi;
    hi += d & ~(d >> 31);
    d = b - hi;
    hi += d & ~(d >> 31);
    d = g - lo;
    lo += d & (d >> 31);
    d = b - lo;
    lo += d & (d >> 31);
    out[i] = hi - lo;
  }
  return out;
}

/**
 * On a flat background (a plain or gradient fill) text whose colour differs from its background
 * more in hue than in luminance (red on slate, black on blue) still stands out: the contrast needed
 * drops to `low`. Flat: fewer than 5% of pixels have a faint stroke response (3–11), the grain that
 * every photograph has (measured: ≥ 7% on all 136 text-free photographs, ≤ 3.3% on fills with text).
 * Returns the contrast to use, or Infinity (no change).
 */
function flatness(bright: Uint8Array, dark: Uint8Array, low: number): number {
  let grain = 0;
  let n = 0;
  for (let i = 0; i < bright.length; i += 3, n++) {
    const v = bright[i] > dark[i] ? bright[i] : dark[i];
    if (v >= 3 && v < 12) grain++;
  }
  return grain < 0.05 * n ? low : Infinity;
}

/** The same text is found at several levels and sometimes both polarities: keep the better of overlapping lines. */
function dedupeLines(lines: TextLine[]): TextLine[] {
  const score = (l: TextLine) => l.chars * l.regularity;
  lines.sort((x, y) => score(y) - score(x));
  const kept: TextLine[] = [];
  for (const l of lines) {
    const overlaps = kept.some((k) => {
      const ix = Math.min(k.box.x1, l.box.x1) - Math.max(k.box.x0, l.box.x0);
      const iy = Math.min(k.box.y1, l.box.y1) - Math.max(k.box.y0, l.box.y0);
      if (ix <= 0 || iy <= 0) return false;
      const la = (l.box.x1 - l.box.x0) * (l.box.y1 - l.box.y0);
      return (ix * iy) / la > 0.3;
    });
    if (!overlaps) kept.push(l);
  }
  return kept;
}

/**
 * The glyphs of a line (those starting before `xEnd`, original px) drawn at full resolution from
 * the grey image: inside the glyphs' footprint (their pyramid pixels, grown by one level pixel) the
 * grey is stretched so the ink is black and the surrounding background white; everything else is
 * white. Sharper than drawing the stroke response of a coarse level, and the text keeps its own
 * shape (outlines, anti-aliasing) without the photograph behind it.
 */
export function drawGlyphsSharp(line: TextLine, w: number, h: number, xEnd = Infinity, pad = 2, reach = 0): { data: Uint8Array; width: number; height: number; x0: number; y0: number } {
  const { width: lw, scale: s, image: gray } = line.strokes;
  const glyphs = line.glyphs.filter((g) => g.x0 * s < xEnd);
  let gx0 = Infinity, gy0 = Infinity, gx1 = -Infinity, gy1 = -Infinity;
  for (const g of glyphs) {
    if (g.x0 < gx0) gx0 = g.x0;
    if (g.y0 < gy0) gy0 = g.y0;
    if (g.x1 > gx1) gx1 = g.x1;
    if (g.y1 > gy1) gy1 = g.y1;
  }
  const grow = Math.max(s === 1 ? 1 : s, Math.round(reach * line.charHeight));
  const x0 = Math.max(0, gx0 * s - pad - grow), y0 = Math.max(0, gy0 * s - pad - grow);
  const x1 = Math.min(w, gx1 * s + pad + grow), y1 = Math.min(h, gy1 * s + pad + grow);
  const width = x1 - x0, height = y1 - y0;
  // Core: the glyphs' pyramid pixels at full size. Footprint: the core grown by `grow`.
  const core = new Uint8Array(width * height);
  for (const g of glyphs) {
    for (const p of g.pixels) {
      const py = ((p / lw) | 0) * s - y0;
      const px = (p % lw) * s - x0;
      for (let dy = 0; dy < s; dy++) {
        const oy = py + dy;
        if (oy < 0 || oy >= height) continue;
        for (let dx = 0; dx < s; dx++) {
          const ox = px + dx;
          if (ox >= 0 && ox < width) core[oy * width + ox] = 1;
        }
      }
    }
  }
  const foot = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!core[y * width + x]) continue;
      for (let yy = Math.max(0, y - grow); yy <= Math.min(height - 1, y + grow); yy++) foot.fill(1, yy * width + Math.max(0, x - grow), yy * width + Math.min(width - 1, x + grow) + 1);
    }
  }
  // Ink: the mean of the polarity's brighter (or darker) half of the core; background: the median of the ring.
  const inkHist = new Uint32Array(256);
  const ringHist = new Uint32Array(256);
  let nInk = 0;
  let nRing = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const v = gray[(y0 + y) * w + x0 + x];
      if (core[i]) {
        inkHist[v]++;
        nInk++;
      } else if (foot[i]) {
        ringHist[v]++;
        nRing++;
      }
    }
  }
  let ink = 0;
  {
    const want = Math.max(1, nInk >> 1);
    let got = 0;
    let sum = 0;
    for (let k = 0; k < 256 && got < want; k++) {
      const v = line.polarity > 0 ? 255 - k : k;
      const take = Math.min(inkHist[v], want - got);
      got += take;
      sum += take * v;
    }
    ink = got ? sum / got : 128;
  }
  let bg = ink - line.polarity * 64;
  if (nRing > 0) {
    let acc = 0;
    for (let v = 0; v < 256; v++) {
      acc += ringHist[v];
      if (acc > nRing >> 1) {
        bg = v;
        break;
      }
    }
  }
  const span = ink - bg || line.polarity;
  const out = new Uint8Array(width * height).fill(255);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!foot[i]) continue;
      const t = (gray[(y0 + y) * w + x0 + x] - bg) / span;
      out[i] = Math.round(255 * (1 - Math.min(1, Math.max(0, t * 1.25 - 0.1))));
    }
  }
  return { data: out, width, height, x0, y0 };
}
