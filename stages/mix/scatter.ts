import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { ColumnNames, encodeRecords, jobColumns, toRecord } from '../../src/records.js';
import type { Sample, Status } from '../../src/sample.js';
import { countInFunnel, emptyFunnel, StatsCollector } from '../../src/stats.js';
import { openStore } from '../../src/stores/open-store.js';
import type { Store } from '../../src/stores/store.js';
import { UnitOutputs } from '../../src/units/unit-outputs.js';
import type { UnitStats } from '../../src/units/unit.js';
import { captionDraw, chooseCaption, dropCaption, uncondDraw } from './caption-policy.js';
import { FeistelPermutation } from './feistel.js';
import { deriveSeed, hash32, rowIdentity } from './hash.js';
import { locate } from './mixture.js';
import { VIEWS_COLUMN } from './column-types.js';
import { datasetIdentity, DEDUP_EXCLUDED, DUPLICATE_KEY, EXTRA_VIEW, NEAR_DUPLICATE, type MixSelection, type SelectionFile } from './selection.js';
import { encodePayload, writeRun, type RunRecord } from './shuffle-run.js';

export interface ScatterOptions {
  sel: MixSelection;
  /** Indexes into sel.inputs, contiguous, in plan order. */
  inputs: number[];
  output: Store;
  scratch: Store;
  /** Name of the run in the scratch store. */
  runName: string;
  job: string;
  unitId: string;
  started: Date;
  onRows(n: number): void;
}

/** Funnel names of pass 1's drops. */
export const DROP_DUPLICATE_KEY = 'duplicate_key';
export const DROP_NEAR_DUPLICATE = 'near_duplicate';
/** A row a `bitprep dedup` view (dedup.exclude) drops. */
export const DROP_DEDUP_EXCLUDED = 'dedup_excluded';
export const DROP_NOT_SELECTED = 'mixture';

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The mix's global shuffle for a selection (cheap to build: a handful of round keys). */
export function shuffleOf(sel: SelectionFile): FeistelPermutation {
  return new FeistelPermutation(sel.layout.total, deriveSeed(sel.spec.seed, 'shuffle'));
}

/**
 * A scatter unit (pass 2, first half): reads its input shards in full, gives each selected row's
 * copies their shuffled positions (sample m of the enumeration goes to position π(m)) and their
 * captions, and writes them as one shuffle run sorted by output shard. Every input row, whatever
 * its fate, is recorded in `<unit>.parquet`; the funnel counts input rows (written = rows the mix
 * keeps at least once). Holds the unit's samples in memory until the run is written.
 */
