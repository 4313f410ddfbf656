import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  FeatureStatistics, featureStatistics, frechetDistance, frechetDistanceTerms, readFrechetStatistics, writeFrechetStatistics,
  type FrechetStatistics,
} from '../evaluation/metrics/frechet.js';
import { accumulateProductNTPlain, accumulateProductNTSimd } from '../evaluation/metrics/matrix-product.js';
import { pivotedCholesky } from '../evaluation/metrics/pivoted-cholesky.js';
import { symmetricProductEigenvalues } from '../evaluation/metrics/product-eigenvalues.js';
import { symmetricEigenvalues } from '../evaluation/metrics/tridiagonal-eigen.js';
import { productSimdAvailable, setProductSimd } from '../evaluation/metrics/product-simd.js';
import { halfToFloat, floatToHalf } from '../src/formats/half-float.js';
import { crc32, encodeNpz, parseNpz, readNpz, writeNpz } from '../src/formats/npz.js';
import { tempDir } from './helpers/temp-dir.js';

const run = promisify(execFile);
// Debian's interpreter by path (python3-numpy and python3-scipy come with python3-skimage, which
// scripts/test-deps.sh installs): a pyenv or venv python earlier on PATH may lack them.
const DEBIAN_PYTHON = '/usr/bin/python3';

/*
 * Deterministic features, computed identically here and in the reference script below: an LCG
 * s ← (1103515245·s + 12345) mod 2^31 drawn row by row, u = s/2^31 − 0.5, and feature j of a row
 * = scale·u[j] + 0.5·u[(5j + 1) mod dim] + offset·(j mod 7) (each feature shares a term with
 * another, so Σ is far from diagonal), rounded to float32 as Inception features are.
 *
 * Reference values: Debian's numpy 1.24 / scipy 1.10, float64, clean-fid's frechet_distance:
 *
 *   import numpy as np, scipy.linalg as sl
 *   def features(seed, rows, dim, scale, offset):
 *       s = seed; out = np.empty((rows, dim))
 *       for r in range(rows):
 *           u = [0.0] * dim
 *           for j in range(dim):
 *               s = (1103515245 * s + 12345) % 2147483648
 *               u[j] = s / 2147483648 - 0.5
 *           for j in range(dim):
 *               out[r, j] = scale * u[j] + 0.5 * u[(5 * j + 1) % dim] + offset * (j % 7)
 *       return out.astype(np.float32).astype(np.float64)
 *   x1 = features(1, 2100, 2048, 1.0, 0.0); x2 = features(2, 2100, 2048, 1.25, 0.01)
 *   mu1, s1 = x1.mean(axis=0), np.cov(x1, rowvar=False)
 *   mu2, s2 = x2.mean(axis=0), np.cov(x2, rowvar=False)
 *   covmean, _ = sl.sqrtm(s1.dot(s2), disp=False)              # real here; clean-fid keeps .real
 *   diff = mu1 - mu2
 *   fid = diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)
 *   L = np.linalg.cholesky(s1)                                  # the symmetric form, for comparison
 *   tr_sym = np.sqrt(np.maximum(np.linalg.eigvalsh(L.T @ s2 @ L), 0)).sum()
 */
function lcgFeatures(seed: number, rows: number, dim: number, scale: number, offset: number): Float32Array {
  const out = new Float32Array(rows * dim);
  const u = new Float64Array(dim);
  let s = seed;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dim; j++) {
      // Low 31 bits of the product are exact in 32-bit arithmetic, as 2^31 divides 2^32.
      s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
      u[j] = s / 2147483648 - 0.5;
    }
    for (let j = 0; j < dim; j++) out[r * dim + j] = scale * u[j] + 0.5 * u[(5 * j + 1) % dim] + offset * (j % 7);
  }
  return out;
}

const rel = (x: number, ref: number) => Math.abs(x - ref) / Math.abs(ref);

/** Bitwise equality of float arrays (vitest's toEqual walks millions of elements slowly). */
const sameBits = (x: Float64Array, y: Float64Array) => x.length === y.length && Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));

