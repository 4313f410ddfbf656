import type { HistogramPanel, ThroughputPoint } from './collect.js';

/** Escapes text for HTML and SVG content and attribute values. */
export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const W = 560;
const H = 200;
const PAD = { l: 48, r: 12, t: 14, b: 34 };
const KEPT = '#3a8d5c';
const OTHER = '#c8553d';

const fmt = (v: number): string => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(3));

/** Fewest bins a histogram shows, so one value is a narrow bar between labelled bin edges, not the whole chart. */
const MIN_SHOWN_BINS = 8;
/** Generous widths of a character at the charts' 10 px font (bold for the threshold): labels are placed so they fit. */
const CHAR_PX = 6.2;
const BOLD_CHAR_PX = 6.8;

/**
 * A label centred on x where it fits inside the chart, else aligned to the edge it would cross
 * (a threshold near either end, the first and last ticks).
 */
function label(x: number, y: number, text: string, cls = ''): string {
  const w = text.length * (cls ? BOLD_CHAR_PX : CHAR_PX);
  const [anchor, at] = x - w / 2 < 2 ? ['start', Math.max(x, 2)] : x + w / 2 > W - 2 ? ['end', Math.min(x, W - 2)] : ['middle', x];
  return `<text x="${at.toFixed(1)}" y="${y}" text-anchor="${anchor}"${cls ? ` class="${cls}"` : ''}>${esc(text)}</text>`;
}

/** Stacked bars (kept / dropped or failed) over the non-empty span of a fixed-bin histogram, with its threshold as a dashed line. */
export function histogramSvg(p: HistogramPanel): string {
  const h = p.hist;
  const span = h.span();
  if (!span) return '';
  let [a, b] = span;
  // Keep the threshold in view when it lies outside the data.
  if (p.threshold) {
    const ti = Math.floor((p.threshold.value - h.lo) / h.binWidth);
    a = Math.max(0, Math.min(a, ti));
    b = Math.min(h.bins - 1, Math.max(b, ti));
  }
  // At least MIN_SHOWN_BINS bins, widened evenly around the data where the range allows.
  while (b - a + 1 < Math.min(MIN_SHOWN_BINS, h.bins)) {
    if (a > 0) a--;
    if (b - a + 1 < MIN_SHOWN_BINS && b < h.bins - 1) b++;
  }
  const n = b - a + 1;
  const lo = h.lo + a * h.binWidth;
  const hi = h.lo + (b + 1) * h.binWidth;
  let top = 1;
  for (let i = a; i <= b; i++) top = Math.max(top, h.kept[i] + h.other[i]);
  const pw = W - PAD.l - PAD.r;
  const ph = H - PAD.t - PAD.b;
  const bw = pw / n;
  const y = (c: number) => PAD.t + ph - (ph * c) / top;
  const x = (v: number) => PAD.l + (pw * (v - lo)) / (hi - lo);
  const bars: string[] = [];
  for (let i = a; i <= b; i++) {
    const k = h.kept[i];
    const o = h.other[i];
    if (k + o === 0) continue;
    const bx = (PAD.l + (i - a) * bw + 0.5).toFixed(1);
    const w = Math.max(bw - 1, 1).toFixed(1);
    const from = h.lo + i * h.binWidth;
    const tip = `<title>${esc(`${fmt(from)} – ${fmt(from + h.binWidth)}: ${k} kept, ${o} dropped or failed`)}</title>`;
    if (k) bars.push(`<rect class="bar kept" x="${bx}" y="${y(k).toFixed(1)}" width="${w}" height="${(y(0) - y(k)).toFixed(1)}" fill="${KEPT}">${tip}</rect>`);
    if (o) bars.push(`<rect class="bar other" x="${bx}" y="${y(k + o).toFixed(1)}" width="${w}" height="${(y(k) - y(k + o)).toFixed(1)}" fill="${OTHER}">${tip}</rect>`);
  }
  // Ticks on bin edges: every `step` bins from the first shown edge, and the last edge.
  const ticks: string[] = [];
  const step = Math.max(1, Math.ceil(n / 4));
  const edges: number[] = [];
  for (let i = 0; i < n; i += step) edges.push(i);
  // A last regular tick closer than half a step to the end would collide with the end's label.
  if (n - edges[edges.length - 1] < step / 2) edges.pop();
  edges.push(n);
  for (const i of edges) {
    const v = lo + i * h.binWidth;
    ticks.push(label(x(v), H - PAD.b + 14, fmt(v)));
  }
  ticks.push(`<text x="${PAD.l - 6}" y="${PAD.t + 4}" text-anchor="end">${top}</text>`, `<text x="${PAD.l - 6}" y="${PAD.t + ph}" text-anchor="end">0</text>`);
  let thr = '';
  if (p.threshold) {
    const tx = x(p.threshold.value).toFixed(1);
    thr = `<line class="threshold" x1="${tx}" x2="${tx}" y1="${PAD.t - 4}" y2="${PAD.t + ph}" stroke="#222" stroke-dasharray="4 3" stroke-width="1.5"/>${label(x(p.threshold.value), H - 4, p.threshold.label, 'thr')}`;
  }
  const clipped = h.clipped ? `<text x="${W - PAD.r}" y="${PAD.t + 4}" text-anchor="end">${h.clipped} outside [${fmt(h.lo)}, ${fmt(h.hi)}) in the edge bins</text>` : '';
  return `<svg class="chart histogram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(p.title)}"><line x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ph}" y2="${PAD.t + ph}" stroke="#999"/>${bars.join('')}${ticks.join('')}${thr}${clipped}</svg>`;
}

