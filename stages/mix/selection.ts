import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { LATENT_BYTES } from '../../src/formats/latent-bits.js';
import { readLatentManifest, type LatentManifest } from '../../src/formats/latent-shards.js';
import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import type { ColumnType } from '../../src/formats/parquet-write.js';
import type { Logger } from '../../src/log.js';
import { openStore } from '../../src/stores/open-store.js';
import type { Store } from '../../src/stores/store.js';
import { duplicatesToDrop, findNearDuplicates } from '../latent-dedup.js';
import { OWN_COLUMN_TYPES } from '../../src/formats/known-columns.js';
import { RENAME_PREFIX } from '../../src/records.js';
import { mergeColumnType, readColumnTypes, unionColumns, VIEWS_COLUMN } from './column-types.js';
import { FingerprintSet } from './fingerprint-set.js';
import { deriveSeed, fingerprint64, hash32, rowIdentity } from './hash.js';
import { planMixture, rankLayout, type MixturePlan, type RankLayout } from './mixture.js';

/** One weighted set of latent datasets (folders or s3:// prefixes holding index.json and latent shards). */
export interface MixSetSpec {
  name: string;
  paths: string[];
  weight: number;
}

/** Everything that decides which rows go where; a change to any of it makes another mix. */
export interface SelectionSpec {
  sets: MixSetSpec[];
  seed: number;
  total: number | null;
  longRatio: number;
  /** Caption dropout probability (caption-policy.ts dropCaption). */
  uncondProb: number;
  hamming: number | null;
  /**
   * `bitprep dedup` folders whose views leave rows out (each with the SHA-256 of its
   * summary.json, so a new dedup into the same folder makes another mix); absent when none.
   */
  exclude?: { dir: string; summary: string }[];
  worldSize: number;
  globalBatch: number;
  shardSize: number;
}

/** A row's fate in pass 1, one byte per input row: a copy count (0 = not selected), or a dedup drop. */
export const DUPLICATE_KEY = 255;
export const NEAR_DUPLICATE = 254;
/**
 * A row holding another view (crop) of the image in the row before it (pre-encode's
 * `encoder.views`, `view` 1 … views − 1): part of that row's sample, which carries every view
 * through the mix, never a sample of its own.
 */
export const EXTRA_VIEW = 253;
/** A row a `bitprep dedup` view drops (`dedup.exclude`): a later copy of a picture kept elsewhere. */
export const DEDUP_EXCLUDED = 252;
/** Most appearances of one row (passes + 1): beyond this a mix is mostly repetition anyway. */
export const MAX_COPIES = 251;
/** Whether a row's code makes it a sample of the mix's enumeration (selected or not), not a drop or another row's view. */
export const isSampleRow = (code: number): boolean => code !== DUPLICATE_KEY && code !== NEAR_DUPLICATE && code !== EXTRA_VIEW && code !== DEDUP_EXCLUDED;

/** The keys of one input shard a dedup leaves out (training-mix's `dedup.exclude`). */
export type ShardExclusions = (dataset: { url: string; store: Store }, shard: string) => Promise<ReadonlySet<string>>;

/** One input latent shard, in plan order (sets, then their paths, then each manifest's shards). */
export interface InputShard {
  set: number;
  /** The dataset's location as configured (what the store is opened on). */
  dataset: string;
  name: string;
  rows: number;
  sha256: string;
  /** Hash chain of the shard's row identities in order: scatter checks it reads the rows pass 1 saw. */
  keysDigest: number;
  /** Index of this shard's first sample copy in the mix's enumeration (the Feistel input). */
  memberStart: number;
  /** Distinct rows of this shard in the mix. */
  kept: number;
  /** Samples this shard contributes (kept rows × their copies). */
  samples: number;
}

export interface SetReport {
  name: string;
  weight: number;
  datasets: string[];
  input_rows: number;
  /** Rows holding a further view of the row before them (pre-encode's views), which travel with it. */
  extra_views: number;
  /** Rows whose (source, key) an earlier row of any set already had. */
  duplicate_key: number;
  near_duplicate: number;
  /** Rows a `dedup.exclude` view drops (absent in mixes planned before it). */
  dedup_excluded?: number;
  /** Distinct rows after dedup: what the mixture arithmetic saw. */
  rows: number;
  /** Distinct rows the mix takes at least once. */
  kept: number;
  not_selected: number;
  take: number;
  passes: number;
  extra: number;
}

