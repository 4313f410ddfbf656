import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { readTextRecords, scanTextTable, tableFormatOf, TABLE_EXTENSIONS, type TableFormat, type TextTable } from '../../src/formats/text-table.js';
import { newSample, type Sample } from '../../src/sample.js';
import { openInputFile } from '../../src/stores/input-file.js';
import { openStore } from '../../src/stores/open-store.js';
import { expandHttpInput, isHttpInput } from '../../src/stores/remote-inputs.js';
import { unitId, type InputRef, type Unit } from '../../src/units/unit.js';
import { sampleKey } from './sample-key.js';

/**
 * URL/caption tables as samples: Parquet (LAION, LAION-COCO, DataComp), CSV, TSV and JSON Lines,
 * plain or gzip (CC3M, CC12M, SBU), local or on S3. Every format is planned into units of
 * `unit_rows` rows (a unit never spans two files), read as a stream, and mapped alike: the URL
 * and caption columns become `url` and `caption`, every other column is carried as it is, and
 * `source_file`/`source_row` say where the row came from.
 */
export interface TableSourceOptions {
  /** Files, directories of them, or s3:// URLs of files or prefixes. */
  paths: string[];
  /** Column holding the image URL or local path (LAION: `URL`; CC3M/CC12M as named by `columns`). */
  url_column: string;
  /** Column holding the caption (LAION: `TEXT`; LAION-COCO's BLIP caption: `top_caption`). */
  caption_column: string;
  /** Rows per unit (img2dataset: 10,000). */
  unit_rows: number;
  /** The files' format; 'auto' (default): each file's extension says (.parquet, .csv, .tsv, .jsonl/.json, each text one plain or .gz). */
  format?: 'auto' | TableFormat;
  /** CSV/TSV without a header line: the names of their columns in order (CC3M: [caption, url]; CC12M: [url, caption]). */
  columns?: string[];
}

/** One input file and how it is read. */
export interface TableFile {
  uri: string;
  format: TableFormat;
  gzip: boolean;
}

/** How a file is read under `opts.format`: its extension's format, or the configured one (with .gz still meaning gzip). */
export function tableFileOf(uri: string, format: TableSourceOptions['format'] = 'auto'): TableFile {
  const byName = tableFormatOf(uri);
  if (format === 'auto') {
    if (!byName) throw new Error(`input ${uri}: its extension names no table format (.parquet, .csv, .tsv, .jsonl, .json, or a text one with .gz); set input.format`);
    return { uri, ...byName };
  }
  return { uri, format, gzip: format !== 'parquet' && /\.gz$/i.test(uri) };
}

/**
 * The extensions of the files a folder or prefix contributes under `format`. Under 'auto' a plain
 * `.json` is left out (folders hold other JSON files: stats, manifests); name such a file itself
 * or set format jsonl.
 */
export function tableExtensions(format: TableSourceOptions['format'] = 'auto'): string[] {
  if (format === 'auto') return TABLE_EXTENSIONS.filter((e) => !e.startsWith('.json.') && e !== '.json');
  return TABLE_EXTENSIONS.filter((e) => tableFormatOf(`x${e}`)?.format === format);
}

const isTableName = (name: string, format: TableSourceOptions['format'] = 'auto'): boolean => tableExtensions(format).some((e) => name.toLowerCase().endsWith(e));

/** Expands directories and prefixes into the sorted list of their table files. */
export async function listTableFiles(paths: string[], format: TableSourceOptions['format'] = 'auto'): Promise<TableFile[]> {
  const out: string[] = [];
  for (const p of paths) {
    if (isHttpInput(p)) {
      out.push(...(await expandHttpInput(p, (n) => isTableName(n, format))));
      continue;
    }
    if (p.startsWith('s3://')) {
      if (tableFormatOf(p) || format !== 'auto') out.push(p);
      else {
        const base = p.replace(/\/+$/, '');
        const names = await openStore(base).list();
        out.push(...names.filter((n) => isTableName(n, format)).map((n) => `${base}/${n}`));
      }
      continue;
    }
    const st = await stat(p).catch(() => undefined);
    if (!st) throw new Error(`input ${p} does not exist`);
    if (st.isDirectory()) {
      const names = (await readdir(p)).filter((n) => isTableName(n, format)).sort();
      if (names.length === 0) throw new Error(`input directory ${p} holds no table files (${format === 'auto' ? TABLE_EXTENSIONS.join(', ') : format})`);
      out.push(...names.map((n) => join(p, n)));
    } else out.push(p);
  }
  return out.map((uri) => tableFileOf(uri, format));
}

/** Parquet files only (DiffusionDB's metadata and other Parquet-only inputs). */
export async function listParquetFiles(paths: string[]): Promise<string[]> {
  return (await listTableFiles(paths, 'parquet')).map((f) => f.uri);
}

const textTable = (f: TableFile, columns?: readonly string[]): TextTable => ({ format: f.format as TextTable['format'], gzip: f.gzip, columns: f.format === 'jsonl' ? undefined : columns });

async function openText(uri: string, start = 0) {
  const { store, name } = openInputFile(uri);
  return store.getStream(name, start);
}

