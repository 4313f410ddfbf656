/**
 * Fréchet distance between Gaussians fitted to feature sets (FID with Inception pool features,
 * 2048-d), in float64, as clean-fid computes it:
 *
 *   d² = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2·Tr √(Σ1·Σ2),   μ = mean, Σ = covariance with N − 1.
 *
 * clean-fid (like pytorch-fid and TTUR) takes `scipy.linalg.sqrtm(sigma1.dot(sigma2))`, a Schur
 * method square root of the non-symmetric product, drops an imaginary part if the diagonal's is
 * below 1e-3 (raising otherwise), adds 1e-6·I to both Σ when the root is not finite, and sums the
 * root's diagonal. Tr √(Σ1Σ2) is the sum of the square roots of the eigenvalues of Σ1Σ2, which
 * are real and ≥ 0 because Σ1Σ2 is similar to the symmetric semidefinite Fᵀ Σ2 F (Σ1 = F Fᵀ).
 * bitprep computes exactly that sum from the symmetric form (product-eigenvalues.ts:
 * symmetricProductEigenvalues), which is at least as accurate: a backward-stable symmetric
 * eigensolver gets every eigenvalue to an absolute n·ε·‖Σ1‖‖Σ2‖, whatever the conditioning,
 * while the Schur route on the non-normal product carries its eigenvector conditioning into the
 * result and produces the complex round-off that clean-fid has to discard. Round-off can leave
 * eigenvalues that should be 0 slightly negative: they count as 0 (clamped), not as imaginary
 * roots. Where Σ1 or Σ2 is singular (fewer samples than dimensions) the factor of lower rank
 * carries the computation, so the null directions contribute exact zeros; sqrtm instead adds
 * square roots of round-off there (√(ε·‖Σ1‖‖Σ2‖) each), a small upward bias of Tr √.
 *
 * Statistics are accumulated in float64 from batches of float32 or float64 features, so 50k ×
 * 2048 features never need to be held at once (numpy.cov needs them all, and clean-fid keeps
 * them); μ comes out in float64 where clean-fid's numpy.mean of float32 features is float32.
 */
import { readNpz, writeNpz } from '../../src/formats/npz.js';
import { productKernel, productSimdAvailable } from './product-simd.js';
import { accumulateProductNT } from './matrix-product.js';
import { symmetricProductEigenvalues } from './product-eigenvalues.js';

/** Gaussian statistics of a feature set, as FID stats files (.npz with `mu`, `sigma`) hold them. */
export interface FrechetStatistics {
  dim: number;
  /** Mean feature vector μ, `dim` values. */
  mu: Float64Array;
  /** Covariance Σ, row-major dim×dim, normalised by N − 1 (numpy.cov's default). */
  sigma: Float64Array;
  /** Feature vectors behind the statistics, where known (stats files do not record it). */
  count?: number;
}

/** Feature vectors buffered per cross-product update: the kernel's k chunk. */
const TILE = 256;

/**
 * Streaming mean and covariance of feature vectors. Vectors are shifted by an early estimate of
 * the mean before their sums and cross-products are accumulated in float64, so Σ = (S − N·d·dᵀ) /
 * (N − 1) does not cancel even for features far from 0. Vectors are buffered 256 at a time,
 * transposed, and each full buffer adds its lower-triangle cross-product (dim²·128 multiply-adds)
 * in one blocked product (WebAssembly SIMD where available): about 0.5 s per thousand 2048-d
 * vectors on one core (about 2 s on the plain TypeScript path).
 */
export class FeatureStatistics {
  readonly dim: number;
  private n = 0;
  private shift: Float64Array | undefined;
  /** Σ (x − shift). */
  private readonly sum: Float64Array;
  /** Σ (x − shift)(x − shift)ᵀ, lower triangle (upper entries are scratch). */
  private readonly cross: Float64Array;
  /** Buffered vectors minus shift, transposed: tile[i·TILE + t] is coordinate i of vector t. */
  private readonly tile: Float64Array;
  private buffered = 0;

