import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packLogits, unpackLatent } from '../src/formats/latent-bits.js';
import { halfToFloat } from '../src/formats/half-float.js';
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import type { DType, TensorModel } from '../src/models/tensor.js';
import { BIT_ENCODER_CONTRACT, BitEncoderContractError, bitEncoderInputDtype, checkBitEncoder, imageToEncoderInput, imageToEncoderInputHalf } from '../stages/bit-encoder.js';
import { BIT_STANDIN_GRID, buildBitEncoderStandin, type BitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { tempDir } from './helpers/temp-dir.js';

const { onnx } = onnxProto;
const SIZE = 512;

interface BadSpec {
  inputName?: string;
  inputDtype?: DType;
  channels?: number;
  outBits?: number;
  outDtype?: DType;
  /** Input dims as declared; -1 is dynamic. */
  inShape?: number[];
}

/**
 * An encoder-like graph that breaks the contract as told: a patch Conv → Reshape → Transpose like
 * the stand-in, with Casts where a dtype is off, so ONNX Runtime loads it and reports real metadata.
 */
function badEncoder(spec: BadSpec): Uint8Array {
  const channels = spec.channels ?? 3;
  const bits = spec.outBits ?? 64;
  const inShape = spec.inShape ?? [-1, channels, SIZE, SIZE];
  const g = new OnnxGraphBuilder('bad-encoder', { opset: 17, dynamicDim: 'N' });
  const input = g.input(spec.inputName ?? 'image', spec.inputDtype ?? 'FP32', inShape);
  const x = (spec.inputDtype ?? 'FP32') === 'FP32' ? input : g.cast(input, 'FP32');
  const w = g.initializer('w', 'FP32', [bits, channels, 32, 64], new Float32Array(bits * channels * 32 * 64).fill(1e-3));
  const y = g.transpose(g.reshape(g.conv(x, w, undefined, { kernelShape: [32, 64], strides: [32, 64] }), [0, bits, 128]), [0, 2, 1]);
  const outDtype = spec.outDtype ?? 'FP32';
  g.output(outDtype === 'FP32' ? g.op('Identity', [y], {}, 'logits') : g.cast(y, outDtype, 'logits'), outDtype, [-1, 128, bits]);
  // Dynamic height and width need their own names, or ORT would tie them to the batch.
  const proto = g.toProto();
  const dims = proto.graph!.input![0].type!.tensorType!.shape!.dim!;
  inShape.forEach((d, i) => {
    if (d < 0) dims[i] = { dimParam: ['N', 'C', 'H', 'W'][i] };
  });
  return onnx.ModelProto.encode(proto).finish();
}

const problemsOf = (model: TensorModel, opts?: Parameters<typeof checkBitEncoder>[1]): string[] => {
  try {
    checkBitEncoder(model, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(BitEncoderContractError);
    const err = e as BitEncoderContractError;
    // Every problem is in the one message, with the remedy.
    for (const p of err.problems) expect(err.message).toContain(p);
    expect(err.message).toContain('re-export with tools/export_bit_encoder.py');
    expect(err.message).toContain(`model ${model.name} does not meet the BIT encoder contract`);
    return err.problems;
  }
  return [];
};

/** Logits as the stand-in defines them, from its raw weights, in float64 and straight from the bytes. */
function referenceLogits(m: BitEncoderStandin, rgb: Uint8Array): Float64Array {
  const { size, weights, bias } = m;
  const [kh, kw] = m.kernel;
  const { rows, cols } = BIT_STANDIN_GRID;
  const x = Float64Array.from({ length: 3 * size * size }, (_, i) => {
    const c = Math.floor(i / (size * size));
    const p = i % (size * size);
    return rgb[p * 3 + c] / 127.5 - 1;
  });
  const out = new Float64Array(128 * 64);
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const t = row * cols + col;
      for (let j = 0; j < 64; j++) {
        let s = bias[j];
        for (let c = 0; c < 3; c++) {
          for (let y = 0; y < kh; y++) {
            const xi = c * size * size + (row * kh + y) * size + col * kw;
            const wi = ((j * 3 + c) * kh + y) * kw;
            for (let k = 0; k < kw; k++) s += weights[wi + k] * x[xi + k];
          }
        }
        out[t * 64 + j] = s;
      }
    }
  }
  return out;
}

