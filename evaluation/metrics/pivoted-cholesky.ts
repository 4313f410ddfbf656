import { accumulateProductNT, checkSquare, PANEL } from './matrix-product.js';

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
  const tol = tolerance ?? n * Number.EPSILON * maxDiag;
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