/** Streams features through FeatureStatistics in uneven batches, as an Inception loop would hand them over. */
function streamed(features: Float32Array, dim: number, batches: number[]): FrechetStatistics {
  const acc = new FeatureStatistics(dim);
  let row = 0;
  const rows = features.length / dim;
  for (let b = 0; row < rows; b++) {
    const take = Math.min(batches[b % batches.length], rows - row);
    acc.add(features.subarray(row * dim, (row + take) * dim));
    row += take;
  }
  expect(acc.count).toBe(rows);
  return acc.statistics();
}

/** A random orthogonal n×n matrix (product of Householder reflections), built independently of the solver. */
function orthogonal(n: number, seed: number): Float64Array {
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  let s = seed;
  const v = new Float64Array(n);
  for (let r = 0; r < 6; r++) {
    let norm = 0;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
      v[i] = s / 2147483648 - 0.5;
      norm += v[i] * v[i];
    }
    // Q ← Q (I − 2 v vᵀ / vᵀv)
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += q[i * n + k] * v[k];
      const f = (2 * dot) / norm;
      for (let k = 0; k < n; k++) q[i * n + k] -= f * v[k];
    }
  }
  return q;
}

/** Q diag(d) Qᵀ. */
function withSpectrum(q: Float64Array, d: ArrayLike<number>, n: number): Float64Array {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let t = 0;
      for (let k = 0; k < n; k++) t += q[i * n + k] * d[k] * q[j * n + k];
      a[i * n + j] = t;
      a[j * n + i] = t;
    }
  }
  return a;
}

