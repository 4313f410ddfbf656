/**
 * PSNR as scikit-image's `peak_signal_noise_ratio` computes it, plus the helpers PSNR and SSIM
 * share (the image shape, data-range resolution).
 *
 * Per image: PSNR = 10·log10(R² / MSE), with MSE taken in float64 over every pixel and channel
 * and R the data range (255 for 8-bit input, stated by the caller for float input). Over a set of
 * images the reported number is the mean of the per-image dB values (FACTS.md "Tokenizer
 * reconstruction"), not the PSNR of the pooled MSE.
 */

/** An image as interleaved H×W×C samples: 8-bit (e.g. src/sample.ts's RawImage) or float. */
export interface MetricImage {
  data: Uint8Array | Uint8ClampedArray | Float32Array | Float64Array;
  width: number;
  height: number;
  channels: number;
}

/** Throws unless both images have the same positive shape and their buffers match it. */
export function assertSameShape(a: MetricImage, b: MetricImage, metric: string): void {
  for (const [name, im] of [['first', a], ['second', b]] as const) {
    if (!(Number.isInteger(im.width) && im.width > 0 && Number.isInteger(im.height) && im.height > 0 && Number.isInteger(im.channels) && im.channels > 0)) {
      throw new Error(`${metric}: ${name} image has a bad shape ${im.height}×${im.width}×${im.channels}`);
    }
    if (im.data.length !== im.width * im.height * im.channels) {
      throw new Error(`${metric}: ${name} image has ${im.data.length} samples, expected ${im.height}×${im.width}×${im.channels} = ${im.width * im.height * im.channels}`);
    }
  }
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
    throw new Error(`${metric}: images differ in shape: ${a.height}×${a.width}×${a.channels} vs ${b.height}×${b.width}×${b.channels}`);
  }
}

const isEightBit = (im: MetricImage): boolean => im.data instanceof Uint8Array || im.data instanceof Uint8ClampedArray;

/**
 * The data range R a metric uses: the caller's `dataRange` when given, else 255 when both images
 * are 8-bit. Float input without a stated range is refused: skimage 0.19 guesses from the dtype,
 * and for floats it guesses differently per metric (PSNR: 1 for non-negative data; SSIM: 2, the
 * float dtype's [-1, 1] span), and SSIM on [0, 1] data with R = 2 comes out inflated, because
 * C1 = (0.01·R)² and C2 = (0.03·R)² grow fourfold. A stated range avoids both.
 */
export function resolveDataRange(a: MetricImage, b: MetricImage, dataRange: number | undefined, metric: string): number {
  if (dataRange !== undefined) {
    if (!(Number.isFinite(dataRange) && dataRange > 0)) throw new Error(`${metric}: dataRange must be a positive finite number, got ${dataRange}`);
    return dataRange;
  }
  if (isEightBit(a) && isEightBit(b)) return 255;
  throw new Error(`${metric}: float images need an explicit dataRange (1 for [0, 1] data, 255 for [0, 255]); ` +
    'guessing it from the dtype is how SSIM ends up computed with data_range=2 on [0, 1] images');
}

/** A single image pair's PSNR. */
export interface PsnrResult {
  metric: 'psnr';
  /** skimage's peak_signal_noise_ratio: MSE in float64 over all pixels and channels. */
  convention: 'skimage';
  dataRange: number;
  /** dB; +Infinity when the images are identical (MSE 0), as skimage returns. */
  psnr: number;
  mse: number;
}

/** PSNR over a set of pairs. */
export interface PsnrSummary {
  metric: 'psnr';
  convention: 'skimage';
  aggregate: 'mean-of-per-image-db';
  dataRange: number;
  count: number;
  /** Mean of the per-image dB values; +Infinity as soon as one pair is identical (numpy.mean does the same). */
  mean: number;
  /** Mean over the pairs that differ (NaN when none does): the usable number when `identical` > 0. */
  meanFinite: number;
  /** How many pairs were identical (PSNR +Infinity). */
  identical: number;
  values: number[];
}

/** Mean squared error in float64 over every sample of two same-shaped images. */
export function meanSquaredError(a: MetricImage, b: MetricImage): number {
  assertSameShape(a, b, 'mse');
  const x = a.data;
  const y = b.data;
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    sum += d * d;
  }
  return sum / x.length;
}

/**
 * PSNR of `test` against `reference`: 10·log10(R²/MSE). R is `dataRange`, or 255 for 8-bit
 * images; float images must state it. Identical images give +Infinity.
 */
export function psnr(reference: MetricImage, test: MetricImage, opts: { dataRange?: number } = {}): PsnrResult {
  assertSameShape(reference, test, 'psnr');
  const dataRange = resolveDataRange(reference, test, opts.dataRange, 'psnr');
  const mse = meanSquaredError(reference, test);
  return { metric: 'psnr', convention: 'skimage', dataRange, psnr: 10 * Math.log10((dataRange * dataRange) / mse), mse };
}

/**
 * PSNR over (reference, test) pairs: the mean of per-image dB values. `mean` is +Infinity when
 * any pair is identical, so a perfect reconstruction is never averaged into a finite number
 * unnoticed; `meanFinite` and `identical` say what the rest scored and how many were skipped.
 */
export function meanPsnr(pairs: Iterable<readonly [MetricImage, MetricImage]>, opts: { dataRange?: number } = {}): PsnrSummary {
  const values: number[] = [];
  let dataRange = opts.dataRange ?? NaN;
  let sum = 0;
  let finiteSum = 0;
  let identical = 0;
  for (const [ref, test] of pairs) {
    const r = psnr(ref, test, opts);
    dataRange = r.dataRange;
    values.push(r.psnr);
    sum += r.psnr;
    if (r.psnr === Infinity) identical++;
    else finiteSum += r.psnr;
  }
  if (values.length === 0) throw new Error('psnr: no image pairs');
  const finite = values.length - identical;
  return {
    metric: 'psnr', convention: 'skimage', aggregate: 'mean-of-per-image-db', dataRange, count: values.length,
    mean: sum / values.length, meanFinite: finite > 0 ? finiteSum / finite : NaN, identical, values,
  };
}
