import type { Logger } from '../log.js';
import type { Store } from '../stores/store.js';
import { readDoneMarker } from '../units/unit.js';
import { BIT_ORDER, LATENT_BITS_PER_TOKEN, LATENT_BYTES, LATENT_TOKENS } from './latent-bits.js';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from './parquet-read.js';
import { readIndexFile } from './index-file.js';
import { KNOWN_COLUMN_TYPES } from './known-columns.js';
import { tableSchema, writeParquet, type ColumnType } from './parquet-write.js';

export const LATENT_FORMAT = 'bitprep-latents';
export const LATENT_SCHEMA_VERSION = 1;
export const MANIFEST_NAME = 'index.json';

/** A unit's latent shard: its ok rows with their packed latents (records of every row stay in `<unit>.parquet`). */
export const latentShardName = (unitId: string): string => `${unitId}.latents.parquet`;

/** Rows per row group: 2048 × ~1.2 KiB ≈ 2.5 MB, so a reader holds little and a trainer can seek by group. */
const ROW_GROUP_ROWS = 2048;

/**
 * The fixed columns of every latent shard, in this order: `key` (required string), `latent`
 * (required FIXED_LEN_BYTE_ARRAY(1024) in bitprep's bit order), `source` (the dataset's name:
 * what training-mix identifies and weighs rows by) and `caption`. A shard of no rows has them
 * too, so readers (training-mix, `bitprep latents`, DuckDB) take an empty shard like any other.
 */
export const LATENT_COLUMNS = ['key', 'latent', 'source', 'caption'] as const;

export interface EncodeLatentShardOptions {
  /** Types that replace inference (and the known types) for these columns. */
  types?: Readonly<Record<string, ColumnType>>;
  /** More columns to have, after the fixed ones, even when no row has them (the job's own columns). */
  columns?: readonly string[];
}

/**
 * Parquet bytes of one latent shard: LATENT_COLUMNS, then `columns`, then the rows' other fields
 * (captions, source, annotations) in first-seen order; types from `types`, then the known column
 * types (src/records.ts) where the values fit, then the values; every column but key and latent
 * OPTIONAL; zstd; the bit order and schema version in the footer's key-value metadata.
 */
export function encodeLatentShard(rows: Record<string, unknown>[], opts: EncodeLatentShardOptions = {}): Uint8Array {
  for (const [i, r] of rows.entries()) {
    const l = r.latent;
    if (!(l instanceof Uint8Array) || l.length !== LATENT_BYTES) throw new Error(`latent shard row ${i} (key ${String(r.key)}): latent must be ${LATENT_BYTES} bytes, got ${l instanceof Uint8Array ? l.length : typeof l}`);
    if (typeof r.key !== 'string') throw new Error(`latent shard row ${i}: key must be a string`);
  }
  const schema = tableSchema(rows, {
    columns: [...LATENT_COLUMNS, ...(opts.columns ?? [])],
    types: { ...opts.types, key: 'STRING', latent: { fixedLenByteArray: LATENT_BYTES } },
    preferredTypes: KNOWN_COLUMN_TYPES,
    required: ['key', 'latent'],
  });
  return writeParquet(rows, {
    schema,
    compression: 'ZSTD',
    rowGroupSize: ROW_GROUP_ROWS,
    metadata: { 'bitprep.format': LATENT_FORMAT, 'bitprep.schema_version': String(LATENT_SCHEMA_VERSION), 'bitprep.bit_order': BIT_ORDER },
  });
}

/** `index.json` of a latent dataset: what a trainer or training-mix needs to trust the shards. */
export interface LatentManifest {
  format: typeof LATENT_FORMAT;
  schema_version: number;
  bit_order: string;
  latent_bytes: number;
  tokens: number;
  bits_per_token: number;
  /** The job that wrote the shards. */
  job: string;
  /** Rows: one per view of each image (pre-encode's `encoder.views`). */
  rows: number;
  /** How the encoder's inputs were cut (pre-encode: 'random' or 'centre'); absent in datasets written before views existed (centre crops). */
  crop?: string;
  /** Rows per image, adjacent in a shard with `view` 0 … views − 1; absent: 1. */
  views?: number;
  shards: { name: string; rows: number; bytes: number; sha256: string }[];
}

