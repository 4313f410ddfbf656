import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FeatureStatistics, frechetDistanceTerms, writeFrechetStatistics, type FrechetStatistics, type FrechetTerms } from '../evaluation/metrics/frechet.js';
import { productSimdAvailable } from '../evaluation/metrics/product-simd.js';
import { symmetricEigenvalues } from '../evaluation/metrics/tridiagonal-eigen.js';
import { writeNpy } from '../src/formats/npy.js';
import { seededRandom } from '../src/seeded-random.js';
import { timeMedian, type BenchResult } from './harness.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const DIM = 2048;
/** Features per set: more than DIM so both covariances have full rank, as FID's 10k–50k sets do. */
const N = 4096;
const RUNS = 3;

/*
 * The peer: clean-fid's arithmetic in numpy/scipy (Debian's, OpenBLAS), on the files bitprep
 * wrote: mean and covariance as clean-fid takes them from float32 features, then
 * cleanfid.fid.frechet_distance's formula with scipy.linalg.sqrtm; also numpy's eigvalsh (LAPACK
 * dsyevd) on Σ1, the same problem as bitprep's symmetricEigenvalues.
 */
const PY_SCRIPT = `
import json, sys, time
import numpy as np, scipy.linalg as sl
d, runs = sys.argv[1], int(sys.argv[2])
def median(fn):
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); r = fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2], r
def frechet_distance(mu1, sigma1, mu2, sigma2):  # cleanfid.fid.frechet_distance, less its eps retry
    diff = mu1 - mu2
    covmean, _ = sl.sqrtm(sigma1.dot(sigma2), disp=False)
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError('Imaginary component')
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
x1, x2 = np.load(d + '/f1.npy'), np.load(d + '/f2.npy')
t_stats, (mu1, s1) = median(lambda: (np.mean(x1, axis=0), np.cov(x1, rowvar=False)))
mu2, s2 = np.mean(x2, axis=0), np.cov(x2, rowvar=False)
a, b = np.load(d + '/s1.npz'), np.load(d + '/s2.npz')
t_fid, fid = median(lambda: frechet_distance(a['mu'], a['sigma'], b['mu'], b['sigma']))
t_eig, _ = median(lambda: np.linalg.eigvalsh(a['sigma']))
print(json.dumps({'t_stats': t_stats, 't_fid': t_fid, 't_eig': t_eig, 'fid': float(fid),
    'fid_own_stats': float(frechet_distance(mu1, s1, mu2, s2)),
    'fid_own_stats_f64_mean': float(frechet_distance(x1.mean(axis=0, dtype=np.float64), s1, x2.mean(axis=0, dtype=np.float64), s2)),
    'max_sigma_diff': float(np.abs(s1 - a['sigma']).max() / np.abs(s1).max())}))
`;

interface PyResult {
  t_stats: number;
  t_fid: number;
  t_eig: number;
  fid: number;
  fid_own_stats: number;
  fid_own_stats_f64_mean: number;
  max_sigma_diff: number;
}

/** Inception-like features: non-negative, correlated through shared terms, float32. */
function features(seed: number, shift: number): Float32Array {
  const rnd = seededRandom(seed);
  const out = new Float32Array(N * DIM);
  const u = new Float64Array(DIM);
  for (let r = 0; r < N; r++) {
    for (let j = 0; j < DIM; j++) u[j] = rnd();
    for (let j = 0; j < DIM; j++) out[r * DIM + j] = Math.max(0, u[j] + 0.6 * u[(7 * j + 3) % DIM] - 0.4 + shift * (j % 5));
  }
  return out;
}

