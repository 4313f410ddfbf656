import { parse, CsvError } from 'csv-parse';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

/**
 * URL/caption tables as text: CSV, TSV and JSON Lines, plain or gzip-compressed — how CC3M, CC12M,
 * SBU and DataComp's metadata come. Read as streams, a record at a time, with the byte offset where
 * each record ends (plain files), so a unit can start reading in the middle of a file.
 *
 * CSV and TSV are parsed as pandas' read_csv parses them by default (what img2dataset uses): a
 * header line names the columns unless the caller names them (CC3M's and CC12M's TSVs have none),
 * fields may be quoted with `"` (doubled inside), records end with \n or \r\n and may hold quoted
 * newlines, blank lines are skipped, a UTF-8 BOM is dropped. Values are strings; an empty field is
 * null. JSON Lines: one JSON object per line, values keep their JSON types, blank lines skipped.
 */
export type TableFormat = 'parquet' | 'csv' | 'tsv' | 'jsonl';
export type TextFormat = Exclude<TableFormat, 'parquet'>;

const EXTENSIONS: Record<string, TableFormat> = { parquet: 'parquet', csv: 'csv', tsv: 'tsv', jsonl: 'jsonl', ndjson: 'jsonl', json: 'jsonl' };

/** What a file name says it holds (`.csv`, `.tsv.gz`, `.jsonl`, `.parquet`, …); undefined when it says nothing known. */
export function tableFormatOf(name: string): { format: TableFormat; gzip: boolean } | undefined {
  const gzip = /\.gz$/i.test(name);
  const base = gzip ? name.slice(0, -3) : name;
  const format = EXTENSIONS[/\.([a-z]+)$/i.exec(base)?.[1]?.toLowerCase() ?? ''];
  if (!format || (gzip && format === 'parquet')) return undefined;
  return { format, gzip };
}

/** The extensions a table input may have, for listing folders. */
export const TABLE_EXTENSIONS = [...Object.keys(EXTENSIONS).map((e) => `.${e}`), ...Object.keys(EXTENSIONS).filter((e) => e !== 'parquet').map((e) => `.${e}.gz`)];

export interface TextTable {
  format: TextFormat;
  gzip: boolean;
  /** CSV/TSV: the column names, for files without a header line; undefined: the first line names them. */
  columns?: readonly string[];
}

/** One record: its values, the 1-based line it starts on (of the stream read), and the byte offset (of the stream read) where it ends. */
export interface TextRecord {
  row: Record<string, unknown>;
  line: number;
  end: number;
}

/** A text table's problem, naming the file and line. */
export class TextTableError extends Error {
  constructor(label: string, line: number | undefined, message: string) {
    super(`${label}${line !== undefined ? ` line ${line}` : ''}: ${message}`);
    this.name = 'TextTableError';
  }
}

/**
 * The records of `stream` in order. `header`: the stream starts with the header line (the file's
 * start); otherwise `t.columns` names the columns (a headerless file, or a slice starting at a
 * record boundary). `onColumns` hears the header's names.
 */
export async function* readTextRecords(stream: Readable, t: TextTable, label: string, opts: { header: boolean; onColumns?: (names: string[]) => void; firstLine?: number } = { header: true }): AsyncGenerator<TextRecord> {
  const input = t.gzip ? stream.pipe(createGunzip()) : stream;
  // A gunzip error (a truncated or corrupt file) surfaces on the gunzip stream; pass it on.
  if (t.gzip) stream.on('error', (e) => input.destroy(e));
  const line0 = (opts.firstLine ?? 1) - 1;
  try {
    if (t.format === 'jsonl') yield* jsonLines(input, label, line0);
    else yield* csvRecords(input, t, label, opts, line0);
  } catch (err) {
    if (err instanceof TextTableError) throw err;
    const e = err as Error & { code?: string; lines?: number };
    if (err instanceof CsvError) throw new TextTableError(label, line0 + (e.lines ?? 0), e.message.replace(/^Invalid Record Length: /, ''));
    if (e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(e.message)) throw new TextTableError(label, undefined, `not a complete gzip file (${e.message})`);
    throw new TextTableError(label, undefined, e.message);
  } finally {
    input.destroy();
    stream.destroy();
  }
}

