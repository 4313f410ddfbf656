/**
 * SSIM in the two conventions papers report, each matching scikit-image 0.19's
 * `structural_similarity` (Debian's python3-skimage) to float64 rounding:
 *
 * - `skimage`: the library's defaults: 7×7 uniform window, sample covariance (the N/(N−1)
 *   factor, N = 49), K1 0.01, K2 0.03.
 * - `wang`: Wang et al. 2004 as skimage computes it with `gaussian_weights=True, sigma=1.5,
 *   use_sample_covariance=False`: an 11-tap Gaussian (scipy's radius int(3.5·1.5 + 0.5) = 5,
 *   weights exp(−x²/2σ²) normalised to sum 1, applied separably), population covariance.
 *
 * Both: C1 = (K1·R)², C2 = (K2·R)² with R the data range; colour images are scored per channel
 * and the channel scores averaged (skimage's `channel_axis=-1`); the SSIM map's mean excludes a
 * border of (win−1)/2 pixels on every side, as skimage crops it.
 *
 * Because that crop equals the filter radius, every pixel that enters the mean has its whole
 * window inside the image: the borders scipy's filters fill by reflection ('reflect' mode) only
 * ever feed cropped pixels. So only the valid windows are computed here, which gives skimage's
 * number exactly without padding, and skips work on pixels skimage throws away.
 */
import { assertSameShape, resolveDataRange, type MetricImage } from './psnr.js';

export type SsimConvention = 'skimage' | 'wang';

/** Everything that distinguishes one SSIM convention from another. */
export interface SsimConventionSpec {
  window: 'uniform' | 'gaussian';
  /** Taps per axis; images must be at least this big, and (winSize−1)/2 is the cropped border. */
  winSize: number;
  /** Gaussian σ and scipy's truncation (in σ) that together give `winSize` taps. */
  sigma?: number;
  truncate?: number;
  /** Variances and covariance scaled by N/(N−1), N = winSize² (skimage's use_sample_covariance). */
  sampleCovariance: boolean;
  k1: number;
  k2: number;
  /** The scikit-image call that gives the same number for H×W×C images. */
  skimageCall: string;
}

export const SSIM_CONVENTIONS: Readonly<Record<SsimConvention, SsimConventionSpec>> = {
  skimage: {
    window: 'uniform', winSize: 7, sampleCovariance: true, k1: 0.01, k2: 0.03,
    skimageCall: 'structural_similarity(a, b, data_range=R, channel_axis=-1)',
  },
  wang: {
    window: 'gaussian', winSize: 11, sigma: 1.5, truncate: 3.5, sampleCovariance: false, k1: 0.01, k2: 0.03,
    skimageCall: 'structural_similarity(a, b, data_range=R, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)',
  },
};

export interface SsimOptions {
  /** Required: the two conventions differ by ~0.01–0.05 on typical reconstructions. */
  convention: SsimConvention;
  /** R in C1 = (K1·R)², C2 = (K2·R)²: 255 by default for 8-bit images, required for float images. */
  dataRange?: number;
}

/** A single image pair's SSIM. */
export interface SsimResult {
  metric: 'ssim';
  convention: SsimConvention;
  dataRange: number;
  ssim: number;
  /** Per-channel mean SSIM; `ssim` is their mean. */
  perChannel: number[];
}

/** SSIM over a set of pairs: the mean of per-image values. */
export interface SsimSummary {
  metric: 'ssim';
  convention: SsimConvention;
  dataRange: number;
  count: number;
  mean: number;
  values: number[];
}

/** scipy.ndimage's 1-D Gaussian kernel (`_gaussian_kernel1d`, order 0). */
function gaussianTaps(sigma: number, truncate: number): Float64Array {
  const radius = Math.trunc(truncate * sigma + 0.5);
  const taps = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let i = 0; i < taps.length; i++) {
    const x = i - radius;
    taps[i] = Math.exp((-0.5 / (sigma * sigma)) * x * x);
    sum += taps[i];
  }
  for (let i = 0; i < taps.length; i++) taps[i] /= sum;
  return taps;
}

const asFloat64 = (data: MetricImage['data']): Float64Array => (data instanceof Float64Array ? data : new Float64Array(data));

/** Window sums of x, y, x², y², xy down each of a row's W·C columns (the vertical pass). */
interface ColumnSums {
  x: Float64Array;
  y: Float64Array;
  xx: Float64Array;
  yy: Float64Array;
  xy: Float64Array;
}

