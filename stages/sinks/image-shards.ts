import type { Sample } from '../../src/sample.js';
import { TarWriter } from '../../src/formats/tar-write.js';
import { encodeNpy } from '../../src/formats/npy.js';
import { writeParquet } from '../../src/formats/parquet-write.js';
import type { ColumnType } from '../../src/formats/parquet-write.js';
import { ColumnNames, encodeRecords, jobColumns, toRecord, webDatasetMembers } from '../../src/records.js';
import { countInFunnel, emptyFunnel, type StatsCollector } from '../../src/stats.js';
import type { Store } from '../../src/stores/store.js';
import { UnitOutputs } from '../../src/units/unit-outputs.js';
import type { UnitStats } from '../../src/units/unit.js';
import type { DroppedThumbnails } from './dropped-thumbnails.js';

export interface ImageShardSinkOptions {
  output: Store;
  job: string;
  unitId: string;
  stats: StatsCollector;
  started: Date;
  onRows(n: number): void;
  /**
   * Column types that must not depend on one unit's values (a guidance scale of 0 would read as an
   * integer), on top of the known ones (src/formats/known-columns.ts KNOWN_COLUMN_TYPES).
   */
  columnTypes?: Record<string, ColumnType>;
  /** The job's own columns, present in every file even when no row has them; default: src/records.ts JOB_COLUMNS for `job`. */
  columns?: readonly string[];
  /** Writes `<unit>.thumbs` with a sample of the images dropped after decoding (its remember() stages must be in the pipeline). */
  thumbnails?: DroppedThumbnails;
  /** Writes the kept images' embeddings (`sample.embedding`) as `<unit>.img_emb.npy` with its row-aligned `<unit>.img_emb.parquet` (see saveEmbeddings). */
  embeddings?: { dtype: 'f2' | 'f4'; dim: number };
}

/** One unit's column names (src/records.ts ColumnNames): the job's columns and pinned types count as its own. */
export function unitColumnNames(opts: Pick<ImageShardSinkOptions, 'job' | 'columns' | 'columnTypes'>): ColumnNames {
  return new ColumnNames([...(opts.columns ?? jobColumns(opts.job)), ...Object.keys(opts.columnTypes ?? {})]);
}

/**
 * The only writer of an image-shard unit: ok samples go to `<unit>.tar` (`<key>.jpg|webp`,
 * `<key>.json`, `<key>.txt`), every sample of any status to `<unit>.parquet`, then
 * `<unit>.thumbs` (dropped images) when `thumbnails` is given, `<unit>.stats.json` and
 * `<unit>.done.json`. Records are held in memory for the sidecar:
 * a unit's metadata is small next to its images, which stream straight to the store.
 *
 * A unit with no rows, or none ok, is done like any other: an empty tar (just the end-of-archive
 * marker) and records of no rows that still have the status columns and the job's columns, typed.
 * The tar's `.json` members and the records name every field alike (ColumnNames: a carried
 * column that equals another but for case is written as `source_<name>`).
 */
export async function writeImageShards(stream: AsyncIterable<Sample>, opts: ImageShardSinkOptions): Promise<UnitStats> {
  const outputs = new UnitOutputs(opts.output, opts.job, opts.unitId);
  const funnel = emptyFunnel();
  const records: Record<string, unknown>[] = [];
  const names = unitColumnNames(opts);
  const sinkStats = opts.stats.stage('write');
  const vectors: Float32Array[] = [];
  const index: Record<string, unknown>[] = [];
  try {
    const tarOut = await outputs.stream('.tar');
    const tar = new TarWriter(tarOut);
    for await (const s of stream) {
      countInFunnel(funnel, s);
      records.push(toRecord(s, names));
      if (s.status.kind === 'ok') {
        sinkStats.in++;
        const t0 = performance.now();
        await tar.addSample(s.key, webDatasetMembers(s, names));
        if (opts.embeddings) {
          if (!s.embedding || s.embedding.length !== opts.embeddings.dim) throw new Error(`sample ${s.key} reached the shard without its ${opts.embeddings.dim}-d embedding`);
          vectors.push(s.embedding);
          index.push(embeddingIndexRow(s));
          s.embedding = undefined;
        }
        sinkStats.ok++;
        sinkStats.counts.bytes = (sinkStats.counts.bytes ?? 0) + (s.image?.length ?? 0);
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
    if (opts.embeddings) await saveEmbeddings(outputs, vectors, index, opts.embeddings);
    await outputs.put('.parquet', encodeRecords(records, { columns: opts.columns ?? jobColumns(opts.job), types: opts.columnTypes }));
    return await outputs.finish({ started: opts.started, funnel, stages: opts.stats.all() });
  } catch (err) {
    await outputs.abort();
    throw err;
  }
}

export const EMBEDDING_NPY = '.img_emb.npy';
export const EMBEDDING_INDEX = '.img_emb.parquet';

/** One kept sample's row of the embedding index. */
export const embeddingIndexRow = (s: Sample): Record<string, unknown> => ({ key: s.key, url: s.fields.url ?? null, caption: s.fields.caption ?? null });

/**
 * The kept images' embeddings in LAION's layout, per unit: `<unit>.img_emb.npy` ([rows, dim],
 * float16 as LAION publishes them, or float32), and `<unit>.img_emb.parquet` (key, url,
 * caption), row i of one being row i of the other — LAION's `img_emb_XXXX.npy` beside its
 * `metadata_XXXX.parquet`, so they join back by key or url, and laion-filter's
 * `aesthetic.embeddings` can read them as precomputed embeddings.
 */
export async function saveEmbeddings(outputs: UnitOutputs, vectors: Float32Array[], index: Record<string, unknown>[], o: { dtype: 'f2' | 'f4'; dim: number }): Promise<void> {
  const flat = new Float32Array(vectors.length * o.dim);
  vectors.forEach((v, i) => flat.set(v, i * o.dim));
  await outputs.put(EMBEDDING_NPY, encodeNpy(flat, [vectors.length, o.dim], { dtype: o.dtype }));
  await outputs.put(EMBEDDING_INDEX, writeParquet(index, { schema: [{ name: 'key', type: 'STRING', nullable: false }, { name: 'url', type: 'STRING' }, { name: 'caption', type: 'STRING' }] }));
}
