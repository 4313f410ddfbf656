/** One set's distinct rows (after dedup) and weight, as the mixture arithmetic sees it. */
export interface SetSupply {
  name: string;
  weight: number;
  /** Distinct rows available (after key and near-duplicate dedup). */
  rows: number;
}

export interface SetTake extends SetSupply {
  /** Samples of this set in the mix. */
  take: number;
  /** Whole passes over the set's rows: every row appears `passes` times… */
  passes: number;
  /** …and the `extra` rows of lowest seeded rank once more (take = passes × rows + extra). */
  extra: number;
}

export interface MixturePlan {
  /** The largest total whose sets need no repetition: min over sets of rows / share. */
  natural: number;
  /** `total` as configured, or the natural total. */
  requested: number;
  /** `requested` rounded down to a whole number of global batches. */
  total: number;
  sets: SetTake[];
}

/** Tolerance for float weights, so 3000 rows at share 3/4 give a natural total of exactly 4000. */
const EPS = 1e-9;

/**
 * How many samples each set contributes. The total is the natural one (the most that needs no
 * repetition: min over sets of rows × Σweights / weight) unless `total` asks for another; it is
 * then rounded down to a multiple of `unit` (the global batch), so every rank sees the same number
 * of full steps. Each set gets total × weight / Σweights, rounded by largest remainder (ties to
 * the earlier set) so the takes sum to the total exactly and no set is off by more than one.
 * A set whose take exceeds its rows repeats in whole passes plus one partial pass.
 */
export function planMixture(sets: SetSupply[], opts: { total?: number | null; unit: number }): MixturePlan {
  if (sets.length === 0) throw new Error('training-mix: no sets');
  const weightSum = sets.reduce((a, s) => a + s.weight, 0);
  for (const s of sets) {
    if (!(s.weight > 0)) throw new Error(`training-mix: set ${s.name}: weight must be positive, got ${s.weight}`);
    if (s.rows === 0) throw new Error(`training-mix: set ${s.name} has no rows left after dedup; a mixture needs every set to contribute`);
  }
  const natural = Math.min(...sets.map((s) => Math.floor((s.rows * weightSum) / s.weight + EPS)));
  const requested = opts.total ?? natural;
  const total = Math.floor(requested / opts.unit) * opts.unit;
  if (total === 0) {
    throw new Error(`training-mix: a total of ${requested} samples is less than one global batch (${opts.unit}); lower global_batch or ask for a larger total`);
  }
  const quotas = sets.map((s) => (total * s.weight) / weightSum);
  const takes = quotas.map((q) => Math.floor(q + EPS));
  let left = total - takes.reduce((a, b) => a + b, 0);
  const order = quotas.map((q, i) => ({ i, frac: q - takes[i] })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) takes[order[k].i]++;
  return {
    natural,
    requested,
    total,
    sets: sets.map((s, i) => {
      const take = takes[i];
      return { ...s, take, passes: Math.floor(take / s.rows), extra: take % s.rows };
    }),
  };
}

/**
 * Where every sample of the mix goes, given its global shuffled position p ∈ [0, total).
 *
 * Steps: global batch s holds positions [s·B, (s+1)·B); rank r's part of it is the b = B/W
 * positions [s·B + r·b, s·B + (r+1)·b). So rank r's stream, read in order, is its share of global
 * batch 0, then of batch 1, …: every rank gets total / W samples and a trainer that takes b per
 * step from each of W ranks reproduces the global order batch by batch.
 *
 * Shards: rank r's stream is cut into shards of `shardSize` rows (its last shard holds the rest);
 * its j-th shard is output shard i = j·W + r, so i mod W = r. Every rank has the same shard count
 * and sizes, and sample n of rank r is row n mod shardSize of its shard ⌊n / shardSize⌋: resuming
 * by sample count needs no index.
 */
export interface RankLayout {
  total: number;
  worldSize: number;
  globalBatch: number;
  /** Samples per rank per step (B / W). */
  rankBatch: number;
  shardSize: number;
  /** Samples per rank (total / W). */
  rankRows: number;
  shardsPerRank: number;
  /** Rows of each rank's last shard (1 … shardSize). */
  lastShardRows: number;
  /** Output shards in all (shardsPerRank × W). */
  shards: number;
}

export function rankLayout(total: number, worldSize: number, globalBatch: number, shardSize: number): RankLayout {
  if (globalBatch % worldSize !== 0) throw new Error(`training-mix: global_batch ${globalBatch} is not a multiple of world_size ${worldSize}`);
  if (total % globalBatch !== 0) throw new Error(`training-mix: total ${total} is not a multiple of global_batch ${globalBatch}`);
  const rankRows = total / worldSize;
  const shardsPerRank = Math.ceil(rankRows / shardSize);
  return {
    total,
    worldSize,
    globalBatch,
    rankBatch: globalBatch / worldSize,
    shardSize,
    rankRows,
    shardsPerRank,
    lastShardRows: rankRows - (shardsPerRank - 1) * shardSize,
    shards: shardsPerRank * worldSize,
  };
}

/** Output shard and row of global position p. */
export function locate(l: RankLayout, p: number): { shard: number; row: number } {
  const step = Math.floor(p / l.globalBatch);
  const within = p - step * l.globalBatch;
  const rank = Math.floor(within / l.rankBatch);
  const n = step * l.rankBatch + (within - rank * l.rankBatch);
  const j = Math.floor(n / l.shardSize);
  return { shard: j * l.worldSize + rank, row: n - j * l.shardSize };
}

/** The rank that reads output shard i, its index among that rank's shards, its rows, and the rank-stream index of its first row. */
export function shardInfo(l: RankLayout, i: number): { rank: number; index: number; rows: number; start: number } {
  const rank = i % l.worldSize;
  const index = Math.floor(i / l.worldSize);
  return { rank, index, rows: index === l.shardsPerRank - 1 ? l.lastShardRows : l.shardSize, start: index * l.shardSize };
}