/** `_mix/selection.json`: pass 1's result, reused by every later plan, unit and process. */
export interface SelectionFile {
  format: 'bitprep-mix-selection';
  version: 1;
  fingerprint: string;
  spec: SelectionSpec;
  identity: 'source+key';
  mixture: MixturePlan;
  layout: RankLayout;
  sets: SetReport[];
  inputs: InputShard[];
  /** Output columns after key and latent, with the types every output shard uses. */
  columns: [string, ColumnType][];
  /**
   * Input columns written under another name, {input: output} (see mixColumnNames); scatter units
   * rename them as they read. Absent in selections written before it existed (nothing renamed).
   */
  renamed?: Record<string, string>;
  /** Pass 1's own memory, for the record (bytes). */
  memory: { fingerprints: number; ranks: number; codes: number; latents: number };
}

export interface MixSelection extends SelectionFile {
  /** Per input shard, one code per row (see DUPLICATE_KEY): shares the order of `inputs`. */
  codes: Uint8Array[];
}

export const SELECTION_NAME = '_mix/selection.json';
export const CODES_NAME = '_mix/selection.codes.gz';

/** Columns bitprep adds to every output row (documented in the README section). */
export const MIX_COLUMNS: [string, ColumnType][] = [
  ['caption_kind', 'STRING'],
  ['caption_text', 'STRING'],
  ['mix_set', 'STRING'],
];

/** How a dataset stands in for a missing `source` in row identities: one spelling per location. */
export function datasetIdentity(url: string): string {
  return url.startsWith('s3://') ? url.replace(/\/+$/, '') : resolve(url.startsWith('file://') ? new URL(url).pathname : url);
}

interface Dataset {
  set: number;
  url: string;
  store: Store;
  manifest: LatentManifest;
}

/** Opens every dataset of every set and reads its manifest (refusing other formats and bit orders). */
export async function openDatasets(sets: MixSetSpec[]): Promise<Dataset[]> {
  const out: Dataset[] = [];
  for (const [set, s] of sets.entries()) {
    for (const url of s.paths) {
      const store = openStore(url);
      out.push({ set, url, store, manifest: await readLatentManifest(store) });
    }
  }
  return out;
}

/** SHA-256 over the spec and every input shard's name, rows and digest. */
export function selectionFingerprint(spec: SelectionSpec, datasets: Dataset[]): string {
  const inputs = datasets.map((d) => ({ set: d.set, dataset: datasetIdentity(d.url), shards: d.manifest.shards.map((s) => [s.name, s.rows, s.sha256]) }));
  // Caption dropout came later: left out while off, so mixes planned before it keep their fingerprint.
  const { uncondProb, exclude, ...before } = spec;
  const later = { ...(uncondProb ? { uncondProb } : {}), ...(exclude?.length ? { exclude } : {}) };
  return createHash('sha256').update(JSON.stringify({ v: 1, spec: { ...before, ...later }, inputs })).digest('hex');
}

/**
 * The k smallest of a multiset of uint32 ranks, ties going to the earlier row: a threshold t and
 * how many rows ranked exactly t are taken (the first `tiesTaken` in enumeration order). Two
 * 16-bit radix histograms (1 MiB), two scans: no copy or sort of the ranks.
 */
export function lowestRanks(each: (visit: (rank: number) => void) => void, k: number): { threshold: number; tiesTaken: number } {
  if (k <= 0) return { threshold: 0, tiesTaken: 0 };
  const hi = new Float64Array(65536);
  each((r) => hi[r >>> 16]++);
  let before = 0;
  let b1 = 0;
  for (; b1 < 65536; b1++) {
    if (before + hi[b1] >= k) break;
    before += hi[b1];
  }
  if (b1 === 65536) throw new Error(`lowestRanks: asked for ${k}, have ${before}`);
  const lo = new Float64Array(65536);
  each((r) => {
    if (r >>> 16 === b1) lo[r & 0xffff]++;
  });
  let k1 = k - before;
  let b2 = 0;
  for (; b2 < 65536; b2++) {
    if (lo[b2] >= k1) break;
    k1 -= lo[b2];
  }
  return { threshold: ((b1 << 16) | b2) >>> 0, tiesTaken: k1 };
}

/**
 * Pass 1: reads the `key` and `source` columns of every input shard (and `latent` when
 * near-duplicate dedup is on), drops later duplicates of a (source, key) and, optionally, latents
 * within `hamming` bits of an earlier one, works out the mixture, and picks each set's rows by
 * seeded rank. The result is one byte per input row (how many times the row appears, or why it
 * does not) plus per-shard offsets into the shuffle's enumeration.
 *
 * Memory per input row while it runs: the fingerprint set (11–21 bytes per distinct row), a 4-byte
 * rank and a 1-byte code; with near-duplicate dedup also the 1 KiB latent and ~30 bytes of index
 * (so that option is for mixes whose latents fit in memory). Nothing per row is a JS object.
 */
