/**
 * In-process tensor model on ONNX Runtime (onnxruntime-node).
 *
 * CUDA: `executionProviders` is a preference list. Where the CUDA EP cannot be used (its shared
 * libraries are not installed, the default on `npm install`, or CUDA/cuDNN fail to load), a list
 * that also names 'cpu' falls back to CPU with a warning; a list without 'cpu' fails with an
 * OnnxLoadError saying how to install the CUDA EP. So ['cuda', 'cpu'] is safe everywhere and
 * ['cuda'] means "GPU or nothing".
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { checkInputs, TensorMismatchError, type DType, type NamedTensors, type Tensor, type TensorModel, type TensorSpec } from './tensor.js';

export type ExecutionProvider = 'cpu' | 'cuda';

/**
 * onnxruntime-node is a native addon that takes a noticeable part of a second to load: it loads
 * with the first model, not with every command that could use one.
 */
let runtimeModule: typeof Ort | undefined;

async function onnxRuntime(): Promise<typeof Ort> {
  return (runtimeModule ??= await import('onnxruntime-node'));
}

/** The runtime, for code that only runs once a model is loaded. */
function loadedRuntime(): typeof Ort {
  if (!runtimeModule) throw new Error('onnxruntime-node is not loaded: load a model first');
  return runtimeModule;
}

export interface OnnxLoadOptions {
  /** Model name used in errors; defaults to the file's base name, or 'onnx-model' for bytes. */
  name?: string;
  /** Preference order; default ['cpu']. See the module comment for CUDA fallback. */
  executionProviders?: ExecutionProvider[];
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Receives the CUDA fallback warning; default process.emitWarning. */
  onWarning?: (message: string) => void;
}

export class OnnxLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxLoadError';
  }
}

const ORT_TYPE: Record<DType, Ort.Tensor.Type> = { FP32: 'float32', FP16: 'float16', UINT8: 'uint8', INT32: 'int32', INT64: 'int64', BOOL: 'bool' };
const DTYPE_OF = Object.fromEntries(Object.entries(ORT_TYPE).map(([d, t]) => [t, d])) as Partial<Record<string, DType>>;
const ARRAY_OF: Record<DType, new (b: ArrayBufferLike, off: number, len: number) => Tensor['data']> = {
  FP32: Float32Array, FP16: Uint16Array, UINT8: Uint8Array, INT32: Int32Array, INT64: BigInt64Array, BOOL: Uint8Array,
};

export const CUDA_INSTALL_HINT =
  'install the CUDA EP into onnxruntime-node with `node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12` ' +
  '(or `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node`; needs CUDA 12 and cuDNN 9 on the library path), ' +
  "or add 'cpu' to executionProviders to fall back";

/** Why the CUDA EP cannot load, judged from the files next to the ORT binding; null if it may. */
export function cudaMissingReason(): string | null {
  let binDir: string;
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    binDir = path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return null;
  }
  // An unknown package layout proves nothing; let ORT itself try.
  if (!existsSync(binDir)) return null;
  if (process.platform !== 'linux' && process.platform !== 'win32') return `onnxruntime-node has no CUDA EP for ${process.platform}`;
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return existsSync(path.join(binDir, lib)) ? null : `${lib} is not installed in ${binDir}`;
}

function specsOf(model: string, kind: string, meta: readonly Ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor) throw new OnnxLoadError(`model ${model}: ${kind} "${m.name}" is not a tensor`);
    const dtype = DTYPE_OF[m.type];
    if (!dtype) throw new OnnxLoadError(`model ${model}: ${kind} "${m.name}" has unsupported element type ${m.type}`);
    // Symbolic dims come back as strings (empty for unnamed ones); all are dynamic to us.
    return { name: m.name, dtype, shape: m.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
  });
}

function toOrt(model: string, name: string, t: Tensor): Ort.Tensor {
  const Ctor = ARRAY_OF[t.dtype];
  if (!(t.data instanceof Ctor)) throw new TensorMismatchError(`model ${model}: input "${name}" is ${t.dtype} but its data is a ${t.data.constructor.name}, expected ${Ctor.name}`);
  const { Tensor: OrtTensor } = loadedRuntime();
  return new OrtTensor(ORT_TYPE[t.dtype], t.data as never, t.shape);
}

