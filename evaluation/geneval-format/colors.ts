/** The ten colors of GenEval's CLIP zero-shot classifier, in its order (reasons list counts in this order). */
export const COLORS = ['red', 'orange', 'yellow', 'green', 'blue', 'purple', 'pink', 'brown', 'black', 'white'] as const;
export type Color = (typeof COLORS)[number];