export async function computeSelection(spec: SelectionSpec, datasets: Dataset[], fingerprint: string, log: Logger, exclusions?: ShardExclusions): Promise<MixSelection> {
  const seen = new FingerprintSet();
  const inputs: InputShard[] = [];
  const codes: Uint8Array[] = [];
  const ranks: Uint32Array[] = [];
  const setSeeds = spec.sets.map((s) => deriveSeed(spec.seed, `rank\u0000${s.name}`));
  const near = spec.hamming === null ? undefined : new LatentCollector();
  const typeLists: [string, ColumnType][][] = [];
  const emptyTypeLists: [string, ColumnType][][] = [];
  const totalShards = datasets.reduce((a, d) => a + d.manifest.shards.length, 0);
  let lastLog = Date.now();
  let rowsRead = 0;

  for (const d of datasets) {
    if (d.manifest.shards.length === 0) continue;
    const fallback = datasetIdentity(d.url);
    for (const shard of d.manifest.shards) {
      // Every shard's footer, not the first one's: a shard's inferred types follow its own values
      // (a guidance of 0 in one model's shards is an integer, 4.5 in another's a double).
      const src = await parquetSourceFromStore(d.store, shard.name);
      const types = await readColumnTypes(src);
      // A shard of no rows (a unit whose images all failed) declares types no value backs.
      (shard.rows > 0 ? typeLists : emptyTypeLists).push(types);
      const hasSource = types.some(([n]) => n === 'source');
      const hasViews = types.some(([n]) => n === 'view');
      const columns = ['key', ...(hasSource ? ['source'] : []), ...(hasViews ? ['view'] : []), ...(near ? ['latent'] : [])];
      const k = inputs.length;
      const excluded = exclusions ? await exclusions(d, shard.name) : undefined;
      const code = new Uint8Array(shard.rows);
      const rank = new Uint32Array(shard.rows);
      let i = 0;
      let digest = 0;
      let lastId = '';
      let lastView = 0;
      for await (const g of readParquetRowGroups(src, { columns })) {
        for (const r of g.rows) {
          if (i >= shard.rows) throw new Error(`${d.url}/${shard.name}: more rows than index.json says (${shard.rows}); rebuild its index`);
          const id = rowIdentity(typeof r.source === 'string' && r.source !== '' ? r.source : fallback, String(r.key));
          digest = (Math.imul(digest, 31) + hash32(id, 1)) >>> 0;
          const view = r.view === undefined || r.view === null ? 0 : Number(r.view);
          if (view !== 0) {
            // pre-encode writes an image's views adjacent and in order; anything else is not one sample's views.
            if (id !== lastId || view !== lastView + 1) throw new Error(`${d.url}/${shard.name}: row ${i} (key ${String(r.key)}) is view ${view} but does not follow view ${view - 1} of the same key; its views are not adjacent`);
            code[i] = EXTRA_VIEW;
            lastView = view;
            i++;
            continue;
          }
          lastId = id;
          lastView = 0;
          const [fh, fl] = fingerprint64(id);
          if (!seen.add(fh, fl)) code[i] = DUPLICATE_KEY;
          else if (excluded?.has(String(r.key))) code[i] = DEDUP_EXCLUDED;
          else {
            rank[i] = hash32(id, setSeeds[d.set]);
            near?.add(r.latent as Uint8Array, k, i);
          }
          i++;
        }
      }
      if (i !== shard.rows) throw new Error(`${d.url}/${shard.name}: ${i} rows, index.json says ${shard.rows}; rebuild its index`);
      rowsRead += i;
      inputs.push({ set: d.set, dataset: d.url, name: shard.name, rows: shard.rows, sha256: shard.sha256, keysDigest: digest, memberStart: 0, kept: 0, samples: 0 });
      codes.push(code);
      ranks.push(rank);
      if (Date.now() - lastLog > 10_000) {
        lastLog = Date.now();
        log.info(`training-mix pass 1: ${inputs.length}/${totalShards} shards, ${rowsRead} rows, ${seen.size} distinct (${(seen.byteLength / 2 ** 20).toFixed(0)} MiB of fingerprints)`);
      }
    }
  }

  if (near) {
    log.info(`training-mix: near-duplicate search over ${near.count} latents within ${spec.hamming} bits`);
    const { clusters } = findNearDuplicates(near.buffers(), { threshold: spec.hamming!, collectPairs: false });
    for (const j of duplicatesToDrop(clusters)) codes[near.shardOf[j]][near.rowOf[j]] = NEAR_DUPLICATE;
  }

  const reports: SetReport[] = spec.sets.map((s) => ({
    name: s.name,
    weight: s.weight,
    datasets: s.paths,
    input_rows: 0,
    extra_views: 0,
    duplicate_key: 0,
    near_duplicate: 0,
    dedup_excluded: 0,
    rows: 0,
    kept: 0,
    not_selected: 0,
    take: 0,
    passes: 0,
    extra: 0,
  }));
  for (const [k, inp] of inputs.entries()) {
    const rep = reports[inp.set];
    rep.input_rows += inp.rows;
    for (const c of codes[k]) {
      if (c === DUPLICATE_KEY) rep.duplicate_key++;
      else if (c === NEAR_DUPLICATE) rep.near_duplicate++;
      else if (c === DEDUP_EXCLUDED) rep.dedup_excluded = (rep.dedup_excluded ?? 0) + 1;
      else if (c === EXTRA_VIEW) rep.extra_views++;
      else rep.rows++;
    }
  }
  const mixture = planMixture(reports.map((r) => ({ name: r.name, weight: r.weight, rows: r.rows })), { total: spec.total, unit: spec.globalBatch });
  const layout = rankLayout(mixture.total, spec.worldSize, spec.globalBatch, spec.shardSize);

  for (const [s, take] of mixture.sets.entries()) {
    if (take.passes + (take.extra > 0 ? 1 : 0) > MAX_COPIES) {
      throw new Error(`training-mix: set ${take.name} would repeat each row up to ${take.passes + 1} times (take ${take.take} of ${take.rows}); at most ${MAX_COPIES} are supported — ask for a smaller total`);
    }
    Object.assign(reports[s], { take: take.take, passes: take.passes, extra: take.extra });
    const mine = inputs.map((inp, k) => k).filter((k) => inputs[k].set === s);
    const each = (visit: (rank: number) => void) => {
      for (const k of mine) {
        const c = codes[k];
        const r = ranks[k];
        for (let i = 0; i < c.length; i++) if (c[i] === 0) visit(r[i]);
      }
    };
    const { threshold, tiesTaken } = lowestRanks(each, take.extra);
    let ties = 0;
    for (const k of mine) {
      const c = codes[k];
      const r = ranks[k];
      for (let i = 0; i < c.length; i++) {
        if (c[i] !== 0) continue;
        const extra = take.extra > 0 && (r[i] < threshold || (r[i] === threshold && ties++ < tiesTaken)) ? 1 : 0;
        c[i] = take.passes + extra;
      }
    }
  }

  let member = 0;
  for (const [k, inp] of inputs.entries()) {
    inp.memberStart = member;
    for (const c of codes[k]) {
      if (!isSampleRow(c)) continue;
      if (c === 0) reports[inp.set].not_selected++;
      else {
        inp.kept++;
        inp.samples += c;
        reports[inp.set].kept++;
      }
    }
    member += inp.samples;
  }
  if (member !== mixture.total) throw new Error(`training-mix: internal error: ${member} samples selected for a total of ${mixture.total}`);

  const memory = {
    fingerprints: seen.byteLength,
    ranks: ranks.reduce((a, r) => a + r.byteLength, 0),
    codes: codes.reduce((a, c) => a + c.byteLength, 0),
    latents: near?.byteLength ?? 0,
  };
  // An input's `view` numbers its rows; the mix's rows are samples, which carry all their views in `latent_views`.
  const named = mixColumnNames(unionColumns(typeLists, emptyTypeLists).filter(([n]) => n !== 'view' && !MIX_COLUMNS.some(([m]) => m === n)));
  const hasViews = reports.some((r) => r.extra_views > 0);
  return {
    format: 'bitprep-mix-selection',
    version: 1,
    fingerprint,
    spec,
    identity: 'source+key',
    mixture,
    layout,
    sets: reports,
    inputs,
    columns: [...named.columns, ...MIX_COLUMNS, ...(hasViews ? [VIEWS_COLUMN] : [])],
    ...(Object.keys(named.renamed).length > 0 ? { renamed: named.renamed } : {}),
    memory,
    codes,
  };
}

