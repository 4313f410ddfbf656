/**
 * A stand-in for the CLIP ViT-L/14 image tower, for tests and the demo: NOT CLIP, and its
 * "embeddings" mean nothing. It has the real export's interface (input `pixel_values`
 * FP32 [N, 3, 224, 224], output `image_embeds` FP32 [N, 768], dynamic N), so the aesthetic stage
 * runs end to end on ONNX Runtime without downloading weights. Scores computed with it are not
 * aesthetic scores.
 *
 * Graph: Conv 3→4 (16×16, stride 16) → Relu → Flatten (4·14·14 = 784) → Gemm 784→768, with
 * seeded weights, so different images give clearly different embeddings.
 */
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { seededRandom } from '../src/seeded-random.js';

export const CLIP_STANDIN_INPUT = 'pixel_values';
export const CLIP_STANDIN_OUTPUT = 'image_embeds';
export const CLIP_STANDIN_DIM = 768;

/** ONNX bytes of the stand-in tower; the same seed gives the same bytes. */
export function buildClipStandinModel(seed: number): Uint8Array {
  const rand = seededRandom(seed);
  const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
  const channels = 4;
  const patch = 16;
  const grid = 224 / patch;
  const flat = channels * grid * grid;
  const g = new OnnxGraphBuilder(`clip-standin-${seed}`);
  const x = g.input(CLIP_STANDIN_INPUT, 'FP32', [-1, 3, 224, 224]);
  const conv = g.conv(
    x,
    g.initializer('conv_w', 'FP32', [channels, 3, patch, patch], uniform(channels * 3 * patch * patch, 1 / Math.sqrt(3 * patch * patch))),
    g.initializer('conv_b', 'FP32', [channels], uniform(channels, 0.5)),
    { kernelShape: [patch, patch], strides: [patch, patch] },
  );
  const features = g.op('Flatten', [g.relu(conv)], { axis: 1 });
  const proj = g.gemm(
    features,
    g.initializer('proj_w', 'FP32', [flat, CLIP_STANDIN_DIM], uniform(flat * CLIP_STANDIN_DIM, 1 / Math.sqrt(flat))),
    g.initializer('proj_b', 'FP32', [CLIP_STANDIN_DIM], uniform(CLIP_STANDIN_DIM, 0.1)),
    {},
    CLIP_STANDIN_OUTPUT,
  );
  g.output(proj, 'FP32', [-1, CLIP_STANDIN_DIM]);
  return g.build();
}
