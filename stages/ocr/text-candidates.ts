import type { TextBox } from './text-boxes.js';

/**
 * A fast text-candidate finder in plain TypeScript: thin high-contrast strokes (top-hat and
 * black-hat of the luminance) → connected components shaped like characters → runs of
 * characters of one height on one baseline → word boxes. It finds where text may be so the
 * expensive recogniser only looks there, and it tells text-free photographs apart cheaply.
 * Textured photographs (gravel, foliage) still produce candidates; the recogniser confirms them.
 *
 * Strokes of every width are found with one small structuring element on an image pyramid
 * (full, half and quarter size) rather than with large elements on the full image: the same
 * coverage (strokes up to ~4, ~9 and ~18 px wide) for about a third of the work.
 */

export interface CandidateOptions {
  /** Stroke contrast (0..255) a pixel needs over its neighbourhood's lightest or darkest. */
  contrast?: number;
  /** Smallest character height kept, px. */
  minCharHeight?: number;
  /** Fewest characters in a run. */
  minChars?: number;
  /** Pyramid levels searched: 1 full size only, 2 adds half size, 3 adds quarter size. */
  levels?: number;
}

/** A stroke response (top-hat or black-hat) of one pyramid level, in that level's pixels. */
export interface StrokeMap {
  data: Uint8Array;
  width: number;
  height: number;
  /** Original pixels per level pixel (1, 2, 4). */
  scale: number;
  polarity: 1 | -1;
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
}

interface Comp {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  area: number;
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

/** Running min or max over 2r+1 samples of each row, borders clamped. */
function rowPass(src: Uint8Array, dst: Uint8Array, w: number, h: number, r: number, max: boolean): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      const a = x - r < 0 ? 0 : x - r;
      const b = x + r >= w ? w - 1 : x + r;
      let m = src[row + a];
      if (max) for (let i = row + a + 1; i <= row + b; i++) { const v = src[i]; if (v > m) m = v; }
      else for (let i = row + a + 1; i <= row + b; i++) { const v = src[i]; if (v < m) m = v; }
      dst[row + x] = m;
    }
  }
}

/** Running min or max over 2r+1 rows, row-vector at a time (cache-friendly, no transpose). */
function colPass(src: Uint8Array, dst: Uint8Array, w: number, h: number, r: number, max: boolean): void {
  for (let y = 0; y < h; y++) {
    const a = y - r < 0 ? 0 : y - r;
    const b = y + r >= h ? h - 1 : y + r;
    const out = y * w;
    dst.set(src.subarray(a * w, a * w + w), out);
    for (let yy = a + 1; yy <= b; yy++) {
      const s = yy * w;
      if (max) for (let x = 0; x < w; x++) { const v = src[s + x]; if (v > dst[out + x]) dst[out + x] = v; }
      else for (let x = 0; x < w; x++) { const v = src[s + x]; if (v < dst[out + x]) dst[out + x] = v; }
    }
  }
}

/** Erosion (min) or dilation (max) with a (2r+1)² square, separably; `tmp` is w×h scratch. */
export function morph(src: Uint8Array, w: number, h: number, r: number, max: boolean, tmp: Uint8Array, out: Uint8Array): Uint8Array {
  rowPass(src, tmp, w, h, r, max);
  colPass(tmp, out, w, h, r, max);
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

/**
 * Row pass of a 5-wide min filter on `a` and a 5-wide max filter on `b` at once (borders clamped):
 * the two filters of one morphology stage share the loop.
 */
function rowMinMax5(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let i = row + 2, end = row + w - 2; i < end; i++) {
      let m = a[i - 2], v = a[i - 1];
      if (v < m) m = v;
      v = a[i]; if (v < m) m = v;
      v = a[i + 1]; if (v < m) m = v;
      v = a[i + 2]; if (v < m) m = v;
      mn[i] = m;
      let M = b[i - 2];
      v = b[i - 1]; if (v > M) M = v;
      v = b[i]; if (v > M) M = v;
      v = b[i + 1]; if (v > M) M = v;
      v = b[i + 2]; if (v > M) M = v;
      mx[i] = M;
    }
  }
  rowBorders(a, b, mn, mx, w, h);
}