describe('Fréchet distance (FID) in float64', () => {
  it('agrees with numpy/scipy (clean-fid\'s sqrtm formula) within 1e-6 on 2048-d statistics of 2100 float32 features each', () => {
    const dim = 2048;
    const s1 = streamed(lcgFeatures(1, 2100, dim, 1, 0), dim, [128, 77, 300]);
    const s2 = streamed(lcgFeatures(2, 2100, dim, 1.25, 0.01), dim, [2100]);
    // Statistics first, entry by entry (numpy.mean and numpy.cov of the same float32 features).
    expect(rel(s1.mu[0], 0.000969670568371103)).toBeLessThan(1e-9);
    expect(rel(s2.mu[dim - 1], 0.06030060090688667)).toBeLessThan(1e-12);
    expect(rel(s1.sigma[0], 0.10404635708320173)).toBeLessThan(1e-12);
    expect(rel(s1.sigma[1 * dim + 0], 0.04320160695583816)).toBeLessThan(1e-12);
    expect(s1.sigma[0 * dim + 1]).toBe(s1.sigma[1 * dim + 0]);
    expect(rel(s1.sigma[1 * dim + 5], 0.0007151110266116035)).toBeLessThan(1e-10);
    expect(rel(s2.sigma[(dim - 1) * dim + dim - 2], -0.0032596185600389472)).toBeLessThan(1e-10);
    expect(rel(s1.sigma.reduce((a, b) => a + b, 0), 379.92155909596397)).toBeLessThan(1e-10);

    const t = frechetDistanceTerms(s1, s2);
    expect(rel(t.traceSigma1, 213.40611520125992)).toBeLessThan(1e-12);
    expect(rel(t.traceSigma2, 309.53031156218674)).toBeLessThan(1e-12);
    expect(rel(t.meanTerm, 2.9584771209598077)).toBeLessThan(1e-10);
    // scipy.linalg.sqrtm's trace 203.17495488612747, the symmetric form's in numpy 203.17495488612704.
    expect(rel(t.traceSqrt, 203.17495488612747)).toBeLessThan(1e-9);
    expect(rel(t.distance, 119.54499411215147)).toBeLessThan(1e-6);
    // What is actually achieved, far inside the requirement: float64 round-off.
    expect(rel(t.distance, 119.54499411215147)).toBeLessThan(1e-10);
  }, 180_000);

  it('is exact where the answer is known: rank-deficient covariances (fewer samples than dimensions)', () => {
    const dim = 96;
    const s1 = featureStatistics(lcgFeatures(3, 40, dim, 1, 0), dim);
    const s2 = featureStatistics(lcgFeatures(4, 60, dim, 1.25, 0.01), dim);
    /*
     * Truth from mpmath at 40 digits on the same float32 features (μ, Σ1 = F Fᵀ with F the
     * centred features / √39, eigenvalues of Fᵀ Σ2 F by mp.eigsy): 10.812825566535218252,
     * Tr √(Σ1Σ2) = 7.5123268005825902128. clean-fid's sqrtm gives 10.812825251297912 (its
     * complex round-off has imaginary parts of 4e-9 and the 57 zero eigenvalues of Σ1Σ2 add
     * square roots of round-off: relative error 2.9e-8).
     */
    const t = frechetDistanceTerms(s1, s2);
    expect(rel(t.traceSqrt, 7.5123268005825902128)).toBeLessThan(1e-12);
    expect(rel(t.distance, 10.812825566535218252)).toBeLessThan(1e-12);
    expect(rel(t.distance, 10.812825251297912)).toBeLessThan(1e-6);
    // Identical statistics: 0 (sqrtm gives −3.0e-7 here).
    expect(Math.abs(frechetDistance(s1, s1))).toBeLessThan(1e-12 * t.traceSigma1);
    expect(Math.abs(frechetDistance(s2, s2))).toBeLessThan(1e-12 * t.traceSigma2);
  });

  it('equals ‖Δμ‖² + Σ(√a − √b)² for covariances with common eigenvectors, singular ones included', () => {
    const n = 300;
    const q = orthogonal(n, 99);
    const mu1 = Float64Array.from({ length: n }, (_, i) => Math.sin(i));
    const mu2 = Float64Array.from({ length: n }, (_, i) => Math.cos(i) / 2);
    const error = (da: number[], db: number[]) => {
      const a: FrechetStatistics = { dim: n, mu: mu1, sigma: withSpectrum(q, da, n) };
      const b: FrechetStatistics = { dim: n, mu: mu2, sigma: withSpectrum(q, db, n) };
      let expected = 0;
      for (let i = 0; i < n; i++) expected += (Math.sqrt(da[i]) - Math.sqrt(db[i])) ** 2 + (mu1[i] - mu2[i]) ** 2;
      return [Math.abs(frechetDistance(a, b) - expected), Math.abs(frechetDistance(b, a) - expected), expected];
    };
    const full = Array.from({ length: n }, (_, i) => 0.2 + ((i * 13) % 29) / 5);
    const singular = Array.from({ length: n }, (_, i) => (i % 10 === 0 ? 0 : 0.01 + (i % 37) / 7));
    for (const [da, db] of [[full, full.map((x) => x * 1.5)], [singular, full]]) {
      const [e1, e2, expected] = error(da, db);
      expect(e1 / expected).toBeLessThan(1e-12);
      expect(e2 / expected).toBeLessThan(1e-12);
    }
    // Both singular, with different null spaces: Σ1Σ2 has zero eigenvalues that no factor of
    // either removes, and Σ1, Σ2 themselves carry round-off there (≈ ε‖Σ‖, from forming Q D Qᵀ),
    // so √ of round-off (≈ √(ε‖Σ1‖‖Σ2‖) each) enters any eigenvalue-based Tr √, sqrtm's included.
    const other = Array.from({ length: n }, (_, i) => (i % 15 === 3 ? 0 : 0.2 + ((i * 13) % 29) / 5));
    const [e1, e2] = error(singular, other);
    const zeros = 20;
    const floor = zeros * Math.sqrt(n * 2 ** -52 * 5.3 * 5.8);
    expect(e1).toBeLessThan(floor);
    expect(e2).toBeLessThan(floor);
  });

  it('streams: any batching gives the one-shot statistics, and features far from 0 do not cancel', () => {
    const dim = 37;
    const x = lcgFeatures(5, 1000, dim, 1, 0);
    const one = featureStatistics(x, dim);
    const parts = streamed(x, dim, [1, 2, 255, 256, 257, 3]);
    for (let i = 0; i < dim * dim; i++) expect(Math.abs(parts.sigma[i] - one.sigma[i])).toBeLessThan(1e-15);
    for (let i = 0; i < dim; i++) expect(Math.abs(parts.mu[i] - one.mu[i])).toBeLessThan(1e-15);
    // Two-pass reference in float64 (numpy.cov's method).
    const mean = new Float64Array(dim);
    for (let r = 0; r < 1000; r++) for (let j = 0; j < dim; j++) mean[j] += x[r * dim + j] / 1000;
    const cov = (i: number, j: number) => {
      let t = 0;
      for (let r = 0; r < 1000; r++) t += (x[r * dim + i] - mean[i]) * (x[r * dim + j] - mean[j]);
      return t / 999;
    };
    for (const [i, j] of [[0, 0], [3, 1], [36, 35], [20, 7]]) expect(rel(one.sigma[i * dim + j], cov(i, j))).toBeLessThan(1e-12);
    // Offsets of 1e4 on unit-scale features: one-pass sums of squares would lose 8 digits.
    const shifted = Float64Array.from(x, (v, k) => v + 1e4 + (k % dim));
    const s = featureStatistics(shifted, dim);
    for (const [i, j] of [[0, 0], [3, 1], [36, 35], [20, 7]]) expect(Math.abs(s.sigma[i * dim + j] - cov(i, j))).toBeLessThan(1e-11);
    expect(() => new FeatureStatistics(4).add([1, 2, 3])).toThrow(/whole 4-d vectors/);
    expect(() => new FeatureStatistics(2).add([1, 2]).statistics()).toThrow(/at least 2/);
    expect(() => new FeatureStatistics(2).add([1, NaN])).toThrow(/NaN/);
  });

  it('refuses statistics that cannot be covariances or do not match', () => {
    const good = featureStatistics(lcgFeatures(6, 10, 4, 1, 0), 4);
    const bad = (patch: (s: FrechetStatistics) => void) => {
      const s = { ...good, mu: good.mu.slice(), sigma: good.sigma.slice() };
      patch(s);
      return () => frechetDistance(good, s);
    };
    expect(bad((s) => (s.sigma[1] += 0.5))).toThrow(/not symmetric/);
    expect(bad((s) => (s.sigma[5] = -1))).toThrow(/negative variance/);
    expect(bad((s) => (s.mu[2] = Infinity))).toThrow(/μ\[2\] is Infinity/);
    expect(bad((s) => (s.sigma[6] = NaN))).toThrow(/NaN/);
    expect(() => frechetDistance(good, featureStatistics(lcgFeatures(6, 10, 5, 1, 0), 5))).toThrow(/dimensions differ/);
  });
});

