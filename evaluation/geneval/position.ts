import type { Relation } from '../geneval-format/metadata.js';

const f32 = Math.fround;

/**
 * The relations of box A to box B, as GenEval's relative_position: with centres c, sizes
 * d = (|x2 − x1|, |y2 − y1|), offset = cA − cB and revised = max(|offset| − t·(dA + dB), 0)·sign(offset)
 * (t = position_threshold, 0.1), there is no relation when both |revised| < 1e-3; otherwise
 * (dx, dy) = revised / ‖offset‖ and A is "left of" B if dx < −0.5, "right of" if dx > 0.5, "above"
 * if dy < −0.5, "below" if dy > 0.5 (image y grows downward). Zero, one or two relations
 * (e.g. left of and above on a diagonal).
 *
 * Every step is rounded to float32 as numpy computes it on Mask2Former's float32 boxes, so
 * boundary cases fall as they do officially; the one step that could still differ by an ulp is
 * ‖offset‖, which numpy gets from a BLAS sdot whose accumulation order is the BLAS library's.
 * Relations come in the order left of, right of, above, below.
 */
export function relativePosition(a: readonly number[], b: readonly number[], positionThreshold = 0.1): Relation[] {
  const [ax1, ay1, ax2, ay2] = a.map(f32);
  const [bx1, by1, bx2, by2] = b.map(f32);
  const t = f32(positionThreshold);
  const axis = (a1: number, a2: number, b1: number, b2: number) => {
    const offset = f32(f32(a1 + a2) / 2 - f32(b1 + b2) / 2);
    const size = f32(Math.abs(f32(a2 - a1)) + Math.abs(f32(b2 - b1)));
    const revised = Math.max(f32(Math.abs(offset) - f32(t * size)), 0) * Math.sign(offset);
    return { offset, revised };
  };
  const x = axis(ax1, ax2, bx1, bx2);
  const y = axis(ay1, ay2, by1, by2);
  const eps = f32(1e-3);
  if (Math.abs(x.revised) < eps && Math.abs(y.revised) < eps) return [];
  const norm = f32(Math.sqrt(f32(f32(x.offset * x.offset) + f32(y.offset * y.offset))));
  const dx = f32(x.revised / norm);
  const dy = f32(y.revised / norm);
  const out: Relation[] = [];
  if (dx < -0.5) out.push('left of');
  if (dx > 0.5) out.push('right of');
  if (dy < -0.5) out.push('above');
  if (dy > 0.5) out.push('below');
  return out;
}