/**
 * Output names of the inputs' columns. Each input shard obeys the case rule of src/records.ts
 * ColumnNames on its own, but datasets need not agree with each other (one written before the
 * rule held both LAION's `WIDTH` and bitprep's `width`; one has `Caption` where another has
 * `caption`). As when a job writes: bitprep's own columns keep their names, a column equal
 * ignoring case to one of them or to an earlier column becomes `source_<name>`, and where
 * `source_<name>` is itself a column of some input (a newer dataset's `source_WIDTH` beside an
 * older one's `WIDTH`) the two are one output column. A rename that still collides is an error
 * at plan time.
 */
export function mixColumnNames(columns: [string, ColumnType][]): { columns: [string, ColumnType][]; renamed: Record<string, string> } {
  const own = new Set([...Object.keys(OWN_COLUMN_TYPES), ...MIX_COLUMNS.map(([n]) => n)]);
  const taken = new Map<string, string>();
  for (const n of own) taken.set(n.toLowerCase(), n);
  const out = new Map<string, ColumnType>();
  const put = (name: string, t: ColumnType) => out.set(name, out.has(name) ? mergeColumnType(out.get(name)!, t) : t);
  const later: [string, ColumnType][] = [];
  for (const [n, t] of columns) {
    const holder = taken.get(n.toLowerCase());
    if (own.has(n) || holder === undefined || holder === n) {
      taken.set(n.toLowerCase(), n);
      put(n, t);
    } else later.push([n, t]);
  }
  const renamed: Record<string, string> = {};
  for (const [n, t] of later) {
    const target = RENAME_PREFIX + n;
    const holder = taken.get(target.toLowerCase());
    if (holder !== undefined && holder !== target) {
      throw new Error(`training-mix: input column ${JSON.stringify(n)} differs from ${JSON.stringify(taken.get(n.toLowerCase()))} only in case, and its rename ${JSON.stringify(target)} would differ only in case from ${JSON.stringify(holder)}; rename one of them in the input datasets`);
    }
    taken.set(target.toLowerCase(), target);
    put(target, t);
    renamed[n] = target;
  }
  return { columns: [...out], renamed };
}

