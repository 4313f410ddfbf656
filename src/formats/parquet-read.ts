import { open } from 'node:fs/promises';
import { parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData, SchemaTree } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { Store } from '../stores/store.js';

/** Random access to one Parquet file; `name` is what errors report. */
export interface ParquetSource {
  name: string;
  size: number;
  /** Bytes [start, end). */
  read(start: number, end: number): Promise<Uint8Array>;
}

export interface ParquetMeta {
  rows: number;
  rowGroups: { rowStart: number; rows: number }[];
  /** Top-level column names in schema order. */
  columns: string[];
}

export interface ReadRowGroupsOptions {
  rowStart?: number;
  rowEnd?: number;
  columns?: string[];
}

export async function parquetSourceFromStore(store: Store, name: string): Promise<ParquetSource> {
  const size = await store.size(name);
  if (size === undefined) throw new Error(`parquet ${name}: not found in ${store.url}`);
  return { name, size, read: (start, end) => store.getRange(name, start, end) };
}

export async function parquetSourceFromFile(path: string): Promise<ParquetSource> {
  const fh = await open(path, 'r');
  let size: number;
  try {
    size = (await fh.stat()).size;
  } finally {
    await fh.close();
  }
  return {
    name: path,
    size,
    // Opened per read so a source that is dropped mid-stream never leaks a descriptor.
    async read(start, end) {
      const h = await open(path, 'r');
      try {
        const buf = new Uint8Array(end - start);
        let off = 0;
        while (off < buf.length) {
          const { bytesRead } = await h.read(buf, off, buf.length - off, start + off);
          if (bytesRead === 0) throw new Error(`parquet ${path}: file shorter than expected (${start + off} < ${end})`);
          off += bytesRead;
        }
        return buf;
      } finally {
        await h.close();
      }
    },
  };
}

/** hyparquet's first footer read; reads inside it (footer, page indexes) are served from memory. */
const TAIL_BYTES = 512 * 1024;

/**
 * The tail and the parsed footer of each source, shared by every reader of that source object, so
 * reading its metadata and then its rows (or its schema and then its rows) fetches and parses the
 * footer once. Held only as long as the source object is.
 */
const tails = new WeakMap<ParquetSource, Promise<Uint8Array>>();
const footers = new WeakMap<ParquetSource, Promise<FileMetaData>>();

/**
 * hyparquet's own cachedAsyncBuffer keeps every range it ever fetched, which would hold the whole
 * file by the end of a scan; only the tail is worth keeping.
 */
function toAsyncBuffer(src: ParquetSource): AsyncBuffer {
  const tailStart = Math.max(0, src.size - TAIL_BYTES);
  const fetch = async (start: number, end: number): Promise<Uint8Array> => {
    const bytes = await src.read(start, end);
    if (bytes.length !== end - start) {
      throw new Error(`parquet ${src.name}: short read at [${start}, ${end}): got ${bytes.length} bytes`);
    }
    return bytes;
  };
  return {
    byteLength: src.size,
    async slice(start: number, end = src.size): Promise<ArrayBuffer> {
      if (start >= tailStart && end <= src.size) {
        let tail = tails.get(src);
        if (!tail) tails.set(src, (tail = fetch(tailStart, src.size)));
        return copyOut(await tail, start - tailStart, end - tailStart);
      }
      return copyOut(await fetch(start, end), 0, end - start);
    },
  };
}

/** hyparquet wants an ArrayBuffer it owns; store reads may be views into pooled buffers. */
function copyOut(bytes: Uint8Array, from: number, to: number): ArrayBuffer {
  const off = bytes.byteOffset + from;
  return (bytes.buffer as ArrayBuffer).slice(off, off + (to - from));
}

function fail(src: ParquetSource, where: string, err: unknown): Error {
  const msg = err instanceof Error ? err.message : String(err);
  return new Error(`parquet ${src.name}${where}: ${msg}`, { cause: err });
}

