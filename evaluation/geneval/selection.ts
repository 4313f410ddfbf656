import type { Detection } from './detections.js';
import { numpyArgsort } from './numpy-argsort.js';
import type { GenevalProtocol } from './protocol.js';

const f32 = Math.fround;

/**
 * IoU as GenEval's compute_iou: pixel-inclusive areas ((x2 − x1 + 1)·(y2 − y1 + 1), the old
 * mmdet/PASCAL convention), 0 when the union is empty. Precision follows numpy 1.23 (the official
 * environment) on float32 box values: a difference of two coordinates is float32, and everything
 * after `+ 1` is float64 because float32 scalars meeting Python numbers are promoted. Box values
 * are taken as float32, the detector's type.
 */
export function computeIou(a: readonly number[], b: readonly number[]): number {
  const area = (x1: number, y1: number, x2: number, y2: number) => Math.max(f32(x2 - x1) + 1, 0) * Math.max(f32(y2 - y1) + 1, 0);
  a = a.map(f32);
  b = b.map(f32);
  const inter = area(Math.max(a[0], b[0]), Math.max(a[1], b[1]), Math.min(a[2], b[2]), Math.min(a[3], b[3]));
  const union = area(a[0], a[1], a[2], a[3]) + area(b[0], b[1], b[2], b[3]) - inter;
  return union ? inter / union : 0;
}

/**
 * The detections GenEval keeps for one image, per class: score strictly above the threshold
 * (`counting_threshold` when the tag is "counting"), highest score first, at most `max_objects`,
 * then greedy same-class NMS when `max_overlap` < 1 (applied after the cap, as officially).
 * Classes left empty are absent from the result, as in the official `detected` dict.
 *
 * Scores are taken as float32 (Mask2Former's type): numpy compares a float32 array with a Python
 * float in float32, so a score of float32(0.3) = 0.30000001192… is not above 0.3. The order is
 * `np.argsort(scores)[::-1]` exactly (numpyArgsort), so equal scores are ordered as officially.
 */
export function selectDetections(byClass: ReadonlyMap<string, readonly Detection[]>, tag: string, p: GenevalProtocol): Map<string, Detection[]> {
  const threshold = f32(tag === 'counting' ? p.counting_threshold : p.threshold);
  const kept = new Map<string, Detection[]>();
  for (const [cls, list] of byClass) {
    const scores = list.map((d) => f32(d.score));
    let order = numpyArgsort(scores)
      .reverse()
      .filter((i) => scores[i] > threshold)
      .slice(0, p.max_objects);
    const out: Detection[] = [];
    while (order.length > 0) {
      const best = order.shift()!;
      out.push(list[best]);
      if (p.max_overlap !== 1) order = order.filter((i) => computeIou(list[best].box, list[i].box) < p.max_overlap);
    }
    if (out.length > 0) kept.set(cls, out);
  }
  return kept;
}
