/**
 * WebAssembly SIMD (f64x2) kernel for accumulateProductNT (matrix-product.ts), written as text in
 * product-simd.wat. Where WebAssembly SIMD is missing, `productKernel` gives null and the plain
 * TypeScript loops run; those stay the reference.
 *
 * `nt4x2(a, lda, b, ldb, c, ldc, pairs, k, sign)` (byte addresses and byte strides): for
 * p < pairs, the 4×2 block C[0..3][2p..2p+1] += sign·A[0..3][0..k)·B[2p..2p+1][0..k)ᵀ, where
 * row r of A starts at a + r·lda, row j of B at b + j·ldb and C[r][j] is the f64 at c + r·ldc + 8j.
 * Each dot product runs in two lanes (even and odd k), summed at the end; an odd k's last term
 * goes into lane 0. Only the summation order differs from the plain loops.
 */

import { PRODUCT_SIMD_WASM } from './product-simd.wasm.js';

/** The kernel's module (product-simd.wat, assembled by scripts/build-wasm.mjs). */
const moduleBytes = (): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(PRODUCT_SIMD_WASM, 'base64'));

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
