import { encodeLatentShard, latentShardName } from '../../src/formats/latent-shards.js';
import { encodeRecords, jobColumns, toRecord } from '../../src/records.js';
import type { Sample } from '../../src/sample.js';
import { countInFunnel, emptyFunnel } from '../../src/stats.js';
import { UnitOutputs } from '../../src/units/unit-outputs.js';
import type { UnitStats } from '../../src/units/unit.js';
import { unitColumnNames, type ImageShardSinkOptions } from './image-shards.js';

export interface LatentShardSinkOptions extends ImageShardSinkOptions {
  /** Fields written to the latent shard but left out of the records: payload-sized blobs (caption token ids) that would double the records. */
  shardOnlyFields?: string[];
}

/**
 * The only writer of a latent unit: ok samples go to `<unit>.latents.parquet` (key, the packed
 * latent, its `view`, then every field: captions, source, annotations; a sample with several
 * views is a row per view), every sample of any status to
 * `<unit>.parquet` (the records, as every bitprep job writes them), then stats and the done
 * marker. A unit's latents are held until the end (1 KiB each plus fields: ~15 MB for 10k rows),
 * so the shard is one atomic object with row groups sized for readers.
 *
 * A unit with no ok row (an empty tar, every image undecodable) is done like any other: a latent
 * shard of no rows with the fixed latent columns and the job's, records with every row, and a
 * place in index.json with 0 rows. Both files name the fields alike (src/records.ts ColumnNames).
 */
export async function writeLatentShards(stream: AsyncIterable<Sample>, opts: LatentShardSinkOptions): Promise<UnitStats> {
  const outputs = new UnitOutputs(opts.output, opts.job, opts.unitId);
  const funnel = emptyFunnel();
  const records: Record<string, unknown>[] = [];
  const rows: Record<string, unknown>[] = [];
  const names = unitColumnNames(opts);
  const columns = opts.columns ?? jobColumns(opts.job);
  const shardOnly = (opts.shardOnlyFields ?? []).map((f) => names.column(f));
  const sinkStats = opts.stats.stage('write');
  try {
    for await (const s of stream) {
      countInFunnel(funnel, s);
      const record = toRecord(s, names);
      for (const f of shardOnly) delete record[f];
      records.push(record);
      if (s.status.kind === 'ok') {
        if (!s.latent) throw new Error(`sample ${s.key} reached the latent sink ok but without a latent`);
        sinkStats.in++;
        const { key: _key, ...fields } = s.fields;
        const row = names.rename(fields);
        // One row per view (pre-encode's crops), adjacent and in view order.
        const views = s.views ?? [s.latent];
        views.forEach((latent, view) => rows.push({ ...row, key: s.key, latent, view }));
        sinkStats.ok++;
        sinkStats.counts.rows = (sinkStats.counts.rows ?? 0) + views.length;
        s.image = undefined;
      }
      opts.onRows(1);
    }
    const t0 = performance.now();
    const shard = await outputs.put(latentShardName(opts.unitId).slice(opts.unitId.length), encodeLatentShard(rows, { types: opts.columnTypes, columns }));
    sinkStats.counts.bytes = shard.bytes;
    await outputs.put('.parquet', encodeRecords(records, { columns, types: opts.columnTypes }));
    sinkStats.busySeconds += (performance.now() - t0) / 1000;
    return await outputs.finish({ started: opts.started, funnel, stages: opts.stats.all() });
  } catch (err) {
    await outputs.abort();
    throw err;
  }
}
