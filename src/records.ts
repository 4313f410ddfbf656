import { randomUUID } from 'node:crypto';
import { tableSchema, writeParquet, type ColumnType } from './formats/parquet-write.js';
import { KNOWN_COLUMN_TYPES, OWN_COLUMN_TYPES } from './formats/known-columns.js';
import { toJson } from './json-safe.js';
import type { Sample } from './sample.js';

/** Status columns that lead every record; metadata fields follow. */
const STATUS_COLUMNS = ['key', 'status', 'dropped_by', 'dropped_value', 'failed_stage', 'error_code', 'error'] as const;

/** decode-resize's columns: the original's digest, format and size, EXIF, and the output size. */
const DECODED = ['original_sha256', 'original_format', 'original_width', 'original_height', 'exif_orientation', 'exif', 'width', 'height'] as const;

/**
 * What the WebDataset source gives every row: `source_file` (the row's origin: the upstream
 * provenance when the sample's json holds it, else this tar) and `shard_file`/`shard_key` (the
 * tar and member this job read).
 */
const FROM_TARS = ['url', 'caption', 'source_file', 'shard_file', 'shard_key'] as const;

/**
 * The columns each job writes on its rows beyond the status columns, in order: every file of the
 * job has them with their known types (OWN_COLUMN_TYPES), so an empty unit's
 * records, and a unit where no row got far enough to set them, still have them. Columns a config
 * switches on (aesthetic_score, OCR) and columns carried from the input follow when rows have
 * them. pre-encode's also lead its latent shards, after src/formats/latent-shards.ts
 * LATENT_COLUMNS. Keyed by job name here, in src/, so that src/retry-failed.ts can use them too.
 */
export const JOB_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  'laion-filter': ['url', 'caption', 'source_file', 'source_row', 'http_status', 'content_type', 'final_url', 'download_bytes', ...DECODED],
  'image-shards': ['url', 'caption', 'source_file', ...DECODED],
  'dalle-ingest': [...FROM_TARS, 'source_key', 'caption_long', 'caption_short', ...DECODED],
  recaption: [...FROM_TARS, 'caption_long', 'caption_short', 'caption_model', 'caption_prompt_version', 'caption_seed', 'caption_attempts'],
  'diffusiondb-synth': ['caption', 'source_file', 'source_row', 'gen_model', 'gen_preset', 'gen_served_model', 'gen_size', 'gen_steps', 'gen_guidance', 'gen_extra', 'gen_seed', ...DECODED],
  'pre-encode': [...FROM_TARS, 'source'],
  // The records of its scatter units: one per input row, with the row's fate in the mix.
  'training-mix': ['source', 'mix_set', 'dataset', 'input_shard', 'copies'],
};

/** A job's columns (none for a job not listed). */
export function jobColumns(job: string): readonly string[] {
  return JOB_COLUMNS[job] ?? [];
}

/** What a carried column that collides with another ignoring case is renamed to: `WIDTH` → `source_WIDTH`. */
export const RENAME_PREFIX = 'source_';

/**
 * How one unit's fields become column names, the same in every file the unit writes (records,
 * tar `.json`, latent shard). Spark, Hive and DuckDB compare names ignoring case, so no two
 * columns of a file may differ only in case:
 *
 * - bitprep's own columns (OWN_COLUMN_TYPES, plus `own` given by the job) keep their names;
 * - a carried column keeps its name unless it equals, ignoring case, an own column or a carried
 *   column met earlier in the unit; it is then written as `source_<name>` (LAION's `WIDTH`
 *   beside bitprep's `width` becomes `source_WIDTH`);
 * - if `source_<name>` is taken too (ignoring case), the unit fails with an error naming the
 *   columns, at its first row that holds them.
 *
 * A name's decision is made once and kept for the unit. Within a row, names that keep their own
 * come first, so the outcome does not depend on the order of a row's fields. Fields are renamed
 * only here, when written: stages (column filters such as `WIDTH >= 256`) see the input's names.
 */
export class ColumnNames {
  private readonly own: Set<string>;
  /** Output column of each field decided so far. */
  private readonly byField = new Map<string, string>();
  /** Lowercased output column → the field written there (own columns are reserved up front). */
  private readonly taken = new Map<string, string>();

