import { resolve as resolvePath } from 'node:path';
import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { readWebDataset } from '../../src/formats/tar-read.js';
import { readPlan } from '../../src/executors/local.js';
import { openStore } from '../../src/stores/open-store.js';
import type { Store } from '../../src/stores/store.js';

/**
 * The rows a dedup compares, in one fixed order: outputs as given, then unit id, then row of the
 * unit's records. A row's ordinal packs its unit's place in that order and its row, so any pass
 * can tell which of two rows is earlier (the earlier is kept) and which unit a row belongs to
 * without a table per row.
 */
export interface DedupUnit {
  /** Index of the output in the order given. */
  output: number;
  id: string;
  store: Store;
}

/** Rows per unit an ordinal can address (units hold far fewer; img2dataset's default is 10,000). */
const ROWS_PER_UNIT = 2 ** 24;

export const ordinalOf = (unit: number, row: number): number => {
  if (row >= ROWS_PER_UNIT) throw new Error(`dedup: a unit of more than ${ROWS_PER_UNIT} rows`);
  return unit * ROWS_PER_UNIT + row;
};
export const unitOfOrdinal = (ordinal: number): number => Math.floor(ordinal / ROWS_PER_UNIT);
export const rowOfOrdinal = (ordinal: number): number => ordinal % ROWS_PER_UNIT;

/** How an output is named in drop lists and matched against inputs: URLs as written, local paths absolute. */
export const outputIdentity = (path: string): string => (/^[a-z][a-z0-9+.-]*:\/\//i.test(path) ? path.replace(/\/+$/, '') : resolvePath(path));

/** An output's units in id order, all done (a dedup over a half-made output would change later). */
async function doneUnits(store: Store, url: string): Promise<string[]> {
  const names = await store.list();
  const done = names.filter((n) => /^[^/]+\.done\.json$/.test(n)).map((n) => n.slice(0, -'.done.json'.length)).sort();
  if (done.length === 0) throw new Error(`${url}: no done unit (not a bitprep image output, or not run yet)`);
  if (names.includes('_plan.json')) {
    const missing = (await readPlan(store)).unit_ids.filter((id) => !done.includes(id));
    if (missing.length > 0) throw new Error(`${url}: ${missing.length} unit(s) not done (e.g. ${missing[0]}); finish the run first, so the dedup does not change under it`);
  }
  return done;
}

/** Every unit of every output, in dedup order. */
export async function dedupUnits(outputs: readonly string[]): Promise<DedupUnit[]> {
  const out: DedupUnit[] = [];
  for (const [o, url] of outputs.entries()) {
    const store = openStore(url);
    for (const id of await doneUnits(store, url)) out.push({ output: o, id, store });
  }
  return out;
}

/** A unit's records, row by row with its row number, reading only `columns`. */
export async function* unitRecords(u: DedupUnit, columns: string[]): AsyncGenerator<{ row: number; r: Record<string, unknown> }> {
  let row = 0;
  for await (const g of readParquetRowGroups(await parquetSourceFromStore(u.store, `${u.id}.parquet`), { columns })) {
    for (const r of g.rows) yield { row: row++, r };
  }
}

/** Row numbers of a unit's ok rows by key. */
export async function okRowsByKey(u: DedupUnit): Promise<Map<string, number>> {
  const rows = new Map<string, number>();
  for await (const { row, r } of unitRecords(u, ['key', 'status'])) if (r.status === 'ok') rows.set(String(r.key), row);
  return rows;
}

/** Image members a bitprep image shard stores, in the order preferred (the stored image before a kept original). */
const IMAGE_EXTS = ['jpg', 'webp', 'png', 'gif', 'tiff', 'avif', 'heic', 'bmp'];

/**
 * The stored image of every ok row of a unit (`<unit>.tar`), with its row; an ok row the tar
 * lacks, or a sample without an image, is a damaged output and an error naming it.
 */
export async function* storedImages(u: DedupUnit, where: string): AsyncGenerator<{ key: string; row: number; bytes: Uint8Array }> {
  const rows = await okRowsByKey(u);
  const tar = `${where}/${u.id}.tar`;
  for await (const s of readWebDataset(await u.store.getStream(`${u.id}.tar`), { name: tar })) {
    const row = rows.get(s.key);
    if (row === undefined) continue;
    const ext = IMAGE_EXTS.find((e) => s.files[e] !== undefined);
    if (!ext) throw new Error(`${tar}: sample ${s.key} has no image member (${Object.keys(s.files).join(', ')})`);
    rows.delete(s.key);
    yield { key: s.key, row, bytes: s.files[ext] };
  }
  if (rows.size > 0) throw new Error(`${tar}: ${rows.size} ok row(s) of the records have no image in the tar (e.g. ${[...rows.keys()][0]}); the output is damaged`);
}
