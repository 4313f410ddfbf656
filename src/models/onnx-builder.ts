/**
 * A small builder of real ONNX graphs (serialized ModelProto bytes), so tests and the demo can
 * run ONNX Runtime on tiny models without downloading weights.
 */
import onnxProto from 'onnx-proto';
import { seededRandom } from '../seeded-random.js';
import { elementCount, type DType, type DTypeArrays } from './tensor.js';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType codes for the dtypes bitprep exchanges. */
export const ONNX_DTYPE: Record<DType, number> = { FP32: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, FP16: 10 };

/** A value in the graph, referred to by its tensor name. */
export type Value = string;

export interface FloatAttr { readonly kind: 'float'; readonly value: number }
export interface FloatsAttr { readonly kind: 'floats'; readonly value: number[] }
/**
 * Attribute values. A plain number is an INT when it is an integer and a FLOAT otherwise, so a
 * float attribute whose value happens to be whole (alpha = 1) must be wrapped with `float()`.
 */
export type AttrValue = number | number[] | string | string[] | FloatAttr | FloatsAttr;
export type Attrs = Record<string, AttrValue | undefined>;

export const float = (value: number): FloatAttr => ({ kind: 'float', value });
export const floats = (value: number[]): FloatsAttr => ({ kind: 'floats', value });

export interface ConvOptions {
  kernelShape?: number[];
  strides?: number[];
  pads?: number[];
  dilations?: number[];
  group?: number;
}

export interface GemmOptions {
  alpha?: number;
  beta?: number;
  transA?: boolean;
  transB?: boolean;
}

const AttrType = onnx.AttributeProto.AttributeType;

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: AttrType.INT, i: v } : { name, type: AttrType.FLOAT, f: v };
  if (Array.isArray(v)) {
    if (v.every((x): x is string => typeof x === 'string')) return { name, type: AttrType.STRINGS, strings: v.map((s) => new TextEncoder().encode(s)) };
    const nums = v as number[];
    return nums.every(Number.isInteger) ? { name, type: AttrType.INTS, ints: nums } : { name, type: AttrType.FLOATS, floats: nums };
  }
  return v.kind === 'float' ? { name, type: AttrType.FLOAT, f: v.value } : { name, type: AttrType.FLOATS, floats: v.value };
}

function typedData<D extends DType>(dtype: D, data: DTypeArrays[D] | number[]): DTypeArrays[D] {
  if (!Array.isArray(data)) return data;
  switch (dtype) {
    case 'FP32': return Float32Array.from(data) as DTypeArrays[D];
    case 'INT32': return Int32Array.from(data) as DTypeArrays[D];
    case 'INT64': return BigInt64Array.from(data, (x) => BigInt(x)) as DTypeArrays[D];
    case 'UINT8':
    case 'BOOL': return Uint8Array.from(data) as DTypeArrays[D];
    // Plain numbers cannot stand for FP16 without a conversion this builder does not need.
    default: throw new Error(`initializer data for ${dtype} must be a typed array (raw halves for FP16)`);
  }
}

/** ONNX raw_data is little-endian; every platform ONNX Runtime ships for is too. */
const rawBytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

function valueInfo(name: string, dtype: DType, shape: number[], dynamicName: string): onnxProto.onnx.IValueInfoProto {
  const dim = shape.map((d) => (d < 0 ? { dimParam: dynamicName } : { dimValue: d }));
  return { name, type: { tensorType: { elemType: ONNX_DTYPE[dtype], shape: { dim } } } };
}

export class OnnxGraphBuilder {
  readonly opset: number;
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly known = new Set<string>();
  private counter = 0;

  /** `dynamicDim` names every -1 dimension (they all share it, which suits a batch axis). */
  constructor(readonly name: string, private readonly opts: { opset?: number; irVersion?: number; dynamicDim?: string } = {}) {
    this.opset = opts.opset ?? 17;
  }

  input(name: string, dtype: DType, shape: number[]): Value {
    this.define(name);
    this.inputs.push(valueInfo(name, dtype, shape, this.opts.dynamicDim ?? 'batch'));
    return name;
  }

  initializer<D extends DType>(name: string, dtype: D, shape: number[], data: DTypeArrays[D] | number[]): Value {
    const arr = typedData(dtype, data);
    if (arr.length !== elementCount(shape)) throw new Error(`initializer ${name}: ${arr.length} values for shape [${shape.join(', ')}]`);
    this.define(name);
    this.initializers.push({ name, dataType: ONNX_DTYPE[dtype], dims: shape, rawData: rawBytes(arr) });
    return name;
  }

  /** Adds a node with one output; `output` names it (auto-named otherwise). */
  op(type: string, inputs: Value[], attrs: Attrs = {}, output?: string): Value {
    return this.opMulti(type, inputs, attrs, [output ?? this.fresh(type)])[0];
  }

