import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { newSample, type Sample } from '../../src/sample.js';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { openInputFile } from '../../src/stores/input-file.js';
import { openStore } from '../../src/stores/open-store.js';
import { unitId, type Unit } from '../../src/units/unit.js';
import { sampleKey } from './sample-key.js';

/** How a URL/caption parquet maps to samples. */
export interface ParquetSourceOptions {
  /** Files, directories of `*.parquet`, or s3:// URLs of files or prefixes. */
  paths: string[];
  /** Column holding the image URL or local path (LAION: `URL`). */
  url_column: string;
  /** Column holding the caption (LAION: `TEXT`; LAION-COCO's BLIP caption: `top_caption`). */
  caption_column: string;
  /** Rows per unit (img2dataset: 10,000). */
  unit_rows: number;
}

/** Expands directories and prefixes into a sorted list of parquet files. */
export async function listParquetFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    if (p.startsWith('s3://')) {
      if (p.endsWith('.parquet')) out.push(p);
      else {
        const base = p.replace(/\/+$/, '');
        const names = await openStore(base).list();
        out.push(...names.filter((n) => n.endsWith('.parquet')).map((n) => `${base}/${n}`));
      }
      continue;
    }
    const st = await stat(p).catch(() => undefined);
    if (!st) throw new Error(`input ${p} does not exist`);
    if (st.isDirectory()) {
      const names = (await readdir(p)).filter((n) => n.endsWith('.parquet')).sort();
      if (names.length === 0) throw new Error(`input directory ${p} holds no .parquet files`);
      out.push(...names.map((n) => join(p, n)));
    } else out.push(p);
  }
  return out;
}

/** Splits every file into units of `unit_rows` rows; a unit never spans two files. */
export async function planParquetUnits(opts: ParquetSourceOptions): Promise<Unit[]> {
  const files = await listParquetFiles(opts.paths);
  const ranges: { uri: string; rowStart: number; rowEnd: number }[] = [];
  for (const uri of files) {
    const { store, name } = openInputFile(uri);
    const meta = await readParquetMeta(await parquetSourceFromStore(store, name));
    for (const c of [opts.url_column, opts.caption_column]) {
      if (!meta.columns.includes(c)) throw new Error(`input ${uri} has no column ${JSON.stringify(c)} (columns: ${meta.columns.join(', ')}); set input.url_column / input.caption_column`);
    }
    for (let r = 0; r < meta.rows; r += opts.unit_rows) ranges.push({ uri, rowStart: r, rowEnd: Math.min(meta.rows, r + opts.unit_rows) });
  }
  return ranges.map((inp, i) => ({ id: unitId(i, ranges.length), inputs: [inp] }));
}

/**
 * Streams a unit's rows as samples, a row group at a time. The URL and caption columns become
 * `url` and `caption`; every other column is carried as it is. `only` restricts to these keys.
 */
export async function* parquetSource(unit: Unit, opts: ParquetSourceOptions, only?: Set<string>): AsyncGenerator<Sample> {
  for (const inp of unit.inputs) {
    const { store, name } = openInputFile(inp.uri);
    const src = await parquetSourceFromStore(store, name);
    let offset = 0;
    for await (const group of readParquetRowGroups(src, { rowStart: inp.rowStart, rowEnd: inp.rowEnd })) {
      for (let i = 0; i < group.rows.length; i++) {
        const key = sampleKey(unit.id, offset++, opts.unit_rows);
        if (only && !only.has(key)) continue;
        const row = group.rows[i];
        const fields: Record<string, unknown> = { url: row[opts.url_column] ?? null, caption: row[opts.caption_column] ?? null };
        for (const [k, v] of Object.entries(row)) if (k !== opts.url_column && k !== opts.caption_column && !(k in fields)) fields[k] = v;
        fields.source_file = inp.uri;
        fields.source_row = group.rowStart + i;
        yield newSample(key, fields);
      }
    }
  }
}
