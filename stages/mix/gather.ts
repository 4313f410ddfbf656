import { mapConcurrent } from '../../src/concurrency.js';
import { encodeLatentShard, latentShardName } from '../../src/formats/latent-shards.js';
import { emptyFunnel, StatsCollector } from '../../src/stats.js';
import type { Store } from '../../src/stores/store.js';
import { UnitOutputs } from '../../src/units/unit-outputs.js';
import type { UnitStats } from '../../src/units/unit.js';
import { CAPTION_KINDS } from './caption-policy.js';
import { shardInfo } from './mixture.js';
import type { SelectionFile } from './selection.js';
import { decodePayload, readRunSegment } from './shuffle-run.js';

export interface GatherOptions {
  sel: SelectionFile;
  /** Output shard index (0 … layout.shards − 1). */
  shard: number;
  output: Store;
  scratch: Store;
  /** Every scatter unit's run, in the scratch store. */
  runs: string[];
  job: string;
  unitId: string;
  started: Date;
  onRows(n: number): void;
  /** Runs read at once (each is two small range reads). */
  concurrency?: number;
}

/**
 * A gather unit (pass 2, second half): collects output shard i's samples from every shuffle run,
 * puts them in row order (= shuffled position order) and writes `<unit>.latents.parquet` with one
 * schema for all shards. Holds one shard's samples (shard_size × ~1.2 KiB). Fails loudly when the
 * runs do not hold exactly the shard's rows once each, which only stale or missing runs cause.
 *
 * Its funnel is empty: the input rows were counted once, by the scatter units; the samples it
 * writes are in its stats (`gather` stage) and in index.json.
 */
export async function gatherShard(o: GatherOptions): Promise<UnitStats> {
  const { sel } = o;
  const info = shardInfo(sel.layout, o.shard);
  const stats = new StatsCollector();
  const st = stats.stage('gather');
  const t0 = performance.now();
  const payloads: (Uint8Array | undefined)[] = new Array(info.rows);
  let found = 0;
  const read = mapConcurrent(o.runs, (name) => readRunSegment(o.scratch, name, o.shard, sel.layout.shards), { concurrency: o.concurrency ?? 16, ordered: false });
  for await (const seg of read) {
    for (const rec of seg) {
      if (rec.row >= info.rows || payloads[rec.row] !== undefined) throw new Error(`output shard ${o.unitId}: row ${rec.row} comes twice or lies outside its ${info.rows} rows; the shuffle runs are stale — delete the scatter-*.done.json markers and rerun`);
      payloads[rec.row] = rec.payload;
      found++;
    }
  }
  if (found !== info.rows) throw new Error(`output shard ${o.unitId}: the shuffle runs hold ${found} of its ${info.rows} rows; a run is missing or stale`);

  const kinds: Record<string, number> = Object.fromEntries(CAPTION_KINDS.map((k) => [`caption_${k}`, 0]));
  const rows = payloads.map((p) => {
    const { latent, fields } = decodePayload(p!);
    const row: Record<string, unknown> = { key: fields.key, latent };
    for (const [name] of sel.columns) row[name] = fields[name] ?? null;
    kinds[`caption_${String(fields.caption_kind)}`]++;
    return row;
  });
  const bytes = encodeLatentShard(rows, { types: Object.fromEntries(sel.columns) });
  const outputs = new UnitOutputs(o.output, o.job, o.unitId);
  try {
    const shard = await outputs.put(latentShardName(o.unitId).slice(o.unitId.length), bytes);
    st.in = st.ok = rows.length;
    Object.assign(st.counts, { samples: rows.length, bytes: shard.bytes, runs_read: o.runs.length, ...kinds });
    st.busySeconds = (performance.now() - t0) / 1000;
    o.onRows(rows.length);
    return await outputs.finish({ started: o.started, funnel: emptyFunnel(), stages: stats.all(), rows: rows.length });
  } catch (err) {
    await outputs.abort();
    throw err;
  }
}
