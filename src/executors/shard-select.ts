/** Which slice of the units this process runs, for array jobs. */
export interface ShardSelection {
  index: number;
  count: number;
  /** Where the index came from, for the log. */
  from: string;
}

/**
 * Resolves the array index from explicit flags or the scheduler's environment: Kubernetes
 * Indexed Jobs (JOB_COMPLETION_INDEX), Slurm arrays (SLURM_ARRAY_TASK_ID, with the count from
 * SLURM_ARRAY_TASK_COUNT or min/max), and AWS Batch (AWS_BATCH_JOB_ARRAY_INDEX).
 * Returns undefined when the process runs every unit.
 */
export function resolveShardSelection(flags: { shardIndex?: number; shardCount?: number }, env: NodeJS.ProcessEnv = process.env): ShardSelection | undefined {
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  let index = flags.shardIndex;
  let count = flags.shardCount;
  let from = '--shard-index';
  if (index === undefined) {
    const candidates: [string, string | undefined][] = [
      ['JOB_COMPLETION_INDEX', env.JOB_COMPLETION_INDEX],
      ['SLURM_ARRAY_TASK_ID', env.SLURM_ARRAY_TASK_ID],
      ['AWS_BATCH_JOB_ARRAY_INDEX', env.AWS_BATCH_JOB_ARRAY_INDEX],
    ];
    const hit = candidates.find(([, v]) => v !== undefined && v !== '');
    if (hit) {
      from = hit[0];
      index = int(hit[1], hit[0]);
      if (hit[0] === 'SLURM_ARRAY_TASK_ID') {
        const min = int(env.SLURM_ARRAY_TASK_MIN, 'SLURM_ARRAY_TASK_MIN') ?? 0;
        index = (index as number) - min;
        count ??= int(env.SLURM_ARRAY_TASK_COUNT, 'SLURM_ARRAY_TASK_COUNT');
      }
    }
  }
  count ??= int(env.BITPREP_SHARD_COUNT, 'BITPREP_SHARD_COUNT');
  if (index === undefined) {
    if (flags.shardCount !== undefined) throw new Error('--shard-count needs --shard-index (or an array index from the scheduler)');
    return undefined;
  }
  if (count === undefined) throw new Error(`${from} is set but the shard count is unknown: pass --shard-count (or set BITPREP_SHARD_COUNT)`);
  if (!(count >= 1) || index >= count) throw new Error(`shard index ${index} (from ${from}) is outside 0..${count - 1}`);
  return { index, count, from };
}

/** Round-robin split: unit i goes to shard i mod count, so shards get near-equal work. */
export function selectUnits<T>(units: T[], sel: ShardSelection | undefined): T[] {
  return sel ? units.filter((_, i) => i % sel.count === sel.index) : units;
}
