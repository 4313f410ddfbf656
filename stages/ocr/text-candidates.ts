import type { TextBox } from './text-boxes.js';

/**
 * A fast text-candidate finder in plain TypeScript: thin high-contrast strokes (top-hat and
 * black-hat of the luminance) → connected components shaped like characters → runs of
 * characters of one height on one baseline → word boxes. It finds where text may be so the
 * expensive recogniser only looks there, and it tells text-free photographs apart cheaply.
 * Textured photographs (gravel, foliage) still produce candidates; the recogniser confirms them.
 */

export interface CandidateOptions {
  /** Stroke contrast (0..255) a pixel needs over its neighbourhood's lightest or darkest. */
  contrast?: number;
  /** Smallest character height kept, px. */
  minCharHeight?: number;
  /** Fewest characters in a run. */
  minChars?: number;
}

export interface TextLine {
  box: TextBox;
  words: TextBox[];
  chars: number;
  /** Median character height, px. */
  charHeight: number;
  /** 0..1: how regular the run is (heights, gaps, baseline); textures score low. */
  regularity: number;
  /** +1 light text on dark, -1 dark on light. */
  polarity: 1 | -1;
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

/** Running min or max over 2r+1 samples of each row (van Herk/Gil-Werman: three comparisons a pixel whatever r). */
function rowMorph(src: Uint8Array, dst: Uint8Array, w: number, h: number, r: number, max: boolean, line: Uint8Array, g: Uint8Array, hh: Uint8Array): void {
  const k = 2 * r + 1;
  const len = w + 2 * r;
  const pad = max ? 0 : 255;
  line.fill(pad, 0, r);
  line.fill(pad, r + w, len);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) line[r + x] = src[row + x];
    // Prefix and suffix extrema within blocks of k; an output is the max of one suffix and one prefix.
    for (let b = 0; b < len; b += k) {
      const e = Math.min(b + k, len);
      let acc = line[b];
      g[b] = acc;
      if (max) for (let i = b + 1; i < e; i++) g[i] = acc = acc > line[i] ? acc : line[i];
      else for (let i = b + 1; i < e; i++) g[i] = acc = acc < line[i] ? acc : line[i];
      acc = line[e - 1];
      hh[e - 1] = acc;
      if (max) for (let i = e - 2; i >= b; i--) hh[i] = acc = acc > line[i] ? acc : line[i];
      else for (let i = e - 2; i >= b; i--) hh[i] = acc = acc < line[i] ? acc : line[i];
    }
    const r2 = 2 * r;
    if (max) for (let x = 0; x < w; x++) { const a = hh[x]; const c = g[x + r2]; dst[row + x] = a > c ? a : c; }
    else for (let x = 0; x < w; x++) { const a = hh[x]; const c = g[x + r2]; dst[row + x] = a < c ? a : c; }
  }
}

function transpose(src: Uint8Array, dst: Uint8Array, w: number, h: number): void {
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) dst[x * h + y] = src[row + x];
  }
}

/** Erosion (min) or dilation (max) with a (2r+1)² square, separably. `tmp` and `out` are w×h scratch. */
export function morph(src: Uint8Array, w: number, h: number, r: number, max: boolean, tmp: Uint8Array, out: Uint8Array): Uint8Array {
  const n = Math.max(w, h) + 4 * r + 2;
  const line = new Uint8Array(n);
  const g = new Uint8Array(n);
  const hh = new Uint8Array(n);
  rowMorph(src, out, w, h, r, max, line, g, hh);
  transpose(out, tmp, w, h);
  rowMorph(tmp, out, h, w, r, max, line, g, hh);
  transpose(out, tmp, h, w);
  out.set(tmp);
  return out;
}

/** Components of a binary mask (8-connected), with their boxes and pixel counts. */
function components(mask: Uint8Array, w: number, h: number): Comp[] {
  const labels = new Int32Array(w * h).fill(-1);
  const stack = new Int32Array(w * h);
  const comps: Comp[] = [];
  for (let start = 0; start < w * h; start++) {
    if (!mask[start] || labels[start] >= 0) continue;
    const id = comps.length;
    const c: Comp = { x0: w, y0: h, x1: 0, y1: 0, area: 0 };
    let top = 0;
    stack[top++] = start;
    labels[start] = id;
    while (top > 0) {
      const p = stack[--top];
      const x = p % w;
      const y = (p - x) / w;
      c.area++;
      if (x < c.x0) c.x0 = x;
      if (x + 1 > c.x1) c.x1 = x + 1;
      if (y < c.y0) c.y0 = y;
      if (y + 1 > c.y1) c.y1 = y + 1;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (mask[q] && labels[q] < 0) {
            labels[q] = id;
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

/** Runs of characters: similar heights, overlapping vertically, small gaps; split into words at wide gaps. */
function runsOf(chars: Comp[], polarity: 1 | -1, minChars: number): TextLine[] {
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
    let cur: Comp | null = null;
    for (const c of run) {
      if (cur && c.x0 - cur.x1 <= charHeight * 0.45) {
        cur = { x0: cur.x0, y0: Math.min(cur.y0, c.y0), x1: Math.max(cur.x1, c.x1), y1: Math.max(cur.y1, c.y1), area: cur.area + c.area };
      } else {
        if (cur) words.push({ x0: cur.x0, y0: cur.y0, x1: cur.x1, y1: cur.y1, confidence: regularity });
        cur = { ...c };
      }
    }
    if (cur) words.push({ x0: cur.x0, y0: cur.y0, x1: cur.x1, y1: cur.y1, confidence: regularity });
    const box = {
      x0: Math.min(...run.map((c) => c.x0)),
      y0: Math.min(...run.map((c) => c.y0)),
      x1: Math.max(...run.map((c) => c.x1)),
      y1: Math.max(...run.map((c) => c.y1)),
      confidence: regularity,
    };
    lines.push({ box, words, chars: count, charHeight, regularity, polarity });
  }
  return lines;
}

/**
 * Candidate text lines of a grey image. Strokes up to `2r` px wide are found at each of the
 * radii, so big display text and small captions are both covered.
 */
export function findTextCandidates(gray: Uint8Array, w: number, h: number, opts: CandidateOptions = {}): TextLine[] {
  const contrast = opts.contrast ?? 48;
  const minH = opts.minCharHeight ?? 5;
  const minChars = opts.minChars ?? 3;
  const tmp = new Uint8Array(w * h);
  const a = new Uint8Array(w * h);
  const b = new Uint8Array(w * h);
  const mask = new Uint8Array(w * h);
  const lines: TextLine[] = [];
  for (const r of [2, 4, 8]) {
    for (const polarity of [1, -1] as const) {
      // Top-hat (bright strokes) or black-hat (dark strokes): what an opening or closing removes.
      if (polarity === 1) {
        morph(gray, w, h, r, false, tmp, a);
        morph(a, w, h, r, true, tmp, b);
        for (let i = 0; i < mask.length; i++) mask[i] = gray[i] - b[i] >= contrast ? 1 : 0;
      } else {
        morph(gray, w, h, r, true, tmp, a);
        morph(a, w, h, r, false, tmp, b);
        for (let i = 0; i < mask.length; i++) mask[i] = b[i] - gray[i] >= contrast ? 1 : 0;
      }
      const chars = components(mask, w, h).filter((c) => charLike(c, Math.max(minH, r * 1.5), Math.min(h * 0.35, r * 12)));
      lines.push(...runsOf(chars, polarity, minChars));
    }
  }
  return dedupeLines(lines);
}

/** The same text is found at several radii and sometimes both polarities: keep the better of overlapping lines. */
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
