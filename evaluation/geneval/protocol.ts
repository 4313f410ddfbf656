/**
 * The knobs of evaluate_images.py, named as its `--options` keys; the defaults are the official ones
 * and the published numbers use them.
 */
export interface GenevalProtocol {
  /** Keep detections with score > threshold (all tags but counting). */
  threshold: number;
  /** Keep detections with score > this when the tag is "counting". */
  counting_threshold: number;
  /** At most this many detections per class, highest scores first. */
  max_objects: number;
  /** Same-class NMS: drop a box whose IoU with a kept one is ≥ this; 1 turns NMS off. */
  max_overlap: number;
  /** Margin, as a fraction of the two boxes' summed sizes, that an offset must exceed to count as a relation. */
  position_threshold: number;
}

export const OFFICIAL_PROTOCOL: Readonly<GenevalProtocol> = Object.freeze({
  threshold: 0.3,
  counting_threshold: 0.9,
  max_objects: 16,
  max_overlap: 1.0,
  position_threshold: 0.1,
});
