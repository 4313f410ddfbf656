import { BIT_ORDER, LATENT_BITS_PER_TOKEN, LATENT_BYTES, LATENT_TOKENS } from '../../src/formats/latent-bits.js';
import { LATENT_FORMAT, LATENT_SCHEMA_VERSION, latentShardName, MANIFEST_NAME, type LatentManifest } from '../../src/formats/latent-shards.js';
import type { Logger } from '../../src/log.js';
import type { StageStats } from '../../src/stats.js';
import type { Store } from '../../src/stores/store.js';
import { readIndexFile } from '../../src/formats/index-file.js';
import { readDoneMarker, readUnitStats } from '../../src/units/unit.js';
import { mapConcurrent } from '../../src/concurrency.js';
import { CAPTION_KINDS, type CaptionKind } from './caption-policy.js';
import { shardInfo } from './mixture.js';
import { readSelectionFile, SELECTION_NAME, type SetReport } from './selection.js';

export const MIX_NAME = 'mix.json';
export const MIX_FORMAT = 'bitprep-training-mix';

/** One output shard as a rank reads it: `start` is the rank-stream index of its first row. */
export interface RankShard {
  name: string;
  rows: number;
  start: number;
}

/**
 * `mix.json`, next to `index.json`: how the mix was made and how a trainer reads it. `index.json`
 * (the latent manifest, readable by readLatentManifest) lists the shards with sizes and SHA-256.
 */
export interface MixIndex {
  format: typeof MIX_FORMAT;
  schema_version: 1;
  fingerprint: string;
  seed: number;
  /** Samples in the mix (a multiple of global_batch). */
  total: number;
  /** The largest total that needs no repetition, and the total the config asked for (null: natural). */
  natural_total: number;
  requested_total: number | null;
  /** Dedup identity: `source` + key (the dataset location stands in for a missing source). */
  identity: 'source+key';
  near_duplicate_hamming: number | null;
  sets: (SetReport & { share_target: number; share_achieved: number })[];
  caption: {
    long_ratio: number;
    /** Caption dropout: the share of samples drawn to train on the empty prompt (kind uncond). */
    uncond_prob: number;
    /** Order in which a missing caption falls back. */
    fallback: string[];
    /** Samples per caption kind, counted as the shards were written. */
    achieved: Record<CaptionKind, number>;
  };
  shuffle: { method: string; seed_salt: string };
  world_size: number;
  global_batch: number;
  /** Samples per rank per step (global_batch / world_size). */
  rank_batch: number;
  shard_size: number;
  /** Samples per rank (total / world_size). */
  rank_samples: number;
  /** How rank r reads: its shards in order, shard i of the mix belongs to rank i mod world_size. */
  rank_layout: string;
  ranks: { rank: number; samples: number; shards: RankShard[] }[];
}

export const RANK_LAYOUT_TEXT =
  'global position p (0-based, in shuffled order) belongs to step s = floor(p / global_batch) and rank r = floor((p mod global_batch) / rank_batch); ' +
  'rank r reads its shards in order (output shard i belongs to rank i mod world_size and is that rank\'s shard number floor(i / world_size)); ' +
  'sample n of rank r is row n mod shard_size of its shard floor(n / shard_size). Every rank has total / world_size samples: ' +
  'step s of the training takes samples [s·rank_batch, (s+1)·rank_batch) of every rank, which together are the global batch s.';

/**
 * Writes `index.json` (the latent manifest: every output shard's name, rows, bytes and SHA-256 from
 * its done marker) and `mix.json` from the stored selection and the gather units' stats.
 */
