import { describe, expect, it } from 'vitest';
import { resolveShardSelection, selectUnits } from '../src/executors/shard-select.js';

describe('array shard selection', () => {
  it('takes flags first', () => {
    expect(resolveShardSelection({ shardIndex: 2, shardCount: 3 }, { JOB_COMPLETION_INDEX: '0' })).toEqual({ index: 2, count: 3, from: '--shard-index' });
  });
  it('reads the Kubernetes Indexed Job index with the count from a flag', () => {
    expect(resolveShardSelection({ shardCount: 4 }, { JOB_COMPLETION_INDEX: '3' })).toMatchObject({ index: 3, count: 4, from: 'JOB_COMPLETION_INDEX' });
  });
  it('reads Slurm arrays, offset by SLURM_ARRAY_TASK_MIN, with their own count', () => {
    expect(resolveShardSelection({}, { SLURM_ARRAY_TASK_ID: '6', SLURM_ARRAY_TASK_MIN: '5', SLURM_ARRAY_TASK_COUNT: '4' })).toMatchObject({ index: 1, count: 4 });
  });
  it('reads AWS Batch with BITPREP_SHARD_COUNT', () => {
    expect(resolveShardSelection({}, { AWS_BATCH_JOB_ARRAY_INDEX: '1', BITPREP_SHARD_COUNT: '2' })).toMatchObject({ index: 1, count: 2, from: 'AWS_BATCH_JOB_ARRAY_INDEX' });
  });
  it('runs everything without an index', () => {
    expect(resolveShardSelection({}, {})).toBeUndefined();
  });
  it('explains what is missing or out of range', () => {
    expect(() => resolveShardSelection({}, { JOB_COMPLETION_INDEX: '1' })).toThrow(/shard count is unknown/);
    expect(() => resolveShardSelection({ shardIndex: 3, shardCount: 3 }, {})).toThrow(/outside 0..2/);
    expect(() => resolveShardSelection({ shardCount: 3 }, {})).toThrow(/needs --shard-index/);
    expect(() => resolveShardSelection({}, { JOB_COMPLETION_INDEX: 'x', BITPREP_SHARD_COUNT: '2' })).toThrow(/JOB_COMPLETION_INDEX must be/);
  });
  it('splits units round-robin into disjoint slices that cover all', () => {
    const units = Array.from({ length: 10 }, (_, i) => i);
    const parts = [0, 1, 2].map((index) => selectUnits(units, { index, count: 3, from: 't' }));
    expect(parts.map((p) => p.length)).toEqual([4, 3, 3]);
    expect(parts.flat().sort((a, b) => a - b)).toEqual(units);
  });
});
