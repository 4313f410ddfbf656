/**
 * A stand-in for the BIT encoder, for tests and the demo: NOT the BIT tokenizer, and its codes
 * decode to nothing. It has exactly the real export's contract (see stages/bit-encoder.ts), so
 * pre-encode, `bitprep serve` and KServe clients run end to end on ONNX Runtime without weights.
 *
 * Graph: one Conv 3→64 with kernel = stride = (S/16, S/8), giving a 16×8 grid of patches
 * (32×64 pixels each at S = 512), then Reshape [N, 64, 128] and Transpose → `logits` [N, 128, 64].
 *
 * Token order: token t = row · 8 + col (row-major over the grid), covering image rows
 * [row·S/16, (row+1)·S/16) and columns [col·S/8, (col+1)·S/8); bit j of token t is filter j:
 *   logits[n, t, j] = bias[j] + Σ_{c, y, x} weights[j, c, y, x] · image[n, c, row·kh + y, col·kw + x].
 */
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { LATENT_BITS_PER_TOKEN, LATENT_TOKENS } from '../src/formats/latent-bits.js';
import { seededRandom } from '../src/seeded-random.js';
import { BIT_ENCODER_CONTRACT, type BitEncoderInputDtype } from './bit-encoder.js';

/** Patch grid of the stand-in: 16 rows × 8 columns = 128 tokens. */
export const BIT_STANDIN_GRID = { rows: 16, cols: 8 } as const;

export interface BitEncoderStandin {
  /** Serialized ONNX model. */
  onnx: Uint8Array;
  /** Conv weights, row-major [64, 3, kh, kw] (OIHW). */
  weights: Float32Array;
  /** One bias per bit, [64]. */
  bias: Float32Array;
  /** Patch (= kernel = stride) height and width: [size / 16, size / 8]. */
  kernel: [number, number];
  size: number;
}

/**
 * Builds the stand-in for `size`×`size` images (a multiple of 16, default 512); the same seed
 * and size give the same bytes. `dtype: 'FP16'` declares an FP16 `image` input (cast to float32
 * inside) while `logits` stay FP32, as the FP16 export does.
 */
export function buildBitEncoderStandin(seed: number, size: number = BIT_ENCODER_CONTRACT.input.defaultSize, opts: { dtype?: BitEncoderInputDtype } = {}): BitEncoderStandin {
  const { rows, cols } = BIT_STANDIN_GRID;
  if (!(Number.isInteger(size) && size >= rows && size % rows === 0)) throw new RangeError(`bit encoder stand-in: size must be a positive multiple of ${rows}, got ${size}`);
  const kh = size / rows;
  const kw = size / cols;
  const bits = LATENT_BITS_PER_TOKEN;
  const fan = 3 * kh * kw;
  const rand = seededRandom(seed);
  const weights = new Float32Array(bits * fan);
  // Each filter sums to ~zero, so brightness alone does not set a bit: a flat patch gets the
  // bias's sign, which is positive for about half the bits, and texture moves the rest.
  for (let o = 0; o < bits; o++) {
    const f = weights.subarray(o * fan, (o + 1) * fan);
    let mean = 0;
    for (let i = 0; i < fan; i++) mean += (f[i] = (rand() * 2 - 1) * Math.sqrt(3 / fan));
    mean /= fan;
    for (let i = 0; i < fan; i++) f[i] -= mean;
  }
  const bias = Float32Array.from({ length: bits }, () => (rand() * 2 - 1) * 0.1);

  const g = new OnnxGraphBuilder(`bit-encoder-standin-${seed}-${size}`, { opset: 17, dynamicDim: 'N' });
  const dtype = opts.dtype ?? 'FP32';
  const input = g.input(BIT_ENCODER_CONTRACT.input.name, dtype, [-1, 3, size, size]);
  const x = dtype === 'FP32' ? input : g.cast(input, 'FP32');
  const conv = g.conv(
    x,
    g.initializer('patch_w', 'FP32', [bits, 3, kh, kw], weights),
    g.initializer('patch_b', 'FP32', [bits], bias),
    { kernelShape: [kh, kw], strides: [kh, kw] },
  );
  // [N, 64, 16, 8] → [N, 64, 128] flattens the grid row-major, which is the token order above.
  const flat = g.reshape(conv, [0, bits, LATENT_TOKENS]);
  const logits = g.transpose(flat, [0, 2, 1], BIT_ENCODER_CONTRACT.output.name);
  g.output(logits, 'FP32', [-1, LATENT_TOKENS, bits]);
  return { onnx: g.build(), weights, bias, kernel: [kh, kw], size };
}
