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
import { datasetIdentity, DUPLICATE_KEY, NEAR_DUPLICATE, type MixSelection, type SelectionFile } from './selection.js';
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
export const DROP_NOT_SELECTED = 'mixture';

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
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, inp.name))) {
      for (const r of g.rows) {
        if (i >= inp.rows) throw new Error(`${inp.dataset}/${inp.name}: more rows than when the mix was planned; the input changed, plan a new mix`);
        const key = String(r.key);
        const source = typeof r.source === 'string' && r.source !== '' ? r.source : undefined;
        const id = rowIdentity(source ?? fallback, key);
        digest = (Math.imul(digest, 31) + hash32(id, 1)) >>> 0;
        const code = codes[i];
        let status: Status = { kind: 'ok' };
        if (code === DUPLICATE_KEY) status = { kind: 'dropped', by: DROP_DUPLICATE_KEY };
        else if (code === NEAR_DUPLICATE) status = { kind: 'dropped', by: DROP_NEAR_DUPLICATE };
        else if (code === 0) status = { kind: 'dropped', by: DROP_NOT_SELECTED };
        const sample: Sample = { key, fields: { source: source ?? null, mix_set: setName, dataset: inp.dataset, input_shard: inp.name, copies: status.kind === 'ok' ? code : 0 }, status };
        countInFunnel(funnel, sample);
        records.push(toRecord(sample, names));
        if (status.kind === 'ok') {
          const { latent, ...rest } = r;
          // Columns the mix writes under another name (selection.ts mixColumnNames); gather reads the output names.
          for (const [from, to] of renamed) {
            if (!(from in rest)) continue;
            if (rest[to] === undefined || rest[to] === null) rest[to] = rest[from];
            delete rest[from];
          }
          for (let copy = 0; copy < code; copy++) {
            const { shard, row } = locate(sel.layout, perm.apply(member++));
            const caption = dropCaption(chooseCaption(rest, captionDraw(id, copy, captionSeed), sel.spec.longRatio), uncondDraw(id, copy, captionSeed), sel.spec.uncondProb);
            const payload = encodePayload(latent as Uint8Array, { ...rest, key, caption_kind: caption.kind, caption_text: caption.text, mix_set: setName });
            run.push({ shard, row, payload });
          }
        }
        i++;
      }
      o.onRows(g.rows.length);
    }
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