function loadMetadata(src: ParquetSource, file: AsyncBuffer): Promise<FileMetaData> {
  let footer = footers.get(src);
  if (!footer) {
    footer = (async () => {
      if (src.size < 12) throw fail(src, '', new Error(`too small to be parquet (${src.size} bytes)`));
      try {
        return await parquetMetadataAsync(file);
      } catch (err) {
        throw fail(src, ' (footer)', err);
      }
    })();
    footers.set(src, footer);
  }
  return footer;
}

function describe(metadata: FileMetaData): ParquetMeta {
  const rowGroups: ParquetMeta['rowGroups'] = [];
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const rows = Number(rg.num_rows);
    rowGroups.push({ rowStart, rows });
    rowStart += rows;
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  return { rows: Number(metadata.num_rows), rowGroups, columns };
}

export async function readParquetMeta(src: ParquetSource): Promise<ParquetMeta> {
  return describe(await loadMetadata(src, toAsyncBuffer(src)));
}

/** The file's schema tree (column types and annotations), from the same cached footer. */
export async function readParquetSchema(src: ParquetSource): Promise<SchemaTree> {
  return parquetSchema(await loadMetadata(src, toAsyncBuffer(src)));
}

/** Columns holding raw INT64 leaves (timestamps are already converted to Date by hyparquet). */
function int64Columns(metadata: FileMetaData): Set<string> {
  const hasInt64 = (t: SchemaTree): boolean => {
    const e = t.element;
    if (t.children.length) return t.children.some(hasInt64);
    if (e.type !== 'INT64') return false;
    const timestamp = e.converted_type?.startsWith('TIMESTAMP') || e.logical_type?.type === 'TIMESTAMP';
    return !timestamp && e.converted_type !== 'DECIMAL';
  };
  return new Set(parquetSchema(metadata).children.filter(hasInt64).map((c) => c.element.name));
}

function unBigint(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= Number.MIN_SAFE_INTEGER && v <= Number.MAX_SAFE_INTEGER ? Number(v) : v;
  if (Array.isArray(v)) return v.map(unBigint);
  if (v !== null && typeof v === 'object' && !(v instanceof Date) && !ArrayBuffer.isView(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = unBigint(x);
    return out;
  }
  return v;
}

/**
 * Streams rows one row group at a time (clipped to [rowStart, rowEnd)), so memory is bounded by
 * the largest row group. INT64 comes out as number when safe, bigint otherwise; timestamps as
 * Date; strings as string; lists as arrays; unannotated BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY as
 * Uint8Array.
 */
export async function* readParquetRowGroups(
  src: ParquetSource,
  opts: ReadRowGroupsOptions = {},
): AsyncGenerator<{ rowStart: number; rows: Record<string, unknown>[] }> {
  const file = toAsyncBuffer(src);
  const metadata = await loadMetadata(src, file);
  const meta = describe(metadata);
  if (opts.columns) {
    const missing = opts.columns.filter((c) => !meta.columns.includes(c));
    if (missing.length) throw fail(src, '', new Error(`no column(s) ${missing.join(', ')}; has ${meta.columns.join(', ')}`));
  }
  const big = int64Columns(metadata);
  const from = Math.max(0, opts.rowStart ?? 0);
  const to = Math.min(meta.rows, opts.rowEnd ?? Infinity);
  for (const [i, g] of meta.rowGroups.entries()) {
    const start = Math.max(from, g.rowStart);
    const end = Math.min(to, g.rowStart + g.rows);
    if (start >= end) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file,
        metadata,
        columns: opts.columns,
        rowStart: start,
        rowEnd: end,
        compressors,
        // Unannotated BYTE_ARRAY is binary (e.g. image bytes); only UTF8/STRING columns become strings.
        utf8: false,
      });
    } catch (err) {
      throw fail(src, ` row group ${i}`, err);
    }
    if (rows.length !== end - start) {
      throw fail(src, ` row group ${i}`, new Error(`expected ${end - start} rows, decoded ${rows.length}`));
    }
    if (big.size) {
      for (const row of rows) for (const c of big) if (c in row) row[c] = unBigint(row[c]);
    }
    yield { rowStart: start, rows };
  }
}
