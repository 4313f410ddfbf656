import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { openStore } from '../../src/stores/open-store.js';
import { DEDUP_SUMMARY, viewFolder, type DedupSummary } from './dedup-layout.js';
import { outputIdentity } from './dedup-units.js';

/** A tar of an image output: the output's folder and the unit it holds (`<folder>/<unit>.tar`). */
function tarUnit(tar: string): { output: string; unit: string } {
  const slash = tar.lastIndexOf('/');
  return { output: slash > 0 ? tar.slice(0, slash) : '.', unit: tar.slice(slash + 1).replace(/\.tar$/, '') };
}

export interface DedupDropOfRow {
  by: string;
  kept: string;
}

/**
 * What a finished `bitprep dedup` drops from one unit of one image output, read from its view
 * (`view/<i>/<unit>.parquet`): only that unit's rows are in memory, whatever the dedup's size.
 * pre-encode (`input.exclude`) and training-mix (`dedup.exclude`) use it as a filter, naming
 * units by the image tars they read.
 */
export class DedupViews {
  private readonly summaries = new Map<string, Promise<DedupSummary>>();

  constructor(readonly dirs: readonly string[]) {}

  private summary(dir: string): Promise<DedupSummary> {
    let s = this.summaries.get(dir);
    if (!s) {
      const store = openStore(dir);
      s = store.exists(DEDUP_SUMMARY).then(async (ok) => {
        if (!ok) throw new Error(`${dir}: no ${DEDUP_SUMMARY} (not a finished bitprep dedup output)`);
        const parsed = JSON.parse(new TextDecoder().decode(await store.get(DEDUP_SUMMARY))) as DedupSummary;
        if (parsed.format !== 'bitprep-dedup') throw new Error(`${dir}/${DEDUP_SUMMARY}: made by an older bitprep dedup without views; run the dedup again`);
        return parsed;
      });
      this.summaries.set(dir, s);
    }
    return s;
  }

  /**
   * The view files the units behind these tars need and lack: what a plan-time check asks. An
   * output no dedup covers is an error.
   */
  async missingViews(tars: Iterable<string>): Promise<string[]> {
    const byOutput = new Map<string, string[]>();
    for (const tar of tars) {
      const { output, unit } = tarUnit(tar);
      let units = byOutput.get(output);
      if (!units) byOutput.set(output, (units = []));
      units.push(unit);
    }
    const missing: string[] = [];
    for (const [output, units] of byOutput) {
      for (const { dir, index } of await this.covering(output)) {
        const have = new Set(await openStore(dir).list(viewFolder(index)));
        for (const id of units) if (!have.has(`${viewFolder(index)}${id}.parquet`)) missing.push(`${dir}/${viewFolder(index)}${id}.parquet`);
      }
    }
    return missing;
  }

  /** The dedup folders that cover `output` (with its index there); an error if none does. */
  private async covering(output: string): Promise<{ dir: string; index: number }[]> {
    const want = outputIdentity(output);
    const found: { dir: string; index: number }[] = [];
    for (const dir of this.dirs) {
      const s = await this.summary(dir);
      const index = s.outputs.findIndex((o) => outputIdentity(o) === want);
      if (index >= 0) found.push({ dir, index });
    }
    if (found.length === 0) throw new Error(`${output} is not among the outputs of ${this.dirs.join(', ')}: dedup it with the others, or leave it out of exclude`);
    return found;
  }

  /** Keys of the rows of the unit a tar holds that the dedups drop: why (`duplicate`, `near_duplicate`) and the copy kept (`<kept_output>/<kept_key>`). */
  async dropsOf(tar: string): Promise<Map<string, DedupDropOfRow>> {
    const { output, unit: unitId } = tarUnit(tar);
    const out = new Map<string, DedupDropOfRow>();
    for (const { dir, index } of await this.covering(output)) {
      const store = openStore(dir);
      const name = `${viewFolder(index)}${unitId}.parquet`;
      if (!(await store.exists(name))) throw new Error(`${dir}/${name}: missing; unit ${unitId} of ${output} was made after the dedup (run bitprep dedup again)`);
      for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, name), { columns: ['key', 'status', 'dropped_by', 'dropped_value', 'previous_status'] })) {
        for (const r of g.rows) {
          if (r.previous_status === 'ok' && r.status === 'dropped' && !out.has(String(r.key))) out.set(String(r.key), { by: String(r.dropped_by), kept: String(r.dropped_value) });
        }
      }
    }
    return out;
  }
}
