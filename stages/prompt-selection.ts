import { createHash } from 'node:crypto';
import { DigestTable } from '../src/digest-table.js';
import type { Logger } from '../src/log.js';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from '../src/formats/parquet-read.js';
import { drop, newSample, type Sample } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { openInputFile } from '../src/stores/input-file.js';
import { unitId, type Unit } from '../src/units/unit.js';
import { listParquetFiles } from './sources/table-source.js';
import { sampleKey } from './sources/sample-key.js';

/**
 * Which rows of a prompt table (DiffusionDB's metadata parquet) become generation requests.
 * The decisions are global (a duplicate may sit in another file; a sample is drawn from all
 * prompts), so one pass over the prompt and NSFW columns of every input file computes a verdict
 * per row before any unit runs. A unit's verdicts are then a pure function of the inputs and the
 * options, whichever units ran before it, in whichever process.
 *
 * Order of the checks, each a funnel line:
 * 1. `empty_prompt`: nothing left after normalisation;
 * 2. `prompt_nsfw` (value: the score): score above `max_prompt_nsfw`, or no score while the filter
 *    is on. Before dedup, so a duplicate always points at a row that passed the filters;
 * 3. `duplicate_prompt` (value: the key of the first occurrence, in the same shard set): the same
 *    prompt, compared case-insensitively after normalisation, appeared in an earlier row (input
 *    files in sorted order, rows in file order);
 * 4. `not_sampled`: a distinct prompt outside the seeded sample. The sample is drawn after dedup,
 *    so the duplicate count does not move with the sample, and the first occurrence that a
 *    duplicate names carries its own verdict (written or not_sampled).
 */
export interface PromptSelectionOptions {
  /** Drop prompts whose NSFW score is above this (null: no NSFW filter, no score column needed). */
  max_prompt_nsfw: number | null;
  /** Keep at most this many distinct prompts (the sample's lowest ranks); unset: no cap. */
  max_prompts?: number;
  /** Keep each distinct prompt with this probability, decided by its rank (1: all). */
  sample_fraction: number;
  /** Seed of the ranks: the same seed picks the same prompts. */
  sample_seed: number;
}

/** The columns the selection reads, and how rows group into units. */
export interface PromptInputOptions {
  /** Parquet files, folders of them, or s3:// URLs; read in sorted order. */
  paths: string[];
  prompt_column: string;
  /** Column of the NSFW score (DiffusionDB: `prompt_nsfw`, Detoxify's max of toxic and sexually explicit). */
  nsfw_column: string;
  /** Rows per unit. */
  unit_rows: number;
}

/** Trims, composes Unicode (NFC) and collapses every run of whitespace to one space. */
export function normalisePrompt(prompt: unknown): string {
  if (typeof prompt !== 'string') return '';
  return prompt.normalize('NFC').replace(/\s+/gu, ' ').trim();
}

/** What two prompts must share to be duplicates: the normalised prompt, lower-cased. */
export function promptIdentity(normalised: string): string {
  return normalised.toLowerCase();
}

/** A row's fate under the selection; `of` is the global row of the first occurrence. */
export type PromptVerdict = { kind: 'kept' } | { kind: 'empty' } | { kind: 'nsfw' } | { kind: 'duplicate'; of: number } | { kind: 'not_sampled' };

export interface SelectionCounts {
  rows: number;
  empty: number;
  nsfw: number;
  duplicate: number;
  not_sampled: number;
  kept: number;
}

// Per-row verdicts share one uint32 per row: a row's own index (kept), an earlier row's index
// (duplicate of it), or one of these codes, which sit above any row index a table can have.
const EMPTY = 0xffffffff;
const NSFW = 0xfffffffe;
const NOT_SAMPLED = 0xfffffffd;
const MAX_ROWS = 0xfffffffd;

/** The verdict of every row, in global row order (files in sorted order, then rows). */
export class PromptVerdicts {
  constructor(private readonly ref: Uint32Array, readonly counts: SelectionCounts) {}

  get rows(): number {
    return this.counts.rows;
  }

  verdict(row: number): PromptVerdict {
    if (!(row >= 0 && row < this.counts.rows)) throw new RangeError(`prompt selection: row ${row} outside 0..${this.counts.rows - 1}`);
    const r = this.ref[row];
    if (r === EMPTY) return { kind: 'empty' };
    if (r === NSFW) return { kind: 'nsfw' };
    if (r === NOT_SAMPLED) return { kind: 'not_sampled' };
    return r === row ? { kind: 'kept' } : { kind: 'duplicate', of: r };
  }
}