async function drawImages(): Promise<Uint8Array[]> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#1040c0"/><stop offset="1" stop-color="#f0d020"/></linearGradient></defs>
    <rect width="640" height="480" fill="url(#g)"/>
    <circle cx="200" cy="180" r="110" fill="#d02020"/>
    <rect x="380" y="260" width="200" height="160" fill="#ffffff" transform="rotate(12 480 340)"/>
    <path d="M0 470 L640 300" stroke="#000" stroke-width="14"/>
  </svg>`;
  const toRaw = (img: Sharp) => img.resize(SIZE, SIZE, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  const a = await toRaw(sharp(Buffer.from(svg)));
  const b = await toRaw(sharp({ create: { width: 300, height: 200, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 120, sigma: 50 } } }).png());
  return [a, b].map((buf) => new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

describe('imageToEncoderInput', () => {
  it('maps 0 → −1 and 255 → +1 and writes planar NCHW at the offset', () => {
    const size = 2;
    // Pixels (row-major) as interleaved RGB: each channel gets its own recognisable values.
    const rgb = Uint8Array.from([0, 255, 10, 255, 0, 20, 51, 102, 30, 127, 128, 40]);
    const out = new Float32Array(2 + 2 * 3 * size * size).fill(99);
    imageToEncoderInput(rgb, size, out, 2 + 3 * size * size);
    expect(Array.from(out.subarray(0, 2 + 12))).toEqual(new Array(14).fill(99));
    const got = Array.from(out.subarray(14));
    const want = [0, 255, 51, 127, 255, 0, 102, 128, 10, 20, 30, 40].map((v) => Math.fround(v / 127.5 - 1));
    expect(got).toEqual(want);
    expect(got[0]).toBe(-1);
    expect(got[1]).toBe(1);
    expect(got[5]).toBe(-1);
    expect(got[4]).toBe(1);

    const half = new Uint16Array(12);
    imageToEncoderInputHalf(rgb, size, half);
    expect(half[0]).toBe(0xbc00);
    expect(half[1]).toBe(0x3c00);
    Array.from(half).forEach((h, i) => expect(Math.abs(halfToFloat(h) - want[i])).toBeLessThanOrEqual(2 ** -11));

    expect(() => imageToEncoderInput(rgb.subarray(1), size, out)).toThrow(/2×2 interleaved RGB \(12 bytes\), got 11/);
    expect(() => imageToEncoderInput(rgb, size, out, 20)).toThrow(/cannot hold 12 from offset 20/);
  });
});

describe('BIT encoder stand-in', () => {
  let images: Uint8Array[];
  let standin: BitEncoderStandin;
  let model: OnnxTensorModel;
  const opened: TensorModel[] = [];
  const load = async (bytes: Uint8Array, name: string) => {
    const m = await OnnxTensorModel.load(bytes, { name });
    opened.push(m);
    return m;
  };

  beforeAll(async () => {
    images = await drawImages();
    standin = buildBitEncoderStandin(7);
    const dir = await tempDir('bit-encoder');
    const file = join(dir, 'bit_encoder.onnx');
    await writeFile(file, standin.onnx);
    model = await OnnxTensorModel.load(file);
    opened.push(model);
  });
  afterAll(async () => {
    await Promise.all(opened.map((m) => m.close()));
  });

  it('has the contract: image FP32 [N, 3, 512, 512] → logits FP32 [N, 128, 64]', () => {
    expect(model.name).toBe('bit_encoder');
    expect(model.inputs).toEqual([{ name: 'image', dtype: 'FP32', shape: [-1, 3, 512, 512] }]);
    expect(model.outputs).toEqual([{ name: 'logits', dtype: 'FP32', shape: [-1, 128, 64] }]);
    expect(() => checkBitEncoder(model)).not.toThrow();
    expect(() => checkBitEncoder(model, { size: 512, dtype: 'FP32' })).not.toThrow();
    expect(bitEncoderInputDtype(model)).toBe('FP32');
    expect(standin.kernel).toEqual([32, 64]);
    expect(standin.weights.length).toBe(64 * 3 * 32 * 64);
    // The same seed gives the same model; another seed another one.
    // Buffer.equals: vitest's deep equality takes seconds on 1.5 MB.
    const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    expect(same(buildBitEncoderStandin(7).onnx, standin.onnx)).toBe(true);
    expect(same(buildBitEncoderStandin(8).weights, standin.weights)).toBe(false);
  });

  it('gives the logits of a direct float64 convolution over the 16×8 grid, for a batch of 2 and of 1', async () => {
    const per = 3 * SIZE * SIZE;
    const x = new Float32Array(2 * per);
    images.forEach((rgb, i) => imageToEncoderInput(rgb, SIZE, x, i * per));
    const { logits } = await model.infer({ image: { dtype: 'FP32', shape: [2, 3, SIZE, SIZE], data: x } });
    expect(logits.dtype).toBe('FP32');
    expect(logits.shape).toEqual([2, 128, 64]);
    const got = logits.data as Float32Array;
    const refs = images.map((rgb) => referenceLogits(standin, rgb));
    refs.forEach((ref, n) => {
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[n * ref.length + i] - ref[i]));
      expect(worst).toBeLessThan(1e-3);
    });

    // The fixture is not degenerate: about half the bits are set, and the two images differ.
    const bits = [0, 1].map((n) => unpackLatent(packLogits(got, n * 8192)));
    for (const b of bits) {
      const ones = b.reduce((a, v) => a + v, 0) / b.length;
      expect(ones).toBeGreaterThan(0.3);
      expect(ones).toBeLessThan(0.7);
    }
    const differ = bits[0].reduce((a, v, i) => a + (v !== bits[1][i] ? 1 : 0), 0);
    expect(differ).toBeGreaterThan(1000);
    // Logits sit clear of 0 for most bits, so the ±1e-3 above cannot flip many of them.
    expect(refs[0].filter((v) => Math.abs(v) > 1e-2).length).toBeGreaterThan(0.9 * 8192);

    const one = await model.infer({ image: { dtype: 'FP32', shape: [1, 3, SIZE, SIZE], data: x.slice(per) } });
    expect(Array.from(one.logits.data as Float32Array)).toEqual(Array.from(got.subarray(8192)));
  });

  it('token t covers grid cell (t div 8, t mod 8): changing one 32×64 patch changes only that token', async () => {
    const rgb = images[0].slice();
    const [row, col] = [5, 3];
    for (let y = row * 32; y < (row + 1) * 32; y++) {
      for (let xx = col * 64; xx < (col + 1) * 64; xx++) for (let c = 0; c < 3; c++) rgb[(y * SIZE + xx) * 3 + c] = (xx * 7 + y * 13 + c * 50) & 255;
    }
    const per = 3 * SIZE * SIZE;
    const x = new Float32Array(2 * per);
    imageToEncoderInput(images[0], SIZE, x, 0);
    imageToEncoderInput(rgb, SIZE, x, per);
    const got = (await model.infer({ image: { dtype: 'FP32', shape: [2, 3, SIZE, SIZE], data: x } })).logits.data as Float32Array;
    const changed = new Set<number>();
    for (let i = 0; i < 8192; i++) if (got[i] !== got[8192 + i]) changed.add(Math.floor(i / 64));
    expect([...changed]).toEqual([row * 8 + col]);
  });

  it('an FP16-input stand-in passes the FP16 check and matches the FP32 logits', async () => {
    const m16 = await load(buildBitEncoderStandin(7, SIZE, { dtype: 'FP16' }).onnx, 'bit_encoder_fp16');
    expect(m16.inputs[0]).toEqual({ name: 'image', dtype: 'FP16', shape: [-1, 3, 512, 512] });
    expect(() => checkBitEncoder(m16, { dtype: 'FP16' })).not.toThrow();
    expect(() => checkBitEncoder(m16)).not.toThrow();
    expect(bitEncoderInputDtype(m16)).toBe('FP16');
    expect(problemsOf(m16, { dtype: 'FP32' })).toEqual(['input "image" dtype: expected FP32, found FP16']);
    expect(problemsOf(model, { dtype: 'FP16' })).toEqual(['input "image" dtype: expected FP16, found FP32']);

    const h = new Uint16Array(3 * SIZE * SIZE);
    imageToEncoderInputHalf(images[0], SIZE, h);
    const got = (await m16.infer({ image: { dtype: 'FP16', shape: [1, 3, SIZE, SIZE], data: h } })).logits;
    expect(got.dtype).toBe('FP32');
    const ref = referenceLogits(standin, images[0]);
    const data = got.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(data[i] - ref[i]));
    expect(worst).toBeLessThan(1e-3);
  });

  it('the resolution is a parameter: a 256 stand-in passes with size 256 and is refused at the default 512', async () => {
    const s256 = buildBitEncoderStandin(3, 256);
    expect(s256.kernel).toEqual([16, 32]);
    const m = await load(s256.onnx, 'enc256');
    expect(() => checkBitEncoder(m, { size: 256 })).not.toThrow();
    expect(problemsOf(m)).toEqual([
      'input "image" height dim (2): expected 512, found 256 (pass size if the encoder really runs at that resolution)',
      'input "image" width dim (3): expected 512, found 256 (pass size if the encoder really runs at that resolution)',
    ]);
    expect(() => buildBitEncoderStandin(1, 500)).toThrow(/multiple of 16/);
  });

  it('refuses a wrong output shape, input name, input dtype and channel count, each named', async () => {
    const shape = await load(badEncoder({ outBits: 32 }), 'bad-shape');
    expect(problemsOf(shape)).toEqual(['output "logits" shape: expected [N, 128, 64], found [?, 128, 32]']);

    const named = await load(badEncoder({ inputName: 'pixel_values' }), 'bad-name');
    expect(problemsOf(named)).toEqual(['input name: expected "image", found "pixel_values"']);

    const typed = await load(badEncoder({ inputDtype: 'UINT8' }), 'bad-dtype');
    expect(problemsOf(typed)).toEqual(['input "image" dtype: expected FP32 or FP16, found UINT8']);

    const outTyped = await load(badEncoder({ outDtype: 'FP16' }), 'bad-out-dtype');
    expect(problemsOf(outTyped)).toEqual(['output "logits" dtype: expected FP32, found FP16 (cast the logits to float32 in the export)']);

    const rgba = await load(badEncoder({ channels: 4 }), 'bad-channels');
    expect(problemsOf(rgba)).toEqual(['input "image" channel dim (1): expected 3 (RGB, NCHW), found 4']);
  });

  it('lists every mismatch of a model in one error', async () => {
    const m = await load(badEncoder({ inputName: 'pixel_values', inputDtype: 'UINT8', channels: 4, outBits: 32 }), 'all-wrong');
    const problems = problemsOf(m);
    expect(problems).toEqual([
      'input name: expected "image", found "pixel_values"',
      'input "pixel_values" (should be "image") dtype: expected FP32 or FP16, found UINT8',
      'input "pixel_values" (should be "image") channel dim (1): expected 3 (RGB, NCHW), found 4',
      'output "logits" shape: expected [N, 128, 64], found [?, 128, 32]',
    ]);
    expect(() => checkBitEncoder(m)).toThrow(/model all-wrong does not meet the BIT encoder contract \(input "image" FP32 or FP16 \[N, 3, 512, 512\] → output "logits" FP32 \[N, 128, 64\]\)/);
  });

  it('takes a fixed batch only when it is the batch sent, and dynamic spatial dims only with an explicit size', async () => {
    const fixed = await load(badEncoder({ inShape: [4, 3, SIZE, SIZE] }), 'batch4');
    expect(problemsOf(fixed)).toEqual(['input "image" batch dim: expected dynamic (N), found fixed 4']);
    expect(problemsOf(fixed, { batch: 8 })).toEqual(['input "image" batch dim: expected dynamic (N), found fixed 4 while batches of 8 will be sent']);
    expect(problemsOf(fixed, { batch: 4 })).toEqual([]);

    const anySize = await load(badEncoder({ inShape: [-1, 3, -1, -1] }), 'any-size');
    expect(anySize.inputs[0].shape).toEqual([-1, 3, -1, -1]);
    expect(problemsOf(anySize)).toEqual([
      'input "image" height dim (2): dynamic, and no size was given; pass the resolution the encoder was trained at explicitly (size: 512) or export with a fixed size',
      'input "image" width dim (3): dynamic, and no size was given; pass the resolution the encoder was trained at explicitly (size: 512) or export with a fixed size',
    ]);
    expect(problemsOf(anySize, { size: 512 })).toEqual([]);
    expect(BIT_ENCODER_CONTRACT.input.name).toBe('image');
  });
});