function rowBorders(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (const x of [0, 1, w - 2, w - 1]) {
      if (x < 0 || x >= w) continue;
      const lo = x - 2 < 0 ? 0 : x - 2;
      const hi = x + 2 >= w ? w - 1 : x + 2;
      let m = 255, M = 0;
      for (let k = row + lo; k <= row + hi; k++) {
        if (a[k] < m) m = a[k];
        if (b[k] > M) M = b[k];
      }
      mn[row + x] = m;
      mx[row + x] = M;
    }
  }
}

/** Column pass of the same pair of filters, a row vector at a time (cache-friendly, no transpose). */
function colMinMax5(a: Uint8Array, b: Uint8Array, mn: Uint8Array, mx: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const r0 = (y - 2 < 0 ? 0 : y - 2) * w;
    const r1 = (y - 1 < 0 ? 0 : y - 1) * w;
    const r2 = y * w;
    const r3 = (y + 1 >= h ? h - 1 : y + 1) * w;
    const r4 = (y + 2 >= h ? h - 1 : y + 2) * w;
    for (let x = 0; x < w; x++) {
      let m = a[r0 + x], v = a[r1 + x];
      if (v < m) m = v;
      v = a[r2 + x]; if (v < m) m = v;
      v = a[r3 + x]; if (v < m) m = v;
      v = a[r4 + x]; if (v < m) m = v;
      mn[r2 + x] = m;
      let M = b[r0 + x];
      v = b[r1 + x]; if (v > M) M = v;
      v = b[r2 + x]; if (v > M) M = v;
      v = b[r3 + x]; if (v > M) M = v;
      v = b[r4 + x]; if (v > M) M = v;
      mx[r2 + x] = M;
    }
  }
}

/**
 * White top-hat (g − opening: bright strokes) and black-hat (closing − g: dark strokes) of a grey
 * image with a 5×5 square: strokes up to 4 px wide.
 */
export function strokeResponses(gray: Uint8Array, w: number, h: number): { bright: Uint8Array; dark: Uint8Array } {
  const n = w * h;
  const t1 = new Uint8Array(n);
  const t2 = new Uint8Array(n);
  const ero = new Uint8Array(n);
  const dil = new Uint8Array(n);
  rowMinMax5(gray, gray, t1, t2, w, h);
  colMinMax5(t1, t2, ero, dil, w, h);
  // Opening = max filter of the erosion; closing = min filter of the dilation.
  rowMinMax5(dil, ero, t1, t2, w, h);
  const bright = ero;
  const dark = dil;
  colMinMax5(t1, t2, dark, bright, w, h);
  for (let i = 0; i < n; i++) {
    bright[i] = gray[i] - bright[i];
    dark[i] = dark[i] - gray[i];
  }
  return { bright, dark };
}

/** Components (8-connected) of the pixels at or above `t`, with boxes and pixel counts. `seen` is w×h scratch. */
function components(resp: Uint8Array, t: number, w: number, h: number, seen: Uint8Array, stack: Int32Array): Comp[] {
  seen.fill(0);
  const comps: Comp[] = [];
  for (let start = 0; start < w * h; start++) {
    if (resp[start] < t || seen[start]) continue;
    const c: Comp = { x0: w, y0: h, x1: 0, y1: 0, area: 0 };
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    while (top > 0) {
      const p = stack[--top];
      const y = (p / w) | 0;
      const x = p - y * w;
      c.area++;
      if (x < c.x0) c.x0 = x;
      if (x >= c.x1) c.x1 = x + 1;
      if (y < c.y0) c.y0 = y;
      if (y >= c.y1) c.y1 = y + 1;
      const ya = y > 0 ? y - 1 : 0;
      const yb = y < h - 1 ? y + 1 : y;
      const xa = x > 0 ? x - 1 : 0;
      const xb = x < w - 1 ? x + 1 : x;
      for (let yy = ya; yy <= yb; yy++) {
        for (let xx = xa; xx <= xb; xx++) {
          const q = yy * w + xx;
          if (resp[q] >= t && !seen[q]) {
            seen[q] = 1;
            stack[top++] = q;
          }
        }
      }
    }
    comps.push(c);
  }
  return comps;
}