async function python(dir: string, threads: string | undefined): Promise<PyResult> {
  const env = { ...process.env };
  delete env.OPENBLAS_NUM_THREADS;
  delete env.OMP_NUM_THREADS;
  if (threads) env.OPENBLAS_NUM_THREADS = threads;
  const { stdout } = await run(PYTHON, ['-c', PY_SCRIPT, dir, String(RUNS)], { env, maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as PyResult;
}

export default async function bench(): Promise<BenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'bitprep-frechet-bench-'));
  try {
    const f1 = features(1, 0);
    const f2 = features(2, 0.02);
    await writeNpy(join(dir, 'f1.npy'), f1, [N, DIM], { dtype: 'f4' });
    await writeNpy(join(dir, 'f2.npy'), f2, [N, DIM], { dtype: 'f4' });

    // Statistics in batches of 128, as an Inception loop hands them over.
    const stats = (f: Float32Array): FrechetStatistics => {
      const acc = new FeatureStatistics(DIM);
      for (let r = 0; r < N; r += 128) acc.add(f.subarray(r * DIM, Math.min(N, r + 128) * DIM));
      return acc.statistics();
    };
    let s1!: FrechetStatistics;
    const tStats = await timeMedian(async () => (s1 = stats(f1)), 1, 0);
    const s2 = stats(f2);
    await writeFrechetStatistics(join(dir, 's1.npz'), s1);
    await writeFrechetStatistics(join(dir, 's2.npz'), s2);

    let terms!: FrechetTerms;
    const tFid = await timeMedian(async () => (terms = frechetDistanceTerms(s1, s2)), RUNS, 0);
    const tEig = await timeMedian(async () => symmetricEigenvalues(s1.sigma, DIM), RUNS, 0);

    const py1 = await python(dir, '1');
    const pyAll = await python(dir, undefined);

    // Same inputs, so the same distance; float64 round-off differs only in the last digits.
    const agree = Math.abs(terms.distance - py1.fid) / Math.abs(py1.fid);
    if (!(agree < 1e-6)) throw new Error(`frechet bench: bitprep ${terms.distance} and scipy ${py1.fid} disagree (relative ${agree})`);
    const endToEnd = Math.abs(terms.distance - py1.fid_own_stats) / Math.abs(py1.fid_own_stats);
    if (!(endToEnd < 1e-6)) throw new Error(`frechet bench: FID from bitprep's statistics ${terms.distance} vs numpy's ${py1.fid_own_stats} (relative ${endToEnd})`);
    const endToEnd64 = Math.abs(terms.distance - py1.fid_own_stats_f64_mean) / Math.abs(py1.fid_own_stats_f64_mean);
    const digits = (x: number) => (x === 0 ? 17 : -Math.log10(x));

    const perMin = (s: number) => 60 / s;
    return {
      name: 'frechet',
      data: `two sets of ${N} × ${DIM} float32 features (seeded, non-negative, correlated), FID statistics and distance in float64; bitprep on one thread, medians of ${RUNS} (statistics: 1 run)`,
      rows: [
        { label: 'statistics μ, Σ: bitprep FeatureStatistics (batches of 128)', value: N / tStats, unit: 'features/s' },
        { label: 'statistics μ, Σ: numpy mean + cov, 1 BLAS thread', value: N / py1.t_stats, unit: 'features/s' },
        { label: 'distance: bitprep frechetDistance (pivoted Cholesky + symmetric eigenvalues)', value: perMin(tFid), unit: 'distances/min' },
        { label: 'distance: clean-fid formula, scipy.linalg.sqrtm, 1 BLAS thread', value: perMin(py1.t_fid), unit: 'distances/min' },
        { label: 'distance: clean-fid formula, scipy.linalg.sqrtm, all cores', value: perMin(pyAll.t_fid), unit: 'distances/min' },
        { label: 'eigenvalues of Σ1 (2048²): bitprep symmetricEigenvalues', value: perMin(tEig), unit: 'solves/min' },
        { label: 'eigenvalues of Σ1 (2048²): numpy.linalg.eigvalsh (LAPACK), 1 BLAS thread', value: perMin(py1.t_eig), unit: 'solves/min' },
      ],
      ratios: [
        { label: 'distance: bitprep / scipy sqrtm, both one thread', value: py1.t_fid / tFid },
        { label: 'distance: bitprep (one thread) / scipy sqrtm (all cores)', value: pyAll.t_fid / tFid },
        { label: 'statistics: bitprep / numpy cov, both one thread', value: py1.t_stats / tStats },
        { label: 'eigenvalues: bitprep / LAPACK, both one thread', value: py1.t_eig / tEig },
        { label: 'agreement with scipy on the same .npz statistics, digits (−log10 relative difference)', value: digits(agree), goal: '≥ 6' },
      ],
      notes: [
        `seconds: statistics of ${N} features ${tStats.toFixed(2)} (numpy ${py1.t_stats.toFixed(2)}); distance ${tFid.toFixed(2)} (scipy ${py1.t_fid.toFixed(2)} on 1 thread, ${pyAll.t_fid.toFixed(2)} on all); eigenvalues ${tEig.toFixed(2)} (LAPACK ${py1.t_eig.toFixed(2)})`,
        `FID: bitprep ${terms.distance.toPrecision(17)}, scipy on bitprep's .npz statistics ${py1.fid.toPrecision(17)} (relative difference ${agree.toExponential(2)}); max |Σ bitprep − Σ numpy| / max |Σ| = ${py1.max_sigma_diff.toExponential(2)}`,
        `FID from numpy's own statistics of the same features: ${py1.fid_own_stats.toPrecision(17)} as clean-fid takes μ (numpy.mean of float32 features is float32: ${endToEnd.toExponential(2)} from bitprep's float64 μ), ${py1.fid_own_stats_f64_mean.toPrecision(17)} with μ in float64 (${endToEnd64.toExponential(2)})`,
        `terms: ‖Δμ‖² ${terms.meanTerm.toPrecision(10)}, Tr Σ1 ${terms.traceSigma1.toPrecision(10)}, Tr Σ2 ${terms.traceSigma2.toPrecision(10)}, Tr √(Σ1Σ2) ${terms.traceSqrt.toPrecision(10)}; negative eigenvalues of Σ1Σ2 (round-off, counted as 0): ${terms.negativeEigenvalues.count}`,
        'the statistics are passed to Python as .npz files written by bitprep (writeFrechetStatistics) and read with numpy.load',
        `blocked products (covariance, Cholesky, tridiagonalisation): ${productSimdAvailable() ? 'WebAssembly SIMD f64x2 kernel (product-simd.ts)' : 'plain TypeScript (no WebAssembly SIMD)'}`,
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
