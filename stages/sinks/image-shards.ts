import type { Sample } from '../../src/sample.js';
import { TarWriter } from '../../src/formats/tar-write.js';
import { writeParquet, type ColumnType } from '../../src/formats/parquet-write.js';
import { toRecord, webDatasetMembers } from '../../src/records.js';
import { countInFunnel, emptyFunnel, type StatsCollector } from '../../src/stats.js';
import type { Store } from '../../src/stores/store.js';
import { UnitOutputs } from '../../src/units/unit-outputs.js';
import { finishedUnitStats, type UnitStats } from '../../src/units/unit.js';
import type { DroppedThumbnails } from './dropped-thumbnails.js';

export interface ImageShardSinkOptions {
  output: Store;
  job: string;
  unitId: string;
  stats: StatsCollector;
  started: Date;
  onRows(n: number): void;
  /** Record column types that must not depend on one unit's values (a guidance scale of 0 would read as an integer). */
  columnTypes?: Record<string, ColumnType>;
  /** Writes `<unit>.thumbs` with a sample of the images dropped after decoding (its remember() stages must be in the pipeline). */
  thumbnails?: DroppedThumbnails;
}

/**
 * The only writer of an image-shard unit: ok samples go to `<unit>.tar` (`<key>.jpg|webp`,
 * `<key>.json`, `<key>.txt`), every sample of any status to `<unit>.parquet`, then
 * `<unit>.thumbs` (dropped images) when `thumbnails` is given, `<unit>.stats.json` and
 * `<unit>.done.json`. Records are held in memory for the sidecar:
 * a unit's metadata is small next to its images, which stream straight to the store.
 */
export async function writeImageShards(stream: AsyncIterable<Sample>, opts: ImageShardSinkOptions): Promise<UnitStats> {
  const outputs = new UnitOutputs(opts.output, opts.job, opts.unitId);
  const funnel = emptyFunnel();
  const records: Record<string, unknown>[] = [];
  const sinkStats = opts.stats.stage('write');
  try {
    const tarOut = await outputs.stream('.tar');
    const tar = new TarWriter(tarOut);
    for await (const s of stream) {
      countInFunnel(funnel, s);
      records.push(toRecord(s));
      if (s.status.kind === 'ok') {
        sinkStats.in++;
        const t0 = performance.now();
        await tar.addSample(s.key, webDatasetMembers(s));
        sinkStats.ok++;
        sinkStats.units.bytes = (sinkStats.units.bytes ?? 0) + (s.image?.length ?? 0);
        sinkStats.busySeconds += (performance.now() - t0) / 1000;
        s.image = undefined;
      } else if (opts.thumbnails) {
        await opts.thumbnails.offer(s);
      }
      opts.onRows(1);
    }
    await tar.finish();
    await tarOut.close();
    if (opts.thumbnails) await opts.thumbnails.write(outputs);
    await outputs.put('.parquet', writeParquet(records, { compression: 'SNAPPY', types: opts.columnTypes }));
    const stats = finishedUnitStats({ job: opts.job, unitId: opts.unitId, started: opts.started, funnel, stages: opts.stats.all() });
    await outputs.commit(stats);
    return stats;
  } catch (err) {
    await outputs.abort();
    throw err;
  }
}
