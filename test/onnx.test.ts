import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, describe, expect, it } from 'vitest';
import { OnnxGraphBuilder, seededRandom, tinyMlpModel } from '../src/models/onnx-builder.js';
import { cudaMissingReason, OnnxLoadError, OnnxTensorModel } from '../src/models/onnx-model.js';
import { TensorMismatchError, type Tensor } from '../src/models/tensor.js';
import { tempDir } from './helpers/temp-dir.js';

const { onnx } = onnxProto;

/** Decoded as a plain object: int64 fields as numbers, absent repeated fields as []. */
const decodeModel = (bytes: Uint8Array): any => onnx.ModelProto.toObject(onnx.ModelProto.decode(bytes), { longs: Number, defaults: true, arrays: true });

// ---- plain JS references (float64 accumulation) ----

function matmul(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    let s = 0;
    for (let t = 0; t < k; t++) s += a[i * k + t] * b[t * m + j];
    y[i * m + j] = s;
  }
  return y;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** NCHW conv, square kernel, symmetric padding, no dilation, group 1. */
function conv2d(x: Float32Array, [n, c, h, w]: number[], wt: Float32Array, bias: Float32Array, o: number, k: number, stride: number, pad: number) {
  const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - k) / stride) + 1;
  const y = new Float64Array(n * o * oh * ow);
  for (let b = 0; b < n; b++) for (let oc = 0; oc < o; oc++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) {
    let s = bias[oc];
    for (let ic = 0; ic < c; ic++) for (let di = 0; di < k; di++) for (let dj = 0; dj < k; dj++) {
      const yi = i * stride - pad + di;
      const xj = j * stride - pad + dj;
      if (yi < 0 || yi >= h || xj < 0 || xj >= w) continue;
      s += x[((b * c + ic) * h + yi) * w + xj] * wt[((oc * c + ic) * k + di) * k + dj];
    }
    y[((b * o + oc) * oh + i) * ow + j] = s;
  }
  return { y, shape: [n, o, oh, ow] };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > tol) throw new Error(`element ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

function halfToFloat(h: number): number {
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  const v = e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

const randn = (rand: () => number, n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
const fp32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'FP32', shape, data });

const opened: OnnxTensorModel[] = [];
async function load(bytes: Uint8Array, name: string) {
  const m = await OnnxTensorModel.load(bytes, { name, intraOpThreads: 1 });
  opened.push(m);
  return m;
}
afterAll(async () => { await Promise.all(opened.map((m) => m.close())); });

const BATCHES = [1, 5];

describe('OnnxTensorModel on builder graphs', () => {
  it('(a) MatMul + Add + Sigmoid (tinyMlpModel), dynamic batch', async () => {
    const { bytes, weights } = tinyMlpModel(4, 3, 7);
    const m = await load(bytes, 'mlp');
    expect(m.inputs).toEqual([{ name: 'x', dtype: 'FP32', shape: [-1, 4] }]);
    expect(m.outputs).toEqual([{ name: 'y', dtype: 'FP32', shape: [-1, 3] }]);
    for (const n of BATCHES) {
      const x = randn(seededRandom(n), n * 4);
      const { y } = await m.infer({ x: fp32([n, 4], x) });
      expect(y.dtype).toBe('FP32');
      expect(y.shape).toEqual([n, 3]);
      const ref = matmul(x, weights.w, n, 4, 3).map((v, i) => sigmoid(v + weights.b[i % 3]));
      expectClose(y.data as Float32Array, ref);
    }
    // Same seed, same model bytes: other suites rely on reproducible weights.
    expect(tinyMlpModel(4, 3, 7).bytes).toEqual(bytes);
    expect(tinyMlpModel(4, 3, 8).weights.w).not.toEqual(weights.w);
  });

  for (const opset of [17, 18]) {
    it(`(b) Conv 3→2, 3x3, pad 1, stride 2, then ReduceMean over H,W (opset ${opset})`, async () => {
      const rand = seededRandom(11);
      const wt = randn(rand, 2 * 3 * 3 * 3);
      const bias = randn(rand, 2);
      const g = new OnnxGraphBuilder('conv', { opset });
      const x = g.input('x', 'FP32', [-1, 3, 5, 5]);
      const c = g.conv(x, g.initializer('w', 'FP32', [2, 3, 3, 3], wt), g.initializer('b', 'FP32', [2], bias), { kernelShape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1 }, 'feat');
      g.output(c, 'FP32', [-1, 2, 3, 3]);
      g.output(g.reduceMean(c, [2, 3], false, 'pooled'), 'FP32', [-1, 2]);
      const bytes = g.build();

      const nodes: { opType: string; input: string[]; attribute: { name: string; ints: number[] }[] }[] = decodeModel(bytes).graph.node;
      const rm = nodes.find((n) => n.opType === 'ReduceMean')!;
      if (opset < 18) {
        expect(rm.input).toHaveLength(1);
        expect(rm.attribute.find((a) => a.name === 'axes')!.ints).toEqual([2, 3]);
      } else {
        expect(rm.input).toHaveLength(2);
        expect(rm.attribute.map((a) => a.name)).toEqual(['keepdims']);
      }

      const m = await load(bytes, `conv-${opset}`);
      for (const n of BATCHES) {
        const xs = randn(seededRandom(100 + n), n * 3 * 25);
        const out = await m.infer({ x: fp32([n, 3, 5, 5], xs) });
        const ref = conv2d(xs, [n, 3, 5, 5], wt, bias, 2, 3, 2, 1);
        expect(out.feat.shape).toEqual(ref.shape);
        expectClose(out.feat.data as Float32Array, ref.y);
        const pooled = Array.from({ length: n * 2 }, (_, i) => ref.y.slice(i * 9, i * 9 + 9).reduce((a, b) => a + b, 0) / 9);
        expect(out.pooled.shape).toEqual([n, 2]);
        expectClose(out.pooled.data as Float32Array, pooled);
      }
    });
  }

  it('(c) Reshape + Transpose', async () => {
    const g = new OnnxGraphBuilder('reshape');
    const x = g.input('x', 'FP32', [-1, 6]);
    g.output(g.transpose(g.reshape(x, [-1, 2, 3]), [0, 2, 1], 'y'), 'FP32', [-1, 3, 2]);
    const m = await load(g.build(), 'reshape');
    for (const n of BATCHES) {
      const xs = Float32Array.from({ length: n * 6 }, (_, i) => i);
      const { y } = await m.infer({ x: fp32([n, 6], xs) });
      expect(y.shape).toEqual([n, 3, 2]);
      const ref: number[] = [];
      for (let b = 0; b < n; b++) for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) ref.push(xs[b * 6 + i * 3 + j]);
      expectClose(y.data as Float32Array, ref);
    }
  });

  it('(d) Gemm with transB, alpha and beta (whole-number alpha stays a float attribute)', async () => {
    const rand = seededRandom(3);
    const bt = randn(rand, 3 * 4); // B stored [3, 4], used transposed
    const c = randn(rand, 3);
    for (const [alpha, beta] of [[0.5, 2], [1, 1]]) {
      const g = new OnnxGraphBuilder('gemm');
      const a = g.input('a', 'FP32', [-1, 4]);
      g.output(g.gemm(a, g.initializer('bt', 'FP32', [3, 4], bt), g.initializer('c', 'FP32', [3], c), { alpha, beta, transB: true }, 'y'), 'FP32', [-1, 3]);
      const m = await load(g.build(), `gemm-${alpha}`);
      const b = new Float32Array(12);
      for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) b[i * 3 + j] = bt[j * 4 + i];
      for (const n of BATCHES) {
        const as = randn(seededRandom(200 + n), n * 4);
        const { y } = await m.infer({ a: fp32([n, 4], as) });
        expectClose(y.data as Float32Array, matmul(as, b, n, 4, 3).map((v, i) => alpha * v + beta * c[i % 3]));
      }
    }
  });

  it('(e) UINT8 / INT32 / INT64 / BOOL / FP16 inputs and outputs', async () => {
    const g = new OnnxGraphBuilder('dtypes');
    const ins = { u8: 'UINT8', i32: 'INT32', i64: 'INT64', b: 'BOOL', h: 'FP16' } as const;
    let sum: string | undefined;
    for (const [name, dtype] of Object.entries(ins)) {
      const v = g.input(name, dtype, [-1, 3]);
      g.output(g.op('Identity', [v], {}, `${name}_out`), dtype, [-1, 3]);
      const f = g.cast(v, 'FP32');
      sum = sum ? g.add(sum, f) : f;
    }
    g.output(g.op('Identity', [sum!], {}, 'sum'), 'FP32', [-1, 3]);
    g.output(g.op('Greater', [sum!, g.initializer('ten', 'FP32', [], [10])], {}, 'big'), 'BOOL', [-1, 3]);
    g.output(g.cast(sum!, 'FP16', 'sum16'), 'FP16', [-1, 3]);
    g.output(g.cast(sum!, 'INT64', 'sum64'), 'INT64', [-1, 3]);
    const m = await load(g.build(), 'dtypes');
    expect(m.inputs.map((s) => s.dtype)).toEqual(['UINT8', 'INT32', 'INT64', 'BOOL', 'FP16']);

    // Halves exactly representable in FP16: 0.5, 1, 1.25, -2, 3, 0.
    const halves: [number, number][] = [[0x3800, 0.5], [0x3c00, 1], [0x3d00, 1.25], [0xc000, -2], [0x4200, 3], [0x0000, 0]];
    for (const n of BATCHES) {
      const len = n * 3;
      const u8 = Uint8Array.from({ length: len }, (_, i) => (i * 37) % 256);
      const i32 = Int32Array.from({ length: len }, (_, i) => i * 1000 - 7);
      const i64 = BigInt64Array.from({ length: len }, (_, i) => BigInt(-i * 3));
      const b = Uint8Array.from({ length: len }, (_, i) => i % 2);
      const h = Uint16Array.from({ length: len }, (_, i) => halves[i % halves.length][0]);
      const out = await m.infer({
        u8: { dtype: 'UINT8', shape: [n, 3], data: u8 },
        i32: { dtype: 'INT32', shape: [n, 3], data: i32 },
        i64: { dtype: 'INT64', shape: [n, 3], data: i64 },
        b: { dtype: 'BOOL', shape: [n, 3], data: b },
        h: { dtype: 'FP16', shape: [n, 3], data: h },
      });
      expect(out.u8_out).toEqual({ dtype: 'UINT8', shape: [n, 3], data: u8 });
      expect(out.i32_out).toEqual({ dtype: 'INT32', shape: [n, 3], data: i32 });
      expect(out.i64_out).toEqual({ dtype: 'INT64', shape: [n, 3], data: i64 });
      expect(out.b_out).toEqual({ dtype: 'BOOL', shape: [n, 3], data: b });
      expect(out.h_out).toEqual({ dtype: 'FP16', shape: [n, 3], data: h });
      const ref = Array.from({ length: len }, (_, i) => u8[i] + i32[i] + Number(i64[i]) + b[i] + halves[i % halves.length][1]);
      expectClose(out.sum.data as Float32Array, ref);
      expect(out.big).toEqual({ dtype: 'BOOL', shape: [n, 3], data: Uint8Array.from(ref, (v) => (v > 10 ? 1 : 0)) });
      expect(out.sum64.data).toEqual(BigInt64Array.from(ref, (v) => BigInt(Math.trunc(v))));
      expect(out.sum16.dtype).toBe('FP16');
      expect(out.sum16.data).toBeInstanceOf(Uint16Array);
      Array.from(out.sum16.data as Uint16Array, halfToFloat).forEach((v, i) => expect(Math.abs(v - ref[i])).toBeLessThanOrEqual(Math.abs(ref[i]) / 1024));
    }
    const only = await m.infer({
      u8: { dtype: 'UINT8', shape: [1, 3], data: new Uint8Array(3) },
      i32: { dtype: 'INT32', shape: [1, 3], data: new Int32Array(3) },
      i64: { dtype: 'INT64', shape: [1, 3], data: new BigInt64Array(3) },
      b: { dtype: 'BOOL', shape: [1, 3], data: Uint8Array.of(1, 0, 1) },
      h: { dtype: 'FP16', shape: [1, 3], data: Uint16Array.of(0x3c00, 0x3800, 0) },
    }, { outputs: ['sum16'] });
    expect(Object.keys(only)).toEqual(['sum16']);
    expect(only.sum16.data).toEqual(Uint16Array.of(0x4000, 0x3800, 0x3c00)); // 2, 0.5, 1
  });
});

describe('errors, loading and closing', () => {
  const { bytes } = tinyMlpModel(4, 3, 1);
  const x = fp32([2, 4], new Float32Array(8));

  it('rejects mismatched inputs with TensorMismatchError naming model and tensor', async () => {
    const m = await load(bytes, 'err-mlp');
    const cases: [string, Record<string, Tensor>, RegExp][] = [
      ['wrong shape', { x: fp32([2, 5], new Float32Array(10)) }, /shape \[2, 5\], expected \[\?, 4\]/],
      ['wrong rank', { x: fp32([8], new Float32Array(8)) }, /shape/],
      ['wrong dtype', { x: { dtype: 'INT32', shape: [2, 4], data: new Int32Array(8) } }, /dtype INT32, expected FP32/],
      ['missing', {}, /missing input tensor "x"/],
      ['unknown', { x, z: x }, /unknown input tensor "z"/],
      ['wrong data array', { x: { dtype: 'FP32', shape: [2, 4], data: new Float64Array(8) as never } }, /Float64Array/],
    ];
    for (const [label, inputs, re] of cases) {
      const err = await m.infer(inputs).then(() => null, (e: unknown) => e);
      expect(err, label).toBeInstanceOf(TensorMismatchError);
      expect((err as Error).message, label).toMatch(/model err-mlp/);
      expect((err as Error).message, label).toMatch(re);
      if (label !== 'unknown') expect((err as Error).message, label).toMatch(/"x"/);
    }
    await expect(m.infer({ x }, { outputs: ['nope'] })).rejects.toThrow(/model err-mlp: unknown output tensor "nope"/);
  });

  it('loads from a file path, names the model after the file, and refuses use after close', async () => {
    const dir = await tempDir('onnx');
    const file = join(dir, 'scorer.onnx');
    await writeFile(file, bytes);
    const m = await OnnxTensorModel.load(file);
    expect(m.name).toBe('scorer');
    expect(m.executionProviders).toEqual(['cpu']);
    expect((await m.infer({ x })).y.shape).toEqual([2, 3]);
    await m.close();
    await m.close();
    await expect(m.infer({ x })).rejects.toThrow(/model scorer is closed/);
  });

  it('wraps a broken model in OnnxLoadError', async () => {
    await expect(OnnxTensorModel.load(Uint8Array.of(1, 2, 3), { name: 'junk' })).rejects.toThrow(OnnxLoadError);
    await expect(OnnxTensorModel.load('/nonexistent/model.onnx')).rejects.toThrow(/model model: cannot load/);
  });

  it('honours an aborted signal before running', async () => {
    const m = await load(bytes, 'abort');
    const ac = new AbortController();
    ac.abort();
    await expect(m.infer({ x }, { signal: ac.signal })).rejects.toThrow();
  });

  it('CUDA: falls back to CPU with a warning when allowed, else fails naming how to install it', async () => {
    const warnings: string[] = [];
    const m = await OnnxTensorModel.load(bytes, { name: 'gpu-mlp', executionProviders: ['cuda', 'cpu'], onWarning: (w) => warnings.push(w) });
    opened.push(m);
    expect((await m.infer({ x })).y.shape).toEqual([2, 3]);
    if (cudaMissingReason() === null && warnings.length === 0) {
      expect(m.executionProviders).toEqual(['cuda', 'cpu']);
      return; // a machine with the CUDA EP installed and working
    }
    expect(m.executionProviders).toEqual(['cpu']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/model gpu-mlp: CUDA execution provider unavailable/);
    const err = await OnnxTensorModel.load(bytes, { name: 'gpu-only', executionProviders: ['cuda'] }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxLoadError);
    expect((err as Error).message).toMatch(/model gpu-only: CUDA execution provider unavailable/);
    expect((err as Error).message).toMatch(/--onnxruntime-node-install=cuda12/);
  });
});

describe('builder bytes decode independently of ONNX Runtime', () => {
  it('round-trips through onnx-proto with the expected ops, types and dims', () => {
    const g = new OnnxGraphBuilder('decode', { opset: 17 });
    const x = g.input('x', 'FP32', [-1, 4]);
    const y = g.gemm(g.relu(x), g.initializer('w', 'FP32', [3, 4], new Float32Array(12)), undefined, { alpha: 1, transB: true });
    g.output(g.op('Mul', [y, y], {}, 'out'), 'FP32', [-1, 3]);
    const model = decodeModel(g.build());
    expect(Number(model.irVersion)).toBe(8);
    expect(model.opsetImport.map((o: { version: number }) => o.version)).toEqual([17]);
    const graph = model.graph;
    expect(graph.node.map((n: { opType: string }) => n.opType)).toEqual(['Relu', 'Gemm', 'Mul']);
    const gemm = graph.node[1];
    const attrs = Object.fromEntries(gemm.attribute.map((a: { name: string }) => [a.name, a]));
    expect(attrs.alpha.type).toBe(onnx.AttributeProto.AttributeType.FLOAT);
    expect(attrs.alpha.f).toBe(1);
    expect(Number(attrs.transB.i)).toBe(1);
    expect(graph.initializer[0].dims.map(Number)).toEqual([3, 4]);
    expect(graph.initializer[0].dataType).toBe(1);
    expect(graph.initializer[0].rawData.byteLength).toBe(48);
    const dims = graph.input[0].type.tensorType.shape.dim;
    expect(dims[0].dimParam).toBe('batch');
    expect(Number(dims[1].dimValue)).toBe(4);
  });

  it('rejects undefined values and duplicate names at build time', () => {
    const g = new OnnxGraphBuilder('bad');
    const x = g.input('x', 'FP32', [1]);
    expect(() => g.op('Relu', ['nope'])).toThrow(/undefined value "nope"/);
    expect(() => g.op('Relu', [x], {}, 'x')).toThrow(/defined twice/);
    expect(() => g.initializer('w', 'FP32', [2, 2], [1, 2, 3])).toThrow(/3 values/);
    expect(() => g.build()).toThrow(/no outputs/);
  });
});