describe('symmetric eigenvalues (Householder tridiagonalisation + implicit QL)', () => {
  it('recovers known spectra, with repeated, zero and negative eigenvalues, through the blocked path', () => {
    for (const n of [1, 2, 3, 5, 64, 257, 600]) {
      const q = orthogonal(n, n);
      const d = Array.from({ length: n }, (_, i) => (i % 9 === 0 ? 0 : i % 4 === 1 ? 2.5 : (i % 23) - 11.5 + i / n));
      const ev = symmetricEigenvalues(withSpectrum(q, d, n), n);
      const sorted = [...d].sort((x, y) => x - y);
      for (let i = 0; i < n; i++) expect(Math.abs(ev[i] - sorted[i])).toBeLessThan(1e-12 * 12 * Math.max(1, Math.sqrt(n)));
    }
    // Diagonal and already tridiagonal inputs take the no-reflection branches, blocked and not.
    expect(Array.from(symmetricEigenvalues(Float64Array.from([3, 0, 0, 0, -1, 0, 0, 0, 2]), 3))).toEqual([-1, 2, 3]);
    const diag = new Float64Array(600 * 600);
    for (let i = 0; i < 600; i++) diag[i * 601] = (i * 37) % 101;
    expect(Array.from(symmetricEigenvalues(diag, 600))).toEqual(Array.from({ length: 600 }, (_, i) => (i * 37) % 101).sort((x, y) => x - y));
    // A zero row and column (a dead feature's variance) in the middle of a dense matrix.
    const n = 601;
    const d = Array.from({ length: n - 1 }, (_, i) => 1 + (i % 17));
    const inner = withSpectrum(orthogonal(n - 1, 5), d, n - 1);
    const dead = new Float64Array(n * n);
    const at = (i: number) => (i < 450 ? i : i - 1);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== 450 && j !== 450) dead[i * n + j] = inner[at(i) * (n - 1) + at(j)];
    const evDead = symmetricEigenvalues(dead, n);
    [0, ...d].sort((x, y) => x - y).forEach((v, i) => expect(Math.abs(evDead[i] - v)).toBeLessThan(1e-12 * 17 * 25));
    const ev = symmetricEigenvalues(Float64Array.from([2, -1, 0, -1, 2, -1, 0, -1, 2]), 3);
    [2 - Math.SQRT2, 2, 2 + Math.SQRT2].forEach((v, i) => expect(ev[i]).toBeCloseTo(v, 14));
  });

  it('gives products of eigenvalues for commuting A·B and the numerical rank of semidefinite matrices', () => {
    const n = 333;
    const q = orthogonal(n, 7);
    const da = Array.from({ length: n }, (_, i) => (i < 100 ? 0 : 1 + (i % 13)));
    const db = Array.from({ length: n }, (_, i) => (i >= 300 ? 0 : 0.5 + (i % 5)));
    const a = withSpectrum(q, da, n);
    const b = withSpectrum(q, db, n);
    expect(pivotedCholesky(a, n).rank).toBe(n - 100);
    expect(pivotedCholesky(b, n).rank).toBe(300);
    const expected = da.map((x, i) => x * db[i]).sort((x, y) => x - y);
    for (const ev of [symmetricProductEigenvalues(a, b, n), symmetricProductEigenvalues(b, a, n)]) {
      for (let i = 0; i < n; i++) expect(Math.abs(ev[i] - expected[i])).toBeLessThan(1e-11 * 12 * 5);
    }
  });
});