async function* csvRecords(input: Readable, t: TextTable, label: string, opts: { header: boolean; onColumns?: (names: string[]) => void }, line0: number): AsyncGenerator<TextRecord> {
  const named = !opts.header || t.columns !== undefined;
  if (named && !t.columns) throw new TextTableError(label, undefined, 'a slice of a CSV file needs its column names');
  const parser: Readable = input.pipe(
    parse({
      delimiter: t.format === 'tsv' ? '\t' : ',',
      bom: true,
      info: true,
      skip_empty_lines: true,
      // A record with more or fewer fields than the header is an error naming its line, not a shifted row.
      relax_column_count: false,
      cast: (value, ctx) => (ctx.header || value !== '' ? value : null),
      columns: named
        ? [...t.columns!]
        : (names: string[]) => {
            const seen = new Set<string>();
            for (const n of names) {
              if (n === '') throw new TextTableError(label, line0 + 1, 'the header has an empty column name');
              if (seen.has(n)) throw new TextTableError(label, line0 + 1, `the header names column ${JSON.stringify(n)} twice`);
              seen.add(n);
            }
            opts.onColumns?.(names);
            return names;
          },
    }),
  );
  // pipe() does not pass errors on: a corrupt gzip stream would leave the parser waiting.
  input.on('error', (e) => parser.destroy(e));
  for await (const r of parser as AsyncIterable<{ record: Record<string, unknown>; info: { bytes: number; lines: number } }>) {
    yield { row: r.record, line: line0 + r.info.lines, end: r.info.bytes };
  }
}

async function* jsonLines(input: Readable, label: string, line0: number): AsyncGenerator<TextRecord> {
  let carry: Buffer = Buffer.alloc(0);
  let offset = 0;
  let line = line0;
  const one = (bytes: Buffer, end: number): TextRecord | undefined => {
    line++;
    const text = bytes.toString('utf8').replace(/^\ufeff/, '').trim();
    if (text === '') return undefined;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new TextTableError(label, line, `not valid JSON (${(err as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TextTableError(label, line, `a JSON Lines record must be an object, found ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`);
    return { row: v as Record<string, unknown>, line, end };
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    let buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
      const r = one(buf.subarray(start, nl), offset + nl + 1);
      if (r) yield r;
      start = nl + 1;
    }
    offset += start;
    buf = buf.subarray(start);
    carry = Buffer.from(buf);
  }
  if (carry.length > 0) {
    const r = one(carry, offset + carry.length);
    if (r) yield r;
  }
}

/** What planning needs of a text table: its records, columns, and where every `every`-th record starts (plain files). */
export interface TextTableScan {
  rows: number;
  columns: string[];
  /** Byte offset where record k·every starts, for k = 0, 1, …; absent for gzip files (no seeking into them). */
  offsets?: number[];
}

/** Reads a whole text table once: counts its records, collects its columns, notes where units can start. */
export async function scanTextTable(stream: Readable, t: TextTable, label: string, every: number): Promise<TextTableScan> {
  let header: string[] | undefined;
  const keys = new Set<string>(t.columns ?? []);
  const offsets: number[] | undefined = t.gzip ? undefined : [0];
  let rows = 0;
  for await (const r of readTextRecords(stream, t, label, { header: true, onColumns: (names) => (header = names) })) {
    rows++;
    if (t.format === 'jsonl') for (const k of Object.keys(r.row)) keys.add(k);
    if (offsets && rows % every === 0) offsets.push(r.end);
  }
  // The last offset would start a unit past the end.
  if (offsets && offsets.length > Math.ceil(rows / every)) offsets.length = Math.max(1, Math.ceil(rows / every));
  const columns = t.format === 'jsonl' ? [...keys] : [...(t.columns ?? header ?? [])];
  return { rows, columns, offsets };
}