/** Rows per second of each unit at its finish time: a slowdown or a stall shows as a dip or a gap. */
export function throughputSvg(points: ThroughputPoint[]): string {
  if (points.length === 0) return '';
  const t0 = points[0].finishedAt;
  const t1 = Math.max(points[points.length - 1].finishedAt, t0 + 1000);
  const top = Math.max(...points.map((p) => p.rowsPerSecond), 1e-9);
  const pw = W - PAD.l - PAD.r;
  const ph = H - PAD.t - PAD.b;
  const x = (t: number) => PAD.l + (points.length === 1 ? pw / 2 : (pw * (t - t0)) / (t1 - t0));
  const y = (v: number) => PAD.t + ph - (ph * v) / top;
  const dots = points.map((p) => `<circle class="point" cx="${x(p.finishedAt).toFixed(1)}" cy="${y(p.rowsPerSecond).toFixed(1)}" r="3" fill="#2f6fb0"><title>${esc(`unit ${p.unit}: ${p.rows} rows in ${p.seconds.toFixed(1)} s = ${p.rowsPerSecond.toFixed(1)} rows/s, finished ${new Date(p.finishedAt).toISOString()}`)}</title></circle>`);
  const line = points.length > 1 ? `<polyline fill="none" stroke="#2f6fb0" stroke-opacity="0.35" points="${points.map((p) => `${x(p.finishedAt).toFixed(1)},${y(p.rowsPerSecond).toFixed(1)}`).join(' ')}"/>` : '';
  const minutes = (t1 - t0) / 60000;
  const labels = `<text x="${PAD.l - 6}" y="${PAD.t + 4}" text-anchor="end">${fmt(top)}</text><text x="${PAD.l - 6}" y="${PAD.t + ph}" text-anchor="end">0</text><text x="${PAD.l}" y="${H - PAD.b + 14}">${esc(new Date(t0).toISOString().slice(11, 19))}</text><text x="${W - PAD.r}" y="${H - PAD.b + 14}" text-anchor="end">+${minutes.toFixed(1)} min</text><text x="${PAD.l + pw / 2}" y="${H - 4}" text-anchor="middle">unit finish time (UTC) → rows/s per unit</text>`;
  return `<svg class="chart throughput" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="throughput"><line x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ph}" y2="${PAD.t + ph}" stroke="#999"/>${line}${dots.join('')}${labels}</svg>`;
}

/** Mean bit entropy of each of the 128 tokens (0–1 bit): dead or collapsed tokens sit near zero. */
export function tokenEntropySvg(tokenMeanEntropy: number[]): string {
  const pw = W - PAD.l - PAD.r;
  const ph = H - PAD.t - PAD.b;
  const bw = pw / tokenMeanEntropy.length;
  const bars = tokenMeanEntropy.map((e, i) => `<rect class="bar" x="${(PAD.l + i * bw).toFixed(1)}" y="${(PAD.t + ph - ph * e).toFixed(1)}" width="${Math.max(bw - 0.5, 0.5).toFixed(2)}" height="${(ph * e).toFixed(1)}" fill="#6a4fb3"><title>token ${i}: mean entropy ${e.toFixed(3)} bit</title></rect>`);
  const labels = `<text x="${PAD.l - 6}" y="${PAD.t + 4}" text-anchor="end">1</text><text x="${PAD.l - 6}" y="${PAD.t + ph}" text-anchor="end">0</text><text x="${PAD.l}" y="${H - PAD.b + 14}">token 0</text><text x="${W - PAD.r}" y="${H - PAD.b + 14}" text-anchor="end">token ${tokenMeanEntropy.length - 1}</text><text x="${PAD.l + pw / 2}" y="${H - 4}" text-anchor="middle">mean bit entropy per token</text>`;
  return `<svg class="chart entropy" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="token entropy"><line x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ph}" y2="${PAD.t + ph}" stroke="#999"/>${bars.join('')}${labels}</svg>`;
}
