/**
 * Float64 eigenvalues of real symmetric matrices, and of products A·B of symmetric positive
 * semidefinite matrices, for the Fréchet distance (n = 2048 there). Written for V8: row-major
 * Float64Array, every inner loop over contiguous memory, no native code; the blocked products
 * (accumulateProductNT) run on a hand-assembled WebAssembly SIMD kernel where there is one
 * (product-simd.ts), with the plain TypeScript loops as fallback and reference.
 *
 * Matrices are row-major n×n; only the lower triangle (column ≤ row) is read, so a symmetric
 * matrix may be passed with anything in its upper triangle.
 *
 * - symmetricEigenvalues: Householder reduction to tridiagonal form, then implicit QL with a
 *   Wilkinson-type shift on the tridiagonal matrix (the tred2/tql1 pair, values only). Rows are
 *   reduced last first, so each reflector is a contiguous row prefix; the reduction is blocked
 *   (see tridiagonalize) because unblocked it is bound by memory traffic once the matrix outgrows
 *   the caches (32 MiB at n = 2048). About 4/3·n³ flops, 4–5 s at n = 2048 on one core.
 * - symmetricProductEigenvalues: eigenvalues of A·B through a congruence. A pivoted
 *   (semidefinite) Cholesky factorisation P A Pᵀ = L Lᵀ, with L of numerical rank r, gives
 *   A·B = F·(Fᵀ B) with F = Pᵀ L; Fᵀ B F (r×r, symmetric) has the nonzero eigenvalues of A·B,
 *   whose other n − r eigenvalues are zero. About 3.3n³ flops in all (9–10 s at n = 2048), against
 *   about 14n³ for the eigendecomposition route (A = V D Vᵀ, then the eigenvalues of
 *   D^½ Vᵀ B V D^½), which needs the eigenvectors and two more full products.
 *
 * Both are backward stable: the computed eigenvalues are exact for matrices within a small
 * multiple of n·ε·‖·‖ of the inputs, and symmetric eigenvalues move by at most the norm of such a
 * perturbation (Weyl), so the error is absolute, about n·ε·‖A‖·‖B‖, and not amplified by any
 * conditioning.
 */

import { kernelFor, productSimdAvailable, scratchKernel, trimScratch, type ProductKernel } from './product-simd.js';

const EPS = 2 ** -52;

