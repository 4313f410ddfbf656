/**
 * CLIP image and text towers over tensor models (ONNX in process or KServe v2 replicas), with
 * batching over a ReplicaPool, contract checks and L2 normalisation.
 *
 * Model contracts (tensor names overridable with `input` / `output`):
 *
 * - Image tower: input `pixel_values` FP32 [N, 3, S, S], S = 224 by default (`imageSize`),
 *   pixels already CLIP-preprocessed (PIL bicubic resize of the shorter side to S, centre crop,
 *   ToTensor, Normalize with OpenAI's mean (0.48145466, 0.4578275, 0.40821073) and std
 *   (0.26862954, 0.26130258, 0.27577711): values roughly in [-1.8, 2.2]); output `image_embeds`
 *   FP32 [N, D], the projected embedding (`encode_image`), NOT normalised.
 * - Text tower: input `input_ids` INT64 [N, 77] (INT32 accepted where the model declares it):
 *   CLIP BPE ids as openai/open_clip `tokenize()` lays them out, SOT 49406 first, EOT 49407 after
 *   the text, zeros after (the tower pools at the EOT position, found as the arg-max id); an
 *   input named `attention_mask`, if the model declares one (Hugging Face exports), gets 1 where
 *   the id is non-zero. Output `text_embeds` FP32 [N, D] (`encode_text`), NOT normalised.
 * - N is the batch axis, dynamic (-1) or fixed (a fixed N is honoured by padding the last
 *   batch); D must be the same for both towers.
 *
 * Normalisation is done here in float64 on the float32 embeddings: the cosine of two float32
 * vectors is then computed to ~1e-16, while torch's float32 `F.cosine_similarity` /
 * `F.normalize` round to ~1e-7 — both far below any CI width, and float64 does not depend on
 * summation order, so the ONNX and KServe paths give the same bits.
 */
import { loadTensorModels, parseModelSpec, type ModelSource } from '../../src/models/model-source.js';
import { ReplicaPool } from '../../src/models/replica-pool.js';
import { TensorMismatchError, type DType, type NamedTensors, type Tensor, type TensorModel, type TensorSpec } from '../../src/models/tensor.js';
import { CLIP_CONTEXT_LENGTH } from './clip-text.js';

export interface ClipTowerOptions {
  /** Input tensor name (default `pixel_values` / `input_ids`). */
  input?: string;
  /** Output tensor name (default `image_embeds` / `text_embeds`). */
  output?: string;
  /** Rows per model call (default 32). */
  batchSize?: number;
  /** Image side the image tower takes (default 224). */
  imageSize?: number;
  /** Ids per text (default 77). */
  contextLength?: number;
  /** Run ONNX files on CUDA when available. */
  cuda?: boolean;
}

type Replica = { name: string; client: TensorModel };

const shapeText = (s: readonly number[]) => `[${s.map((d) => (d < 0 ? 'N' : d)).join(', ')}]`;

function findSpec(label: string, kind: 'input' | 'output', specs: TensorSpec[], name: string, want: string): TensorSpec {
  const s = specs.find((x) => x.name === name);
  if (!s) throw new TensorMismatchError(`model ${label}: no ${kind} tensor "${name}" (${kind}s: ${specs.map((x) => x.name).join(', ') || 'none'}); the contract is ${want}, or name the tensor with the ${kind} option`);
  return s;
}

/** Checks declared dims against the contract (-1 in `want` = any); returns the fixed batch size, if the model has one. */
function checkShape(label: string, kind: string, s: TensorSpec, want: number[], contract: string): number | undefined {
  const ok = s.shape.length === want.length && s.shape.every((d, i) => d < 0 || want[i] < 0 || d === want[i]);
  if (!ok) throw new TensorMismatchError(`model ${label}: ${kind} "${s.name}" is ${s.dtype} ${shapeText(s.shape)}, expected ${contract}`);
  return s.shape[0] > 0 ? s.shape[0] : undefined;
}

/** Shared part of both towers: replicas, batching, output check and normalisation. */
abstract class ClipTower<X> {
  protected readonly pool: ReplicaPool<TensorModel>;
  readonly batchSize: number;
  /** The model's batch axis is fixed: every call gets exactly batchSize rows. */
  private readonly padBatches: boolean;
  readonly output: string;

