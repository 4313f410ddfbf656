/**
 * Inception pool features for FID, with clean-fid's "clean" preprocessing as GigaGAN's
 * evaluation calls it (FACTS.md "FID"):
 *
 * 1. `np.array(Image.open(p).convert('RGB'))` (readRgb);
 * 2. the custom transform: torchvision centre crop to min(width, height), PIL LANCZOS to
 *    `resize`×`resize` in 8 bits (skipped when `resize` is 0, as plain clean-fid and rFID do);
 * 3. clean-fid's resizer: each channel as a float32 PIL "F" image, BICUBIC to 299×299, clipped
 *    to [0, 255], no rounding (the values stay fractional);
 * 4. HWC → CHW, batched to the Inception model.
 *
 * Inception contract (the real model is clean-fid's `inception-2015-12-05` InceptionV3W, which
 * normalises its input itself, exported to ONNX or served over KServe v2):
 * - input `images`: FP32 [N, 3, 299, 299], RGB, values in [0, 255] (not normalised);
 * - output `features`: FP32 [N, 2048], the pool3 features.
 * Names, the input side and the feature dimension can be overridden (InceptionContract); the
 * contract is checked against the model's declaration when it is opened, before any image is read.
 */
import { batch, mapConcurrent } from '../../src/concurrency.js';
import { centreCropSquare, resize, type FloatImage } from '../../src/images/pil-resize.js';
import { loadTensorModels, parseModelSpec, type ModelSource } from '../../src/models/model-source.js';
import { ReplicaPool } from '../../src/models/replica-pool.js';
import type { TensorModel } from '../../src/models/tensor.js';
import type { RawImage } from '../../src/sample.js';
import { readRgb } from '../images/image-folder.js';
import { FeatureStatistics } from './frechet.js';

/** What the Inception model is expected to look like. */
export interface InceptionContract {
  /** Input tensor name; default `images`. */
  input: string;
  /** Output tensor name; default `features`. */
  output: string;
  /** Input side; default 299 (clean-fid resizes to it). */
  size: number;
  /** Feature dimension; default: whatever the model declares (2048 for the real model). */
  dim?: number;
}

export const INCEPTION_CONTRACT: Readonly<InceptionContract> = { input: 'images', output: 'features', size: 299 };

/** The size GigaGAN's evaluation resizes generated and reference images to before clean-fid (PIL LANCZOS). */
export const CLEAN_FID_RESIZE = 256;

/** How images are prepared: `resize` 0 skips the centre crop + LANCZOS step. */
export interface CleanFidOptions {
  resize: number;
  /** Inception input side (299). */
  size?: number;
}

/** Names the protocol in result files, e.g. "clean-fid clean, lanczos 256". */
export function protocolName(resize: number): string {
  return resize > 0 ? `clean-fid clean, lanczos ${resize}` : 'clean-fid clean';
}

/**
 * Steps 2–3 of the module comment: an 8-bit RGB image to the float32 HWC `size`×`size`×3 array
 * clean-fid feeds Inception (values in [0, 255], fractional).
 */
export function cleanFidResize(img: RawImage, opts: CleanFidOptions): FloatImage {
  const size = opts.size ?? INCEPTION_CONTRACT.size;
  if (img.channels !== 3) throw new Error(`clean-fid: expected an RGB image, got ${img.channels} channels`);
  let rgb = img;
  if (opts.resize > 0) rgb = resize(centreCropSquare(img), opts.resize, opts.resize, 'lanczos');
  const f: FloatImage = { data: Float32Array.from(rgb.data), width: rgb.width, height: rgb.height, channels: 3 };
  const out = resize(f, size, size, 'bicubic');
  const d = out.data;
  for (let i = 0; i < d.length; i++) d[i] = d[i] < 0 ? 0 : d[i] > 255 ? 255 : d[i];
  return out;
}

/** Interleaved HWC floats to planar CHW, written into `into` at `offset` (a batch tensor's slot). */
export function hwcToChw(img: FloatImage, into?: Float32Array, offset = 0): Float32Array {
  const { width, height, channels, data } = img;
  const plane = width * height;
  const out = into ?? new Float32Array(plane * channels);
  for (let p = 0; p < plane; p++) for (let c = 0; c < channels; c++) out[offset + c * plane + p] = data[p * channels + c];
  return out;
}

