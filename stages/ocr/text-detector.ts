/**
 * A DBNet-style text detector over any TensorModel (ONNX Runtime in process, or KServe v2):
 * PaddleOCR's det pre-processing, one model call per batch, DB post-processing.
 *
 * Model contract (PaddleOCR's det model exported to ONNX): input FP32 [N, 3, H, W] with H and W
 * multiples of 32, ImageNet mean/std normalisation of pixel/255; output FP32 [N, 1, H, W]
 * (or [N, H, W]) of text probabilities in 0..1.
 *
 * Channel order: the default is RGB, as the normalisation constants are ImageNet's. PaddleOCR's
 * own pipeline reads images with OpenCV and never converts, so its det models were trained on
 * BGR with these same constants; set `channel_order: 'bgr'` for them.
 */
import sharp from 'sharp';
import type { RawImage } from '../../src/sample.js';
import type { Tensor, TensorModel, TensorSpec } from '../../src/models/tensor.js';
import { z } from 'zod';
import { maxPixels } from '../decode-resize.js';
import { parseStageOptions } from '../stage-options.js';
import { DB_DEFAULTS, dbPostprocess, type DbPostprocessOptions, type ProbabilityMap } from './db-postprocess.js';
import type { TextBox } from './text-boxes.js';

/** Encoded bytes (anything sharp decodes) or decoded interleaved pixels. */
export type DetectorImage = Uint8Array | RawImage;

/** A side of a fixed model input: DBNet downsamples by 32. */
const inputSide = z.number().int().min(32).multipleOf(32);
const inUnit = z.number().min(0, 'must be in [0, 1)').lt(1, 'must be in [0, 1)');

/**
 * Options of the text detector: tensor names, pre-processing (PaddleOCR's det pre-processing)
 * and DB post-processing (db-postprocess.ts, whose DB_DEFAULTS are the post-processing defaults).
 */
export const textDetectorOptions = z.object({
  /** Input tensor name (default: the model's only input, else 'x', PaddleOCR's name). */
  input_name: z.string().optional(),
  /** Output tensor name (default: the model's first output). */
  output_name: z.string().optional(),
  /**
   * Longer side limit, as PaddleOCR's det_limit_side_len with det_limit_type 'max': larger
   * images are scaled down to it, smaller ones keep their scale; both sides are then rounded to
   * a multiple of 32 (at least 32), which may stretch the aspect ratio slightly. PaddleOCR's
   * inference default is 960 ('max'); 736 is RapidOCR's number, which it uses with 'min' (the
   * shorter side enlarged to it), so neither tool runs DB exactly as this default does.
   */
  limit_side: z.number().int().min(32).default(736),
  /**
   * A fixed model input size (for exports with static H and W): every image is stretched to it
   * and `limit_side` is ignored. Taken from the model's declared input when that is static.
   */
  input_size: z.object({ width: inputSide, height: inputSide }).strict().optional(),
  /** Channel order the model was trained on ('bgr' for PaddleOCR's own models, see above). */
  channel_order: z.enum(['rgb', 'bgr']).default('rgb'),
  /** Encoded images declaring more pixels than this are refused before decoding. */
  max_pixels: maxPixels,
  /** Pixels with probability above this are text (PaddleOCR's det_db_thresh). */
  threshold: inUnit.default(DB_DEFAULTS.threshold),
  /** Components whose mean probability is below this are dropped (det_db_box_thresh). */
  box_threshold: inUnit.default(DB_DEFAULTS.box_threshold),
  /** Components whose shorter side is below this many map pixels are dropped. */
  min_size: z.number().min(0).default(DB_DEFAULTS.min_size),
  /** DB's expansion ratio: offset = area × ratio / perimeter (det_db_unclip_ratio). */
  unclip_ratio: z.number().min(0).default(DB_DEFAULTS.unclip_ratio),
  /** At most this many components are considered, in raster order of their first pixel. */
  max_candidates: z.number().int().min(1).default(DB_DEFAULTS.max_candidates),
  /** Line boxes calibrated to the ink they hold: ink height = (box height − ink_offset) / ink_scale, in model pixels (db-postprocess.ts). */
  ink_scale: z.number().positive().default(DB_DEFAULTS.ink_scale),
  ink_offset: z.number().default(DB_DEFAULTS.ink_offset),
}).strict();

/** Detector options as given (unset keys take their defaults). */
export type TextDetectorOptions = z.input<typeof textDetectorOptions>;
type DetectorSettings = z.output<typeof textDetectorOptions>;

/** One image ready for the model: normalised planes plus the sizes needed to map boxes back. */
export interface DetectorInput {
  /** FP32 [3, height, width], normalised. */
  data: Float32Array;
  /** Model input size. */
  width: number;
  height: number;
  /** The image's own size; boxes are reported in these pixels. */
  originalWidth: number;
  originalHeight: number;
  /** The decoded image at its own size (for reading the detected lines). */
  pixels: RawImage;
}

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** PaddleOCR's DetResizeForTest (limit type 'max'): model input size for a width × height image. */
export function detectorInputSize(width: number, height: number, limitSide: number): { width: number; height: number } {
  const ratio = Math.max(width, height) > limitSide ? limitSide / Math.max(width, height) : 1;
  const to32 = (v: number) => Math.max(Math.round(Math.trunc(v * ratio) / 32) * 32, 32);
  return { width: to32(width), height: to32(height) };
}