/** A file's columns and rows, and where its units start: Parquet from its footer, text by reading it through once. */
async function describeFile(f: TableFile, opts: TableSourceOptions): Promise<{ rows: number; columns: string[]; offsets?: number[] }> {
  if (f.format === 'parquet') {
    const { store, name } = openInputFile(f.uri);
    return readParquetMeta(await parquetSourceFromStore(store, name));
  }
  return scanTextTable(await openText(f.uri), textTable(f, opts.columns), `input ${f.uri}`, opts.unit_rows);
}

/**
 * Splits every file into units of `unit_rows` rows; a unit never spans two files. A plain text
 * file's units start at the byte offset of their first row; a gzip one is decompressed from its
 * start by every unit (decompress a large one first, or give it few units).
 */
export async function planTableUnits(opts: TableSourceOptions): Promise<Unit[]> {
  const files = await listTableFiles(opts.paths, opts.format);
  const ranges: InputRef[] = [];
  for (const f of files) {
    const { rows, columns, offsets } = await describeFile(f, opts);
    for (const c of [opts.url_column, opts.caption_column]) {
      if (!columns.includes(c)) throw new Error(`input ${f.uri} has no column ${JSON.stringify(c)} (columns: ${columns.join(', ')}); set input.url_column / input.caption_column`);
    }
    for (let r = 0, k = 0; r < rows; r += opts.unit_rows, k++) ranges.push({ uri: f.uri, rowStart: r, rowEnd: Math.min(rows, r + opts.unit_rows), ...(offsets && k > 0 ? { byteStart: offsets[k] } : {}) });
  }
  return ranges.map((inp, i) => ({ id: unitId(i, ranges.length), inputs: [inp] }));
}

/**
 * A file's column names without reading it all: a Parquet footer, a CSV/TSV header line (or the
 * configured `columns`), the keys of a JSON Lines file's first `sample` records.
 */
export async function tableColumns(f: TableFile, columns?: readonly string[], sample = 1000): Promise<string[]> {
  if (f.format === 'parquet') {
    const { store, name } = openInputFile(f.uri);
    return (await readParquetMeta(await parquetSourceFromStore(store, name))).columns;
  }
  if (f.format !== 'jsonl') return columns ? [...columns] : csvHeader(f);
  const keys = new Set<string>();
  let n = 0;
  for await (const r of readTextRecords(await openText(f.uri), textTable(f), `input ${f.uri}`)) {
    for (const k of Object.keys(r.row)) keys.add(k);
    if (++n >= sample) break;
  }
  return [...keys];
}

/** A CSV file's header names (the first line), read without reading the rest. */
async function csvHeader(f: TableFile): Promise<string[]> {
  let names: string[] = [];
  const records = readTextRecords(await openText(f.uri), textTable(f), `input ${f.uri}`, { header: true, onColumns: (n) => (names = n) });
  await records.next();
  await records.return(undefined);
  return names;
}

/** A unit's rows of one input, in order, with their row numbers in the file. */
async function* unitRows(inp: InputRef, opts: TableSourceOptions): AsyncGenerator<{ row: Record<string, unknown>; index: number }[]> {
  const f = tableFileOf(inp.uri, opts.format);
  const rowStart = inp.rowStart ?? 0;
  if (f.format === 'parquet') {
    const { store, name } = openInputFile(inp.uri);
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, name), { rowStart: inp.rowStart, rowEnd: inp.rowEnd })) yield g.rows.map((row, i) => ({ row, index: g.rowStart + i }));
    return;
  }
  const label = `input ${inp.uri}`;
  const rowEnd = inp.rowEnd ?? Infinity;
  const start = inp.byteStart ?? 0;
  // From a byte offset the header is not read: the columns come from the first line (or the config).
  const columns = start > 0 && f.format !== 'jsonl' && !opts.columns ? await csvHeader(f) : opts.columns;
  const t = textTable(f, columns);
  let index = start > 0 ? rowStart : 0;
  let batch: { row: Record<string, unknown>; index: number }[] = [];
  for await (const r of readTextRecords(await openText(inp.uri, start), t, label, { header: start === 0 && (f.format === 'jsonl' || !opts.columns) })) {
    if (index >= rowEnd) break;
    if (index >= rowStart) batch.push({ row: r.row, index });
    index++;
    if (batch.length >= 1024) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
  if (rowEnd !== Infinity && index < rowEnd) throw new Error(`${label}: ${index} rows where the plan counted at least ${rowEnd}; the file changed since it was planned`);
}

/**
 * Streams a unit's rows as samples. The URL and caption columns become `url` and `caption`; every
 * other column is carried as it is. `only` restricts to these keys.
 */
export async function* tableSource(unit: Unit, opts: TableSourceOptions, only?: Set<string>): AsyncGenerator<Sample> {
  for (const inp of unit.inputs) {
    let offset = 0;
    for await (const rows of unitRows(inp, opts)) {
      for (const { row, index } of rows) {
        const key = sampleKey(unit.id, offset++, opts.unit_rows);
        if (only && !only.has(key)) continue;
        const fields: Record<string, unknown> = { url: row[opts.url_column] ?? null, caption: row[opts.caption_column] ?? null };
        for (const [k, v] of Object.entries(row)) if (k !== opts.url_column && k !== opts.caption_column && !(k in fields)) fields[k] = v;
        fields.source_file = inp.uri;
        fields.source_row = index;
        yield newSample(key, fields);
      }
    }
  }
}
