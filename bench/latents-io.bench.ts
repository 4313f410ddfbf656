import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DuckDBInstance } from '@duckdb/node-api';
import { executeLocal } from '../src/executors/local.js';
import { encodeLatentShard, latentShardName, writeLatentManifest } from '../src/formats/latent-shards.js';
import { silentLogger } from '../src/log.js';
import { seededRandom } from '../src/seeded-random.js';
import { emptyFunnel } from '../src/stats.js';
import { openStore } from '../src/stores/open-store.js';
import { UnitOutputs } from '../src/units/unit-outputs.js';
import { unitId } from '../src/units/unit.js';
import { trainingMixConfig, trainingMixJob } from '../pipelines/training-mix.js';
import { feedRank, PipeSink } from '../stages/mix/feed.js';
import { readMixIndex } from '../stages/mix/mix-index.js';
import type { BenchResult } from './harness.js';

const WORK = join(import.meta.dirname, '.work', 'latents-io');
const SHARD_ROWS = 8192;
const SETS = [
  { name: 'laion', rows: 12 * SHARD_ROWS, weight: 3 },
  { name: 'synthetic', rows: 4 * SHARD_ROWS, weight: 1 },
];
const TOTAL = SETS.reduce((a, s) => a + s.rows, 0);

const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

function rowsOf(set: string, shard: number, r: () => number): Record<string, unknown>[] {
  const id = unitId(shard, 100);
  return Array.from({ length: SHARD_ROWS }, (_, i) => ({
    key: `${id}${String(i).padStart(5, '0')}`,
    latent: Uint8Array.from({ length: 1024 }, () => (r() * 256) | 0),
    source: set,
    caption: `photo ${i} of a ${set} scene with a red bicycle near a wall`,
    caption_long: `A red bicycle leans against a weathered brick wall on a quiet street in the late afternoon, number ${i}. Long shadows fall across the pavement.`,
    caption_short: `A red bicycle by a brick wall, ${i}.`,
    aesthetic_score: 5 + r() * 2,
  }));
}

async function duck(sql: string, threads = 1): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:', { threads: String(threads) });
  const conn = await db.connect();
  try {
    return (await conn.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
  }
}

/** Times `fn` by wall clock and by this process's CPU (all threads); median of `runs` by wall time. */
async function timed<T>(fn: () => Promise<T>, runs = 3): Promise<{ wall: number; cpu: number; value: T }> {
  const out: { wall: number; cpu: number; value: T }[] = [];
  for (let k = 0; k < runs; k++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const value = await fn();
    out.push({ wall: (performance.now() - t0) / 1000, cpu: cpuSeconds(process.cpuUsage(c0)), value });
  }
  out.sort((a, b) => a.wall - b.wall);
  return out[Math.floor(out.length / 2)];
}

/**
 * Latent shard writing and `feed` reading, against DuckDB on the same files, one thread each:
 * 131k rows (1 KiB random latents, captions, source, a score) in 8192-row shards. Writing: bitprep's
 * encodeLatentShard (Parquet, zstd) vs DuckDB's COPY … (FORMAT parquet, COMPRESSION zstd) of the
 * same rows from a DuckDB table. Reading: `feed` (one rank of a training-mix of those sets, the
 * Arrow IPC stream into a discarding sink) vs DuckDB scanning the same mix shards' feed columns
 * (`sum(hash(latent))` and `sum(length(…))` force every value to be decoded). Per-core rates are samples per CPU second.
 */
