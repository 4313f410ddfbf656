/**
 * A STAND-IN for clean-fid's Inception (inception-2015-12-05), for tests and the offline demo:
 * NOT Inception, and FIDs computed with it are not FIDs anyone publishes. It has the real
 * contract (inception-features.ts): input `images` FP32 [N, 3, 299, 299] in [0, 255], output
 * `features` FP32 [N, D] (D = 2048 like pool3 by default, smaller for quick tests), dynamic N.
 *
 * Graph: ×1/255 → AveragePool 23×23 stride 23 (a 13×13 grid per channel, 507 values) → Flatten →
 * Gemm 507→D with seeded weights. Cheap (a few MFLOP per image) and linear in the pixels, so
 * different images give clearly different features and any preprocessing change moves them.
 */
import { OnnxGraphBuilder } from '../../src/models/onnx-builder.js';
import { seededRandom } from '../../src/seeded-random.js';
import { INCEPTION_CONTRACT } from '../metrics/inception-features.js';

/** Label for outputs computed with the stand-in. */
export const INCEPTION_STANDIN_LABEL = 'STAND-IN inception (not inception-2015-12-05; numbers are not comparable)';

/** ONNX bytes of the stand-in; the same seed and dimension give the same bytes. */
export function buildInceptionStandinModel(seed: number, dim = 2048): Uint8Array {
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`inception stand-in: dimension ${dim} is not a positive integer`);
  const rand = seededRandom(seed);
  const size = INCEPTION_CONTRACT.size;
  const cell = 23;
  const grid = Math.floor(size / cell);
  const flat = 3 * grid * grid;
  const g = new OnnxGraphBuilder(`inception-standin-${seed}-${dim}`);
  const x = g.input(INCEPTION_CONTRACT.input, 'FP32', [-1, 3, size, size]);
  const scaled = g.op('Mul', [x, g.initializer('inv255', 'FP32', [], [1 / 255])]);
  const pooled = g.op('AveragePool', [scaled], { kernel_shape: [cell, cell], strides: [cell, cell] });
  const features = g.op('Flatten', [pooled], { axis: 1 });
  const w = Float32Array.from({ length: flat * dim }, () => (rand() * 2 - 1) / Math.sqrt(flat));
  const b = Float32Array.from({ length: dim }, () => rand());
  const out = g.gemm(features, g.initializer('proj_w', 'FP32', [flat, dim], w), g.initializer('proj_b', 'FP32', [dim], b), {}, INCEPTION_CONTRACT.output);
  g.output(out, 'FP32', [-1, dim]);
  return g.build();
}