/** How a dataset's images were cropped, for index.json. */
export interface LatentViews {
  crop: string;
  views: number;
}

/**
 * Builds and writes `index.json` from the done markers of `unitIds` (in plan order): every
 * shard's name, rows, bytes and SHA-256 as the unit recorded them when it committed.
 */
export async function writeLatentManifest(store: Store, job: string, unitIds: string[], log?: Logger, views?: LatentViews): Promise<LatentManifest> {
  const perImage = views?.views ?? 1;
  const shards: LatentManifest['shards'] = [];
  for (const id of unitIds) {
    const marker = await readDoneMarker(store, id);
    const out = marker.outputs.find((o) => o.name === latentShardName(id));
    if (!out) throw new Error(`unit ${id}: its done marker lists no ${latentShardName(id)}`);
    shards.push({ name: out.name, rows: marker.funnel.written * perImage, bytes: out.bytes, sha256: out.sha256 });
  }
  const manifest: LatentManifest = {
    format: LATENT_FORMAT,
    schema_version: LATENT_SCHEMA_VERSION,
    bit_order: BIT_ORDER,
    latent_bytes: LATENT_BYTES,
    tokens: LATENT_TOKENS,
    bits_per_token: LATENT_BITS_PER_TOKEN,
    job,
    rows: shards.reduce((a, s) => a + s.rows, 0),
    ...(views ? { crop: views.crop, views: views.views } : {}),
    shards,
  };
  await store.put(MANIFEST_NAME, JSON.stringify(manifest, null, 2) + '\n');
  log?.info(`${MANIFEST_NAME}: ${shards.length} latent shard(s), ${manifest.rows} latents${perImage > 1 ? ` (${perImage} views of ${manifest.rows / perImage} images)` : ''}`);
  return manifest;
}

/** Reads and checks `index.json`; refuses another format, a newer schema or another bit order. */
export async function readLatentManifest(store: Store): Promise<LatentManifest> {
  const m = await readIndexFile<LatentManifest>(store, MANIFEST_NAME, { format: LATENT_FORMAT, schemaVersion: LATENT_SCHEMA_VERSION, what: 'latent dataset' });
  if (m.bit_order !== BIT_ORDER || m.latent_bytes !== LATENT_BYTES) throw new Error(`${store.url}/${MANIFEST_NAME}: bit order "${m.bit_order}" (${m.latent_bytes} bytes) is not this bitprep's "${BIT_ORDER}"`);
  return m;
}

/** Streams a latent shard's rows a row group at a time (`columns` limits what is decoded; one the shard lacks is left out). */
export async function* readLatentShard(store: Store, name: string, columns?: string[]): AsyncGenerator<Record<string, unknown>[]> {
  const src = await parquetSourceFromStore(store, name);
  const meta = await readParquetMeta(src);
  if (!meta.columns.includes('latent') || !meta.columns.includes('key')) throw new Error(`${store.url}/${name}: not a latent shard (columns: ${meta.columns.join(', ')})`);
  for await (const g of readParquetRowGroups(src, { columns: columns?.filter((c) => meta.columns.includes(c)) })) yield g.rows;
}

/**
 * Every (key, view, latent) of a latent dataset, shard by shard in manifest order; `view` is 0 in
 * datasets without views. `firstView`: only each image's view 0 (one latent per image).
 */
export async function* readLatents(store: Store, manifest: LatentManifest, opts: { firstView?: boolean } = {}): AsyncGenerator<{ key: string; view: number; latent: Uint8Array }> {
  for (const shard of manifest.shards) {
    for await (const rows of readLatentShard(store, shard.name, ['key', 'latent', 'view'])) {
      for (const r of rows) {
        const view = r.view === undefined || r.view === null ? 0 : Number(r.view);
        if (opts.firstView && view !== 0) continue;
        yield { key: String(r.key), view, latent: r.latent as Uint8Array };
      }
    }
  }
}
