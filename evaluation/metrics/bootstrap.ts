import { seededRandom } from '../../src/seeded-random.js';

/** A percentile bootstrap interval, with what it took to reproduce it. */
export interface BootstrapCi {
  low: number;
  high: number;
  resamples: number;
  seed: number;
}

/** How to bootstrap: resamples 0 means no interval. */
export interface BootstrapOptions {
  resamples: number;
  seed: number;
}

export const DEFAULT_BOOTSTRAP: BootstrapOptions = { resamples: 1000, seed: 0 };

/** Linear-interpolation percentile of sorted values (numpy's default method). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** The 2.5th and 97.5th percentiles of resampled statistics. */
export function intervalOf(stats: Float64Array, opts: BootstrapOptions): BootstrapCi {
  stats.sort();
  return { low: percentile(stats, 0.025), high: percentile(stats, 0.975), resamples: opts.resamples, seed: opts.seed };
}

/** Mean of numbers (float64, in order). */
export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s / values.length;
}

/**
 * 95% interval of the mean of `values` by resampling them with replacement (seeded, so a rerun
 * prints the same interval). Undefined when `resamples` is 0 or there are fewer than 2 values.
 */
export function bootstrapMean(values: ArrayLike<number>, opts: BootstrapOptions = DEFAULT_BOOTSTRAP): BootstrapCi | undefined {
  const n = values.length;
  if (opts.resamples <= 0 || n < 2) return undefined;
  const rand = seededRandom(opts.seed);
  const stats = new Float64Array(opts.resamples);
  for (let b = 0; b < opts.resamples; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += values[Math.floor(rand() * n)];
    stats[b] = s / n;
  }
  return intervalOf(stats, opts);
}

/**
 * 95% interval of a mean of group means (ImageReward: mean over a prompt's images, then over
 * prompts). Groups are the resampling unit, since images of one prompt are not independent.
 */
export function bootstrapMeanOfGroups(groups: readonly ArrayLike<number>[], opts: BootstrapOptions = DEFAULT_BOOTSTRAP): BootstrapCi | undefined {
  return bootstrapMean(Float64Array.from(groups, (g) => mean(g)), opts);
}
