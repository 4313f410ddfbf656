import { seededRandom } from '../../src/seeded-random.js';

/** Dot product (cosine similarity of unit vectors), accumulated in float64. */
export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let d = 0; d < a.length; d++) s += a[d] * b[d];
  return s;
}

/** The centroid most similar to `v` (the first of equals). */
export function nearestCentroid(v: Float32Array, centroids: readonly Float32Array[]): number {
  let best = 0;
  let bestDot = -Infinity;
  for (let c = 0; c < centroids.length; c++) {
    const s = dot(v, centroids[c]);
    if (s > bestDot) [best, bestDot] = [c, s];
  }
  return best;
}

/**
 * Spherical k-means (cosine similarity, unit-length centroids) on unit vectors: k-means++ seeding
 * from a seeded generator, then Lloyd iterations until no vector changes cluster or `iterations`
 * is reached. Deterministic for the same vectors, k and seed. An empty cluster keeps its centroid.
 */
export function sphericalKMeans(vectors: readonly Float32Array[], k: number, opts: { seed?: number; iterations?: number } = {}): Float32Array[] {
  const n = vectors.length;
  if (n === 0 || k < 1) return [];
  k = Math.min(k, n);
  const dim = vectors[0].length;
  const random = seededRandom(opts.seed ?? 0);
  const centroids: Float32Array[] = [Float32Array.from(vectors[Math.floor(random() * n)])];
  // k-means++: the next centre drawn with probability ∝ squared distance to the nearest one (2 − 2·cos for unit vectors).
  const nearest = new Float64Array(n).fill(Infinity);
  while (centroids.length < k) {
    const last = centroids[centroids.length - 1];
    let total = 0;
    for (let i = 0; i < n; i++) {
      nearest[i] = Math.min(nearest[i], Math.max(0, 2 - 2 * dot(vectors[i], last)));
      total += nearest[i];
    }
    if (total === 0) break;
    let r = random() * total;
    let pick = n - 1;
    for (let i = 0; i < n; i++) {
      r -= nearest[i];
      if (r < 0) {
        pick = i;
        break;
      }
    }
    centroids.push(Float32Array.from(vectors[pick]));
  }
  const assign = new Int32Array(n).fill(-1);
  for (let it = 0; it < (opts.iterations ?? 20); it++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const best = nearestCentroid(vectors[i], centroids);
      if (assign[i] !== best) changed++;
      assign[i] = best;
    }
    if (changed === 0) break;
    const sums = centroids.map(() => new Float64Array(dim));
    for (let i = 0; i < n; i++) {
      const s = sums[assign[i]];
      for (let d = 0; d < dim; d++) s[d] += vectors[i][d];
    }
    for (const [c, s] of sums.entries()) {
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += s[d] * s[d];
      if (norm === 0) continue;
      norm = Math.sqrt(norm);
      for (let d = 0; d < dim; d++) centroids[c][d] = s[d] / norm;
    }
  }
  return centroids;
}
