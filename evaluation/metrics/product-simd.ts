/**
 * WebAssembly SIMD (f64x2) kernel for accumulateProductNT (symmetric-eigen.ts): a hand-assembled
 * module, so no toolchain and no dependency (the way stages/ocr/text-candidates.ts builds its
 * morphology kernel). Where WebAssembly SIMD is missing, `productKernel` gives null and the plain
 * TypeScript loops run; those stay the reference.
 *
 * `nt4x2(a, lda, b, ldb, c, ldc, pairs, k, sign)` (byte addresses and byte strides): for
 * p < pairs, the 4×2 block C[0..3][2p..2p+1] += sign·A[0..3][0..k)·B[2p..2p+1][0..k)ᵀ, where
 * row r of A starts at a + r·lda, row j of B at b + j·ldb and C[r][j] is the f64 at c + r·ldc + 8j.
 * Each dot product runs in two lanes (even and odd k), summed at the end; an odd k's last term
 * goes into lane 0. Only the summation order differs from the plain loops.
 */

import { section, str, uleb, vec } from '../../src/wasm-encoding.js';

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const I32 = 0x7f, F64 = 0x7c, V128 = 0x7b;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const add = [0x6a];
  const i32c = (v: number) => [0x41, v]; // small non-negative constants only (< 64)
  const simd = (op: number) => [0xfd, ...uleb(op)];
  const vload = [...simd(0x00), 0x04, 0x00];
  const vload64zero = [...simd(0x5d), 0x03, 0x00];
  const fmul = simd(0xf2), fadd = simd(0xf0);
  const lane = (l: number) => [...simd(0x21), l];
  // Params: 0 a, 1 lda, 2 b, 3 ldb, 4 c, 5 ldc, 6 pairs, 7 k (i32), 8 sign (f64).
  // Locals: 9 a1, 10 a2, 11 a3, 12 b1, 13 kb, 14 kend, 15 kfull, 16 cr (i32); 17..24 acc, 25 y0, 26 y1, 27 x (v128).
  const A = [0, 9, 10, 11];
  const ACC = (r: number, q: number) => 17 + 2 * r + q;
  const Y0 = 25, Y1 = 26, X = 27, B1 = 12, KB = 13, KEND = 14, KFULL = 15, CR = 16;
  const step = (load: number[]) => {
    const out = [...get(2), ...get(KB), ...add, ...load, ...set(Y0), ...get(B1), ...get(KB), ...add, ...load, ...set(Y1)];
    for (let r = 0; r < 4; r++) {
      out.push(...get(A[r]), ...get(KB), ...add, ...load, ...set(X));
      for (let q = 0; q < 2; q++) out.push(...get(ACC(r, q)), ...get(X), ...get(q ? Y1 : Y0), ...fmul, ...fadd, ...set(ACC(r, q)));
    }
    return out;
  };
  const zero = [...simd(0x0c), ...Array(16).fill(0)];
  const code: number[] = [
    ...get(0), ...get(1), ...add, ...set(9),
    ...get(9), ...get(1), ...add, ...set(10),
    ...get(10), ...get(1), ...add, ...set(11),
    ...get(7), 0x41, 0x7e, 0x71, ...i32c(3), 0x74, ...set(KEND), // kend = (k & −2) << 3
    ...get(7), ...i32c(3), 0x74, ...set(KFULL),
    0x02, 0x40, 0x03, 0x40,
    ...get(6), 0x45, 0x0d, 1, // if pairs == 0: done
    ...get(2), ...get(3), ...add, ...set(B1),
  ];
  for (let r = 0; r < 4; r++) for (let q = 0; q < 2; q++) code.push(...zero, ...set(ACC(r, q)));
  code.push(
    ...i32c(0), ...set(KB),
    0x02, 0x40, 0x03, 0x40,
    ...get(KB), ...get(KEND), 0x4f, 0x0d, 1, // kb >= kend: leave the loop
    ...step(vload),
    ...get(KB), ...i32c(16), ...add, ...set(KB),
    0x0c, 0, 0x0b, 0x0b,
    ...get(KB), ...get(KFULL), 0x49, 0x04, 0x40, // odd k: the last term in lane 0
    ...step(vload64zero),
    0x0b,
    ...get(4), ...set(CR),
  );
  for (let r = 0; r < 4; r++) {
    for (let q = 0; q < 2; q++) {
      // C[r][q] += sign·(lane 0 + lane 1)
      code.push(
        ...get(CR),
        ...get(CR), 0x2b, 0x03, q * 8,
        ...get(8), ...get(ACC(r, q)), ...lane(0), ...get(ACC(r, q)), ...lane(1), 0xa0, 0xa2, 0xa0,
        0x39, 0x03, q * 8,
      );
    }
    if (r < 3) code.push(...get(CR), ...get(5), ...add, ...set(CR));
  }
  code.push(
    ...get(2), ...get(3), ...add, ...get(3), ...add, ...set(2), // b += 2·ldb
    ...get(4), ...i32c(16), ...add, ...set(4), // c += 16
    ...get(6), ...i32c(1), 0x6b, ...set(6),
    0x0c, 0, 0x0b, 0x0b, 0x0b,
  );
  const locals = [[8, I32], [11, V128]];
  const fbody = [...vec(locals), ...code];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([...Array(8).fill([I32]), [F64]]), 0x00]])),
    ...section(2, vec([[...str('e'), ...str('m'), 0x02, 0x00, 0x01]])),
    ...section(3, vec([[0]])),
    ...section(7, vec([[...str('nt4x2'), 0x00, 0]])),
    ...section(10, vec([[...uleb(fbody.length), ...fbody]])),
  ];
  return new Uint8Array(bytes);
}

