/**
 * The detector behind a GenEval detections file, and its tensor-model adapter.
 *
 * Official GenEval runs Mask2Former Swin-S (mmdet). bitprep runs any detector that honours one of
 * two contracts: a tensor model (ONNX in process or KServe v2, this file) or an HTTP endpoint
 * (detector-endpoint.ts). Either way each image becomes the `detections` value of one line of the
 * detections file (see detections.ts).
 */
import { readRgb } from '../images/image-folder.js';
import { ReplicaPool } from '../../src/models/replica-pool.js';
import type { NamedTensors, Tensor, TensorModel, TensorSpec } from '../../src/models/tensor.js';
import type { Color } from '../geneval-format/colors.js';
import { encodeRle, type CocoRle } from './rle.js';

/** GenEval's object_names.txt: the 80 COCO detector classes, in the detector's label order. */
export const GENEVAL_OBJECT_NAMES: readonly string[] = Object.freeze([
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
  'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
  'dining table', 'toilet', 'tv', 'laptop', 'computer mouse', 'tv remote', 'computer keyboard', 'cell phone', 'microwave', 'oven',
  'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
]);

/** The lowest threshold GenEval's rules use (score > 0.3); detections at or below it can never count. */
export const DEFAULT_MIN_SCORE = 0.3;

/** One entry of a detections line: the mmdet bbox row, or an object when it carries a mask or color. */
export type DetectionEntry =
  | [number, number, number, number, number]
  | { box: [number, number, number, number]; score: number; color?: Color; mask?: CocoRle };

/** The `detections` value of one detections line: per class name, its entries. */
export type ClassDetections = Record<string, DetectionEntry[]>;

/** An image to detect on: `rel` is its detections-file key, `path` the file on disk. */
export interface DetectorImage {
  rel: string;
  path: string;
}

/**
 * Anything that turns one GenEval image into its detections: per class (GenEval object names),
 * boxes x1, y1, x2, y2 in pixels of the image, scores, optional COCO RLE masks and color labels,
 * already filtered to score > the detector's minimum and ordered as `finishDetections` orders them.
 */
export interface Detector {
  /** Recorded with the detections (summary): says which model, and "STAND-IN" for stand-ins. */
  readonly name: string;
  detect(image: DetectorImage, signal?: AbortSignal): Promise<ClassDetections>;
  close(): Promise<void>;
}

/** One raw detection before filtering and ordering. */
export interface RawDetection {
  cls: string;
  box: [number, number, number, number];
  score: number;
  mask?: CocoRle;
  color?: Color;
}

/**
 * The canonical `detections` value: only detections with float32(score) > float32(minScore)
 * (GenEval compares float32 scores, so nothing its rules could keep is dropped), classes in
 * `objectNames` order, each class by score descending (ties in detector order), masks and colors
 * as objects and plain boxes as [x1, y1, x2, y2, score] rows. Deterministic, so reruns give equal bytes.
 */
export function finishDetections(raw: readonly RawDetection[], objectNames: readonly string[], minScore: number, where: string): ClassDetections {
  const order = new Map(objectNames.map((n, i) => [n, i]));
  const threshold = Math.fround(minScore);
  const byClass = new Map<string, { d: RawDetection; i: number }[]>();
  raw.forEach((d, i) => {
    if (!order.has(d.cls)) throw new Error(`${where}: class ${JSON.stringify(d.cls)} is not one of the ${objectNames.length} object names`);
    if (!(Math.fround(d.score) > threshold)) return;
    const list = byClass.get(d.cls) ?? [];
    list.push({ d, i });
    byClass.set(d.cls, list);
  });
  const out: ClassDetections = {};
  for (const cls of [...byClass.keys()].sort((a, b) => order.get(a)! - order.get(b)!)) {
    const list = byClass.get(cls)!.sort((a, b) => b.d.score - a.d.score || a.i - b.i);
    out[cls] = list.map(({ d }): DetectionEntry => {
      if (d.mask === undefined && d.color === undefined) return [...d.box, d.score];
      const e: DetectionEntry = { box: d.box, score: d.score };
      if (d.color !== undefined) e.color = d.color;
      if (d.mask !== undefined) e.mask = d.mask;
      return e;
    });
  }
  return out;
}

/** Tensor names of the detector contract; each can be renamed for exports that call them otherwise. */
export interface DetectorTensorNames {
  image: string;
  boxes: string;
  scores: string;
  labels: string;
  /** Used when the model has an output of this name; if renamed explicitly, it must exist. */
  masks: string;
}

