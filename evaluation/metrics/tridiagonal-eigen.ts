/**
 * Eigenvalues of a real symmetric matrix: Householder reduction to tridiagonal form, then
 * implicit QL with a Wilkinson-type shift on the tridiagonal matrix (the tred2/tql1 pair, values
 * only). Rows are reduced last first, so each reflector is a contiguous row prefix; the reduction
 * is blocked (see tridiagonalize) because unblocked it is bound by memory traffic once the matrix
 * outgrows the caches (32 MiB at n = 2048). About 4/3·n³ flops, 4–5 s at n = 2048 on one core.
 *
 * Matrices are row-major n×n; only the lower triangle (column ≤ row) is read. Backward stable:
 * the eigenvalues are exact for a matrix within a small multiple of n·ε·‖A‖ of the input.
 */

import { accumulateProductNT, checkSquare, PANEL } from './matrix-product.js';

/** A symmetric tridiagonal matrix T. */
export interface Tridiagonal {
  /** T[i][i], i < n. */
  diagonal: Float64Array;
  /** T[i][i+1] = T[i+1][i] for i < n − 1; the last entry is 0. */
  offDiagonal: Float64Array;
}

/** Below this many rows the unblocked reduction finishes. */
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
      while (m < n - 1 && Math.abs(e[m]) > Number.EPSILON * (Math.abs(d[m]) + Math.abs(d[m + 1]))) m++;
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