  constructor(dim: number) {
    if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`FeatureStatistics: dimension ${dim} is not a positive integer`);
    this.dim = dim;
    this.sum = new Float64Array(dim);
    // Cross-products and tile in the SIMD kernel's own memory, where it is available, so the
    // blocked product runs on them in place (accumulateProductNT recognises the buffer).
    const kernel = productSimdAvailable() ? productKernel((dim * dim + dim * TILE) * 8) : null;
    const store = kernel ? kernel.memory.buffer : new ArrayBuffer((dim * dim + dim * TILE) * 8);
    this.cross = new Float64Array(store, 0, dim * dim);
    this.tile = new Float64Array(store, dim * dim * 8, dim * TILE);
  }

  /** Vectors added so far. */
  get count(): number {
    return this.n;
  }

  /** Adds row-major vectors: `features.length / dim` rows of `dim` values (float32 features are widened exactly). */
  add(features: ArrayLike<number>): this {
    const { dim } = this;
    if (features.length % dim !== 0) throw new RangeError(`FeatureStatistics.add: ${features.length} values are not whole ${dim}-d vectors`);
    const rows = features.length / dim;
    if (rows === 0) return this;
    for (let i = 0; i < features.length; i++) {
      if (!Number.isFinite(features[i])) throw new RangeError(`FeatureStatistics.add: feature ${i % dim} of row ${Math.floor(i / dim)} in this batch is ${features[i]}`);
    }
    if (!this.shift) {
      // The first batch's mean: any value near μ keeps the accumulated sums small.
      const s = new Float64Array(dim);
      for (let r = 0; r < rows; r++) for (let i = 0; i < dim; i++) s[i] += features[r * dim + i];
      for (let i = 0; i < dim; i++) s[i] /= rows;
      this.shift = s;
    }
    const { shift, sum, tile } = this;
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      const t = this.buffered;
      for (let i = 0; i < dim; i++) {
        const x = features[o + i] - shift[i];
        tile[i * TILE + t] = x;
        sum[i] += x;
      }
      this.n++;
      if (++this.buffered === TILE) this.flush();
    }
    return this;
  }

  private flush(): void {
    if (this.buffered === 0) return;
    const { dim } = this;
    const t = { data: this.tile, stride: TILE };
    accumulateProductNT({ data: this.cross, stride: dim }, t, t, dim, dim, this.buffered, { lowerOnly: true });
    this.buffered = 0;
  }

  /** μ and Σ of the vectors added so far (at least 2); more may be added afterwards. */
  statistics(): FrechetStatistics {
    const { dim, n, sum, cross } = this;
    if (n < 2) throw new RangeError(`FeatureStatistics: a covariance needs at least 2 feature vectors, got ${n}`);
    this.flush();
    const shift = this.shift as Float64Array;
    const mu = new Float64Array(dim);
    for (let i = 0; i < dim; i++) mu[i] = shift[i] + sum[i] / n;
    const sigma = new Float64Array(dim * dim);
    for (let i = 0; i < dim; i++) {
      const o = i * dim;
      const si = sum[i] / n;
      for (let j = 0; j <= i; j++) {
        const v = (cross[o + j] - si * sum[j]) / (n - 1);
        sigma[o + j] = v;
        sigma[j * dim + i] = v;
      }
    }
    return { dim, mu, sigma, count: n };
  }
}

/** μ and Σ of row-major features held in memory (`dim` values per row). */
export function featureStatistics(features: ArrayLike<number>, dim: number): FrechetStatistics {
  return new FeatureStatistics(dim).add(features).statistics();
}

/** The terms of the Fréchet distance, for reports and for checking a result against another tool's. */
export interface FrechetTerms {
  /** ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2·Tr √(Σ1Σ2). */
  distance: number;
  meanTerm: number;
  traceSigma1: number;
  traceSigma2: number;
  /** Tr √(Σ1Σ2): Σ √max(λ, 0) over the eigenvalues λ of Σ1Σ2. */
  traceSqrt: number;
  /** Eigenvalues of Σ1Σ2 below 0 (round-off), counted as 0; their most negative value. */
  negativeEigenvalues: { count: number; min: number };
}

