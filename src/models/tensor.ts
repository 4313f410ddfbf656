/** Element types a tensor model exchanges; names follow the KServe v2 protocol. */
export type DType = 'FP32' | 'FP16' | 'UINT8' | 'INT32' | 'INT64' | 'BOOL';

/** The typed array each dtype travels in (FP16 as raw 16-bit halves in a Uint16Array). */
export interface DTypeArrays {
  FP32: Float32Array;
  FP16: Uint16Array;
  UINT8: Uint8Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  BOOL: Uint8Array;
}

export type TensorData = DTypeArrays[DType];

/** A dense, row-major tensor. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

/** A declared input or output: -1 in `shape` is a dynamic dimension (usually the batch). */
export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

export type NamedTensors = Record<string, Tensor>;

/**
 * A model that maps named tensors to named tensors: in process (ONNX Runtime) or remote
 * (KServe v2). Inputs are checked against `inputs` before any work, and a mismatch is an error
 * naming the model and the tensor.
 */
export interface TensorModel {
  readonly name: string;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  /** Runs the model; `outputs` selects which outputs to return (all by default). */
  infer(inputs: NamedTensors, opts?: { outputs?: string[]; signal?: AbortSignal }): Promise<NamedTensors>;
  close(): Promise<void>;
}

export const BYTES_PER_ELEMENT: Record<DType, number> = { FP32: 4, FP16: 2, UINT8: 1, INT32: 4, INT64: 8, BOOL: 1 };

export const elementCount = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Error for a tensor that does not match a model's declaration; servers answer it with 400. */
export class TensorMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TensorMismatchError';
  }
}

/** Checks named inputs against declared specs; throws TensorMismatchError naming model and tensor. */
export function checkInputs(model: string, specs: TensorSpec[], inputs: NamedTensors): void {
  for (const spec of specs) {
    const t = inputs[spec.name];
    if (!t) throw new TensorMismatchError(`model ${model}: missing input tensor "${spec.name}" (expects ${spec.dtype} [${spec.shape.join(', ')}])`);
    if (t.dtype !== spec.dtype) throw new TensorMismatchError(`model ${model}: input "${spec.name}" has dtype ${t.dtype}, expected ${spec.dtype}`);
    const ok = t.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === t.shape[i]);
    if (!ok) throw new TensorMismatchError(`model ${model}: input "${spec.name}" has shape [${t.shape.join(', ')}], expected [${spec.shape.map((d) => (d < 0 ? '?' : d)).join(', ')}]`);
    if (t.data.length !== elementCount(t.shape)) throw new TensorMismatchError(`model ${model}: input "${spec.name}" holds ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${elementCount(t.shape)}`);
  }
  for (const name of Object.keys(inputs)) {
    if (!specs.some((s) => s.name === name)) throw new TensorMismatchError(`model ${model}: unknown input tensor "${name}" (inputs: ${specs.map((s) => s.name).join(', ')})`);
  }
}