function fromOrt(model: string, name: string, v: Ort.OnnxValue): Tensor {
  const dtype = DTYPE_OF[v.type];
  if (!dtype) throw new Error(`model ${model}: output "${name}" has unsupported element type ${v.type}`);
  const data = v.data as ArrayBufferView & { length: number };
  const Ctor = ARRAY_OF[dtype];
  // FP16 arrives as a Float16Array where the runtime has one; the contract is raw halves.
  const typed = data instanceof Ctor ? data : new Ctor(data.buffer, data.byteOffset, data.length);
  return { dtype, shape: [...v.dims], data: typed as Tensor['data'] };
}

export class OnnxTensorModel implements TensorModel {
  private session: Ort.InferenceSession | null;

  private constructor(
    readonly name: string,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
    /** The providers the session was created with, after any CUDA fallback. */
    readonly executionProviders: ExecutionProvider[],
    session: Ort.InferenceSession,
  ) {
    this.session = session;
  }

  static async load(source: string | Uint8Array, opts: OnnxLoadOptions = {}): Promise<OnnxTensorModel> {
    const ort = await onnxRuntime();
    const name = opts.name ?? (typeof source === 'string' ? path.basename(source).replace(/\.onnx$/i, '') : 'onnx-model');
    const requested = opts.executionProviders?.length ? [...new Set(opts.executionProviders)] : (['cpu'] as ExecutionProvider[]);
    const warn = opts.onWarning ?? ((m: string) => process.emitWarning(m, { code: 'BITPREP_ONNX_CUDA_FALLBACK' }));
    const create = (eps: ExecutionProvider[]) => {
      const options: Ort.InferenceSession.SessionOptions = { executionProviders: eps, graphOptimizationLevel: 'all' };
      if (opts.intraOpThreads !== undefined) options.intraOpNumThreads = opts.intraOpThreads;
      if (opts.interOpThreads !== undefined) options.interOpNumThreads = opts.interOpThreads;
      return typeof source === 'string' ? ort.InferenceSession.create(source, options) : ort.InferenceSession.create(source, options);
    };
    const withoutCuda = requested.filter((e) => e !== 'cuda');
    const fallback = (reason: string, cause?: unknown): ExecutionProvider[] => {
      if (!withoutCuda.includes('cpu')) throw new OnnxLoadError(`model ${name}: CUDA execution provider unavailable (${reason}); ${CUDA_INSTALL_HINT}`, { cause });
      warn(`model ${name}: CUDA execution provider unavailable (${reason}); running on ${withoutCuda.join(', ')}`);
      return withoutCuda;
    };

    let eps = requested;
    if (eps.includes('cuda')) {
      const missing = cudaMissingReason();
      if (missing) eps = fallback(missing);
    }
    const what = typeof source === 'string' ? source : `${source.byteLength} bytes`;
    const loadError = (e: unknown) => new OnnxLoadError(`model ${name}: cannot load ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    let session: Ort.InferenceSession;
    try {
      session = await create(eps);
    } catch (e) {
      // The CUDA libraries exist but did not load (no driver, wrong CUDA/cuDNN): same rule as missing ones.
      const msg = e instanceof Error ? e.message : String(e);
      if (!(eps.includes('cuda') && /cuda|shared library|provider/i.test(msg))) throw loadError(e);
      eps = fallback(msg, e);
      session = await create(eps).catch((e2: unknown) => { throw loadError(e2); });
    }
    try {
      return new OnnxTensorModel(name, specsOf(name, 'input', session.inputMetadata), specsOf(name, 'output', session.outputMetadata), eps, session);
    } catch (e) {
      await session.release();
      throw e;
    }
  }

  async infer(inputs: NamedTensors, opts: { outputs?: string[]; signal?: AbortSignal } = {}): Promise<NamedTensors> {
    const session = this.session;
    if (!session) throw new Error(`model ${this.name} is closed`);
    opts.signal?.throwIfAborted();
    checkInputs(this.name, this.inputs, inputs);
    const wanted = opts.outputs ?? this.outputs.map((o) => o.name);
    for (const o of wanted) {
      if (!this.outputs.some((s) => s.name === o)) throw new TensorMismatchError(`model ${this.name}: unknown output tensor "${o}" (outputs: ${this.outputs.map((s) => s.name).join(', ')})`);
    }
    const feeds: Record<string, Ort.Tensor> = {};
    for (const [k, t] of Object.entries(inputs)) feeds[k] = toOrt(this.name, k, t);
    const result = await session.run(feeds, wanted);
    // ORT cannot be interrupted mid-run from Node; honouring the signal afterwards still lets callers drop late results.
    opts.signal?.throwIfAborted();
    const out: NamedTensors = {};
    for (const o of wanted) out[o] = fromOrt(this.name, o, result[o]);
    return out;
  }

  async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    await s?.release();
  }
}