/** Latents of distinct rows for the near-duplicate search, in equal chunks (findNearDuplicates' input), and where each came from. */
class LatentCollector {
  private static readonly CHUNK = 65536;
  private readonly chunks: Uint8Array[] = [];
  shardOf: number[] = [];
  rowOf: number[] = [];
  count = 0;

  get byteLength(): number {
    return this.chunks.reduce((a, c) => a + c.byteLength, 0) + 16 * this.count;
  }

  add(latent: Uint8Array, shard: number, row: number): void {
    if (!(latent instanceof Uint8Array) || latent.length !== LATENT_BYTES) throw new Error(`input shard ${shard} row ${row}: latent is not ${LATENT_BYTES} bytes`);
    const at = this.count % LatentCollector.CHUNK;
    if (at === 0) this.chunks.push(new Uint8Array(LatentCollector.CHUNK * LATENT_BYTES));
    this.chunks[this.chunks.length - 1].set(latent, at * LATENT_BYTES);
    this.shardOf.push(shard);
    this.rowOf.push(row);
    this.count++;
  }

  buffers(): Uint8Array[] {
    const last = this.count % LatentCollector.CHUNK;
    if (last === 0) return this.chunks;
    return [...this.chunks.slice(0, -1), this.chunks[this.chunks.length - 1].subarray(0, last * LATENT_BYTES)];
  }
}

/** Writes pass 1's result: the JSON and the per-row codes (gzip: mostly runs of 0 and 1). */
export async function saveSelection(store: Store, sel: MixSelection): Promise<void> {
  const { codes, ...file } = sel;
  const all = new Uint8Array(codes.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of codes) {
    all.set(c, at);
    at += c.length;
  }
  // Codes first: a selection.json on the store means both are complete.
  await store.put(CODES_NAME, gzipSync(all, { level: 6 }));
  await store.put(SELECTION_NAME, JSON.stringify(file, null, 1) + '\n');
}

/** The stored selection.json alone, or undefined when pass 1 has not finished in this output. */
export async function readSelectionFile(store: Store): Promise<SelectionFile | undefined> {
  if (!(await store.exists(SELECTION_NAME))) return undefined;
  return JSON.parse(new TextDecoder().decode(await store.get(SELECTION_NAME))) as SelectionFile;
}

/** The per-row codes of a stored selection (scatter units need them; gather units do not). */
export async function loadCodes(store: Store, file: SelectionFile): Promise<Uint8Array[]> {
  const all = gunzipSync(await store.get(CODES_NAME));
  const codes: Uint8Array[] = [];
  let at = 0;
  for (const inp of file.inputs) {
    codes.push(all.subarray(at, at + inp.rows));
    at += inp.rows;
  }
  if (at !== all.length) throw new Error(`${store.url}/${CODES_NAME}: ${all.length} codes for ${at} input rows`);
  return codes;
}