/** Throws unless `a` holds an n×n matrix. */
function checkSquare(a: Float64Array, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what}: size ${n} is not a non-negative integer`);
  if (a.length < n * n) throw new RangeError(`${what}: ${a.length} values cannot hold a ${n}×${n} matrix`);
}

/** A symmetric tridiagonal matrix T. */
export interface Tridiagonal {
  /** T[i][i], i < n. */
  diagonal: Float64Array;
  /** T[i][i+1] = T[i+1][i] for i < n − 1; the last entry is 0. */
  offDiagonal: Float64Array;
}

/** Rows per panel of the blocked reduction; below BLOCKED_MIN rows the unblocked one finishes. */
const PANEL = 64;
const BLOCKED_MIN = 256;

/**
 * Orthogonally similar tridiagonal form of the symmetric n×n matrix `a` (lower triangle read).
 * `a` is used as work space and overwritten.
 *
 * Row i is reduced against the leading i×i block by a reflector I − u uᵀ/h, which changes that
 * block to A − u qᵀ − q uᵀ. Panels of 64 rows defer those updates (LAPACK dlatrd's scheme): within a
 * panel each row is brought up to date from the panel's (u, q) pairs before its reflector is
 * formed, A·u is taken from the stale block plus corrections, and the panel's updates are applied
 * at its end as one rank-128 product (accumulateProductNT). Half the flops thus run in the
 * blocked kernel and the other half, the matrix–vector products, read the block without writing it.
 */
export function tridiagonalize(a: Float64Array, n: number): Tridiagonal {
  checkSquare(a, n, 'tridiagonalize');
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 0) return { diagonal: d, offDiagonal: e };
  let top = n;
  if (n > BLOCKED_MIN) {
    const us = new Float64Array(PANEL * n);
    const qs = new Float64Array(PANEL * n);
    const p = new Float64Array(n);
    const x = new Float64Array(n * 2 * PANEL);
    const y = new Float64Array(n * 2 * PANEL);
    while (top > BLOCKED_MIN) {
      const bottom = top - PANEL;
      for (let t = 0, i = top - 1; i >= bottom; i--, t++) {
        const ri = i * n;
        for (let s = 0; s < t; s++) {
          const o = s * n;
          const ui = us[o + i];
          const qi = qs[o + i];
          for (let c = 0; c <= i; c++) a[ri + c] -= ui * qs[o + c] + qi * us[o + c];
        }
        d[i] = a[ri + i];
        const ut = t * n;
        const h = householder(a, ri, i, us, ut, e);
        if (h === 0) {
          // Nothing to annihilate: zero vectors keep the panel's bookkeeping uniform.
          us.fill(0, ut, ut + i);
          qs.fill(0, ut, ut + i);
          continue;
        }
        symmetricTimesVector(a, n, i, us, ut, p);
        for (let s = 0; s < t; s++) {
          const o = s * n;
          let qu = 0;
          let uu = 0;
          for (let c = 0; c < i; c++) {
            const uc = us[ut + c];
            qu += qs[o + c] * uc;
            uu += us[o + c] * uc;
          }
          for (let c = 0; c < i; c++) p[c] -= us[o + c] * qu + qs[o + c] * uu;
        }
        reflectorUpdate(us, ut, p, h, i, qs, ut);
      }
      // The leading block [0, bottom) takes the whole panel's update: A ← A − X·Yᵀ with
      // X = [U Q] and Y = [Q U] (row r holds every panel vector's entry r).
      const w = 2 * PANEL;
      for (let r = 0; r < bottom; r++) {
        const o = r * w;
        for (let s = 0; s < PANEL; s++) {
          const uv = us[s * n + r];
          const qv = qs[s * n + r];
          x[o + s] = uv;
          x[o + PANEL + s] = qv;
          y[o + s] = qv;
          y[o + PANEL + s] = uv;
        }
      }
      accumulateProductNT({ data: a, stride: n }, { data: x, stride: w }, { data: y, stride: w }, bottom, bottom, w, { lowerOnly: true, sign: -1 });
      top = bottom;
    }
  }
  reduceUnblocked(a, n, top, d, e);
  return { diagonal: d, offDiagonal: e };
}

/**
 * Householder reflector for row i's off-diagonal part a[ri .. ri+i): writes u (scaled by the
 * row's 1-norm, which keeps the sum of squares clear of overflow and underflow) to
 * v[vo .. vo+i) and T[i−1][i] to e[i−1]; returns h = uᵀu/2, or 0 when the row is already
 * reduced (then e[i−1] is its last entry).
 */
function householder(a: Float64Array, ri: number, i: number, v: Float64Array, vo: number, e: Float64Array): number {
  let scale = 0;
  for (let c = 0; c < i; c++) scale += Math.abs(a[ri + c]);
  if (i === 1 || scale === 0) {
    e[i - 1] = a[ri + i - 1];
    return 0;
  }
  let h = 0;
  for (let c = 0; c < i; c++) {
    const x = a[ri + c] / scale;
    v[vo + c] = x;
    h += x * x;
  }
  // Reflect onto the last off-diagonal entry; the sign choice avoids cancellation in f − g.
  const f = v[vo + i - 1];
  const g = f >= 0 ? -Math.sqrt(h) : Math.sqrt(h);
  e[i - 1] = scale * g;
  v[vo + i - 1] = f - g;
  return h - f * g;
}

/** p = A·u over the leading i×i block (lower triangle; four rows per pass share the loads of u and p). */
function symmetricTimesVector(a: Float64Array, n: number, i: number, u: Float64Array, uo: number, p: Float64Array): void {
  p.fill(0, 0, i);
  let r = 0;
  for (; r + 3 < i; r += 4) {
    const o0 = r * n;
    const o1 = o0 + n;
    const o2 = o1 + n;
    const o3 = o2 + n;
    const v0 = u[uo + r];
    const v1 = u[uo + r + 1];
    const v2 = u[uo + r + 2];
    const v3 = u[uo + r + 3];
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let c = 0; c < r; c++) {
      const x0 = a[o0 + c];
      const x1 = a[o1 + c];
      const x2 = a[o2 + c];
      const x3 = a[o3 + c];
      const uc = u[uo + c];
      s0 += x0 * uc;
      s1 += x1 * uc;
      s2 += x2 * uc;
      s3 += x3 * uc;
      p[c] += x0 * v0 + x1 * v1 + x2 * v2 + x3 * v3;
    }
    // The 4×4 diagonal block, lower triangle.
    for (let q = 0; q < 4; q++) {
      const oq = o0 + q * n;
      const vq = u[uo + r + q];
      let s = q === 0 ? s0 : q === 1 ? s1 : q === 2 ? s2 : s3;
      for (let c = r; c < r + q; c++) {
        const x = a[oq + c];
        s += x * u[uo + c];
        p[c] += x * vq;
      }
      p[r + q] += s + a[oq + r + q] * vq;
    }
  }
  for (; r < i; r++) {
    const o = r * n;
    const v = u[uo + r];
    let s = 0;
    for (let c = 0; c < r; c++) {
      const x = a[o + c];
      s += x * u[uo + c];
      p[c] += x * v;
    }
    p[r] += s + a[o + r] * v;
  }
}

/** From p = A·u: q = p/h − (uᵀp / 2h²)·u, so that the reflected block is A − u qᵀ − q uᵀ. */
function reflectorUpdate(u: Float64Array, uo: number, p: Float64Array, h: number, i: number, q: Float64Array, qo: number): void {
  let up = 0;
  for (let c = 0; c < i; c++) {
    p[c] /= h;
    up += u[uo + c] * p[c];
  }
  const k = up / (2 * h);
  for (let c = 0; c < i; c++) q[qo + c] = p[c] - k * u[uo + c];
}

/**
 * The unblocked reduction of rows top−1 … 1 (all earlier updates applied). Each step's update of
 * the leading block is deferred into the next step's single pass over that block, fused with its
 * matrix–vector product, so the block is read and written once per step instead of read twice.
 */
function reduceUnblocked(a: Float64Array, n: number, top: number, d: Float64Array, e: Float64Array): void {
  const uPrev = new Float64Array(top);
  const qPrev = new Float64Array(top);
  const u = new Float64Array(top);
  const p = new Float64Array(top);
  let pending = false;
  for (let i = top - 1; i >= 1; i--) {
    const ri = i * n;
    if (pending) {
      const ui = uPrev[i];
      const qi = qPrev[i];
      for (let c = 0; c < i; c++) a[ri + c] -= ui * qPrev[c] + qi * uPrev[c];
      a[ri + i] -= 2 * ui * qi;
    }
    d[i] = a[ri + i];
    const h = householder(a, ri, i, u, 0, e);
    if (h === 0) {
      if (pending) {
        for (let r = 0; r < i; r++) {
          const o = r * n;
          const ur = uPrev[r];
          const qr = qPrev[r];
          for (let c = 0; c <= r; c++) a[o + c] -= ur * qPrev[c] + qr * uPrev[c];
        }
      }
      pending = false;
      continue;
    }
    if (!pending) symmetricTimesVector(a, n, i, u, 0, p);
    else {
      p.fill(0, 0, i);
      for (let r = 0; r < i; r++) {
        const o = r * n;
        const vr = u[r];
        const ur = uPrev[r];
        const qr = qPrev[r];
        let s = 0;
        for (let c = 0; c < r; c++) {
          const x = a[o + c] - ur * qPrev[c] - qr * uPrev[c];
          a[o + c] = x;
          s += x * u[c];
          p[c] += x * vr;
        }
        const x = a[o + r] - 2 * ur * qr;
        a[o + r] = x;
        p[r] += s + x * vr;
      }
    }
    reflectorUpdate(u, 0, p, h, i, qPrev, 0);
    uPrev.set(u.subarray(0, i));
    pending = true;
  }
  if (pending) a[0] -= 2 * uPrev[0] * qPrev[0];
  d[0] = a[0];
  e[n - 1] = 0;
}

/** √(x² + y²) without overflow or underflow in the squares. */
function hypot(x: number, y: number): number {
  const ax = Math.abs(x);
  const ay = Math.abs(y);
  const big = ax > ay ? ax : ay;
  if (big === 0) return 0;
  const small = ax > ay ? ay : ax;
  const t = small / big;
  return big * Math.sqrt(1 + t * t);
}

/** Eigenvalues, ascending, of the symmetric tridiagonal matrix `t` (implicit QL; `t` is not modified). */
export function tridiagonalEigenvalues(t: Tridiagonal): Float64Array {
  const n = t.diagonal.length;
  if (t.offDiagonal.length < n) throw new RangeError(`tridiagonalEigenvalues: ${t.offDiagonal.length} off-diagonal values for n = ${n}`);
  const d = Float64Array.from(t.diagonal);
  const e = Float64Array.from(t.offDiagonal.subarray(0, n));
  if (n === 0) return d;
  e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      // The block l..m is unreduced; e[m] is negligible against its neighbours (or m = n − 1).
      let m = l;
      while (m < n - 1 && Math.abs(e[m]) > EPS * (Math.abs(d[m]) + Math.abs(d[m + 1]))) m++;
      if (m === l) break;
      // Convergence is cubic for symmetric matrices; 60 sweeps for one eigenvalue means NaNs or a bug.
      if (iter === 60) throw new Error(`tridiagonalEigenvalues: no convergence for eigenvalue ${l} of ${n} (non-finite input?)`);
      // Shift: the eigenvalue of the leading 2×2 block nearer d[l].
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let deflated = false;
      // Chase the bulge up from m to l with Givens rotations.
      for (let i = m - 1; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          // The rotation underflowed: the matrix splits at i + 1; start over on the smaller block.
          d[i + 1] -= p;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
      }
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
  return d.sort();
}

/** Eigenvalues, ascending, of the symmetric n×n matrix `a` (lower triangle read; `a` is not modified). */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  checkSquare(a, n, 'symmetricEigenvalues');
  return tridiagonalEigenvalues(tridiagonalize(a.slice(0, n * n), n));
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

/** A semidefinite Cholesky factorisation P A Pᵀ = L Lᵀ with L n×rank (lower trapezoidal). */
export interface PivotedCholesky {
  /** Numerical rank: pivoting stopped when every remaining diagonal was ≤ `tolerance`. */
  rank: number;
  /** Row i of P A Pᵀ is row perm[i] of A. */
  perm: Int32Array;
  /** Lᵀ: `rank` rows of n values, zero left of the diagonal. */
  lt: Float64Array;
  tolerance: number;
}

/**
 * Cholesky factorisation with diagonal pivoting (LAPACK dpstrf's algorithm): at each step the
 * largest remaining diagonal is the pivot, and the factorisation stops when no remaining diagonal
 * exceeds `tolerance` (default n·ε·max diag A, dpstrf's). The remaining Schur complement, whose
 * entries are then at round-off level (or negative, where A is indefinite only by round-off), is
 * dropped. Columns are computed in panels of 64 (left-looking inside the panel, pivots chosen from
 * diagonals kept up to date column by column) and each panel updates the rest of the matrix as one
 * product. `a` is read (lower triangle) and not modified.
 */
export function pivotedCholesky(a: Float64Array, n: number, tolerance?: number): PivotedCholesky {
  checkSquare(a, n, 'pivotedCholesky');
  // w: lower-triangle copy; as columns are finished its lower part becomes L (in pivot order).
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j <= i; j++) {
      const x = a[o + j];
      // A NaN would fail every pivot test and end the factorisation early, silently.
      if (!Number.isFinite(x)) throw new RangeError(`pivotedCholesky: entry (${i}, ${j}) is ${x}`);
      w[o + j] = x;
    }
  }
  const perm = new Int32Array(n);
  const diag = new Float64Array(n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) {
    perm[i] = i;
    diag[i] = w[i * n + i];
    if (diag[i] > maxDiag) maxDiag = diag[i];
  }
  const tol = tolerance ?? n * EPS * maxDiag;
  let rank = n;
  outer: for (let j0 = 0; j0 < n; j0 += PANEL) {
    const j1 = Math.min(n, j0 + PANEL);
    for (let j = j0; j < j1; j++) {
      let piv = j;
      for (let i = j + 1; i < n; i++) if (diag[i] > diag[piv]) piv = i;
      if (!(diag[piv] > tol)) {
        rank = j;
        break outer;
      }
      if (piv !== j) {
        swapSymmetric(w, n, j, piv);
        const dx = diag[j];
        diag[j] = diag[piv];
        diag[piv] = dx;
        const px = perm[j];
        perm[j] = perm[piv];
        perm[piv] = px;
      }
      const ljj = Math.sqrt(diag[j]);
      const oj = j * n;
      w[oj + j] = ljj;
      // Column j: (A[i][j], updated up to the panel, − L[i][j0..j)·L[j][j0..j)) / L[j][j].
      let i = j + 1;
      for (; i + 3 < n; i += 4) {
        const o0 = i * n;
        const o1 = o0 + n;
        const o2 = o1 + n;
        const o3 = o2 + n;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = j0; k < j; k++) {
          const y = w[oj + k];
          s0 += w[o0 + k] * y;
          s1 += w[o1 + k] * y;
          s2 += w[o2 + k] * y;
          s3 += w[o3 + k] * y;
        }
        const l0 = (w[o0 + j] - s0) / ljj;
        const l1 = (w[o1 + j] - s1) / ljj;
        const l2 = (w[o2 + j] - s2) / ljj;
        const l3 = (w[o3 + j] - s3) / ljj;
        w[o0 + j] = l0;
        w[o1 + j] = l1;
        w[o2 + j] = l2;
        w[o3 + j] = l3;
        diag[i] -= l0 * l0;
        diag[i + 1] -= l1 * l1;
        diag[i + 2] -= l2 * l2;
        diag[i + 3] -= l3 * l3;
      }
      for (; i < n; i++) {
        const o = i * n;
        let s = 0;
        for (let k = j0; k < j; k++) s += w[o + k] * w[oj + k];
        const l = (w[o + j] - s) / ljj;
        w[o + j] = l;
        diag[i] -= l * l;
      }
    }
    if (j1 < n) {
      const panel = { data: w, stride: n, offset: j1 * n + j0 };
      accumulateProductNT({ data: w, stride: n, offset: j1 * n + j1 }, panel, panel, n - j1, n - j1, j1 - j0, { lowerOnly: true, sign: -1 });
    }
  }
  const lt = new Float64Array(rank * n);
  for (let c = 0; c < rank; c++) {
    const o = c * n;
    for (let r = c; r < n; r++) lt[o + r] = w[r * n + c];
  }
  return { rank, perm, lt, tolerance: tol };
}

/** Swaps indices j < p of the symmetric matrix held in w's lower triangle, row prefixes (L) included. */
function swapSymmetric(w: Float64Array, n: number, j: number, p: number): void {
  const oj = j * n;
  const op = p * n;
  let x: number;
  for (let c = 0; c < j; c++) {
    x = w[oj + c];
    w[oj + c] = w[op + c];
    w[op + c] = x;
  }
  x = w[oj + j];
  w[oj + j] = w[op + p];
  w[op + p] = x;
  for (let c = j + 1; c < p; c++) {
    x = w[c * n + j];
    w[c * n + j] = w[op + c];
    w[op + c] = x;
  }
  for (let r = p + 1; r < n; r++) {
    const o = r * n;
    x = w[o + j];
    w[o + j] = w[o + p];
    w[o + p] = x;
  }
}

/**
 * Eigenvalues, ascending, of A·B for symmetric positive semidefinite A and B (n×n, lower
 * triangles read, neither modified): the eigenvalues of Fᵀ B F (see the file comment), padded
 * with the n − rank zero eigenvalues. Both matrices are factorised and the one of lower numerical
 * rank becomes F's (A·B and B·A have the same eigenvalues): its null space then gives exact zeros
 * instead of round-off whose square roots would bias Tr √(A·B) (≈ √(ε‖A‖‖B‖) per zero).
 * The eigenvalues are ≥ 0 up to round-off. About 3.3n³ flops and four n×n float64 buffers.
 */
export function symmetricProductEigenvalues(a: Float64Array, b: Float64Array, n: number): Float64Array {
  checkSquare(a, n, 'symmetricProductEigenvalues');
  checkSquare(b, n, 'symmetricProductEigenvalues');
  const fa = pivotedCholesky(a, n);
  const fb = fa.rank === 0 ? fa : pivotedCholesky(b, n);
  const [factor, other] = fb.rank < fa.rank ? [fb, a] : [fa, b];
  const { rank, perm, lt } = factor;
  const out = new Float64Array(n);
  if (rank === 0) return out;
  // The other matrix in pivot order, full (both triangles).
  const bp = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const pi = perm[i];
    const o = i * n;
    for (let k = 0; k < n; k++) {
      const pk = perm[k];
      bp[o + k] = pi >= pk ? other[pi * n + pk] : other[pk * n + pi];
    }
  }
  // Gᵀ = Lᵀ·(P B Pᵀ): entry (c, k) is the dot product of Lᵀ row c (zero before c) with row k of
  // the symmetric P B Pᵀ.
  const gt = new Float64Array(rank * n);
  accumulateProductNT({ data: gt, stride: n }, { data: lt, stride: n }, { data: bp, stride: n }, rank, n, n, { upperA: true });
  // M = Lᵀ·G = Lᵀ (P B Pᵀ) L, lower triangle only; bp's storage is free again.
  const m = bp.subarray(0, rank * rank).fill(0);
  accumulateProductNT({ data: m, stride: rank }, { data: lt, stride: n }, { data: gt, stride: n }, rank, rank, n, { upperA: true, lowerOnly: true });
  const ev = tridiagonalEigenvalues(tridiagonalize(m, rank));
  // Zeros for the dropped directions, merged so the result stays ascending.
  let neg = 0;
  while (neg < rank && ev[neg] < 0) neg++;
  out.set(ev.subarray(0, neg), 0);
  out.set(ev.subarray(neg), neg + (n - rank));
  return out;
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
