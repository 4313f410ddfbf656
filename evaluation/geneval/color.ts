import type { Color } from '../geneval-format/colors.js';
import type { Detection } from './detections.js';

/**
 * Gives each detected object of one class its color. The official evaluator classifies the crops of
 * an include clause's objects together (one CLIP batch), hence one call per clause with all its
 * objects, in score order; the answer has one color per object, in the same order.
 * `imagePath` is the image file as found on disk; `className` feeds the CLIP templates
 * ("a photo of a {c} {cls}"…), which a CLIP implementation needs.
 */
export interface ColorClassifier {
  /** What gave the colors, recorded in the summary (e.g. "detections", "clip ViT-L-14 openai"). */
  readonly name: string;
  classify(imagePath: string, className: string, objects: readonly Detection[]): Promise<Color[]>;
}

/** Colors from the detections file's own per-box labels (`color`), e.g. a CLIP pass run next to the detector. */
export class FromDetections implements ColorClassifier {
  readonly name = 'detections';

  async classify(imagePath: string, className: string, objects: readonly Detection[]): Promise<Color[]> {
    return objects.map((o, i) => {
      if (o.color === undefined) {
        throw new Error(`${imagePath}: the prompt asks for the color of "${className}" but its detection #${i + 1} (score ${o.score}) has no color label; add "color" to its boxes or use a color classifier`);
      }
      return o.color;
    });
  }
}
