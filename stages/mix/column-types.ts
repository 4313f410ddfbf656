import type { SchemaTree } from 'hyparquet';
import { readParquetSchema, type ParquetSource } from '../../src/formats/parquet-read.js';
import type { ColumnType } from '../../src/formats/parquet-write.js';

/**
 * The column of a mix whose inputs have views: each sample's latents (1024 bytes each) in the
 * order epochs show them — `bitprep feed --epoch e` streams the (e mod views)-th, so each pass
 * over the mix sees another crop; `latent` is the first (scatter.ts draws where each sample starts).
 */
export const VIEWS_COLUMN: [string, ColumnType] = ['latent_views', 'BYTE_ARRAY'];

/** Columns every output shard has and bitprep fills itself, whatever the inputs hold. */
const OWN = new Set(['key', 'latent']);

/** The column type a Parquet leaf is written back as; integers widen to INT64, exotic types to JSON text. */
function columnTypeOf(t: SchemaTree): ColumnType {
  const e = t.element;
  if (t.children.length > 0) return 'JSON';
  const logical = e.logical_type?.type;
  const converted = e.converted_type;
  switch (e.type) {
    case 'BOOLEAN':
      return 'BOOLEAN';
    case 'INT32':
      if (converted === 'DATE' || logical === 'DATE') return 'TIMESTAMP';
      if (converted === 'DECIMAL' || logical === 'DECIMAL') return 'DOUBLE';
      return 'INT64';
    case 'INT64':
      if (converted?.startsWith('TIMESTAMP') || logical === 'TIMESTAMP') return 'TIMESTAMP';
      if (converted === 'DECIMAL' || logical === 'DECIMAL') return 'DOUBLE';
      return 'INT64';
    case 'INT96':
      return 'TIMESTAMP';
    case 'FLOAT':
      return 'FLOAT';
    case 'DOUBLE':
      return 'DOUBLE';
    case 'BYTE_ARRAY':
      if (converted === 'UTF8' || logical === 'STRING' || converted === 'ENUM' || logical === 'ENUM') return 'STRING';
      if (converted === 'JSON' || logical === 'JSON') return 'JSON';
      return 'BYTE_ARRAY';
    case 'FIXED_LEN_BYTE_ARRAY':
      if (converted === 'DECIMAL' || logical === 'DECIMAL' || logical === 'FLOAT16') return 'DOUBLE';
      if (logical === 'UUID') return 'STRING';
      return { fixedLenByteArray: e.type_length ?? 0 };
    default:
      return 'JSON';
  }
}

const same = (a: ColumnType, b: ColumnType) => JSON.stringify(a) === JSON.stringify(b);
const numeric = (t: ColumnType) => t === 'INT64' || t === 'INT32' || t === 'DOUBLE' || t === 'FLOAT';

/** One type for a column two datasets type differently: numbers widen to DOUBLE, anything else becomes JSON text. */
export function mergeColumnType(a: ColumnType, b: ColumnType): ColumnType {
  if (same(a, b)) return a;
  if (numeric(a) && numeric(b)) return 'DOUBLE';
  return 'JSON';
}

/** The columns (other than key and latent) of one latent shard and their types, in file order. */
export async function readColumnTypes(src: ParquetSource): Promise<[string, ColumnType][]> {
  return (await readParquetSchema(src)).children.filter((c) => !OWN.has(c.element.name)).map((c) => [c.element.name, columnTypeOf(c)]);
}

/**
 * The union of several datasets' columns, in order of first appearance, with merged types: every
 * output shard then has the same schema, whichever sets its rows happen to come from (a shard of
 * only synthetic rows still has LAION's aesthetic_score column, null). `empty` are the column
 * lists of shards with no rows: their types are what their writer declared, not evidence from
 * values, so they only add columns no shard with rows has, and never widen a type.
 */
export function unionColumns(lists: [string, ColumnType][][], empty: [string, ColumnType][][] = []): [string, ColumnType][] {
  const out = new Map<string, ColumnType>();
  for (const list of lists) for (const [name, t] of list) out.set(name, out.has(name) ? mergeColumnType(out.get(name)!, t) : t);
  const declared = new Map<string, ColumnType>();
  for (const list of empty) for (const [name, t] of list) if (!out.has(name)) declared.set(name, declared.has(name) ? mergeColumnType(declared.get(name)!, t) : t);
  return [...out, ...declared];
}