export type Nt4x2 = (a: number, lda: number, b: number, ldb: number, c: number, ldc: number, pairs: number, k: number, sign: number) => void;

/** One instance of the kernel on its own memory. */
export interface ProductKernel {
  memory: WebAssembly.Memory;
  nt4x2: Nt4x2;
}

let compiled: WebAssembly.Module | null | undefined;
let enabled = true;
const byBuffer = new WeakMap<ArrayBufferLike, ProductKernel>();

function compiledModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(moduleBytes());
      // Feature check: instantiate and run one tiny product.
      const k = instantiate(new WebAssembly.Memory({ initial: 1 }));
      const f = new Float64Array(k.memory.buffer);
      f.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24], 0);
      k.nt4x2(0, 24, 0, 24, 256, 16, 1, 3, 1); // C = A·Aᵀ over 3 columns of the 4 rows (stride 3 values)
      if (f[32] !== 1 + 4 + 9 || f[33] !== 4 + 10 + 18 || f[39] !== 10 * 4 + 11 * 5 + 12 * 6) compiled = null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

function instantiate(memory: WebAssembly.Memory): ProductKernel {
  const inst = new WebAssembly.Instance(compiled as WebAssembly.Module, { e: { m: memory } });
  const kernel = { memory, nt4x2: (inst.exports as unknown as { nt4x2: Nt4x2 }).nt4x2 };
  byBuffer.set(memory.buffer, kernel);
  return kernel;
}

/** Whether the SIMD kernel is available and enabled. */
export function productSimdAvailable(): boolean {
  return enabled && compiledModule() !== null;
}

/** Turns the SIMD kernel off (false) or back on, for comparisons with the plain path; returns the previous setting. */
export function setProductSimd(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/**
 * A kernel on a fresh memory of at least `bytes` bytes (never grown, so views on it stay valid), or
 * null without SIMD. Float64Arrays on `memory.buffer` are recognised by `kernelFor`, so products
 * of such arrays need no copying.
 */
export function productKernel(bytes: number): ProductKernel | null {
  if (compiledModule() === null) return null;
  return instantiate(new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / 65536)) }));
}

/** The kernel whose memory holds `buffer`, if any. */
export function kernelFor(buffer: ArrayBufferLike): ProductKernel | undefined {
  return byBuffer.get(buffer);
}

let scratch: ProductKernel | null = null;

/** A scratch kernel with at least `bytes` bytes of memory (its buffer may change between calls). */
export function scratchKernel(bytes: number): ProductKernel | null {
  if (compiledModule() === null) return null;
  if (!scratch) scratch = productKernel(bytes);
  else if (scratch.memory.buffer.byteLength < bytes) {
    scratch.memory.grow(Math.ceil((bytes - scratch.memory.buffer.byteLength) / 65536));
    byBuffer.set(scratch.memory.buffer, scratch);
  }
  return scratch;
}

/** Drops the scratch memory when it has grown past `keepBytes`. */
export function trimScratch(keepBytes: number): void {
  if (scratch && scratch.memory.buffer.byteLength > keepBytes) scratch = null;
}