/** Values by integer formula (exact in both languages): ((k·7919) mod 1009) / 997 − 0.5. */
function formula(count: number): Float64Array {
  return Float64Array.from({ length: count }, (_, k) => ((k * 7919) % 1009) / 997 - 0.5);
}

const NPZ_SCRIPT = `
import io, json, sys, zipfile
import numpy as np
d = sys.argv[1]
def arr(shape, dtype):
    k = np.arange(int(np.prod(shape)))
    return (((k * 7919) % 1009) / 997 - 0.5).reshape(shape).astype(dtype)
mu, sigma = arr((2048,), np.float64), arr((2048, 2048), np.float64)
np.savez(d + '/stored.npz', mu=mu, sigma=sigma, f32=arr((3, 5), np.float32), f16=arr((7,), np.float16), ints=np.arange(4))
np.savez_compressed(d + '/compressed.npz', mu=mu.astype(np.float32), sigma=sigma, scalar=np.float64(2.5))
class Pipe:  # no seek or tell, like a pipe: zipfile then writes data descriptors after each member
    def __init__(self): self.b = io.BytesIO()
    def write(self, x): return self.b.write(x)
    def flush(self): pass
    def read(self, n=-1): raise OSError('write-only')  # numpy.savez takes objects with read() as files
p = Pipe()
np.savez_compressed(p, mu=mu[:10], sigma=sigma[:10, :10])
open(d + '/streamed.npz', 'wb').write(p.b.getvalue())
# ours.npz and stats.npz were written by bitprep: check them here, as numpy reads them.
z = np.load(d + '/ours.npz')
s = np.load(d + '/stats.npz')
print(json.dumps({
    'flags': [zipfile.ZipFile(d + '/' + f).infolist()[0].flag_bits for f in ('stored.npz', 'compressed.npz', 'streamed.npz')],
    'f16': arr((7,), np.float16).astype(float).tolist(),
    'ours': {k: [str(z[k].dtype), list(z[k].shape)] for k in z.files},
    'ours_equal': bool(np.array_equal(z['mu'], mu) and np.array_equal(z['sigma'], sigma) and np.array_equal(z['f32'], arr((3, 5), np.float32)) and np.array_equal(z['f16'], arr((7,), np.float16))),
    'ours_testzip': zipfile.ZipFile(d + '/ours.npz').testzip(),
    'stats': [str(s['mu'].dtype), list(s['sigma'].shape), float(s['mu'].sum()), float(s['sigma'][3, 1])],
}))
`;