export async function writeMixIndex(output: Store, gatherUnitIds: string[], log?: Logger): Promise<MixIndex> {
  const sel = await readSelectionFile(output);
  if (!sel) throw new Error(`${output.url}: no ${SELECTION_NAME}; not a training-mix output`);
  const l = sel.layout;
  if (gatherUnitIds.length !== l.shards) throw new Error(`training-mix: ${gatherUnitIds.length} output shard units for a layout of ${l.shards}`);
    const read = mapConcurrent(
    gatherUnitIds.map((id, i) => ({ id, i })),
    async ({ id, i }) => {
      const marker = await readDoneMarker(output, id);
      const stats = await readUnitStats(output, id);
      const out = marker.outputs.find((o) => o.name === latentShardName(id));
      if (!out) throw new Error(`unit ${id}: its done marker lists no ${latentShardName(id)}`);
      return { i, out, gather: stats.stages.find((s: StageStats) => s.name === 'gather') };
    },
    { concurrency: 32 },
  );
  const shards: LatentManifest['shards'] = [];
  const achieved = Object.fromEntries(CAPTION_KINDS.map((k) => [k, 0])) as Record<CaptionKind, number>;
  for await (const { i, out, gather } of read) {
    const rows = shardInfo(l, i).rows;
    if (gather && gather.counts.samples !== rows) throw new Error(`output shard ${gatherUnitIds[i]}: wrote ${gather.counts.samples} samples, the layout says ${rows}`);
    shards.push({ name: out.name, rows, bytes: out.bytes, sha256: out.sha256 });
    for (const k of CAPTION_KINDS) achieved[k] += gather?.counts[`caption_${k}`] ?? 0;
  }
  const manifest: LatentManifest = {
    format: LATENT_FORMAT,
    schema_version: LATENT_SCHEMA_VERSION,
    bit_order: BIT_ORDER,
    latent_bytes: LATENT_BYTES,
    tokens: LATENT_TOKENS,
    bits_per_token: LATENT_BITS_PER_TOKEN,
    job: 'training-mix',
    rows: l.total,
    shards,
  };
  const weightSum = sel.spec.sets.reduce((a, s) => a + s.weight, 0);
  const mix: MixIndex = {
    format: MIX_FORMAT,
    schema_version: 1,
    fingerprint: sel.fingerprint,
    seed: sel.spec.seed,
    total: l.total,
    natural_total: sel.mixture.natural,
    requested_total: sel.spec.total,
    identity: sel.identity,
    near_duplicate_hamming: sel.spec.hamming,
    sets: sel.sets.map((s) => ({ ...s, share_target: s.weight / weightSum, share_achieved: s.take / l.total })),
    caption: { long_ratio: sel.spec.longRatio, uncond_prob: sel.spec.uncondProb, fallback: ['the drawn one of caption_long / caption_short', 'the other one', 'caption', 'none (caption_text null)'], achieved },
    shuffle: { method: 'keyed Feistel permutation (6 rounds, cycle-walking) of the sample enumeration', seed_salt: 'shuffle' },
    world_size: l.worldSize,
    global_batch: l.globalBatch,
    rank_batch: l.rankBatch,
    shard_size: l.shardSize,
    rank_samples: l.rankRows,
    rank_layout: RANK_LAYOUT_TEXT,
    ranks: Array.from({ length: l.worldSize }, (_, r) => ({
      rank: r,
      samples: l.rankRows,
      shards: Array.from({ length: l.shardsPerRank }, (_, j) => {
        const i = j * l.worldSize + r;
        const info = shardInfo(l, i);
        return { name: shards[i].name, rows: info.rows, start: info.start };
      }),
    })),
  };
  await output.put(MANIFEST_NAME, JSON.stringify(manifest, null, 2) + '\n');
  await output.put(MIX_NAME, JSON.stringify(mix, null, 2) + '\n');
  log?.info(`${MANIFEST_NAME} + ${MIX_NAME}: ${l.total} samples in ${l.shards} shards, ${l.worldSize} ranks × ${l.rankRows}`);
  return mix;
}

/** Reads `mix.json` of a finished mix. */
export async function readMixIndex(store: Store): Promise<MixIndex> {
  return readIndexFile<MixIndex>(store, MIX_NAME, { format: MIX_FORMAT, schemaVersion: 1, what: 'training-mix output' });
}