/**
 * Builds the verdicts from the rows' prompts and NSFW scores, fed in global row order.
 * Memory: 4 bytes per row (56 MB for DiffusionDB's 14M rows) plus the digest table, and 12 bytes
 * per distinct prompt for the sample's ranks when sampling; never the prompts themselves.
 */
export class PromptSelectionBuilder {
  private ref: Uint32Array;
  private n = 0;
  // The first row of each prompt, by a 96-bit digest of its normalised, lower-cased text.
  private readonly seen = new DigestTable();
  private readonly sampling: boolean;
  private rank = new Float64Array(1024);
  private rankRow = new Uint32Array(1024);
  private ranked = 0;
  private readonly counts: SelectionCounts = { rows: 0, empty: 0, nsfw: 0, duplicate: 0, not_sampled: 0, kept: 0 };

  /** `expectedRows` sizes the per-row array once (it still grows if more rows come). */
  constructor(private readonly opts: PromptSelectionOptions, expectedRows = 1024) {
    if (!(opts.sample_fraction > 0 && opts.sample_fraction <= 1)) throw new Error(`prompt selection: sample_fraction must be in (0, 1], got ${opts.sample_fraction}`);
    if (opts.max_prompts !== undefined && !(Number.isInteger(opts.max_prompts) && opts.max_prompts >= 1)) throw new Error(`prompt selection: max_prompts must be a positive integer, got ${opts.max_prompts}`);
    this.ref = new Uint32Array(Math.max(1, Math.min(expectedRows, MAX_ROWS)));
    this.sampling = opts.sample_fraction < 1 || opts.max_prompts !== undefined;
  }

  /** Adds the next row; `nsfw` is its score (number, bigint, or null when missing). */
  add(prompt: unknown, nsfw: unknown): void {
    if (this.n >= MAX_ROWS) throw new Error(`prompt selection: more than ${MAX_ROWS} rows`);
    if (this.n === this.ref.length) {
      const next = new Uint32Array(Math.min(MAX_ROWS, this.ref.length * 2));
      next.set(this.ref);
      this.ref = next;
    }
    const row = this.n++;
    this.ref[row] = this.verdictOf(row, prompt, nsfw);
  }

  private verdictOf(row: number, prompt: unknown, nsfw: unknown): number {
    const normalised = normalisePrompt(prompt);
    if (normalised === '') return EMPTY;
    const max = this.opts.max_prompt_nsfw;
    if (max !== null) {
      const score = typeof nsfw === 'number' ? nsfw : typeof nsfw === 'bigint' ? Number(nsfw) : NaN;
      // A missing score is treated as unsafe: the filter exists to keep such prompts out.
      if (!(score <= max)) return NSFW;
    }
    const identity = promptIdentity(normalised);
    const d = createHash('sha256').update(identity).digest();
    const first = this.seen.firstOrAdd(d.readUInt32BE(0), d.readUInt32BE(4), d.readUInt32BE(8), row);
    if (first !== undefined) return first;
    if (this.sampling) {
      const u = sampleRank(this.opts.sample_seed, identity);
      if (u >= this.opts.sample_fraction) return NOT_SAMPLED;
      this.pushRank(u, row);
    }
    return row;
  }

  private pushRank(u: number, row: number): void {
    if (this.ranked === this.rank.length) {
      const r = new Float64Array(this.rank.length * 2);
      r.set(this.rank);
      this.rank = r;
      const rr = new Uint32Array(this.rankRow.length * 2);
      rr.set(this.rankRow);
      this.rankRow = rr;
    }
    this.rank[this.ranked] = u;
    this.rankRow[this.ranked++] = row;
  }

  /** Applies the cap and returns the verdicts; the builder is spent. */
  finish(): PromptVerdicts {
    const cap = this.opts.max_prompts;
    if (cap !== undefined && this.ranked > cap) {
      // The cap keeps the `cap` lowest ranks; equal ranks (2^-52 apart at worst) go to the earlier row.
      const sorted = this.rank.slice(0, this.ranked).sort();
      const t = sorted[cap - 1];
      let below = 0;
      for (let i = 0; i < this.ranked; i++) if (this.rank[i] < t) below++;
      let equalLeft = cap - below;
      // rankRow is in row order, so "first equal rows" means earliest in the input.
      for (let i = 0; i < this.ranked; i++) {
        const u = this.rank[i];
        if (u < t) continue;
        if (u === t && equalLeft > 0) {
          equalLeft--;
          continue;
        }
        this.ref[this.rankRow[i]] = NOT_SAMPLED;
      }
    }
    this.rank = new Float64Array(0);
    this.rankRow = new Uint32Array(0);
    const ref = this.ref.length === this.n ? this.ref : this.ref.slice(0, this.n);
    const c = this.counts;
    c.rows = this.n;
    for (let row = 0; row < this.n; row++) {
      const r = ref[row];
      if (r === EMPTY) c.empty++;
      else if (r === NSFW) c.nsfw++;
      else if (r === NOT_SAMPLED) c.not_sampled++;
      else if (r === row) c.kept++;
      else c.duplicate++;
    }
    return new PromptVerdicts(ref, { ...c });
  }
}

