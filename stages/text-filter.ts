import { drop, SampleError, type Sample } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';

/**
 * Text thresholds of the paper's "dense and small text" removal. The paper gives no numbers;
 * these defaults are ours, with reasons:
 * - `max_density` 0.15: text boxes over 15% of the image make it a poster, a page or a meme
 *   first and a picture second; captions and logos over photographs stay well under it.
 * - `min_text_height` 0.03: word boxes under 3% of the image height (15 px at 512) are smaller
 *   than one 16-px patch of the BIT tokenizer at 512, so it cannot reproduce them and the model
 *   learns to draw gibberish; larger text is legible after tokenisation.
 */
export interface TextThresholds {
  /** Drop when the union of word boxes covers more than this fraction of the image. */
  max_density?: number;
  /** Drop when there is text and the median word height is below this fraction of the image height. */
  min_text_height?: number;
}

export const TEXT_DEFAULTS = { max_density: 0.15, min_text_height: 0.03 } as const;

/** The OCR fields a verdict needs (written by the OCR stages, read back from records by refilter). */
export interface TextFields {
  ocr_density?: unknown;
  ocr_words?: unknown;
  ocr_median_height?: unknown;
}

const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null);

/**
 * The drop a sample's OCR fields call for, or null to keep it; 'unannotated' when the fields are
 * missing. Shared by the stage and by `bitprep refilter`, so both decide alike.
 */
export function textVerdict(fields: TextFields, t: TextThresholds = {}): { by: 'text_density' | 'text_height'; value: number } | null | 'unannotated' {
  const density = num(fields.ocr_density);
  const words = num(fields.ocr_words);
  if (density === null || words === null) return 'unannotated';
  const maxDensity = t.max_density ?? TEXT_DEFAULTS.max_density;
  const minHeight = t.min_text_height ?? TEXT_DEFAULTS.min_text_height;
  if (density > maxDensity) return { by: 'text_density', value: density };
  const median = num(fields.ocr_median_height);
  if (words > 0 && median !== null && median < minHeight) return { by: 'text_height', value: median };
  return null;
}

/** Drops ok samples by their OCR fields (funnel lines `text_density`, `text_height`); an unannotated sample fails. */
export function textFilter(t: TextThresholds = {}): Stage {
  return sampleStage('text-filter', (s: Sample) => {
    const v = textVerdict(s.fields, t);
    if (v === 'unannotated') throw new SampleError('no_ocr_fields', `sample ${s.key} has no OCR fields; put an OCR stage before the text filter`);
    if (v) drop(s, v.by, v.value);
  });
}