  protected constructor(readonly label: string, protected readonly replicas: Replica[], output: string, batchSize: number, fixedBatch: number | undefined) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`model ${label}: batch size must be a positive integer, got ${batchSize}`);
    this.output = output;
    this.batchSize = fixedBatch ?? batchSize;
    this.padBatches = fixedBatch !== undefined;
    this.pool = new ReplicaPool(replicas);
  }

  protected abstract feeds(rows: readonly X[]): NamedTensors;

  /**
   * L2-normalised float64 embeddings of `rows`, in order. `labels` (same length) name the rows
   * (image files, prompts) in errors.
   */
  async embed(rows: readonly X[], labels?: readonly string[]): Promise<Float64Array[]> {
    const batches: Promise<Float64Array[]>[] = [];
    for (let at = 0; at < rows.length; at += this.batchSize) {
      const chunk = rows.slice(at, at + this.batchSize);
      const n = chunk.length;
      // A model with a fixed batch axis gets full batches; the repeated rows are dropped after.
      while (this.padBatches && chunk.length < this.batchSize) chunk.push(chunk[n - 1]);
      batches.push(
        this.pool.run(async (client) => {
          const out = await client.infer(this.feeds(chunk), { outputs: [this.output] });
          return this.normalise(out[this.output], chunk.length, n, at, labels);
        }, { cost: n }),
      );
    }
    return (await Promise.all(batches)).flat();
  }

  private normalise(t: Tensor | undefined, sent: number, keep: number, at: number, labels?: readonly string[]): Float64Array[] {
    if (!t) throw new TensorMismatchError(`model ${this.label}: the answer has no output "${this.output}"`);
    if (t.dtype !== 'FP32' || t.shape.length !== 2 || t.shape[0] !== sent || t.data.length !== sent * t.shape[1]) {
      throw new TensorMismatchError(`model ${this.label}: output "${this.output}" is ${t.dtype} [${t.shape.join(', ')}] for ${sent} rows, expected FP32 [${sent}, D]`);
    }
    const d = t.shape[1];
    const data = t.data as Float32Array;
    const out: Float64Array[] = [];
    for (let r = 0; r < keep; r++) {
      const v = Float64Array.from(data.subarray(r * d, (r + 1) * d));
      let ss = 0;
      for (const x of v) ss += x * x;
      const norm = Math.sqrt(ss);
      if (!(norm > 0 && Number.isFinite(norm))) {
        throw new Error(`model ${this.label}: output "${this.output}" for ${labels?.[at + r] ?? `row ${at + r}`} has norm ${norm}; cannot normalise it`);
      }
      for (let i = 0; i < d; i++) v[i] /= norm;
      out.push(v);
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.client.close()));
  }
}

const openReplicas = async (spec: string | ModelSource, what: string, cuda?: boolean): Promise<Replica[]> =>
  loadTensorModels(typeof spec === 'string' ? parseModelSpec(spec, { cuda }) : spec, what);

const specLabel = (spec: string | ModelSource): string => (typeof spec === 'string' ? spec : 'onnx' in spec ? spec.onnx : `${spec.kserve.join(',')} (${spec.model})`);

/** The image tower: rows are CLIP-preprocessed images, Float32Array [3, S, S] each. */
export class ClipImageTower extends ClipTower<Float32Array> {
  readonly input: string;
  readonly imageSize: number;

  /** Wraps opened replicas; checks the contract on each, errors name `label` and the tensor. */
  constructor(label: string, replicas: Replica[], opts: ClipTowerOptions = {}) {
    const input = opts.input ?? 'pixel_values';
    const output = opts.output ?? 'image_embeds';
    const size = opts.imageSize ?? 224;
    let fixed: number | undefined;
    for (const r of replicas) {
      const contract = `input "${input}" FP32 [N, 3, ${size}, ${size}] → output "${output}" FP32 [N, D]`;
      const i = findSpec(label, 'input', r.client.inputs, input, contract);
      if (i.dtype !== 'FP32') throw new TensorMismatchError(`model ${label}: input "${input}" is ${i.dtype}, expected FP32 (CLIP-normalised pixels)`);
      fixed = checkShape(label, 'input', i, [-1, 3, size, size], `FP32 [N, 3, ${size}, ${size}]`) ?? fixed;
      const extra = r.client.inputs.find((s) => s.name !== input);
      if (extra) throw new TensorMismatchError(`model ${label}: it also takes input "${extra.name}"; a CLIP image tower takes only "${input}"`);
      const o = findSpec(label, 'output', r.client.outputs, output, contract);
      if (o.dtype !== 'FP32') throw new TensorMismatchError(`model ${label}: output "${output}" is ${o.dtype}, expected FP32`);
      checkShape(label, 'output', o, [-1, -1], 'FP32 [N, D]');
    }
    super(label, replicas, output, opts.batchSize ?? 32, fixed);
    this.input = input;
    this.imageSize = size;
  }

  /** Opens a model spec (`tower.onnx` or KServe URLs, see parseModelSpec) as an image tower. */
  static async open(spec: string | ModelSource, opts: ClipTowerOptions = {}): Promise<ClipImageTower> {
    const replicas = await openReplicas(spec, 'clip-image', opts.cuda);
    try {
      return new ClipImageTower(specLabel(spec), replicas, opts);
    } catch (err) {
      await Promise.all(replicas.map((r) => r.client.close()));
      throw err;
    }
  }

