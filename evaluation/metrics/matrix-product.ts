/**
 * Blocked float64 matrix products C += ±A·Bᵀ over row-major Float64Arrays, the inner loop of
 * the Fréchet distance's linear algebra (tridiagonal-eigen.ts, pivoted-cholesky.ts,
 * product-eigenvalues.ts): on the WebAssembly SIMD kernel (product-simd.ts, assembled from
 * product-simd.wat) where there is one, with the plain TypeScript loops as fallback and reference.
 */

import { kernelFor, productSimdAvailable, scratchKernel, trimScratch, type ProductKernel } from './product-simd.js';

/** Rows per panel of the blocked factorisations (tridiagonal-eigen.ts, pivoted-cholesky.ts): each panel then updates the rest as one product. */
export const PANEL = 64;

/** Throws unless `a` holds an n×n matrix. */
export function checkSquare(a: Float64Array, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what}: size ${n} is not a non-negative integer`);
  if (a.length < n * n) throw new RangeError(`${what}: ${a.length} values cannot hold a ${n}×${n} matrix`);
}

/** A row-major matrix view: element (i, j) is data[offset + i·stride + j]. */
export interface MatrixView {
  data: Float64Array;
  stride: number;
  offset?: number;
}

/**
 * C += sign·A·Bᵀ for an m×k A, an nn×k B and an m×nn C: C[i][j] += sign·Σ_k A[i][k]·B[j][k].
 * Every entry is a dot product of two contiguous rows, computed four rows of A by two rows of B
 * at a time (eight independent sums in registers, six loads per eight multiply-adds), over k in
 * chunks of 256 and B in panels of 64 rows that stay in L2. C must not overlap A or B.
 *
 * Options: `upperA` when A[i][k] = 0 for k < i (those zeros are skipped, but must be stored);
 * `lowerOnly` to update only C's lower triangle (j ≤ i): entries just above the diagonal, inside
 * the 4×2 blocks that meet it, are updated too and must be of no use to the caller.
 */
export function accumulateProductNT(
  cv: MatrixView, av: MatrixView, bv: MatrixView, m: number, nn: number, k: number,
  opts: { sign?: 1 | -1; upperA?: boolean; lowerOnly?: boolean } = {},
): void {
  // Small products stay in TypeScript: copying and calls would cost more than SIMD saves.
  if (m >= 8 && nn >= 8 && k >= 8 && m * nn * k >= 1 << 18 && productSimdAvailable()) {
    accumulateProductNTSimd(cv, av, bv, m, nn, k, opts);
    return;
  }
  accumulateProductNTPlain(cv, av, bv, m, nn, k, opts);
}

/** accumulateProductNT in plain TypeScript, whatever the size: the reference for the SIMD path. */
export function accumulateProductNTPlain(
  cv: MatrixView, av: MatrixView, bv: MatrixView, m: number, nn: number, k: number,
  opts: { sign?: 1 | -1; upperA?: boolean; lowerOnly?: boolean } = {},
): void {
  const { data: a, stride: lda } = av;
  const { data: b, stride: ldb } = bv;
  const { data: c, stride: ldc } = cv;
  const ao = av.offset ?? 0;
  const bo = bv.offset ?? 0;
  const co = cv.offset ?? 0;
  const sign = opts.sign ?? 1;
  const upperA = opts.upperA ?? false;
  const lowerOnly = opts.lowerOnly ?? false;
  const KC = 256;
  const NC = 64;
  for (let k0 = 0; k0 < k; k0 += KC) {
    const k1 = Math.min(k, k0 + KC);
    for (let j0 = 0; j0 < nn; j0 += NC) {
      const j1 = Math.min(nn, j0 + NC);
      for (let i = lowerOnly ? j0 & ~3 : 0; i < m; i += 4) {
        const ks = upperA ? Math.max(k0, i) : k0;
        if (ks >= k1) break; // upperA: A is zero over this k chunk from row i on
        const jEnd = lowerOnly ? Math.min(j1, i + 4) : j1;
        if (i + 4 > m) {
          // The last rows when m is not a multiple of 4: one dot product per entry.
          for (let r = i; r < m; r++) {
            const ar = ao + r * lda;
            for (let j = j0; j < jEnd; j++) {
              const br = bo + j * ldb;
              let s = 0;
              for (let kk = ks; kk < k1; kk++) s += a[ar + kk] * b[br + kk];
              c[co + r * ldc + j] += sign * s;
            }
          }
          break;
        }
        const a0 = ao + i * lda;
        const a1 = a0 + lda;
        const a2 = a1 + lda;
        const a3 = a2 + lda;
        let j = j0;
        for (; j + 1 < jEnd; j += 2) {
          const b0 = bo + j * ldb;
          const b1 = b0 + ldb;
          let c00 = 0, c01 = 0, c10 = 0, c11 = 0, c20 = 0, c21 = 0, c30 = 0, c31 = 0;
          for (let kk = ks; kk < k1; kk++) {
            const y0 = b[b0 + kk];
            const y1 = b[b1 + kk];
            const x0 = a[a0 + kk];
            const x1 = a[a1 + kk];
            const x2 = a[a2 + kk];
            const x3 = a[a3 + kk];
            c00 += x0 * y0;
            c01 += x0 * y1;
            c10 += x1 * y0;
            c11 += x1 * y1;
            c20 += x2 * y0;
            c21 += x2 * y1;
            c30 += x3 * y0;
            c31 += x3 * y1;
          }
          let o = co + i * ldc + j;
          c[o] += sign * c00;
          c[o + 1] += sign * c01;
          o += ldc;
          c[o] += sign * c10;
          c[o + 1] += sign * c11;
          o += ldc;
          c[o] += sign * c20;
          c[o + 1] += sign * c21;
          o += ldc;
          c[o] += sign * c30;
          c[o + 1] += sign * c31;
        }
        if (j < jEnd) {
          const b0 = bo + j * ldb;
          let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (let kk = ks; kk < k1; kk++) {
            const y = b[b0 + kk];
            c0 += a[a0 + kk] * y;
            c1 += a[a1 + kk] * y;
            c2 += a[a2 + kk] * y;
            c3 += a[a3 + kk] * y;
          }
          const o = co + i * ldc + j;
          c[o] += sign * c0;
          c[o + ldc] += sign * c1;
          c[o + 2 * ldc] += sign * c2;
          c[o + 3 * ldc] += sign * c3;
        }
      }
    }
  }
}

/**
 * accumulateProductNT on the WebAssembly SIMD kernel (product-simd.ts), same blocking and same
 * options. Matrices already in one kernel's memory (FeatureStatistics keeps its cross-products
 * and tile there) are used in place; otherwise A, B and the part of C that is updated are copied
 * into scratch memory and C's part back. Only the summation order of each dot product differs.
 */
export function accumulateProductNTSimd(
  cv: MatrixView, av: MatrixView, bv: MatrixView, m: number, nn: number, k: number,
  opts: { sign?: 1 | -1; upperA?: boolean; lowerOnly?: boolean } = {},
): void {
  const sign = opts.sign ?? 1;
  const upperA = opts.upperA ?? false;
  const lowerOnly = opts.lowerOnly ?? false;
  // Columns of C row r that the blocked loops touch: all, or (lowerOnly) up to its 4-row block's end.
  const rowEnd = (r: number) => (lowerOnly ? Math.min(nn, (r & ~3) + 4) : nn);
  const cb = cv.data.buffer, ab = av.data.buffer, bb = bv.data.buffer;
  const resident = kernelFor(cb);
  if (resident && kernelFor(ab) === resident && kernelFor(bb) === resident) {
    const f = new Float64Array(resident.memory.buffer);
    const at = (v: MatrixView) => v.data.byteOffset / 8 + (v.offset ?? 0);
    productInKernel(resident, f, at(cv), cv.stride, at(av), av.stride, at(bv), bv.stride, m, nn, k, sign, upperA, lowerOnly);
    return;
  }
  // Copies: A (m×k), B (nn×k, shared with A when the same rows), C (m×nn, touched part).
  const same = av.data === bv.data && (av.offset ?? 0) === (bv.offset ?? 0) && av.stride === bv.stride;
  const aLen = m * k, bLen = same ? 0 : nn * k, cLen = m * nn;
  const kernel = scratchKernel((aLen + bLen + cLen) * 8) as ProductKernel;
  const f = new Float64Array(kernel.memory.buffer);
  const copyRows = (src: MatrixView, rows: number, dst: number) => {
    const o = src.offset ?? 0;
    for (let r = 0; r < rows; r++) f.set(src.data.subarray(o + r * src.stride, o + r * src.stride + k), dst + r * k);
  };
  const ao = 0, bo = same ? 0 : aLen, co = aLen + bLen;
  copyRows(av, m, ao);
  if (!same) copyRows(bv, nn, bo);
  const c = cv.data, cOff = cv.offset ?? 0, ldc = cv.stride;
  for (let r = 0; r < m; r++) {
    const s = cOff + r * ldc;
    f.set(c.subarray(s, s + rowEnd(r)), co + r * nn);
  }
  productInKernel(kernel, f, co, nn, ao, k, bo, k, m, nn, k, sign, upperA, lowerOnly);
  for (let r = 0; r < m; r++) c.set(f.subarray(co + r * nn, co + r * nn + rowEnd(r)), cOff + r * ldc);
  trimScratch(64 << 20);
}

/** The blocked loops of accumulateProductNTPlain with the 4×2 blocks on the kernel; offsets and strides in f64s of `f` (the kernel's memory). */
function productInKernel(
  kernel: ProductKernel, f: Float64Array, co: number, ldc: number, ao: number, lda: number, bo: number, ldb: number,
  m: number, nn: number, k: number, sign: number, upperA: boolean, lowerOnly: boolean,
): void {
  const nt4x2 = kernel.nt4x2;
  const KC = 256;
  const NC = 64;
  for (let k0 = 0; k0 < k; k0 += KC) {
    const k1 = Math.min(k, k0 + KC);
    for (let j0 = 0; j0 < nn; j0 += NC) {
      const j1 = Math.min(nn, j0 + NC);
      for (let i = lowerOnly ? j0 & ~3 : 0; i < m; i += 4) {
        const ks = upperA ? Math.max(k0, i) : k0;
        if (ks >= k1) break;
        const jEnd = lowerOnly ? Math.min(j1, i + 4) : j1;
        if (i + 4 > m) {
          for (let r = i; r < m; r++) {
            const ar = ao + r * lda;
            for (let j = j0; j < jEnd; j++) {
              const br = bo + j * ldb;
              let s = 0;
              for (let kk = ks; kk < k1; kk++) s += f[ar + kk] * f[br + kk];
              f[co + r * ldc + j] += sign * s;
            }
          }
          break;
        }
        const pairs = (jEnd - j0) >> 1;
        if (pairs > 0) {
          nt4x2((ao + i * lda + ks) * 8, lda * 8, (bo + j0 * ldb + ks) * 8, ldb * 8, (co + i * ldc + j0) * 8, ldc * 8, pairs, k1 - ks, sign);
        }
        const j = j0 + 2 * pairs;
        if (j < jEnd) {
          const a0 = ao + i * lda, b0 = bo + j * ldb;
          let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (let kk = ks; kk < k1; kk++) {
            const y = f[b0 + kk];
            c0 += f[a0 + kk] * y;
            c1 += f[a0 + lda + kk] * y;
            c2 += f[a0 + 2 * lda + kk] * y;
            c3 += f[a0 + 3 * lda + kk] * y;
          }
          const o = co + i * ldc + j;
          f[o] += sign * c0;
          f[o + ldc] += sign * c1;
          f[o + 2 * ldc] += sign * c2;
          f[o + 3 * ldc] += sign * c3;
        }
      }
    }
  }
}