  constructor(own: Iterable<string> = []) {
    this.own = new Set([...Object.keys(OWN_COLUMN_TYPES), ...own]);
    for (const name of this.own) {
      const lower = name.toLowerCase();
      const other = this.taken.get(lower);
      if (other !== undefined && other !== name) throw new Error(`bitprep columns ${JSON.stringify(other)} and ${JSON.stringify(name)} differ only in case`);
      this.taken.set(lower, name);
    }
  }

  /** The column a field is written as. */
  column(field: string): string {
    const known = this.byField.get(field);
    if (known !== undefined) return known;
    this.decide([field]);
    return this.byField.get(field)!;
  }

  /** The fields of one row under their column names (values unchanged), in the row's order. */
  rename(fields: Record<string, unknown>): Record<string, unknown> {
    const names = Object.keys(fields);
    const fresh = names.filter((n) => !this.byField.has(n));
    if (fresh.length > 0) this.decide(fresh);
    const out: Record<string, unknown> = {};
    for (const n of names) out[this.byField.get(n)!] = fields[n];
    return out;
  }

  /** Fields renamed so far, as {field: column}. */
  renamed(): Record<string, string> {
    return Object.fromEntries([...this.byField].filter(([f, c]) => f !== c));
  }

  private decide(fields: string[]): void {
    const later: string[] = [];
    for (const f of fields) {
      if (this.own.has(f)) this.byField.set(f, f);
      else if (this.taken.has(f.toLowerCase())) later.push(f);
      else {
        this.byField.set(f, f);
        this.taken.set(f.toLowerCase(), f);
      }
    }
    for (const f of later) {
      const holder = this.taken.get(f.toLowerCase())!;
      const renamed = RENAME_PREFIX + f;
      const other = this.taken.get(renamed.toLowerCase());
      if (other !== undefined) {
        throw new Error(
          `input column ${JSON.stringify(f)} differs from ${JSON.stringify(holder)} only in case, and its rename ${JSON.stringify(renamed)} would differ only in case from ${JSON.stringify(other)}: ` +
            'no two columns of a bitprep output may have names equal ignoring case; rename one of them in the input',
        );
      }
      this.byField.set(f, renamed);
      this.taken.set(renamed.toLowerCase(), f);
    }
  }
}

/**
 * A sample's row in the sidecar records: its status in fixed columns, then its metadata fields
 * under their column names (`names`, one per unit; by default decided for this row alone).
 * Dropped values are stored as JSON text so one column holds numbers, strings or lists alike.
 */
export function toRecord(s: Sample, names: ColumnNames = new ColumnNames()): Record<string, unknown> {
  const st = s.status;
  const rec: Record<string, unknown> = {
    key: s.key,
    status: st.kind,
    dropped_by: st.kind === 'dropped' ? st.by : null,
    dropped_value: st.kind === 'dropped' && st.value !== undefined ? toJson(st.value) : null,
    failed_stage: st.kind === 'failed' ? st.stage : null,
    error_code: st.kind === 'failed' ? (st.code ?? null) : null,
    error: st.kind === 'failed' ? st.error : null,
  };
  for (const [k, v] of Object.entries(names.rename(fieldsToWrite(s.fields)))) rec[k] = v === undefined ? null : v;
  return rec;
}

/** A sample's fields without those a status column or the key already holds (an upstream json's `key`). */
function fieldsToWrite(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (!(STATUS_COLUMNS as readonly string[]).includes(k)) out[k] = v;
  return out;
}

/**
 * A sample's WebDataset members: the encoded image, its fields as JSON (the key, then the fields
 * under the unit's column names, int64 exact: see sidecarJson), and the caption.
 */
export function webDatasetMembers(s: Sample, names: ColumnNames = new ColumnNames()): Record<string, Uint8Array | string> {
  if (!s.image || !s.imageExt) throw new Error(`sample ${s.key} has no encoded image to write`);
  const files: Record<string, Uint8Array | string> = { [s.imageExt]: s.image, json: sidecarJson({ key: s.key, ...names.rename(fieldsToWrite(s.fields)) }) };
  if (typeof s.fields.caption === 'string') files.txt = s.fields.caption;
  if (s.original) files[`original.${s.original.ext}`] = s.original.bytes;
  return files;
}