const charLike = (c: Comp, minH: number, maxH: number): boolean => {
  const cw = c.x1 - c.x0;
  const ch = c.y1 - c.y0;
  if (ch < minH || ch > maxH || cw > ch * 12) return false;
  const fill = c.area / (cw * ch);
  // Strokes, not solid blobs or hairlines.
  return fill > 0.12 && fill < 0.9;
};

/** Runs of characters: similar heights, overlapping vertically, small gaps; split into words at wide gaps. Level pixels. */
function runsOf(chars: Comp[], polarity: 1 | -1, minChars: number, strokes: StrokeMap): TextLine[] {
  const s = strokes.scale;
  chars.sort((a, b) => a.x0 - b.x0);
  const used = new Uint8Array(chars.length);
  const lines: TextLine[] = [];
  for (let i = 0; i < chars.length; i++) {
    if (used[i]) continue;
    const run = [chars[i]];
    used[i] = 1;
    let last = chars[i];
    let refH = last.y1 - last.y0;
    for (let j = i + 1; j < chars.length; j++) {
      if (used[j]) continue;
      const c = chars[j];
      const gap = c.x0 - last.x1;
      if (gap > refH * 1.5) {
        if (c.x0 - last.x1 > refH * 4) break;
        continue;
      }
      const ch = c.y1 - c.y0;
      const overlap = Math.min(c.y1, last.y1) - Math.max(c.y0, last.y0);
      if (ch > refH * 2.2 || ch * 2.2 < refH) continue;
      if (overlap < 0.4 * Math.min(ch, last.y1 - last.y0)) continue;
      run.push(c);
      used[j] = 1;
      last = c;
      refH = Math.max(refH, ch);
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
    const out = (c: Comp): TextBox => ({ x0: c.x0 * s, y0: c.y0 * s, x1: c.x1 * s, y1: c.y1 * s, confidence: regularity });
    let cur: Comp | null = null;
    for (const c of run) {
      if (cur && c.x0 - cur.x1 <= charHeight * 0.45) {
        cur = { x0: cur.x0, y0: Math.min(cur.y0, c.y0), x1: Math.max(cur.x1, c.x1), y1: Math.max(cur.y1, c.y1), area: cur.area + c.area };
      } else {
        if (cur) words.push(out(cur));
        cur = { ...c };
      }
    }
    if (cur) words.push(out(cur));
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const c of run) {
      if (c.x0 < x0) x0 = c.x0;
      if (c.y0 < y0) y0 = c.y0;
      if (c.x1 > x1) x1 = c.x1;
      if (c.y1 > y1) y1 = c.y1;
    }
    lines.push({ box: out({ x0, y0, x1, y1, area: 0 }), words, chars: count, charHeight: charHeight * s, regularity, polarity, strokes });
  }
  return lines;
}

/**
 * Candidate text lines of a grey image, in its pixels. Strokes up to ~4 px wide are found at full
 * size, wider ones at half and quarter size, so big display text and small captions are both covered.
 */
export function findTextCandidates(gray: Uint8Array, w: number, h: number, opts: CandidateOptions = {}): TextLine[] {
  const contrast = opts.contrast ?? 48;
  const minH = opts.minCharHeight ?? 5;
  const minChars = opts.minChars ?? 3;
  const levels = opts.levels ?? 3;
  const r = 2;
  const lines: TextLine[] = [];
  let img = { data: gray, w, h };
  const seen = new Uint8Array(w * h);
  const stack = new Int32Array(w * h);
  for (let level = 0, scale = 1; level < levels; level++, scale *= 2) {
    if (level > 0) img = halve(img.data, img.w, img.h);
    if (img.w < 16 || img.h < 16) break;
    const { bright, dark } = strokeResponses(img.data, img.w, img.h);
    for (const [polarity, data] of [[1, bright], [-1, dark]] as const) {
      const strokes: StrokeMap = { data, width: img.w, height: img.h, scale, polarity };
      const lo = level === 0 ? minH : Math.max(minH / scale, r * 2.5);
      const hi = Math.min((h * 0.35) / scale, r * 12);
      const chars = components(data, contrast, img.w, img.h, seen, stack).filter((c) => charLike(c, lo, hi));
      lines.push(...runsOf(chars, polarity, minChars, strokes));
    }
  }
  return dedupeLines(lines);
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
