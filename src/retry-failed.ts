import { parquetSourceFromStore, readParquetRowGroups } from './formats/parquet-read.js';
import { readWebDataset } from './formats/tar-read.js';
import { TarWriter } from './formats/tar-write.js';
import type { AnyJob, BaseJobConfig, JobSession } from './job.js';
import type { Logger } from './log.js';
import { ColumnNames, encodeRecords, jobColumns, toRecord, webDatasetMembers } from './records.js';
import type { Sample } from './sample.js';
import { countInFunnel, emptyFunnel, failureReason, StatsCollector, type StageStats } from './stats.js';
import type { Store } from './stores/store.js';
import { UnitOutputs } from './units/unit-outputs.js';
import { doneName, readDoneMarker, readUnitStats, type Unit, type UnitStats } from './units/unit.js';

export interface RetryFailedResult {
  units: number;
  retried: number;
  recovered: number;
  /** Funnel reasons of the rows retried, with counts. */
  reasons: Record<string, number>;
}

/** The funnel reason of a stored record, as `failureReason` gives it for a live sample. */
function recordReason(r: Record<string, unknown>): string {
  return failureReason({ kind: 'failed', stage: String(r.failed_stage), error: '', code: r.error_code == null ? undefined : String(r.error_code) });
}

/**
 * Reruns only the rows of done units whose failure is in `reasons` (by default the job's
 * transient ones) and merges them into the same unit: new successes join the shard in key
 * order, their records are replaced, every other record and shard member is kept as it was, and
 * a new done marker is written last. A merge killed midway is safe to rerun: the shard is rebuilt
 * from the records' ok rows, so a half-merged sample is never written twice.
 */
export async function retryFailed(job: AnyJob, cfg: BaseJobConfig, units: Unit[], store: Store, log: Logger, reasons = job.transientFailures ?? []): Promise<RetryFailedResult> {
  const session = job.open(cfg, log);
  try {
    if (!session.rerun) throw new Error(`job ${job.name} cannot rerun single rows`);
    const wanted = new Set(reasons);
    const result: RetryFailedResult = { units: 0, retried: 0, recovered: 0, reasons: {} };
    await retryUnits(job, session, units, store, log, wanted, result);
    return result;
  } finally {
    await session.close();
  }
}

async function retryUnits(job: AnyJob, session: JobSession, units: Unit[], store: Store, log: Logger, wanted: Set<string>, result: RetryFailedResult): Promise<void> {
  for (const unit of units) {
    if (!(await store.exists(doneName(unit.id)))) continue;
    const records: Record<string, unknown>[] = [];
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, `${unit.id}.parquet`))) records.push(...g.rows);
    const retry = records.filter((r) => r.status === 'failed' && wanted.has(recordReason(r)));
    if (retry.length === 0) continue;
    result.units++;
    result.retried += retry.length;
    for (const r of retry) result.reasons[recordReason(r)] = (result.reasons[recordReason(r)] ?? 0) + 1;

    const started = new Date();
    const stats = new StatsCollector();
    const fresh = new Map<string, Sample>();
    for await (const s of session.rerun!(unit, new Set(retry.map((r) => String(r.key))), { log, stats, previous: records })) fresh.set(s.key, s);
    const recovered = [...fresh.values()].filter((s) => s.status.kind === 'ok').sort((a, b) => (a.key < b.key ? -1 : 1));
    // Named as the job's sink names them (a carried WIDTH beside width becomes source_WIDTH).
    const names = new ColumnNames(jobColumns(job.name));
    result.recovered += recovered.length;
    log.info(`unit ${unit.id}: retried ${retry.length} row(s), ${recovered.length} now ok`);

    const okBefore = new Set(records.filter((r) => r.status === 'ok').map((r) => String(r.key)));
    const outputs = new UnitOutputs(store, job.name, unit.id);
    try {
      const tarOut = await outputs.stream('.tar');
      const tar = new TarWriter(tarOut);
      let next = 0;
      const flushBefore = async (key: string | undefined) => {
        while (next < recovered.length && (key === undefined || recovered[next].key < key)) {
          await tar.addSample(recovered[next].key, webDatasetMembers(recovered[next], names));
          next++;
        }
      };
      for await (const old of readWebDataset(await store.getStream(`${unit.id}.tar`), { name: `${unit.id}.tar` })) {
        if (!okBefore.has(old.key)) continue;
        await flushBefore(old.key);
        await tar.addSample(old.key, old.files);
      }
      await flushBefore(undefined);
      await tar.finish();
      await tarOut.close();
      const merged = (await session.mergeRecovered?.(unit, recovered, { store, outputs })) ?? [];

      const funnel = emptyFunnel();
      const rows = records.map((r) => {
        const s = fresh.get(String(r.key));
        const rec = s ? toRecord(s, names) : r;
        countInFunnel(funnel, s ?? recordAsSample(rec));
        return rec;
      });
      // Typed as the job's sink types them, so a retried unit's records match its neighbours'.
      await outputs.put('.parquet', encodeRecords(rows, { columns: jobColumns(job.name) }));
      const before = (await readUnitStats(store, unit.id)) as UnitStats & { retries?: unknown[] };
      const finished = new Date();
      const unitStats: UnitStats & { retries: unknown[] } = {
        ...before,
        finished_at: finished.toISOString(),
        funnel,
        retries: [...(before.retries ?? []), { started_at: started.toISOString(), finished_at: finished.toISOString(), retried: retry.length, recovered: recovered.length, stages: stats.all() satisfies StageStats[] }],
      };
      // Outputs this merge does not rewrite (the dropped-image thumbnails) stay listed in the new marker.
      const previous = await readDoneMarker(store, unit.id);
      const rewritten = new Set(['.tar', '.parquet', '.stats.json', ...merged].map((x) => unit.id + x));
      for (const o of previous.outputs) if (!rewritten.has(o.name)) outputs.keep(o);
      await outputs.commit(unitStats);
    } catch (err) {
      await outputs.abort();
      throw err;
    }
  }
}

/** Just enough of a sample to count a stored record in the funnel. */
function recordAsSample(r: Record<string, unknown>): Sample {
  const status: Sample['status'] =
    r.status === 'ok' ? { kind: 'ok' } : r.status === 'dropped' ? { kind: 'dropped', by: String(r.dropped_by) } : { kind: 'failed', stage: String(r.failed_stage), error: String(r.error), code: r.error_code == null ? undefined : String(r.error_code) };
  return { key: String(r.key), fields: {}, status };
}
