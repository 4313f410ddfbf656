import { parquetSourceFromStore, readParquetRowGroups } from './formats/parquet-read.js';
import { writeParquet } from './formats/parquet-write.js';
import type { AnyJob, BaseJobConfig, RefilterVerdict } from './job.js';
import { toJson } from './json-safe.js';
import { emptyFunnel, failureReason, funnelBalances, type Funnel } from './stats.js';
import type { Store } from './stores/store.js';
import { doneName } from './units/unit.js';

/** `refilter/<name>/summary.json`. */
export interface RefilterSummary {
  job: string;
  name: string;
  units: number;
  /** Where every row ends under the new config; rows the recorded annotations cannot decide are dropped as `unannotated:<field>`. */
  funnel: Funnel;
  funnel_balances: boolean;
  /** Kept rows whose image is in the shards, and kept rows that were dropped before (no image stored: rerun them to fetch it). */
  kept_in_shards: number;
  kept_not_in_shards: number;
  /** Rows that change status. */
  changed: number;
}

/**
 * Re-decides an output's annotation filters (job.refilter.reasons) under a new config from the
 * annotations in its records, without touching an image: reads only `<unit>.done.json` and
 * `<unit>.parquet`. Writes, per unit, `refilter/<name>/<unit>.parquet` (key, status,
 * dropped_by, dropped_value, previous_status, previous_dropped_by, in_shards) and
 * `refilter/<name>/summary.json`. Failed rows stay failed; rows dropped by other filters stay
 * dropped; the shards are not rewritten (a training mix selects the kept keys).
 */
export async function refilterOutput(job: AnyJob, cfg: BaseJobConfig, store: Store, unitIds: string[], name: string): Promise<RefilterSummary> {
  if (!job.refilter) throw new Error(`job ${job.name} has no annotation filters to refilter`);
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`refilter name ${JSON.stringify(name)}: use letters, digits, - and _`);
  const reasons = new Set(job.refilter.reasons);
  const funnel = emptyFunnel();
  const summary: RefilterSummary = { job: job.name, name, units: 0, funnel, funnel_balances: true, kept_in_shards: 0, kept_not_in_shards: 0, changed: 0 };
  for (const id of unitIds) {
    if (!(await store.exists(doneName(id)))) continue;
    summary.units++;
    const out: Record<string, unknown>[] = [];
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, `${id}.parquet`))) {
      for (const r of g.rows) {
        funnel.rows_in++;
        const row = { key: r.key, status: r.status, dropped_by: r.dropped_by ?? null, dropped_value: r.dropped_value ?? null, previous_status: r.status, previous_dropped_by: r.dropped_by ?? null, in_shards: r.status === 'ok' };
        const decidable = r.status === 'ok' || (r.status === 'dropped' && reasons.has(String(r.dropped_by)));
        if (r.status === 'failed') {
          const reason = failureReason({ kind: 'failed', stage: String(r.failed_stage), error: '', code: r.error_code == null ? undefined : String(r.error_code) });
          funnel.failed[reason] = (funnel.failed[reason] ?? 0) + 1;
        } else if (!decidable) {
          funnel.dropped[String(r.dropped_by)] = (funnel.dropped[String(r.dropped_by)] ?? 0) + 1;
        } else {
          const v: RefilterVerdict = job.refilter.verdict(cfg, r);
          if (v.kind === 'ok') {
            Object.assign(row, { status: 'ok', dropped_by: null, dropped_value: null });
            funnel.written++;
            if (row.in_shards) summary.kept_in_shards++;
            else summary.kept_not_in_shards++;
          } else {
            const by = v.kind === 'dropped' ? v.by : `unannotated:${v.missing}`;
            Object.assign(row, { status: 'dropped', dropped_by: by, dropped_value: v.kind === 'dropped' && v.value !== undefined ? toJson(v.value) : null });
            funnel.dropped[by] = (funnel.dropped[by] ?? 0) + 1;
          }
          if (row.status !== row.previous_status || row.dropped_by !== row.previous_dropped_by) summary.changed++;
        }
        out.push(row);
      }
    }
    await store.put(`refilter/${name}/${id}.parquet`, writeParquet(out, { compression: 'SNAPPY' }));
  }
  summary.funnel_balances = funnelBalances(funnel);
  await store.put(`refilter/${name}/summary.json`, JSON.stringify(summary, null, 2) + '\n');
  return summary;
}
