/**
 * A stand-in for GenEval's detector (Mask2Former Swin-S), for tests and the offline demo: NOT a
 * detector, its detections mean nothing and scores computed with it are not GenEval scores. It has
 * the real tensor contract of TensorDetector (input `image` UINT8 [1, H, W, 3]; outputs `boxes`
 * FP32 [K, 4], `scores` FP32 [K], `labels` INT64 [K], `masks` UINT8 [K, H, W]) and answers with a
 * deterministic function of the image, so every code path (boxes, scores, labels, masks) runs:
 *
 * - K = 2 boxes at seeded fractions of the image (one upper left, one lower right);
 * - labels from the mean red and mean blue: floor(80 · mean / 256);
 * - scores 0.5 + 0.5 · mean green / 255 and 0.95 − 0.6 · mean red / 255 (both above 0.3);
 * - masks: pixels brighter than the image's mean brightness, and the others.
 */
import onnxProto from 'onnx-proto';
import { OnnxGraphBuilder } from '../../src/models/onnx-builder.js';
import { OnnxTensorModel } from '../../src/models/onnx-model.js';
import { seededRandom } from '../../src/seeded-random.js';
import { TensorDetector, type TensorDetectorOptions } from '../geneval/detector.js';

/** The name detections and summaries carry, so nobody mistakes its output for a real detector's. */
export const DETECTOR_STANDIN_NAME = 'detector-standin (STAND-IN: not Mask2Former, detections mean nothing)';

/** ONNX bytes of the stand-in detector; the same seed gives the same bytes. */
export function buildDetectorStandinModel(seed: number): Uint8Array {
  const rand = seededRandom(seed);
  const frac = (lo: number, hi: number) => lo + (hi - lo) * rand();
  // [x1, y1, x2, y2] as fractions of [W, H, W, H]: upper-left and lower-right boxes.
  const fractions = [frac(0.05, 0.15), frac(0.05, 0.15), frac(0.35, 0.5), frac(0.35, 0.5), frac(0.5, 0.65), frac(0.5, 0.65), frac(0.85, 0.95), frac(0.85, 0.95)];
  const g = new OnnxGraphBuilder(`detector-standin-${seed}`);
  const image = g.input('image', 'UINT8', [1, -1, -1, 3]);
  const x = g.cast(image, 'FP32');
  const whwh = g.cast(g.op('Gather', [g.op('Shape', [image]), g.initializer('whwh_idx', 'INT64', [4], [2, 1, 2, 1])], { axis: 0 }), 'FP32');
  const boxes = g.op('Mul', [g.initializer('box_frac', 'FP32', [2, 4], fractions), whwh], {}, 'boxes');
  const means = g.op('Div', [g.reduceMean(x, [0, 1, 2], false), g.initializer('c255', 'FP32', [], [255])]);
  const pick = (name: string, idx: number[]) => g.op('Gather', [means, g.initializer(name, 'INT64', [2], idx)], { axis: 0 });
  const cls = g.op('Floor', [g.op('Mul', [pick('label_ch', [0, 2]), g.initializer('c80', 'FP32', [], [80 * 255 / 256])])]);
  const labels = g.cast(g.op('Min', [cls, g.initializer('c79', 'FP32', [], [79])]), 'INT64', 'labels');
  const scores = g.op('Add', [g.op('Mul', [pick('score_ch', [1, 0]), g.initializer('score_mul', 'FP32', [2], [0.5, -0.6])]), g.initializer('score_add', 'FP32', [2], [0.5, 0.95])], {}, 'scores');
  const lum = g.reduceMean(x, [3], false);
  const bright = g.op('Greater', [lum, g.reduceMean(lum, [0, 1, 2], false)]);
  const masks = g.cast(g.op('Concat', [bright, g.op('Not', [bright])], { axis: 0 }), 'UINT8', 'masks');
  g.output(boxes, 'FP32', [-1, 4]);
  g.output(scores, 'FP32', [-1]);
  g.output(labels, 'INT64', [-1]);
  g.output(masks, 'UINT8', [-1, -1, -1]);
  const proto = g.toProto();
  // The builder names every dynamic axis alike; H, W and K are different sizes, so name them apart.
  const dimNames: Record<string, string[]> = { image: ['', 'H', 'W', ''], boxes: ['K', ''], scores: ['K'], labels: ['K'], masks: ['K', 'H', 'W'] };
  for (const v of [...(proto.graph?.input ?? []), ...(proto.graph?.output ?? [])]) {
    v.type?.tensorType?.shape?.dim?.forEach((d, i) => {
      const name = dimNames[v.name ?? '']?.[i];
      if (d.dimParam && name) d.dimParam = name;
    });
  }
  return onnxProto.onnx.ModelProto.encode(proto).finish();
}

/** The stand-in as a ready TensorDetector (ONNX Runtime on CPU), named DETECTOR_STANDIN_NAME. */
export async function loadDetectorStandin(seed: number, opts: Omit<TensorDetectorOptions, 'name'> = {}): Promise<TensorDetector> {
  const model = await OnnxTensorModel.load(buildDetectorStandinModel(seed), { name: 'detector-standin' });
  return TensorDetector.create([{ name: 'detector-standin-0', client: model }], { ...opts, name: DETECTOR_STANDIN_NAME });
}