const settingsOf = (opts: TextDetectorOptions): DetectorSettings => parseStageOptions('text-detector', textDetectorOptions, opts);

/** Decodes (or takes) an image, resizes it for the model and normalises it into planes. */
export async function prepareDetectorInput(image: DetectorImage, opts: TextDetectorOptions = {}): Promise<DetectorInput> {
  return prepareWith(image, settingsOf(opts));
}

async function prepareWith(image: DetectorImage, o: DetectorSettings): Promise<DetectorInput> {
  let rgb: RawImage;
  if (image instanceof Uint8Array) {
    if (image.length === 0) throw new Error('image is empty (0 bytes)');
    // Oriented and flattened as decode-resize does, so boxes land where that stage's pixels are.
    const { data, info } = await sharp(image, { failOn: 'truncated', limitInputPixels: o.max_pixels, autoOrient: true })
      .flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    rgb = { data, width: info.width, height: info.height, channels: info.channels as RawImage['channels'] };
  } else {
    const { data, width, height, channels } = image;
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) throw new Error(`raw image size must be positive integers, got ${width}×${height}`);
    if (![1, 2, 3, 4].includes(channels)) throw new Error(`raw image must have 1–4 channels, got ${channels}`);
    if (data.length !== width * height * channels) throw new Error(`raw image of ${width}×${height}×${channels} needs ${width * height * channels} bytes, got ${data.length}`);
    rgb = image;
  }
  const size = o.input_size ?? detectorInputSize(rgb.width, rgb.height, o.limit_side);
  let px = rgb;
  if (px.channels !== 3 || px.width !== size.width || px.height !== size.height) {
    let img = sharp(px.data, { raw: { width: px.width, height: px.height, channels: px.channels } });
    if (px.width !== size.width || px.height !== size.height) img = img.resize(size.width, size.height, { fit: 'fill', kernel: 'linear' });
    const { data, info } = await img.flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    px = { data, width: info.width, height: info.height, channels: info.channels as RawImage['channels'] };
    if (px.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${px.channels}`);
  }
  return { data: normalise(px, o.channel_order), width: size.width, height: size.height, originalWidth: rgb.width, originalHeight: rgb.height, pixels: rgb };
}

/** Interleaved RGB bytes → planes of (v/255 − mean) / std, in the model's channel order. */
function normalise(px: RawImage, order: 'rgb' | 'bgr'): Float32Array {
  const n = px.width * px.height;
  const out = new Float32Array(3 * n);
  const d = px.data;
  for (let c = 0; c < 3; c++) {
    const src = order === 'rgb' ? c : 2 - c;
    const scale = 1 / (255 * STD[c]);
    const offset = -MEAN[c] / STD[c];
    const plane = out.subarray(c * n, (c + 1) * n);
    for (let i = 0, j = src; i < n; i++, j += 3) plane[i] = d[j] * scale + offset;
  }
  return out;
}

/**
 * Runs a DBNet-style model and turns its probability maps into boxes in original pixels.
 *
 * Batching: inputs are grouped by model input size, and each group is one model call, so a
 * batch of equal-sized images (the usual case after decode-resize, e.g. 512×512) is one call and
 * mixed sizes cost one call per distinct size. Images are never padded to a common size, because
 * padding adds an edge the detector would see and changes what it reports near the image border.
 * A model whose batch dimension is fixed at 1 gets one image per call.
 */
export class TextDetector {
  readonly inputName: string;
  readonly outputName: string;
  private readonly prep: DetectorSettings;
  private readonly db: Required<DbPostprocessOptions>;
  private readonly perCall: number;

  constructor(readonly model: TensorModel, opts: TextDetectorOptions = {}) {
    const m = model.name;
    const o = settingsOf(opts);
    this.inputName = o.input_name ?? (model.inputs.length === 1 ? model.inputs[0].name : 'x');
    const spec = model.inputs.find((s) => s.name === this.inputName);
    if (!spec) throw new Error(`text-detector: model ${m} has no input "${this.inputName}" (inputs: ${model.inputs.map((s) => s.name).join(', ')})`);
    if (spec.dtype !== 'FP32' || spec.shape.length !== 4 || (spec.shape[1] >= 0 && spec.shape[1] !== 3)) {
      throw new Error(`text-detector: model ${m} input "${this.inputName}" is ${describe(spec)}, expected FP32 [N, 3, H, W]`);
    }
    this.outputName = o.output_name ?? model.outputs[0]?.name ?? '';
    const out = model.outputs.find((s) => s.name === this.outputName);
    if (!out) throw new Error(`text-detector: model ${m} has no output "${this.outputName}" (outputs: ${model.outputs.map((s) => s.name).join(', ')})`);
    if (out.dtype !== 'FP32') throw new Error(`text-detector: model ${m} output "${this.outputName}" is ${describe(out)}, expected FP32 [N, 1, H, W]`);

    const [n, , h, w] = spec.shape;
    if (n > 1) throw new Error(`text-detector: model ${m} input "${this.inputName}" has a fixed batch of ${n}; only a dynamic batch or a batch of 1 is supported`);
    this.perCall = n === 1 ? 1 : Infinity;
    let inputSize = o.input_size;
    if (h > 0 && w > 0) {
      if (inputSize && (inputSize.width !== w || inputSize.height !== h)) throw new Error(`text-detector: input_size ${inputSize.width}×${inputSize.height} disagrees with model ${m}'s static input ${w}×${h}`);
      inputSize = { width: w, height: h };
    } else if (h > 0 || w > 0) {
      throw new Error(`text-detector: model ${m} input "${this.inputName}" fixes only one of H and W (${describe(spec)}); give input_size`);
    }
    // A static input taken from the model is checked like a given one.
    this.prep = inputSize === o.input_size ? o : settingsOf({ ...opts, input_size: inputSize });
    this.db = { threshold: o.threshold, box_threshold: o.box_threshold, min_size: o.min_size, unclip_ratio: o.unclip_ratio, max_candidates: o.max_candidates, ink_scale: o.ink_scale, ink_offset: o.ink_offset };
  }

  /** Boxes of one image, in its own pixels. */
  async detect(image: DetectorImage, signal?: AbortSignal): Promise<TextBox[]> {
    return (await this.detectBatch([image], signal))[0];
  }

  /** Boxes of each image, in order; see the class comment for how the batch is split into calls. */
  async detectBatch(images: readonly DetectorImage[], signal?: AbortSignal): Promise<TextBox[][]> {
    const inputs = await Promise.all(images.map((im) => this.prepare(im)));
    const maps = await this.infer(inputs, signal);
    return maps.map((map, i) => this.boxes(map, inputs[i]));
  }

  /** Decode, resize and normalise (CPU only; the model is not called). */
  prepare(image: DetectorImage): Promise<DetectorInput> {
    return prepareWith(image, this.prep);
  }

  /** One probability map per input, in order (views into the model's output). */
  async infer(inputs: readonly DetectorInput[], signal?: AbortSignal): Promise<ProbabilityMap[]> {
    const maps: ProbabilityMap[] = new Array(inputs.length);
    const groups = new Map<string, number[]>();
    inputs.forEach((x, i) => {
      const k = `${x.width}x${x.height}`;
      const g = groups.get(k);
      if (g) g.push(i);
      else groups.set(k, [i]);
    });
    for (const all of groups.values()) {
      const step = Math.min(this.perCall, all.length);
      for (let at = 0; at < all.length; at += step) {
        const idx = all.slice(at, at + step);
        const { width: w, height: h } = inputs[idx[0]];
        const fixed = this.prep.input_size;
        if (fixed && (fixed.width !== w || fixed.height !== h)) {
          throw new Error(`text-detector: images were prepared at ${w}×${h} but model ${this.model.name} takes ${fixed.width}×${fixed.height}; set input_size to match`);
        }
        const plane = 3 * w * h;
        const data = new Float32Array(idx.length * plane);
        idx.forEach((i, k) => data.set(inputs[i].data, k * plane));
        const x: Tensor = { dtype: 'FP32', shape: [idx.length, 3, h, w], data };
        const y = (await this.model.infer({ [this.inputName]: x }, { outputs: [this.outputName], signal }))[this.outputName];
        const ok = y && y.dtype === 'FP32' && y.shape[0] === idx.length &&
          ((y.shape.length === 4 && y.shape[1] === 1 && y.shape[2] === h && y.shape[3] === w) || (y.shape.length === 3 && y.shape[1] === h && y.shape[2] === w));
        if (!ok) {
          const got = y ? `${y.dtype} [${y.shape.join(', ')}]` : 'nothing';
          throw new Error(`text-detector: model ${this.model.name} output "${this.outputName}" is ${got} for input [${x.shape.join(', ')}], expected FP32 [${idx.length}, 1, ${h}, ${w}]`);
        }
        const out = y.data as Float32Array;
        idx.forEach((i, k) => { maps[i] = { data: out.subarray(k * w * h, (k + 1) * w * h), width: w, height: h }; });
      }
    }
    return maps;
  }

  /** DB post-processing of one map, boxes scaled back to the input's original size. */
  boxes(map: ProbabilityMap, input: DetectorInput): TextBox[] {
    return dbPostprocess(map, { width: input.originalWidth, height: input.originalHeight }, this.db);
  }
}

const describe = (s: TensorSpec): string => `${s.dtype} [${s.shape.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;