export interface EncodeRecordsOptions {
  /** The job's own columns (after the status columns): present, typed, even when the unit has no rows. */
  columns?: readonly string[];
  /** Types the job pins on top of KNOWN_COLUMN_TYPES (a value that does not fit fails the write). */
  types?: Readonly<Record<string, ColumnType>>;
}

/**
 * A unit's records as Parquet (snappy): the status columns, the job's columns, then every other
 * field in first-seen order. Types come from `types`, then KNOWN_COLUMN_TYPES where the values fit,
 * then the values; `key` and `status` are REQUIRED and every other column OPTIONAL, in every file.
 * A unit with no rows gives a file of no rows with all those columns.
 */
export function encodeRecords(records: Record<string, unknown>[], opts: EncodeRecordsOptions = {}): Uint8Array {
  const schema = tableSchema(records, {
    columns: [...STATUS_COLUMNS, ...(opts.columns ?? [])],
    types: opts.types,
    preferredTypes: KNOWN_COLUMN_TYPES,
    required: ['key', 'status'],
  });
  return writeParquet(records, { schema, compression: 'SNAPPY' });
}

/**
 * Marks an int64 while JSON text is written or read. Random per process, so no string a dataset
 * holds can pass for one.
 */
const INT64_MARK = `\u{E000}int64-${randomUUID()}:`;

type JsonWithRaw = typeof JSON & { rawJSON?: (text: string) => unknown };
const rawJSON = (JSON as JsonWithRaw).rawJSON;

/**
 * JSON text of a WebDataset `.json` member. An int64 (a bigint: LAION's `hash` beyond 2^53) is
 * written as an exact JSON integer, never as a string and never rounded: Python's json reads it
 * as int, parseSidecarJson as bigint, so the column keeps the INT64 type it had in the records
 * (JavaScript's JSON.parse rounds such a number; bitprep's readers do not use it for sidecars).
 */
export function sidecarJson(value: unknown): string {
  if (rawJSON) return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? rawJSON(v.toString()) : v));
  let marked = false;
  const text = JSON.stringify(value, (_k, v) => {
    if (typeof v !== 'bigint') return v;
    marked = true;
    return INT64_MARK + v.toString();
  });
  if (!marked) return text;
  return text.split(`"${INT64_MARK}`).map((part, i) => (i === 0 ? part : part.replace(/^(-?\d+)"/, '$1'))).join('');
}

const hasSourceAccess = (() => {
  try {
    let seen = false;
    JSON.parse('1', function (this: unknown, _k: string, v: unknown, ctx?: { source?: string }) {
      seen = ctx?.source === '1';
      return v;
    } as (this: unknown, k: string, v: unknown) => unknown);
    return seen;
  } catch {
    return false;
  }
})();

/**
 * Parses a WebDataset `.json` member. An integer literal outside the safe range (±2^53) comes back
 * as a bigint, exact, instead of a rounded number, so int64 columns survive a trip through the
 * sidecar; every other value is JSON.parse's.
 */
export function parseSidecarJson(text: string): unknown {
  // No run of 16 digits: no integer beyond 2^53 can be in it.
  if (!/\d{16}/.test(text)) return JSON.parse(text);
  if (hasSourceAccess) {
    return JSON.parse(text, function (this: unknown, _k: string, v: unknown, ctx?: { source?: string }) {
      if (typeof v === 'number' && !Number.isSafeInteger(v) && ctx?.source !== undefined && /^-?\d+$/.test(ctx.source)) return BigInt(ctx.source);
      return v;
    } as (this: unknown, k: string, v: unknown) => unknown);
  }
  // Wraps each unsafe integer literal outside strings as a marked string, restored by the reviver.
  let out = '';
  let last = 0;
  let wrapped = false;
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
      i++;
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      const token = text.slice(i, j);
      if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(last, i)}"${INT64_MARK}${token}"`;
        last = j;
        wrapped = true;
      }
      i = j;
    } else i++;
  }
  if (!wrapped) return JSON.parse(text);
  out += text.slice(last);
  return JSON.parse(out, (_k, v) => (typeof v === 'string' && v.startsWith(INT64_MARK) ? BigInt(v.slice(INT64_MARK.length)) : v));
}