export async function scatterUnit(o: ScatterOptions): Promise<UnitStats> {
  const { sel } = o;
  const stats = new StatsCollector();
  const st = stats.stage('scatter');
  const funnel = emptyFunnel();
  const records: Record<string, unknown>[] = [];
  const run: RunRecord[] = [];
  const perm = shuffleOf(sel);
  const captionSeed = deriveSeed(sel.spec.seed, 'caption');
  const viewSeed = deriveSeed(sel.spec.seed, 'view');
  const stores = new Map<string, Store>();
  const columns = jobColumns(o.job);
  const names = new ColumnNames(columns);
  const renamed = Object.entries(sel.renamed ?? {});
  const t0 = performance.now();

  for (const k of o.inputs) {
    const inp = sel.inputs[k];
    const codes = sel.codes[k];
    const setName = sel.spec.sets[inp.set].name;
    const fallback = datasetIdentity(inp.dataset);
    let store = stores.get(inp.dataset);
    if (!store) stores.set(inp.dataset, (store = openStore(inp.dataset)));
    let member = inp.memberStart;
    let digest = 0;
    let i = 0;
    // A kept row waits for the views after it (EXTRA_VIEW rows) before its copies are placed.
    let pending: { id: string; key: string; rest: Record<string, unknown>; latents: Uint8Array[]; code: number } | undefined;
    let pendingStatus: Status = { kind: 'ok' };
    const place = () => {
      if (!pending) return;
      const { id, key, rest, latents, code } = pending;
      pending = undefined;
      const v = latents.length;
      for (let copy = 0; copy < code; copy++) {
        const { shard, row } = locate(sel.layout, perm.apply(member++));
        const caption = dropCaption(chooseCaption(rest, captionDraw(id, copy, captionSeed), sel.spec.longRatio), uncondDraw(id, copy, captionSeed), sel.spec.uncondProb);
        // Every view travels with the sample, in the order epochs show them (feed: epoch e shows
        // view e mod v); each sample, and each copy of one, starts at another view.
        const start = v > 1 ? (hash32(id, viewSeed) + copy) % v : 0;
        const order = start === 0 ? latents : [...latents.slice(start), ...latents.slice(0, start)];
        const views = v > 1 ? { [VIEWS_COLUMN[0]]: concatBytes(order) } : {};
        const payload = encodePayload(order[0], { ...rest, ...views, key, caption_kind: caption.kind, caption_text: caption.text, mix_set: setName });
        run.push({ shard, row, payload });
      }
    };
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, inp.name))) {
      for (const r of g.rows) {
        if (i >= inp.rows) throw new Error(`${inp.dataset}/${inp.name}: more rows than when the mix was planned; the input changed, plan a new mix`);
        const key = String(r.key);
        const source = typeof r.source === 'string' && r.source !== '' ? r.source : undefined;
        const id = rowIdentity(source ?? fallback, key);
        digest = (Math.imul(digest, 31) + hash32(id, 1)) >>> 0;
        const code = codes[i];
        const fields = { source: source ?? null, mix_set: setName, dataset: inp.dataset, input_shard: inp.name };
        if (code === EXTRA_VIEW) {
          // Another view of the sample before it: recorded with that sample's fate, its latent added to the sample's.
          const sample: Sample = { key, fields: { ...fields, view: r.view, copies: pendingStatus.kind === 'ok' ? (pending?.code ?? 0) : 0 }, status: pendingStatus };
          countInFunnel(funnel, sample);
          records.push(toRecord(sample, names));
          if (pending) pending.latents.push(r.latent as Uint8Array);
          i++;
          continue;
        }
        place();
        let status: Status = { kind: 'ok' };
        if (code === DUPLICATE_KEY) status = { kind: 'dropped', by: DROP_DUPLICATE_KEY };
        else if (code === NEAR_DUPLICATE) status = { kind: 'dropped', by: DROP_NEAR_DUPLICATE };
        else if (code === DEDUP_EXCLUDED) status = { kind: 'dropped', by: DROP_DEDUP_EXCLUDED };
        else if (code === 0) status = { kind: 'dropped', by: DROP_NOT_SELECTED };
        pendingStatus = status;
        const sample: Sample = { key, fields: { ...fields, ...(r.view !== undefined ? { view: r.view } : {}), copies: status.kind === 'ok' ? code : 0 }, status };
        countInFunnel(funnel, sample);
        records.push(toRecord(sample, names));
        if (status.kind === 'ok') {
          const { latent, view: _view, ...rest } = r;
          // Columns the mix writes under another name (selection.ts mixColumnNames); gather reads the output names.
          for (const [from, to] of renamed) {
            if (!(from in rest)) continue;
            if (rest[to] === undefined || rest[to] === null) rest[to] = rest[from];
            delete rest[from];
          }
          pending = { id, key, rest, latents: [latent as Uint8Array], code };
        }
        i++;
      }
      o.onRows(g.rows.length);
    }
    place();
    if (i !== inp.rows || digest !== inp.keysDigest) {
      throw new Error(`${inp.dataset}/${inp.name}: its rows are not the ones the mix was planned from (${i} rows, planned ${inp.rows}); the input changed, plan a new mix in a new output`);
    }
    if (member !== inp.memberStart + inp.samples) throw new Error(`training-mix: internal error: ${inp.name} gave ${member - inp.memberStart} samples, planned ${inp.samples}`);
  }

  st.in = funnel.rows_in;
  st.ok = funnel.written;
  st.dropped = funnel.rows_in - funnel.written;
  st.counts.samples = run.length;
  const outputs = new UnitOutputs(o.output, o.job, o.unitId);
  try {
    const written = await writeRun(o.scratch, o.runName, sel.layout.shards, run);
    st.counts.run_bytes = written.bytes;
    // A unit of only empty input shards still writes its (empty) records, with their columns.
    await outputs.put('.parquet', encodeRecords(records, { columns }));
    st.busySeconds = (performance.now() - t0) / 1000;
    return await outputs.finish({ started: o.started, funnel, stages: stats.all() });
  } catch (err) {
    await outputs.abort();
    throw err;
  }
}