describe('cross-product kernel: WebAssembly SIMD (f64x2) against the plain TypeScript loops', () => {
  const random = (seed: number, len: number) => {
    let s = seed;
    return Float64Array.from({ length: len }, () => ((s = (1103515245 * s + 12345) % 2147483648) / 2147483648) - 0.5);
  };
  // |difference| relative to the largest |C| entry: only the summation order differs.
  const relDiff = (x: Float64Array, y: Float64Array) => {
    let d = 0, m = 0;
    for (let i = 0; i < x.length; i++) {
      d = Math.max(d, Math.abs(x[i] - y[i]));
      m = Math.max(m, Math.abs(y[i]));
    }
    return d / m;
  };

  it('is available in this Node (WebAssembly SIMD), so the comparisons below test it', () => {
    expect(productSimdAvailable()).toBe(true);
  });

  it('gives C ± A·Bᵀ within 1e-13 of the plain loops for odd sizes, offsets, strides and every option', () => {
    // Sizes off the SIMD width (2), the 4×2 block, the 64-column panel and the 256 k chunk.
    const cases: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [4, 2, 1], [7, 9, 3], [13, 66, 255], [70, 70, 257], [131, 67, 513], [64, 64, 256], [66, 130, 2]];
    let worst = 0;
    let seed = 7;
    for (const [m, nn, k] of cases) {
      for (const [upperA, lowerOnly, sign] of [[false, false, 1], [false, true, 1], [true, false, -1], [true, true, -1]] as const) {
        if (lowerOnly && m !== nn) continue;
        const lda = k + 3, ldb = k + 1, ldc = nn + 5;
        const a = random(seed++, 2 + m * lda);
        const b = random(seed++, 1 + nn * ldb);
        const c0 = random(seed++, 4 + m * ldc);
        const cPlain = c0.slice(), cSimd = c0.slice();
        const views = (c: Float64Array) => [{ data: c, stride: ldc, offset: 4 }, { data: a, stride: lda, offset: 2 }, { data: b, stride: ldb, offset: 1 }] as const;
        const opts = { upperA, lowerOnly, sign };
        accumulateProductNTPlain(...views(cPlain), m, nn, k, opts);
        accumulateProductNTSimd(...views(cSimd), m, nn, k, opts);
        if (lowerOnly) {
          // Entries above the 4×2 blocks on the diagonal are never touched; inside them they are scratch.
          for (let r = 0; r < m; r++) for (let j = (r & ~3) + 4; j < nn; j++) expect(cSimd[4 + r * ldc + j]).toBe(c0[4 + r * ldc + j]);
        }
        worst = Math.max(worst, relDiff(cSimd, cPlain));
        // A = B (the same rows): the copying path shares them.
        const sPlain = c0.slice(0, 4 + m * ldc), sSimd = sPlain.slice();
        const av = { data: a, stride: lda, offset: 2 };
        accumulateProductNTPlain({ data: sPlain, stride: ldc, offset: 4 }, av, av, m, Math.min(nn, m), k, opts);
        accumulateProductNTSimd({ data: sSimd, stride: ldc, offset: 4 }, av, av, m, Math.min(nn, m), k, opts);
        worst = Math.max(worst, relDiff(sSimd, sPlain));
      }
    }
    expect(worst).toBeLessThan(1e-13);
    expect(worst).toBeGreaterThan(0); // the orders do differ, so this compared two computations
  });

  it('gives the same FID statistics and distance as the plain path (end to end, odd batch and count)', () => {
    const dim = 203, rows = 517;
    const x = Float32Array.from(random(11, rows * dim), (v, i) => v + 0.3 * (i % 5));
    const run = () => {
      const acc = new FeatureStatistics(dim);
      for (let r = 0; r < rows; r += 37) acc.add(x.subarray(r * dim, Math.min(rows, r + 37) * dim));
      return acc.statistics();
    };
    const simd = run();
    const other = { ...simd, mu: simd.mu.map((v, i) => v + 0.01 * (i % 3)), sigma: simd.sigma.map((v, i) => (i % (dim + 1) === 0 ? v * 1.5 : v)) };
    const dSimd = frechetDistance(simd, other);
    const was = setProductSimd(false);
    let plain: FrechetStatistics, dPlain: number;
    try {
      plain = run();
      dPlain = frechetDistance(plain, other);
    } finally {
      setProductSimd(was);
    }
    expect(simd.mu).toEqual(plain.mu);
    expect(relDiff(simd.sigma, plain.sigma)).toBeLessThan(1e-13);
    expect(Math.abs(dSimd - dPlain) / dPlain).toBeLessThan(1e-12);
  });
});

