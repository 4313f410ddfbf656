import type { ColorClassifier } from './color.js';
import { COLORS } from '../geneval-format/colors.js';
import type { Detection } from './detections.js';
import type { GenevalMetadata } from '../geneval-format/metadata.js';
import { relativePosition } from './position.js';

export interface Verdict {
  correct: boolean;
  /** The official reasons, one per failed check, joined by newlines; empty when correct. */
  reason: string;
}

/**
 * GenEval's correctness of one image (evaluate() in evaluate_images.py) from its kept detections
 * (selectDetections): include clauses AND, exclude clauses OR.
 *
 * - Include: the clause's objects are the top `count` kept detections of its class; fewer →
 *   "expected {class}>={count}, found {n}".
 * - Color (when asked): the classifier colors those objects; fewer than `count` of the asked color →
 *   "expected {color} {class}>={count}, found {k} {color}; and {n1} {c1}, {n2} {c2}" (every color
 *   found, in COLORS order).
 * - Position (when asked, and only if the clause matched so far): the target clause's group must
 *   have matched ("no target for {class} to be {relation}" otherwise); then every object must bear
 *   the relation to every target object; the first pair that does not gives
 *   "expected {class} {relation} target, found {relations joined by ' and '} target" and ends the
 *   clause (no relation leaves two spaces: "found  target", as officially). Officially the found
 *   relations are a Python set, whose order varies between runs; here they are in the order
 *   left of, right of, above, below.
 * - Exclude: wrong when the class has ≥ `count` kept detections: "expected {class}<{count}, found {n}".
 *
 * Reason texts are the official f-strings verbatim.
 */
export async function evaluateImage(
  imagePath: string,
  kept: ReadonlyMap<string, readonly Detection[]>,
  metadata: GenevalMetadata,
  colors: ColorClassifier,
  positionThreshold = 0.1,
): Promise<Verdict> {
  let correct = true;
  const reasons: string[] = [];
  const matchedGroups: (readonly Detection[] | null)[] = [];
  for (const req of metadata.include ?? []) {
    const cls = req.class;
    let matched = true;
    const found = (kept.get(cls) ?? []).slice(0, req.count);
    if (found.length < req.count) {
      correct = matched = false;
      reasons.push(`expected ${cls}>=${req.count}, found ${found.length}`);
    } else {
      if (req.color !== undefined) {
        const got = await colors.classify(imagePath, cls, found);
        if (got.length !== found.length) throw new Error(`${imagePath}: the color classifier gave ${got.length} color(s) for ${found.length} "${cls}" object(s)`);
        const n = (c: string) => got.filter((g) => g === c).length;
        if (n(req.color) < req.count) {
          correct = matched = false;
          const tally = COLORS.filter((c) => n(c) > 0).map((c) => `${n(c)} ${c}`).join(', ');
          reasons.push(`expected ${req.color} ${cls}>=${req.count}, found ${n(req.color)} ${req.color}; and ${tally}`);
        }
      }
      if (req.position !== undefined && matched) {
        const [relation, targetIndex] = req.position;
        const targets = matchedGroups[targetIndex];
        if (targets === null || targets === undefined) {
          correct = matched = false;
          reasons.push(`no target for ${cls} to be ${relation}`);
        } else {
          outer: for (const obj of found) {
            for (const target of targets) {
              const rels = relativePosition(obj.box, target.box, positionThreshold);
              if (!rels.includes(relation)) {
                correct = matched = false;
                reasons.push(`expected ${cls} ${relation} target, found ${rels.join(' and ')} target`);
                break outer;
              }
            }
          }
        }
      }
    }
    matchedGroups.push(matched ? found : null);
  }
  for (const req of metadata.exclude ?? []) {
    const n = kept.get(req.class)?.length ?? 0;
    if (n >= req.count) {
      correct = false;
      reasons.push(`expected ${req.class}<${req.count}, found ${n}`);
    }
  }
  return { correct, reason: reasons.join('\n') };
}