/** Throws unless `s` is well-formed: finite, Σ of the right size, symmetric and with a non-negative diagonal. */
function validate(s: FrechetStatistics, which: string): void {
  const { dim, mu, sigma } = s;
  if (mu.length !== dim) throw new RangeError(`frechet: ${which} μ has ${mu.length} values, dimension is ${dim}`);
  if (sigma.length !== dim * dim) throw new RangeError(`frechet: ${which} Σ has ${sigma.length} values, ${dim}×${dim} needs ${dim * dim}`);
  for (let i = 0; i < dim; i++) if (!Number.isFinite(mu[i])) throw new RangeError(`frechet: ${which} μ[${i}] is ${mu[i]}`);
  let maxAbs = 0;
  for (let i = 0; i < sigma.length; i++) {
    const v = sigma[i];
    if (!Number.isFinite(v)) throw new RangeError(`frechet: ${which} Σ[${Math.floor(i / dim)}][${i % dim}] is ${v}`);
    if (Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
  }
  for (let i = 0; i < dim; i++) if (sigma[i * dim + i] < 0) throw new RangeError(`frechet: ${which} Σ[${i}][${i}] = ${sigma[i * dim + i]} is a negative variance`);
  // Only Σ's lower triangle is used; an asymmetric Σ means a corrupt or mislaid file, not round-off
  // (numpy.cov's result is exactly symmetric, float32 storage keeps it so).
  let asym = 0;
  for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) asym = Math.max(asym, Math.abs(sigma[i * dim + j] - sigma[j * dim + i]));
  if (asym > 1e-6 * maxAbs) throw new RangeError(`frechet: ${which} Σ is not symmetric (max |Σij − Σji| = ${asym}, max |Σ| = ${maxAbs})`);
}

/**
 * The Fréchet distance between two sets of statistics and its terms (float64). Costs about
 * 3.3·dim³ flops (dim = 2048: about 10 s on one core).
 */
export function frechetDistanceTerms(s1: FrechetStatistics, s2: FrechetStatistics): FrechetTerms {
  if (s1.dim !== s2.dim) throw new RangeError(`frechet: dimensions differ (${s1.dim} and ${s2.dim})`);
  validate(s1, 'first');
  validate(s2, 'second');
  const n = s1.dim;
  let meanTerm = 0;
  let traceSigma1 = 0;
  let traceSigma2 = 0;
  for (let i = 0; i < n; i++) {
    const d = s1.mu[i] - s2.mu[i];
    meanTerm += d * d;
    traceSigma1 += s1.sigma[i * n + i];
    traceSigma2 += s2.sigma[i * n + i];
  }
  const ev = symmetricProductEigenvalues(s1.sigma, s2.sigma, n);
  let traceSqrt = 0;
  let count = 0;
  let min = 0;
  for (const l of ev) {
    if (l > 0) traceSqrt += Math.sqrt(l);
    else if (l < 0) {
      count++;
      if (l < min) min = l;
    }
  }
  return { distance: meanTerm + traceSigma1 + traceSigma2 - 2 * traceSqrt, meanTerm, traceSigma1, traceSigma2, traceSqrt, negativeEigenvalues: { count, min } };
}

/** The Fréchet distance (FID when the statistics are of Inception pool features). */
export function frechetDistance(s1: FrechetStatistics, s2: FrechetStatistics): number {
  return frechetDistanceTerms(s1, s2).distance;
}

/**
 * Reads a stats file: .npz with `mu` ([d], or [1, d]) and `sigma` ([d, d]), float64 or float32
 * (clean-fid, pytorch-fid, TTUR and torch-fidelity stats, and writeFrechetStatistics's).
 */
export async function readFrechetStatistics(path: string): Promise<FrechetStatistics> {
  const z = await readNpz(path);
  for (const key of ['mu', 'sigma']) if (!z.has(key)) throw new RangeError(`frechet: ${path} has no '${key}' array (members: ${z.names.join(', ') || 'none'}); FID stats files hold mu and sigma`);
  const mu = z.get('mu');
  const sigma = z.get('sigma');
  const dim = mu.data.length;
  const muOk = mu.shape.length === 1 || (mu.shape.length === 2 && mu.shape[0] === 1);
  if (!muOk) throw new RangeError(`frechet: ${path}: mu has shape (${mu.shape.join(', ')}), expected (d,)`);
  if (sigma.shape.length !== 2 || sigma.shape[0] !== dim || sigma.shape[1] !== dim) throw new RangeError(`frechet: ${path}: sigma has shape (${sigma.shape.join(', ')}), expected (${dim}, ${dim}) for mu of ${dim}`);
  return { dim, mu: mu.data, sigma: sigma.data };
}

/** Writes a stats file as clean-fid and numpy.load read it: .npz (stored) with float64 `mu` and `sigma`. */
export async function writeFrechetStatistics(path: string, s: FrechetStatistics): Promise<void> {
  await writeNpz(path, { mu: { data: s.mu, shape: [s.dim], dtype: 'f8' }, sigma: { data: s.sigma, shape: [s.dim, s.dim], dtype: 'f8' } });
}