  /** Adds a node with several outputs (e.g. TopK); '' in `inputs` skips an optional input. */
  opMulti(type: string, inputs: Value[], attrs: Attrs, outputs: string[]): Value[] {
    for (const i of inputs) if (i !== '' && !this.known.has(i)) throw new Error(`graph ${this.name}: ${type} uses undefined value "${i}"`);
    for (const o of outputs) this.define(o);
    const attribute_ = Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => attribute(k, v as AttrValue));
    this.nodes.push({ opType: type, name: `${type}_${this.nodes.length}`, input: inputs, output: outputs, attribute: attribute_ });
    return outputs;
  }

  output(value: Value, dtype: DType, shape: number[]): Value {
    if (!this.known.has(value)) throw new Error(`graph ${this.name}: output "${value}" is never produced`);
    this.outputs.push(valueInfo(value, dtype, shape, this.opts.dynamicDim ?? 'batch'));
    return value;
  }

  matMul(a: Value, b: Value, output?: string): Value { return this.op('MatMul', [a, b], {}, output); }
  add(a: Value, b: Value, output?: string): Value { return this.op('Add', [a, b], {}, output); }
  sigmoid(x: Value, output?: string): Value { return this.op('Sigmoid', [x], {}, output); }
  relu(x: Value, output?: string): Value { return this.op('Relu', [x], {}, output); }
  cast(x: Value, to: DType, output?: string): Value { return this.op('Cast', [x], { to: ONNX_DTYPE[to] }, output); }

  conv(x: Value, w: Value, b?: Value, o: ConvOptions = {}, output?: string): Value {
    const attrs: Attrs = { kernel_shape: o.kernelShape, strides: o.strides, pads: o.pads, dilations: o.dilations, group: o.group };
    return this.op('Conv', b ? [x, w, b] : [x, w], attrs, output);
  }

  /** Reshape takes its target shape as an INT64 tensor input, added here as an initializer. */
  reshape(x: Value, shape: number[], output?: string): Value {
    const s = this.initializer(this.fresh('shape'), 'INT64', [shape.length], shape);
    return this.op('Reshape', [x, s], {}, output);
  }

  transpose(x: Value, perm: number[], output?: string): Value { return this.op('Transpose', [x], { perm }, output); }

  /**
   * Reduce* ops moved `axes` from an attribute to an input: ReduceSum at opset 13, the rest at
   * 18. Emitting the wrong form is a load error in ONNX Runtime, so follow the builder's opset.
   */
  reduce(kind: 'Mean' | 'Sum' | 'Max' | 'Min' | 'Prod', x: Value, axes: number[], keepdims = true, output?: string): Value {
    const type = `Reduce${kind}`;
    const axesAsInput = this.opset >= (kind === 'Sum' ? 13 : 18);
    if (!axesAsInput) return this.op(type, [x], { axes, keepdims: keepdims ? 1 : 0 }, output);
    const a = this.initializer(this.fresh('axes'), 'INT64', [axes.length], axes);
    return this.op(type, [x, a], { keepdims: keepdims ? 1 : 0 }, output);
  }

  reduceMean(x: Value, axes: number[], keepdims = true, output?: string): Value { return this.reduce('Mean', x, axes, keepdims, output); }

  gemm(a: Value, b: Value, c?: Value, o: GemmOptions = {}, output?: string): Value {
    const attrs: Attrs = {
      alpha: o.alpha === undefined ? undefined : float(o.alpha),
      beta: o.beta === undefined ? undefined : float(o.beta),
      transA: o.transA ? 1 : undefined,
      transB: o.transB ? 1 : undefined,
    };
    return this.op('Gemm', c ? [a, b, c] : [a, b], attrs, output);
  }

  /** Serializes the model. */
  build(): Uint8Array {
    if (this.outputs.length === 0) throw new Error(`graph ${this.name} declares no outputs`);
    return onnx.ModelProto.encode(this.toProto()).finish();
  }

  toProto(): onnxProto.onnx.IModelProto {
    return {
      // IR 8 pairs with opsets up to 18, IR 9 with 19-20, IR 10 with 21+; ORT rejects an opset its IR predates.
      irVersion: this.opts.irVersion ?? (this.opset <= 18 ? 8 : this.opset <= 20 ? 9 : 10),
      producerName: 'bitprep',
      opsetImport: [{ domain: '', version: this.opset }],
      graph: { name: this.name, node: this.nodes, input: this.inputs, output: this.outputs, initializer: this.initializers },
    };
  }

  private define(name: string): void {
    if (!name) throw new Error(`graph ${this.name}: empty value name`);
    if (this.known.has(name)) throw new Error(`graph ${this.name}: value "${name}" defined twice`);
    this.known.add(name);
  }

  private fresh(prefix: string): string {
    let n: string;
    do n = `${prefix.toLowerCase()}_${this.counter++}`; while (this.known.has(n));
    return n;
  }
}

export { seededRandom };

/**
 * y = sigmoid(x · w + b) with x FP32 [-1, inDim] and y FP32 [-1, outDim]; `w` is row-major
 * [inDim, outDim]. Weights are scaled by 1/sqrt(inDim) so outputs stay off the sigmoid's flat ends.
 */
export function tinyMlpModel(inDim: number, outDim: number, seed: number): { bytes: Uint8Array; weights: { w: Float32Array; b: Float32Array } } {
  const rand = seededRandom(seed);
  const scale = 1 / Math.sqrt(inDim);
  const w = Float32Array.from({ length: inDim * outDim }, () => (rand() * 2 - 1) * scale);
  const b = Float32Array.from({ length: outDim }, () => (rand() * 2 - 1) * 0.1);
  const g = new OnnxGraphBuilder(`tiny-mlp-${inDim}x${outDim}`);
  const x = g.input('x', 'FP32', [-1, inDim]);
  const h = g.add(g.matMul(x, g.initializer('w', 'FP32', [inDim, outDim], w)), g.initializer('b', 'FP32', [outDim], b));
  g.output(g.sigmoid(h, 'y'), 'FP32', [-1, outDim]);
  return { bytes: g.build(), weights: { w, b } };
}
