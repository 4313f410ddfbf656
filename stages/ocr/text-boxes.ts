/**
 * Word boxes and the text measures every OCR backend reports, in one place so the tesseract and
 * the text-detection backends are judged by the same arithmetic.
 */

/** One word (or text line, for detectors that do not split words), in pixels of the measured image. */
export interface TextBox {
  x0: number;
  y0: number;
  /** Exclusive right and bottom edges. */
  x1: number;
  y1: number;
  /** 0..1 (tesseract's 0..100 is divided by 100; a detector's mean box probability). */
  confidence: number;
  text?: string;
}

/** What the OCR stage writes into a sample's fields (and so into the records). */
export interface TextMeasures {
  /** Area of the union of the boxes over the image area, 0..1. */
  ocr_density: number;
  ocr_words: number;
  /** Box heights over the image height; null where there is no text. */
  ocr_median_height: number | null;
  ocr_min_height: number | null;
}

/** Area of the union of axis-aligned boxes, exact (coordinate compression; fine for the few hundred boxes of one image). */
export function unionArea(boxes: readonly TextBox[]): number {
  const live = boxes.filter((b) => b.x1 > b.x0 && b.y1 > b.y0);
  if (live.length === 0) return 0;
  const xs = [...new Set(live.flatMap((b) => [b.x0, b.x1]))].sort((a, b) => a - b);
  let area = 0;
  for (let i = 0; i + 1 < xs.length; i++) {
    const left = xs[i];
    const right = xs[i + 1];
    const spans = live.filter((b) => b.x0 <= left && b.x1 >= right).map((b) => [b.y0, b.y1] as const).sort((a, b) => a[0] - b[0]);
    let covered = 0;
    let end = -Infinity;
    for (const [y0, y1] of spans) {
      if (y1 <= end) continue;
      covered += y1 - Math.max(y0, end);
      end = y1;
    }
    area += covered * (right - left);
  }
  return area;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Density, word count and heights relative to a width × height image. */
export function measureText(boxes: readonly TextBox[], width: number, height: number): TextMeasures {
  const heights = boxes.map((b) => (b.y1 - b.y0) / height);
  return {
    ocr_density: Math.min(1, unionArea(boxes) / (width * height)),
    ocr_words: boxes.length,
    ocr_median_height: median(heights),
    ocr_min_height: heights.length > 0 ? Math.min(...heights) : null,
  };
}