/** Decodes a file and prepares it for Inception: CHW float32. Errors name the file. */
export async function cleanFidInput(path: string, opts: CleanFidOptions): Promise<Float32Array> {
  const img = await readRgb(path);
  try {
    return hwcToChw(cleanFidResize(img, opts));
  } catch (err) {
    throw new Error(`${path}: ${(err as Error).message}`);
  }
}

/** Options for opening an Inception model from the command line. */
export interface OpenInceptionOptions {
  contract?: Partial<InceptionContract>;
  /** Run an .onnx file with the CUDA EP (falls back to CPU with a warning). */
  cuda?: boolean;
  /** How result files name the model (default: the .onnx path or the KServe model name), e.g. INCEPTION_STANDIN_LABEL. */
  label?: string;
}

/** An Inception feature extractor over one or more replicas, its contract checked. */
export class InceptionModel {
  private constructor(
    private readonly pool: ReplicaPool<TensorModel>,
    private readonly clients: TensorModel[],
    readonly contract: InceptionContract,
    /** Feature dimension, once known (declared by the model or seen in the first answer). */
    private featureDim: number | undefined,
    /** The model's name for result files: the .onnx path or the KServe model name. */
    readonly label: string,
    readonly replicas: number,
  ) {}

  /**
   * Opens `spec` (an .onnx path or KServe URLs, see parseModelSpec, or an already-parsed source)
   * and checks it declares the contract's input (FP32, [N, 3, size, size]) and output (FP32,
   * [N, dim]); a mismatch is an error naming the model and the tensor.
   */
  static async open(spec: string | ModelSource, opts: OpenInceptionOptions = {}): Promise<InceptionModel> {
    const contract: InceptionContract = { ...INCEPTION_CONTRACT, ...opts.contract };
    const src = typeof spec === 'string' ? parseModelSpec(spec, { cuda: opts.cuda }) : spec;
    const label = opts.label ?? ('onnx' in src ? src.onnx : src.model);
    const replicas = await loadTensorModels(src, 'inception');
    const clients = replicas.map((r) => r.client);
    try {
      const dim = checkContract(clients[0], contract, label);
      return new InceptionModel(new ReplicaPool(replicas), clients, contract, dim, label, replicas.length);
    } catch (err) {
      await Promise.all(clients.map((c) => c.close()));
      throw err;
    }
  }

  /** Feature dimension; undefined until known for a model that declares it dynamic. */
  get dim(): number | undefined {
    return this.featureDim;
  }