  protected feeds(rows: readonly Float32Array[]): NamedTensors {
    const s = this.imageSize;
    const per = 3 * s * s;
    const data = new Float32Array(rows.length * per);
    rows.forEach((r, i) => {
      if (r.length !== per) throw new TensorMismatchError(`model ${this.label}: image ${i} holds ${r.length} floats, expected 3×${s}×${s}`);
      data.set(r, i * per);
    });
    return { [this.input]: { dtype: 'FP32', shape: [rows.length, 3, s, s], data } };
  }
}

/** The text tower: rows are CLIP token ids (see clip-text.ts), `contextLength` each. */
export class ClipTextTower extends ClipTower<Int32Array> {
  readonly input: string;
  readonly contextLength: number;
  private readonly idType: DType;
  private readonly maskType: DType | undefined;

  /** Wraps opened replicas; checks the contract on each, errors name `label` and the tensor. */
  constructor(label: string, replicas: Replica[], opts: ClipTowerOptions = {}) {
    const input = opts.input ?? 'input_ids';
    const output = opts.output ?? 'text_embeds';
    const len = opts.contextLength ?? CLIP_CONTEXT_LENGTH;
    let fixed: number | undefined;
    let idType: DType = 'INT64';
    let maskType: DType | undefined;
    for (const r of replicas) {
      const contract = `input "${input}" INT64 [N, ${len}] → output "${output}" FP32 [N, D]`;
      const i = findSpec(label, 'input', r.client.inputs, input, contract);
      if (i.dtype !== 'INT64' && i.dtype !== 'INT32') throw new TensorMismatchError(`model ${label}: input "${input}" is ${i.dtype}, expected INT64 token ids`);
      idType = i.dtype;
      fixed = checkShape(label, 'input', i, [-1, len], `INT64 [N, ${len}]`) ?? fixed;
      for (const s of r.client.inputs.filter((x) => x.name !== input)) {
        if (s.name !== 'attention_mask' || !['INT64', 'INT32', 'BOOL', 'FP32'].includes(s.dtype)) {
          throw new TensorMismatchError(`model ${label}: it also takes input "${s.name}"; a CLIP text tower takes "${input}" (and optionally "attention_mask")`);
        }
        checkShape(label, 'input', s, [-1, len], `[N, ${len}]`);
        maskType = s.dtype;
      }
      const o = findSpec(label, 'output', r.client.outputs, output, contract);
      if (o.dtype !== 'FP32') throw new TensorMismatchError(`model ${label}: output "${output}" is ${o.dtype}, expected FP32`);
      checkShape(label, 'output', o, [-1, -1], 'FP32 [N, D]');
    }
    super(label, replicas, output, opts.batchSize ?? 32, fixed);
    this.input = input;
    this.contextLength = len;
    this.idType = idType;
    this.maskType = maskType;
  }

  /** Opens a model spec (`tower.onnx` or KServe URLs, see parseModelSpec) as a text tower. */
  static async open(spec: string | ModelSource, opts: ClipTowerOptions = {}): Promise<ClipTextTower> {
    const replicas = await openReplicas(spec, 'clip-text', opts.cuda);
    try {
      return new ClipTextTower(specLabel(spec), replicas, opts);
    } catch (err) {
      await Promise.all(replicas.map((r) => r.client.close()));
      throw err;
    }
  }

  protected feeds(rows: readonly Int32Array[]): NamedTensors {
    const len = this.contextLength;
    const flat = new Int32Array(rows.length * len);
    rows.forEach((r, i) => {
      if (r.length !== len) throw new TensorMismatchError(`model ${this.label}: text ${i} has ${r.length} ids, expected ${len}`);
      flat.set(r, i * len);
    });
    const shape = [rows.length, len];
    const ids: Tensor = this.idType === 'INT64' ? { dtype: 'INT64', shape, data: BigInt64Array.from(flat, (x) => BigInt(x)) } : { dtype: 'INT32', shape, data: flat };
    const feeds: NamedTensors = { [this.input]: ids };
    if (this.maskType) {
      const m = Array.from(flat, (x) => (x !== 0 ? 1 : 0));
      feeds.attention_mask =
        this.maskType === 'INT64' ? { dtype: 'INT64', shape, data: BigInt64Array.from(m, (x) => BigInt(x)) }
        : this.maskType === 'INT32' ? { dtype: 'INT32', shape, data: Int32Array.from(m) }
        : this.maskType === 'BOOL' ? { dtype: 'BOOL', shape, data: Uint8Array.from(m) }
        : { dtype: 'FP32', shape, data: Float32Array.from(m) };
    }
    return feeds;
  }
}

/** Checks that two towers' embeddings can be compared; the error names both models. */
export function checkSameDim(image: { label: string }, imageDim: number, text: { label: string }, textDim: number): void {
  if (imageDim !== textDim) throw new TensorMismatchError(`models ${image.label} and ${text.label}: image embeddings have ${imageDim} dims, text embeddings ${textDim}; they are not one CLIP model's towers`);
}