/** The SSIM of one window from its means and raw second moments, term by term as skimage forms it. */
function windowSsim(ux: number, uy: number, uxx: number, uyy: number, uxy: number, covNorm: number, c1: number, c2: number): number {
  const vx = covNorm * (uxx - ux * ux);
  const vy = covNorm * (uyy - uy * uy);
  const vxy = covNorm * (uxy - ux * uy);
  return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
}

/**
 * Unweighted column sums over rows i..i+n−1: summed from scratch for i = 0, then slid down one
 * row per call. Left unnormalised so 8-bit input keeps exact integer sums.
 */
function uniformColumns(x: Float64Array, y: Float64Array, i: number, n: number, rowLen: number, v: ColumnSums): void {
  if (i === 0) {
    v.x.fill(0); v.y.fill(0); v.xx.fill(0); v.yy.fill(0); v.xy.fill(0);
    for (let r = 0; r < n; r++) {
      for (let k = 0, p = r * rowLen; k < rowLen; k++, p++) {
        const a = x[p], b = y[p];
        v.x[k] += a; v.y[k] += b; v.xx[k] += a * a; v.yy[k] += b * b; v.xy[k] += a * b;
      }
    }
    return;
  }
  const { x: sx, y: sy, xx: sxx, yy: syy, xy: sxy } = v;
  for (let k = 0, pin = (i + n - 1) * rowLen, pout = (i - 1) * rowLen; k < rowLen; k++, pin++, pout++) {
    const a = x[pin], b = y[pin], a0 = x[pout], b0 = y[pout];
    sx[k] += a - a0; sy[k] += b - b0; sxx[k] += a * a - a0 * a0; syy[k] += b * b - b0 * b0; sxy[k] += a * b - a0 * b0;
  }
}

/**
 * Gaussian-weighted column sums over rows i..i+n−1. Squares and products are formed per tap
 * rather than stored as planes: the pass is bound by loads, and two per tap beat five
 * (measured ~105 vs ~140 ms per 512×512 RGB pair).
 */
function gaussianColumns(x: Float64Array, y: Float64Array, i: number, taps: Float64Array, rowLen: number, v: ColumnSums): void {
  const n = taps.length;
  const { x: vx, y: vy, xx: vxx, yy: vyy, xy: vxy } = v;
  for (let k = 0; k < rowLen; k++) {
    let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (let t = 0, p = i * rowLen + k; t < n; t++, p += rowLen) {
      const w = taps[t];
      const a = x[p], b = y[p];
      const wa = w * a, wb = w * b;
      sx += wa; sy += wb; sxx += wa * a; syy += wb * b; sxy += wa * b;
    }
    vx[k] = sx; vy[k] = sy; vxx[k] = sxx; vyy[k] = syy; vxy[k] = sxy;
  }
}

/** Sum of one output row's SSIM for channel `ch`: a running n-wide sum along the row. */
function uniformRow(v: ColumnSums, ch: number, channels: number, n: number, outW: number, covNorm: number, c1: number, c2: number): number {
  const { x: vx, y: vy, xx: vxx, yy: vyy, xy: vxy } = v;
  const norm = 1 / (n * n);
  let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (let t = 0, p = ch; t < n; t++, p += channels) {
    sx += vx[p]; sy += vy[p]; sxx += vxx[p]; syy += vyy[p]; sxy += vxy[p];
  }
  let sum = 0;
  for (let j = 0; ; j++) {
    sum += windowSsim(sx * norm, sy * norm, sxx * norm, syy * norm, sxy * norm, covNorm, c1, c2);
    if (j + 1 === outW) return sum;
    const pin = (j + n) * channels + ch, pout = j * channels + ch;
    sx += vx[pin] - vx[pout]; sy += vy[pin] - vy[pout]; sxx += vxx[pin] - vxx[pout]; syy += vyy[pin] - vyy[pout]; sxy += vxy[pin] - vxy[pout];
  }
}

/** Sum of one output row's SSIM for channel `ch`: symmetric taps pair columns t and n−1−t. */
function gaussianRow(v: ColumnSums, ch: number, channels: number, taps: Float64Array, outW: number, covNorm: number, c1: number, c2: number): number {
  const { x: vx, y: vy, xx: vxx, yy: vyy, xy: vxy } = v;
  const radius = (taps.length - 1) / 2;
  const centre = taps[radius];
  let sum = 0;
  for (let j = 0; j < outW; j++) {
    const m = (j + radius) * channels + ch;
    let sx = centre * vx[m], sy = centre * vy[m], sxx = centre * vxx[m], syy = centre * vyy[m], sxy = centre * vxy[m];
    for (let t = 0, lo = j * channels + ch, hi = lo + 2 * radius * channels; t < radius; t++, lo += channels, hi -= channels) {
      const w = taps[t];
      sx += w * (vx[lo] + vx[hi]); sy += w * (vy[lo] + vy[hi]); sxx += w * (vxx[lo] + vxx[hi]); syy += w * (vyy[lo] + vyy[hi]); sxy += w * (vxy[lo] + vxy[hi]);
    }
    sum += windowSsim(sx, sy, sxx, syy, sxy, covNorm, c1, c2);
  }
  return sum;
}

