import type { ObjectWriter, Store, WrittenObject } from '../stores/store.js';
import type { Funnel, StageStats } from '../stats.js';
import { doneName, finishedUnitStats, type DoneMarker, type UnitStats } from './unit.js';

/**
 * Collects a unit's outputs and commits them: every output is written atomically under its final
 * name, then the stats, then `<unit>.done.json` last. A unit killed before the marker is redone
 * in full on rerun and its outputs overwritten, so no row is ever recorded twice.
 */
export class UnitOutputs {
  private readonly written: WrittenObject[] = [];
  private readonly open = new Set<ObjectWriter>();

  constructor(readonly store: Store, readonly job: string, readonly unitId: string) {}

  /** A streaming writer for `<unit><suffix>`, e.g. suffix `.tar`. */
  async stream(suffix: string): Promise<ObjectWriter> {
    const w = await this.store.putStream(this.unitId + suffix);
    this.open.add(w);
    return {
      write: (c) => w.write(c),
      close: async () => {
        const obj = await w.close();
        this.open.delete(w);
        this.written.push(obj);
        return obj;
      },
      abort: async () => {
        this.open.delete(w);
        await w.abort();
      },
    };
  }

  async put(suffix: string, data: Uint8Array | string): Promise<WrittenObject> {
    const obj = await this.store.put(this.unitId + suffix, data);
    this.written.push(obj);
    return obj;
  }

  /**
   * Lists an output written by an earlier commit of this unit that this commit leaves as it is
   * (e.g. retry-failed rewriting a unit's shard and records but not its thumbnails).
   */
  keep(obj: WrittenObject): void {
    if (!obj.name.startsWith(`${this.unitId}.`)) throw new Error(`unit ${this.unitId}: cannot keep ${obj.name}, which is not one of its outputs`);
    this.written.push(obj);
  }

  /**
   * Commits a unit that ran now: its stats (finished now, `rows` per second: default the funnel's
   * rows in), then the marker. Returns the stats.
   */
  async finish(o: { started: Date; funnel: Funnel; stages: StageStats[]; rows?: number }): Promise<UnitStats> {
    const stats = finishedUnitStats({ ...o, job: this.job, unitId: this.unitId });
    await this.commit(stats);
    return stats;
  }

  async commit(stats: UnitStats): Promise<DoneMarker> {
    if (this.open.size > 0) throw new Error(`unit ${this.unitId}: ${this.open.size} output(s) still open at commit`);
    await this.put('.stats.json', JSON.stringify(stats, null, 2) + '\n');
    const marker: DoneMarker = {
      schema: 1,
      job: this.job,
      unit: this.unitId,
      finished_at: stats.finished_at,
      funnel: stats.funnel,
      outputs: [...this.written].sort((a, b) => a.name.localeCompare(b.name)),
    };
    await this.store.put(doneName(this.unitId), JSON.stringify(marker, null, 2) + '\n');
    return marker;
  }

  /** Discards open writers after a failure; complete objects stay until the rerun overwrites them. */
  async abort(): Promise<void> {
    await Promise.allSettled([...this.open].map((w) => w.abort()));
    this.open.clear();
  }
}