export default async function bench(): Promise<BenchResult> {
  await rm(WORK, { recursive: true, force: true });
  const r = seededRandom(7);
  process.stderr.write(`  generating ${TOTAL} rows …\n`);
  const shards: { dir: string; id: string; rows: Record<string, unknown>[] }[] = [];
  for (const set of SETS) {
    for (let u = 0; u < set.rows / SHARD_ROWS; u++) shards.push({ dir: join(WORK, set.name), id: unitId(u, set.rows / SHARD_ROWS), rows: rowsOf(set.name, u, r) });
  }

  // Writing: the shard bytes only (the store's write is the same for any encoder).
  const ours = await timed(async () => {
    let bytes = 0;
    for (const s of shards) bytes += encodeLatentShard(s.rows, { types: { aesthetic_score: 'DOUBLE' } }).length;
    return bytes;
  });
  for (const set of SETS) {
    const dir = join(WORK, set.name);
    await mkdir(dir, { recursive: true });
    const store = openStore(dir);
    const ids: string[] = [];
    for (const s of shards.filter((x) => x.dir === dir)) {
      const out = new UnitOutputs(store, 'pre-encode', s.id);
      await out.put(latentShardName(s.id).slice(s.id.length), encodeLatentShard(s.rows, { types: { aesthetic_score: 'DOUBLE' } }));
      const now = new Date().toISOString();
      await out.commit({ job: 'pre-encode', unit: s.id, started_at: now, finished_at: now, seconds: 0, funnel: { ...emptyFunnel(), rows_in: s.rows.length, written: s.rows.length }, stages: [], rows_per_second: 0 });
      ids.push(s.id);
    }
    await writeLatentManifest(store, 'pre-encode', ids);
  }
  shards.length = 0;
  const allInputs = SETS.map((s) => `'${join(WORK, s.name)}/*.latents.parquet'`).join(', ');
  const duckWrite = await timed(async () => {
    const db = await DuckDBInstance.create(':memory:', { threads: '1' });
    const conn = await db.connect();
    try {
      await conn.run(`create table t as select * from read_parquet([${allInputs}])`);
      const t0 = performance.now();
      await conn.run(`copy t to '${join(WORK, 'duck.parquet')}' (format parquet, compression zstd, row_group_size ${SHARD_ROWS})`);
      return (performance.now() - t0) / 1000;
    } finally {
      conn.closeSync();
    }
  });

  // The mix every rank reads from (world size 1: one rank holds every sample, so one feed reads all).
  const mixDir = join(WORK, 'mix');
  const cfg = trainingMixConfig.parse({ job: 'training-mix', output: mixDir, sets: SETS.map((s) => ({ name: s.name, paths: [join(WORK, s.name)], weight: s.weight })), world_size: 1, global_batch: 4096, shard_size: SHARD_ROWS, seed: 1 });
  const mixT0 = performance.now();
  const units = await trainingMixJob.plan(cfg, silentLogger);
  const summary = await executeLocal(trainingMixJob, cfg, units, { output: openStore(mixDir), log: silentLogger, progress: 'off' });
  const mixSeconds = (performance.now() - mixT0) / 1000;
  if (summary.this_run!.units_failed.length) throw new Error(`latents-io bench: mix failed: ${JSON.stringify(summary.this_run!.units_failed)}`);
  const store = openStore(mixDir);
  const mix = await readMixIndex(store);
  const samples = mix.rank_samples;

  const feed = await timed(async () => {
    let bytes = 0;
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((bytes += c.length), cb()), highWaterMark: 1 << 20 });
    const res = await feedRank(store, mix, { rank: 0, from: 0, batchRows: mix.rank_batch }, new PipeSink(sink));
    if (res.rows !== samples) throw new Error(`feed gave ${res.rows} rows, expected ${samples}`);
    return bytes;
  });
  const mixFiles = `'${mixDir}/*.latents.parquet'`;
  const duckRead = await timed(async () => {
    const [row] = await duck(`select count(*) as n, sum(length(key)) + sum(hash(latent) % 7) + sum(length(caption_text)) + sum(length(caption_kind)) + sum(length(source)) as bytes from read_parquet(${mixFiles})`);
    if (Number(row.n) !== samples) throw new Error(`DuckDB read ${row.n} rows, expected ${samples}`);
    return Number(row.bytes);
  });

  const writeRate = TOTAL / ours.wall;
  const duckWriteRate = TOTAL / duckWrite.value;
  const feedRate = samples / feed.wall;
  const feedPerCore = samples / feed.cpu;
  const duckReadRate = samples / duckRead.wall;
  return {
    name: 'latents-io',
    data: `${TOTAL} rows (random 1 KiB latents, three captions, source, a score) in ${TOTAL / SHARD_ROWS} shards of ${SHARD_ROWS}; mix of ${samples} samples (3 : 1, world size 1); one thread for DuckDB; medians of 3`,
    rows: [
      { label: 'write: bitprep encodeLatentShard (zstd), samples per second', value: writeRate, unit: 'samples/s' },
      { label: 'write: DuckDB COPY TO parquet zstd, 1 thread, same rows', value: duckWriteRate, unit: 'samples/s' },
      { label: 'read: bitprep feed, one rank → Arrow IPC, wall', value: feedRate, unit: 'samples/s' },
      { label: 'read: bitprep feed, per CPU second (all its threads)', value: feedPerCore, unit: 'samples/s/core' },
      { label: 'read: DuckDB scan of the same shards\' feed columns, 1 thread', value: duckReadRate, unit: 'samples/s' },
      { label: 'training-mix of the two sets (plan + scatter + gather), wall', value: TOTAL / mixSeconds, unit: 'input rows/s' },
    ],
    ratios: [
      { label: 'write: bitprep / DuckDB', value: writeRate / duckWriteRate },
      { label: 'feed / DuckDB scan (both one core)', value: feedPerCore / duckReadRate },
      { label: 'feed per core / 100k samples/s goal', value: feedPerCore / 100_000, goal: '≥ 1' },
      { label: 'feed per core / an 8-GPU node training at ~960 samples/s', value: feedPerCore / 960, goal: '≥ 100' },
    ],
    notes: [
      `feed CPU ${feed.cpu.toFixed(2)} s for ${samples} samples (${((feed.value as number) / 2 ** 20).toFixed(0)} MB of Arrow IPC); wall ${feed.wall.toFixed(2)} s`,
      `bitprep write CPU ${ours.cpu.toFixed(2)} s; DuckDB write measured inside DuckDB (COPY only, the table already loaded)`,
      'the DuckDB scan decodes in C++ and hands nothing to JavaScript; the feed decodes Parquet in JavaScript (hyparquet) and frames Arrow batches',
    ],
  };
}