/**
 * A distinct prompt's place in the sample: uniform in [0, 1) from SHA-256 of the seed and the
 * prompt's identity (52 bits, exact in a double). It depends on nothing else, so the chosen
 * prompts do not change when rows are reordered or files are added around them.
 */
export function sampleRank(seed: number, identity: string): number {
  const d = createHash('sha256').update(`${seed}\0${identity}`).digest();
  return (d.readUInt32BE(0) * 2 ** 20 + (d.readUInt32BE(4) >>> 12)) / 2 ** 52;
}

/** One input file as the selection and the units see it. */
export interface PromptFile {
  uri: string;
  rows: number;
  /** Global index of the file's first row. */
  firstRow: number;
  /** Index of the file's first row range. */
  firstRange: number;
}

/** A unit's row range of one file. */
export interface PromptRange {
  uri: string;
  rowStart: number;
  rowEnd: number;
}

/** The input files and their row ranges; the same inputs always give the same layout. */
export interface PromptInputLayout {
  files: PromptFile[];
  ranges: PromptRange[];
  unitRows: number;
}

/**
 * Lists the input files (sorted), checks their columns and splits each into ranges of
 * `unit_rows` rows (a range never spans two files). Reads footers only.
 */
export async function layoutPromptInputs(opts: PromptInputOptions, needNsfw: boolean): Promise<PromptInputLayout> {
  const uris = await listParquetFiles(opts.paths);
  const files: PromptFile[] = [];
  const ranges: PromptRange[] = [];
  let firstRow = 0;
  for (const uri of uris) {
    const { store, name } = openInputFile(uri);
    const meta = await readParquetMeta(await parquetSourceFromStore(store, name));
    const need = [opts.prompt_column, ...(needNsfw ? [opts.nsfw_column] : [])];
    for (const c of need) {
      if (!meta.columns.includes(c)) {
        throw new Error(`input ${uri} has no column ${JSON.stringify(c)} (columns: ${meta.columns.join(', ')}); set input.prompt_column / input.nsfw_column${needNsfw ? ', or prompts.max_prompt_nsfw: null to filter nothing' : ''}`);
      }
    }
    files.push({ uri, rows: meta.rows, firstRow, firstRange: ranges.length });
    for (let r = 0; r < meta.rows; r += opts.unit_rows) ranges.push({ uri, rowStart: r, rowEnd: Math.min(meta.rows, r + opts.unit_rows) });
    firstRow += meta.rows;
  }
  return { files, ranges, unitRows: opts.unit_rows };
}

/**
 * The id of a shard set's unit over range `index`: `<set>-<index, zero-padded>`, e.g.
 * `flux-schnell-00003`. The set name is key-safe, so unit ids and sample keys stay free of dots,
 * and the digits after the last dash name the range.
 */
export function setUnitId(set: string, index: number, layout: PromptInputLayout): string {
  return `${set}-${unitId(index, layout.ranges.length)}`;
}

/** The selection of a whole input, and the row keys of every shard set built from it. */
export class PromptSelection {
  private readonly byUri: Map<string, PromptFile>;

  constructor(readonly layout: PromptInputLayout, readonly verdicts: PromptVerdicts, readonly nsfwColumn: string) {
    this.byUri = new Map(layout.files.map((f) => [f.uri, f]));
  }

  /** The global row of `row` in file `uri`. */
  globalRow(uri: string, row: number): number {
    const f = this.byUri.get(uri);
    if (!f || !(row >= 0 && row < f.rows)) throw new Error(`prompt selection: ${uri} row ${row} is not part of the planned input`);
    return f.firstRow + row;
  }

  verdict(uri: string, row: number): PromptVerdict {
    return this.verdicts.verdict(this.globalRow(uri, row));
  }

  /** The sample key of global row `g` in shard set `set` (its unit id + offset, as the source names it). */
  keyOf(set: string, g: number): string {
    const files = this.layout.files;
    let lo = 0;
    let hi = files.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (files[mid].firstRow <= g) lo = mid;
      else hi = mid - 1;
    }
    const f = files[lo];
    const row = g - f.firstRow;
    const u = this.layout.unitRows;
    return sampleKey(setUnitId(set, f.firstRange + Math.floor(row / u), this.layout), row % u, u);
  }
}