  /**
   * Features of a batch of CHW inputs (each 3·size·size floats), row-major N×dim.
   * `what` names the batch in errors (e.g. its first and last file).
   */
  async features(inputs: readonly Float32Array[], what: string): Promise<Float32Array> {
    const { input, output, size } = this.contract;
    const per = 3 * size * size;
    const n = inputs.length;
    const data = new Float32Array(n * per);
    inputs.forEach((x, i) => {
      if (x.length !== per) throw new Error(`inception: ${what}: input ${i} has ${x.length} values, expected 3×${size}×${size}`);
      data.set(x, i * per);
    });
    const result = await this.pool.run((m) => m.infer({ [input]: { dtype: 'FP32', shape: [n, 3, size, size], data } }, { outputs: [output] }), { cost: n });
    const t = result[output];
    if (!t) throw new Error(`inception model ${this.label}: ${what}: no output "${output}" in the answer`);
    if (t.dtype !== 'FP32' || !(t.data instanceof Float32Array)) throw new Error(`inception model ${this.label}: ${what}: output "${output}" is ${t.dtype}, expected FP32`);
    const d = t.shape.length === 2 ? t.shape[1] : t.shape.length === 4 && t.shape[2] === 1 && t.shape[3] === 1 ? t.shape[1] : -1;
    if (t.shape[0] !== n || d < 1) throw new Error(`inception model ${this.label}: ${what}: output "${output}" has shape [${t.shape.join(', ')}], expected [${n}, D]`);
    if (this.featureDim === undefined) this.featureDim = d;
    else if (d !== this.featureDim) throw new Error(`inception model ${this.label}: ${what}: output "${output}" has ${d} features, expected ${this.featureDim}`);
    return t.data;
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}

/** Checks a model's declaration against the contract; returns the declared feature dimension if fixed. */
function checkContract(m: TensorModel, c: InceptionContract, label: string): number | undefined {
  const fail = (msg: string): never => {
    throw new Error(`inception model ${label}: ${msg} (contract: input "${c.input}" FP32 [N, 3, ${c.size}, ${c.size}] in [0, 255], output "${c.output}" FP32 [N, ${c.dim ?? 'D'}]; override the names with --inception-input/--inception-output)`);
  };
  const inp = m.inputs.find((s) => s.name === c.input);
  if (!inp) fail(`no input "${c.input}" (inputs: ${m.inputs.map((s) => s.name).join(', ') || 'none'})`);
  const i = inp!;
  if (i.dtype !== 'FP32') fail(`input "${c.input}" is ${i.dtype}`);
  const want = [-1, 3, c.size, c.size];
  if (i.shape.length !== 4 || want.some((d, k) => k > 0 && i.shape[k] >= 0 && i.shape[k] !== d)) fail(`input "${c.input}" has shape [${i.shape.join(', ')}]`);
  const out = m.outputs.find((s) => s.name === c.output);
  if (!out) fail(`no output "${c.output}" (outputs: ${m.outputs.map((s) => s.name).join(', ') || 'none'})`);
  const o = out!;
  if (o.dtype !== 'FP32') fail(`output "${c.output}" is ${o.dtype}`);
  const okRank = o.shape.length === 2 || (o.shape.length === 4 && o.shape[2] === 1 && o.shape[3] === 1);
  if (!okRank) fail(`output "${c.output}" has shape [${o.shape.join(', ')}]`);
  const declared = o.shape[1] >= 0 ? o.shape[1] : undefined;
  if (c.dim !== undefined && declared !== undefined && declared !== c.dim) fail(`output "${c.output}" declares ${declared} features, expected ${c.dim}`);
  return c.dim ?? declared;
}

/** How a folder is streamed through Inception. */
export interface FeatureStreamOptions extends CleanFidOptions {
  batchSize: number;
  /** Images decoded and prepared ahead of the model (default 3). */
  decodeConcurrency?: number;
  /** Sees each batch's features (N×dim, row-major) and the files behind them, in input order. */
  onFeatures?: (features: Float32Array, paths: string[]) => void | Promise<void>;
  /** Called after each batch with the images done so far. */
  onProgress?: (done: number) => void;
}

/**
 * Streams image files through clean-fid preprocessing and Inception into FeatureStatistics:
 * decoding runs a few images ahead of the model, batches go to the replicas (up to one batch in
 * flight per replica), and results are added in input order so reruns give identical sums.
 */
export async function featureStatisticsOf(model: InceptionModel, paths: readonly string[], opts: FeatureStreamOptions): Promise<FeatureStatistics> {
  let stats: FeatureStatistics | undefined;
  let done = 0;
  const prepared = mapConcurrent(paths, async (path) => ({ path, x: await cleanFidInput(path, opts) }), { concurrency: opts.decodeConcurrency ?? 3 });
  const batches = batch(prepared, { size: opts.batchSize });
  const answered = mapConcurrent(batches, async (b) => {
    const what = b.length === 1 ? b[0].path : `${b[0].path} … ${b[b.length - 1].path}`;
    return { paths: b.map((x) => x.path), features: await model.features(b.map((x) => x.x), what) };
  }, { concurrency: Math.max(1, model.replicas) });
  for await (const r of answered) {
    stats ??= new FeatureStatistics(model.dim as number);
    stats.add(r.features);
    await opts.onFeatures?.(r.features, r.paths);
    done += r.paths.length;
    opts.onProgress?.(done);
  }
  if (!stats || stats.count < 2) throw new Error(`FID statistics need at least 2 images, got ${paths.length}`);
  return stats;
}