/**
 * Mean SSIM per channel over the cropped map, i.e. over the (H−n+1)×(W−n+1) valid windows.
 * Works on interleaved rows directly: the vertical pass treats a row's W·C samples alike, the
 * horizontal pass strides by C per channel.
 */
function channelMeans(x: Float64Array, y: Float64Array, width: number, height: number, channels: number, spec: SsimConventionSpec, dataRange: number): number[] {
  const n = spec.winSize;
  const outH = height - n + 1;
  const outW = width - n + 1;
  const rowLen = width * channels;
  const c1 = (spec.k1 * dataRange) ** 2;
  const c2 = (spec.k2 * dataRange) ** 2;
  const covNorm = spec.sampleCovariance ? (n * n) / (n * n - 1) : 1;
  const taps = spec.window === 'gaussian' ? gaussianTaps(spec.sigma!, spec.truncate!) : undefined;
  if (taps && taps.length !== n) throw new Error(`ssim: σ ${spec.sigma} truncated at ${spec.truncate}σ gives ${taps.length} taps, not ${n}`);
  const v: ColumnSums = { x: new Float64Array(rowLen), y: new Float64Array(rowLen), xx: new Float64Array(rowLen), yy: new Float64Array(rowLen), xy: new Float64Array(rowLen) };
  const sums = new Float64Array(channels);
  for (let i = 0; i < outH; i++) {
    if (taps) gaussianColumns(x, y, i, taps, rowLen, v);
    else uniformColumns(x, y, i, n, rowLen, v);
    for (let ch = 0; ch < channels; ch++) {
      sums[ch] += taps ? gaussianRow(v, ch, channels, taps, outW, covNorm, c1, c2) : uniformRow(v, ch, channels, n, outW, covNorm, c1, c2);
    }
  }
  return Array.from(sums, (s) => s / (outH * outW));
}

/**
 * Mean SSIM of two same-shaped H×W×C images in the named convention (see SSIM_CONVENTIONS):
 * per channel, then averaged over channels. 8-bit images default to a data range of 255; float
 * images must state it (1 for [0, 1] data: passing 2 there, skimage 0.19's float default,
 * inflates the score). Computed in float64 whatever the input type; note that skimage keeps
 * float32 input in float32, so compare against it with float64 arrays.
 */
export function ssim(a: MetricImage, b: MetricImage, opts: SsimOptions): SsimResult {
  assertSameShape(a, b, 'ssim');
  const spec = SSIM_CONVENTIONS[opts.convention];
  if (!spec) throw new Error(`ssim: unknown convention ${JSON.stringify(opts.convention)} (skimage or wang)`);
  const dataRange = resolveDataRange(a, b, opts.dataRange, 'ssim');
  if (a.width < spec.winSize || a.height < spec.winSize) {
    throw new Error(`ssim: a ${a.height}×${a.width} image is smaller than the ${opts.convention} convention's ${spec.winSize}×${spec.winSize} window`);
  }
  const perChannel = channelMeans(asFloat64(a.data), asFloat64(b.data), a.width, a.height, a.channels, spec, dataRange);
  const ssimValue = perChannel.reduce((s, v) => s + v, 0) / perChannel.length;
  return { metric: 'ssim', convention: opts.convention, dataRange, ssim: ssimValue, perChannel };
}

/** Mean SSIM over (reference, test) pairs in one convention: the mean of the per-image values. */
export function meanSsim(pairs: Iterable<readonly [MetricImage, MetricImage]>, opts: SsimOptions): SsimSummary {
  const values: number[] = [];
  let dataRange = opts.dataRange ?? NaN;
  for (const [ref, test] of pairs) {
    const r = ssim(ref, test, opts);
    dataRange = r.dataRange;
    values.push(r.ssim);
  }
  if (values.length === 0) throw new Error('ssim: no image pairs');
  return { metric: 'ssim', convention: opts.convention, dataRange, count: values.length, mean: values.reduce((s, v) => s + v, 0) / values.length, values };
}