/**
 * Reads the prompt (and NSFW score) column of every input file, a row group at a time, and
 * computes every row's verdict. Other columns are not read.
 */
export async function buildPromptSelection(input: PromptInputOptions, opts: PromptSelectionOptions, log?: Logger): Promise<PromptSelection> {
  const needNsfw = opts.max_prompt_nsfw !== null;
  const layout = await layoutPromptInputs(input, needNsfw);
  const total = layout.files.reduce((a, f) => a + f.rows, 0);
  const builder = new PromptSelectionBuilder(opts, total);
  const columns = needNsfw ? [input.prompt_column, input.nsfw_column] : [input.prompt_column];
  const t0 = performance.now();
  for (const f of layout.files) {
    const { store, name } = openInputFile(f.uri);
    let read = 0;
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, name), { columns })) {
      for (const r of g.rows) builder.add(r[input.prompt_column], needNsfw ? r[input.nsfw_column] : null);
      read += g.rows.length;
    }
    if (read !== f.rows) throw new Error(`prompt selection: ${f.uri} gave ${read} rows, its footer says ${f.rows}`);
  }
  const verdicts = builder.finish();
  const c = verdicts.counts;
  log?.info(`prompt selection over ${c.rows} rows in ${layout.files.length} file(s) (${((performance.now() - t0) / 1000).toFixed(1)} s): ${c.kept} prompts kept; dropped ${c.empty} empty, ${c.nsfw} NSFW, ${c.duplicate} duplicate, ${c.not_sampled} not sampled`);
  return new PromptSelection(layout, verdicts, input.nsfw_column);
}

/**
 * Source columns that would collide with fields the records hold for other meanings (status
 * columns, the caption, decode-resize's output size, the source position) are kept as
 * `source_<name>`: DiffusionDB's `width`/`height` (the original Stable Diffusion image) become
 * `source_width`/`source_height`.
 */
const RESERVED = new Set(['key', 'status', 'dropped_by', 'dropped_value', 'failed_stage', 'error_code', 'error', 'caption', 'width', 'height', 'source_file', 'source_row']);

/** The field a source column is carried in. */
export const sourceField = (column: string): string => (RESERVED.has(column) ? `source_${column}` : column);

/**
 * Streams the rows of a unit (one range of one file) as samples keyed `<unit id><offset>`, every
 * column carried (see RESERVED), `caption` = the normalised prompt, plus `source_file` and
 * `source_row`. `only` restricts to these keys. Verdicts are applied by promptSelection().
 */
export async function* promptSource(unit: Unit, input: Pick<PromptInputOptions, 'prompt_column' | 'unit_rows'>, only?: Set<string>): AsyncGenerator<Sample> {
  for (const inp of unit.inputs) {
    const { store, name } = openInputFile(inp.uri);
    let offset = 0;
    for await (const group of readParquetRowGroups(await parquetSourceFromStore(store, name), { rowStart: inp.rowStart, rowEnd: inp.rowEnd })) {
      for (let i = 0; i < group.rows.length; i++) {
        const key = sampleKey(unit.id, offset++, input.unit_rows);
        if (only && !only.has(key)) continue;
        const fields: Record<string, unknown> = { caption: normalisePrompt(group.rows[i][input.prompt_column]) };
        for (const [k, v] of Object.entries(group.rows[i])) fields[sourceField(k)] = v;
        fields.source_file = inp.uri;
        fields.source_row = group.rowStart + i;
        yield newSample(key, fields);
      }
    }
  }
}

/**
 * Marks each row with its selection verdict (see PromptSelectionOptions for the funnel lines).
 * `set` names the shard set whose keys duplicates point to. Stage `prompt-selection`.
 */
export function promptSelection(selection: PromptSelection, set: string): Stage {
  return sampleStage('prompt-selection', (s) => {
    const v = selection.verdict(String(s.fields.source_file), Number(s.fields.source_row));
    if (v.kind === 'empty') drop(s, 'empty_prompt');
    else if (v.kind === 'nsfw') drop(s, 'prompt_nsfw', s.fields[sourceField(selection.nsfwColumn)] ?? null);
    else if (v.kind === 'duplicate') drop(s, 'duplicate_prompt', selection.keyOf(set, v.of));
    else if (v.kind === 'not_sampled') drop(s, 'not_sampled');
  });
}