export const DEFAULT_TENSOR_NAMES: Readonly<DetectorTensorNames> = Object.freeze({ image: 'image', boxes: 'boxes', scores: 'scores', labels: 'labels', masks: 'masks' });

export interface TensorDetectorOptions {
  /** Shown in the summary (default: the model's name). */
  name?: string;
  /** Renames of the contract's tensors (default DEFAULT_TENSOR_NAMES). */
  tensorNames?: Partial<DetectorTensorNames>;
  /** Label i is objectNames[i] (default GENEVAL_OBJECT_NAMES). */
  objectNames?: readonly string[];
  /** Keep detections with score above this (default 0.3). */
  minScore?: number;
  /** Calls one replica serves at once (default 2). */
  maxInFlightPerReplica?: number;
}

const fmt = (s: TensorSpec) => `${s.dtype} [${s.shape.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;

/**
 * A detector on a tensor model (ONNX Runtime in process, or KServe v2 replicas). The contract:
 *
 * - input `image`: UINT8 [1, H, W, 3], the image's RGB pixels (PIL convert('RGB')) at its native
 *   size, one image per call. The export owns its preprocessing (resize, normalisation), as mmdet's
 *   test pipeline does, so bitprep never guesses a detector's input transform.
 * - output `boxes`: FP32 [K, 4], x1, y1, x2, y2 in pixels of the input image; K may differ per image.
 * - output `scores`: FP32 [K].
 * - output `labels`: INT64 (or INT32) [K], index into the object names (GenEval's object_names.txt
 *   order, which is COCO's 80-class detector order).
 * - optional output `masks`: UINT8 or BOOL [K, H, W] (nonzero = inside) or FP32 [K, H, W]
 *   (probabilities, inside where > 0.5), at the input's H and W. Written as COCO RLE.
 *
 * Every output may also carry a leading batch axis of 1 ([1, K, 4] …). A model that breaks the
 * contract is refused when the detector is created, with an error naming the tensor.
 */
export class TensorDetector implements Detector {
  private constructor(
    readonly name: string,
    private readonly pool: ReplicaPool<TensorModel>,
    private readonly clients: TensorModel[],
    private readonly names: DetectorTensorNames,
    private readonly withMasks: boolean,
    private readonly objectNames: readonly string[],
    private readonly minScore: number,
  ) {}

  /** Checks the replicas' declared tensors against the contract and builds the detector. */
  static create(replicas: { name: string; client: TensorModel }[], opts: TensorDetectorOptions = {}): TensorDetector {
    if (replicas.length === 0) throw new Error('a tensor detector needs at least one model replica');
    const names: DetectorTensorNames = { ...DEFAULT_TENSOR_NAMES, ...opts.tensorNames };
    const model = replicas[0].client;
    const who = `detector model ${model.name}`;
    const rename = (key: keyof DetectorTensorNames) => `(rename it with --tensor-names ${key}=<name>)`;
    const image = model.inputs.find((s) => s.name === names.image);
    if (!image) throw new Error(`${who}: no input tensor "${names.image}" (inputs: ${model.inputs.map((s) => s.name).join(', ')}) ${rename('image')}`);
    const extra = model.inputs.filter((s) => s.name !== names.image);
    if (extra.length > 0) throw new Error(`${who}: input tensor "${extra[0].name}" is not part of the detector contract, which has one input "${names.image}" UINT8 [1, H, W, 3]`);
    const okImage = image.dtype === 'UINT8' && image.shape.length === 4 && (image.shape[0] === 1 || image.shape[0] < 0) && (image.shape[3] === 3 || image.shape[3] < 0);
    if (!okImage) throw new Error(`${who}: input tensor "${names.image}" is ${fmt(image)}, the contract wants UINT8 [1, H, W, 3] (RGB at native size)`);
    const want: [keyof DetectorTensorNames, string[], number][] = [['boxes', ['FP32'], 2], ['scores', ['FP32'], 1], ['labels', ['INT64', 'INT32'], 1]];
    const withMasks = model.outputs.some((s) => s.name === names.masks);
    if (opts.tensorNames?.masks !== undefined && !withMasks) throw new Error(`${who}: no output tensor "${names.masks}" (outputs: ${model.outputs.map((s) => s.name).join(', ')})`);
    if (withMasks) want.push(['masks', ['UINT8', 'BOOL', 'FP32'], 3]);
    for (const [key, dtypes, rank] of want) {
      const spec = model.outputs.find((s) => s.name === names[key]);
      if (!spec) throw new Error(`${who}: no output tensor "${names[key]}" (outputs: ${model.outputs.map((s) => s.name).join(', ')}) ${rename(key)}`);
      // Exports often leave output shapes undeclared (rank 0 here); then the check waits for the first answer.
      const rankOk = spec.shape.length === 0 || spec.shape.length === rank || (spec.shape.length === rank + 1 && spec.shape[0] <= 1);
      if (!dtypes.includes(spec.dtype) || !rankOk) throw new Error(`${who}: output tensor "${names[key]}" is ${fmt(spec)}, the contract wants ${dtypes.join(' or ')} with ${rank} dimension(s)`);
    }
    const pool = new ReplicaPool(replicas, { maxInFlightPerReplica: opts.maxInFlightPerReplica ?? 2 });
    return new TensorDetector(opts.name ?? model.name, pool, replicas.map((r) => r.client), names, withMasks, opts.objectNames ?? GENEVAL_OBJECT_NAMES, opts.minScore ?? DEFAULT_MIN_SCORE);
  }

  async detect(img: DetectorImage, signal?: AbortSignal): Promise<ClassDetections> {
    const rgb = await readRgb(img.path);
    const { width: w, height: h } = rgb;
    const n = this.names;
    const wanted = [n.boxes, n.scores, n.labels, ...(this.withMasks ? [n.masks] : [])];
    const input: Tensor = { dtype: 'UINT8', shape: [1, h, w, 3], data: rgb.data };
    const out: NamedTensors = await this.pool.run((m) => m.infer({ [n.image]: input }, { outputs: wanted, signal }), { signal });
    const where = `${img.path}: detector ${this.name}`;
    const get = (name: string, tail: number[]): Tensor => {
      const t = out[name];
      if (!t) throw new Error(`${where}: the answer has no output tensor "${name}"`);
      // A leading batch axis of 1 is accepted, as many exports keep it.
      const shape = t.shape.length === tail.length + 1 && t.shape[0] === 1 ? t.shape.slice(1) : t.shape;
      const ok = shape.length === tail.length && tail.every((d, i) => d < 0 || d === shape[i]);
      if (!ok) throw new Error(`${where}: output tensor "${name}" has shape [${t.shape.join(', ')}], expected [${tail.map((d) => (d < 0 ? 'K' : d)).join(', ')}]`);
      return { ...t, shape };
    };
    const boxes = get(n.boxes, [-1, 4]);
    const k = boxes.shape[0];
    const scores = get(n.scores, [k]);
    const labels = get(n.labels, [k]);
    const masks = this.withMasks ? get(n.masks, [k, h, w]) : undefined;
    if (boxes.dtype !== 'FP32' || scores.dtype !== 'FP32') throw new Error(`${where}: output tensors "${n.boxes}" and "${n.scores}" must be FP32, got ${boxes.dtype} and ${scores.dtype}`);
    if (labels.dtype !== 'INT64' && labels.dtype !== 'INT32') throw new Error(`${where}: output tensor "${n.labels}" must be INT64, got ${labels.dtype}`);
    if (masks && !['UINT8', 'BOOL', 'FP32'].includes(masks.dtype)) throw new Error(`${where}: output tensor "${n.masks}" must be UINT8, BOOL or FP32, got ${masks.dtype}`);

    const raw: RawDetection[] = [];
    const threshold = Math.fround(this.minScore);
    for (let i = 0; i < k; i++) {
      const score = scores.data[i] as number;
      // Masks are encoded only for detections that survive, which is most of the cost saved.
      if (!(Math.fround(score) > threshold)) continue;
      const label = Number(labels.data[i]);
      if (!Number.isInteger(label) || label < 0 || label >= this.objectNames.length) {
        throw new Error(`${where}: output tensor "${n.labels}"[${i}] = ${label} is not a class index in [0, ${this.objectNames.length})`);
      }
      const b = boxes.data as Float32Array;
      const d: RawDetection = { cls: this.objectNames[label], box: [b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]], score };
      if (masks) {
        const plane = masks.data.subarray(i * h * w, (i + 1) * h * w);
        const bits = masks.dtype === 'FP32' ? Uint8Array.from(plane as Float32Array, (v) => (v > 0.5 ? 1 : 0)) : (plane as Uint8Array);
        d.mask = encodeRle(bits, h, w);
      }
      raw.push(d);
    }
    return finishDetections(raw, this.objectNames, this.minScore, where);
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
