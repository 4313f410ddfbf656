import type { TextBox, TextMeasures } from '../stages/ocr/text-boxes.js';

/** The default thresholds of the OCR filter: drop dense text or small text. */
export const MAX_DENSITY = 0.15;
export const MIN_MEDIAN_HEIGHT = 0.03;

/** What the scoring needs of a labelled image (the held-out set's and the tuning set's both have it). */
export interface Scored {
  kind: string;
  words: TextBox[];
  truth: TextMeasures;
}

export const decide = (m: TextMeasures): 'keep' | 'drop' =>
  m.ocr_density > MAX_DENSITY || (m.ocr_words > 0 && m.ocr_median_height !== null && m.ocr_median_height < MIN_MEDIAN_HEIGHT) ? 'drop' : 'keep';

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface Agreement {
  all: number;
  byKind: Record<string, string>;
  /** Images whose truth median word height is 1–2% of the image height. */
  smallText: number;
  /** Text-free photographs dropped. */
  cleanDropped: string;
  /** Images with text where no word was found. */
  textMissed: string;
  /** Median of measured / true density over images with text where some was found. */
  densityRatio: number;
}

/** How often measured keep/drop decisions agree with the truth's, overall and by the figures the issue names. */
export function agreement(images: readonly Scored[], measures: readonly TextMeasures[]): Agreement {
  const ok = images.map((m, i) => decide(m.truth) === decide(measures[i]));
  const byKind: Record<string, string> = {};
  const groups = new Map<string, boolean[]>();
  images.forEach((m, i) => {
    if (!groups.has(m.kind)) groups.set(m.kind, []);
    groups.get(m.kind)!.push(ok[i]);
  });
  for (const [k, v] of [...groups.entries()].sort()) byKind[k] = `${v.filter(Boolean).length}/${v.length}`;
  const small = images.flatMap((m, i) => (m.truth.ocr_median_height !== null && m.truth.ocr_median_height >= 0.01 && m.truth.ocr_median_height <= 0.02 ? [ok[i]] : []));
  const clean = images.flatMap((m, i) => (m.truth.ocr_words === 0 ? [decide(measures[i]) === 'drop'] : []));
  const withText = images.flatMap((m, i) => (m.truth.ocr_words > 0 ? [i] : []));
  const ratios = withText.filter((i) => measures[i].ocr_words > 0).map((i) => measures[i].ocr_density / images[i].truth.ocr_density);
  return {
    all: ok.filter(Boolean).length / ok.length,
    byKind,
    smallText: small.filter(Boolean).length / Math.max(1, small.length),
    cleanDropped: `${clean.filter(Boolean).length} of ${clean.length}`,
    textMissed: `${withText.filter((i) => measures[i].ocr_words === 0).length} of ${withText.length}`,
    densityRatio: ratios.length > 0 ? median(ratios) : NaN,
  };
}
