import { z } from 'zod';
import { drop, SampleError, type Sample } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { parseStageOptions } from './stage-options.js';

/**
 * Text thresholds of the paper's "dense and small text" removal. The paper gives no numbers;
 * these defaults are ours, with reasons:
 * - `max_density` 0.15: text boxes over 15% of the image make it a poster, a page or a meme
 *   first and a picture second; captions and logos over photographs stay well under it.
 * - `min_text_height` 0.03: word boxes under 3% of the image height (15 px at 512) are smaller
 *   than one 16-px patch of the BIT tokenizer at 512, so it cannot reproduce them and the model
 *   learns to draw gibberish; larger text is legible after tokenisation.
 */
export const textThresholds = z.object({
  /** Drop when the union of word boxes covers more than this fraction of the image (funnel line `text_density`). */
  max_density: z.number().min(0).max(1).default(0.15),
  /** Drop when there is text and its median word height is below this fraction of the image height (`text_height`). */
  min_text_height: z.number().min(0).max(1).default(0.03),
}).strict();

/** Thresholds as given (unset keys take their defaults). */
export type TextThresholds = z.input<typeof textThresholds>;

const DEFAULT_THRESHOLDS = textThresholds.parse({});

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
export function textVerdict(fields: TextFields, t: z.output<typeof textThresholds> = DEFAULT_THRESHOLDS): { by: 'text_density' | 'text_height'; value: number } | null | 'unannotated' {
  const density = num(fields.ocr_density);
  const words = num(fields.ocr_words);
  if (density === null || words === null) return 'unannotated';
  if (density > t.max_density) return { by: 'text_density', value: density };
  const median = num(fields.ocr_median_height);
  if (words > 0 && median !== null && median < t.min_text_height) return { by: 'text_height', value: median };
  return null;
}

/** Drops ok samples by their OCR fields (funnel lines `text_density`, `text_height`); an unannotated sample fails. */
export function textFilter(thresholds: TextThresholds = {}): Stage {
  const t = parseStageOptions('text-filter', textThresholds, thresholds);
  return sampleStage('text-filter', (s: Sample) => {
    const v = textVerdict(s.fields, t);
    if (v === 'unannotated') throw new SampleError('no_ocr_fields', `sample ${s.key} has no OCR fields; put an OCR stage before the text filter`);
    if (v) drop(s, v.by, v.value);
  });
}