describe('.npz archives (numpy.savez / savez_compressed)', () => {
  it('reads what numpy writes (stored, deflated, streamed with data descriptors; f8, f4, f2) and numpy reads what bitprep writes', async () => {
    const dir = await tempDir('npz');
    const mu = formula(2048);
    const sigma = formula(2048 * 2048);
    const f32 = Float32Array.from(formula(15));
    const f16src = formula(7);
    await writeNpz(join(dir, 'ours.npz'), {
      mu: { data: mu, shape: [2048] },
      sigma: { data: sigma, shape: [2048, 2048] },
      f32: { data: f32, shape: [3, 5], dtype: 'f4' },
      f16: { data: f16src, shape: [7], dtype: 'f2' },
    });
    const sigma4 = Float64Array.from({ length: 16 }, (_, k) => (k % 5 === 0 ? 1 : 0));
    sigma4[3 * 4 + 1] = sigma4[1 * 4 + 3] = 0.125;
    const stats: FrechetStatistics = { dim: 4, mu: Float64Array.from([0.1, 0.2, 0.3, 0.4]), sigma: sigma4 };
    await writeFrechetStatistics(join(dir, 'stats.npz'), stats);

    const { stdout } = await run(DEBIAN_PYTHON, ['-c', NPZ_SCRIPT, dir], { maxBuffer: 1 << 20 });
    const py = JSON.parse(stdout) as { flags: number[]; f16: number[]; ours: Record<string, [string, number[]]>; ours_equal: boolean; ours_testzip: string | null; stats: [string, number[], number, number] };

    // numpy's view of bitprep's archives.
    expect(py.ours).toEqual({ mu: ['float64', [2048]], sigma: ['float64', [2048, 2048]], f32: ['float32', [3, 5]], f16: ['float16', [7]] });
    expect(py.ours_equal).toBe(true);
    expect(py.ours_testzip).toBeNull();
    expect(py.stats.slice(0, 2)).toEqual(['float64', [4, 4]]);
    expect(py.stats[2]).toBeCloseTo(1, 15);
    expect(py.stats[3]).toBe(0.125);
    expect(await readFrechetStatistics(join(dir, 'stats.npz'))).toEqual({ dim: 4, mu: stats.mu, sigma: stats.sigma });

    // bitprep's view of numpy's.
    expect(py.flags[2] & 0x8).toBe(0x8); // the streamed archive really has data descriptors
    const stored = await readNpz(join(dir, 'stored.npz'));
    expect(stored.names).toEqual(['mu', 'sigma', 'f32', 'f16', 'ints']);
    expect(stored.get('mu')).toEqual({ dtype: 'f8', shape: [2048], data: mu });
    const storedSigma = stored.get('sigma');
    expect([storedSigma.dtype, storedSigma.shape, sameBits(storedSigma.data, sigma)]).toEqual(['f8', [2048, 2048], true]);
    expect(stored.get('f32')).toEqual({ dtype: 'f4', shape: [3, 5], data: Float64Array.from(f32) });
    expect(stored.get('f16')).toEqual({ dtype: 'f2', shape: [7], data: Float64Array.from(py.f16) });
    expect(Array.from(stored.get('f16').data)).toEqual(Array.from(f16src, (v) => halfToFloat(floatToHalf(v))));
    expect(() => stored.get('ints')).toThrow(/<i8 is not supported/);
    expect(() => stored.get('nope')).toThrow(/no member 'nope' \(members: mu, sigma, f32, f16, ints\)/);

    const compressed = await readNpz(join(dir, 'compressed.npz'));
    expect(compressed.get('mu')).toEqual({ dtype: 'f4', shape: [2048], data: Float64Array.from(Float32Array.from(mu)) });
    expect(sameBits(compressed.get('sigma').data, sigma)).toBe(true);
    expect(compressed.get('scalar')).toEqual({ dtype: 'f8', shape: [], data: Float64Array.from([2.5]) });
    // clean-fid's own stats files look like this one: float32 mu, float64 sigma, deflated.
    const cf = await readFrechetStatistics(join(dir, 'compressed.npz'));
    expect(cf.dim).toBe(2048);
    expect(cf.mu).toEqual(Float64Array.from(Float32Array.from(mu)));

    const streamedNpz = await readNpz(join(dir, 'streamed.npz'));
    expect(streamedNpz.get('sigma')).toEqual({ dtype: 'f8', shape: [10, 10], data: Float64Array.from({ length: 100 }, (_, k) => sigma[Math.floor(k / 10) * 2048 + (k % 10)]) });

    await expect(readFrechetStatistics(join(dir, 'ours.npz'))).resolves.toMatchObject({ dim: 2048 });
    await writeNpz(join(dir, 'nomu.npz'), { sigma: { data: [1], shape: [1, 1] } });
    await expect(readFrechetStatistics(join(dir, 'nomu.npz'))).rejects.toThrow(/no 'mu' array \(members: sigma\)/);
    await writeNpz(join(dir, 'shape.npz'), { mu: { data: [1, 2], shape: [2] }, sigma: { data: [1, 2, 3], shape: [3] } });
    await expect(readFrechetStatistics(join(dir, 'shape.npz'))).rejects.toThrow(/sigma has shape \(3\), expected \(2, 2\)/);
  }, 60_000);

  it('writes the same bytes for the same arrays, and reports corrupt or foreign files', async () => {
    const members = { mu: { data: [1, 2, 3], shape: [3] }, sigma: { data: [1, 0, 0, 1], shape: [2, 2], dtype: 'f4' as const } };
    const bytes = encodeNpz(members);
    expect(Buffer.from(encodeNpz(members)).equals(Buffer.from(bytes))).toBe(true);
    expect(parseNpz(bytes).get('sigma')).toEqual({ dtype: 'f4', shape: [2, 2], data: Float64Array.from([1, 0, 0, 1]) });
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926); // the CRC-32 check value

    const flipped = bytes.slice();
    flipped[30 + 'mu.npy'.length + 128 + 3] ^= 0x40; // inside mu's data
    expect(() => parseNpz(flipped, 'flipped.npz').get('mu')).toThrow(/flipped.npz: member mu fails its CRC-32 check/);
    expect(() => parseNpz(bytes.subarray(0, bytes.length - 30), 'cut.npz')).toThrow(/cut.npz: not a zip archive/);
    const dir = await tempDir('npz-bad');
    await writeFile(join(dir, 'x.npy'), new Uint8Array(100));
    await expect(readNpz(join(dir, 'x.npy'))).rejects.toThrow(/not a zip archive/);
  });
});
