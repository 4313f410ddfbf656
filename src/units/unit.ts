import type { Funnel, StageStats } from '../stats.js';
import type { Store, WrittenObject } from '../stores/store.js';

/** One input a unit reads: a file (or row range of one), or a list of files in a folder. */
export interface InputRef {
  uri: string;
  rowStart?: number;
  rowEnd?: number;
  /** Where rowStart begins in the file, in bytes (plain text tables, so a unit need not read what comes before). */
  byteStart?: number;
  files?: string[];
}

/** The unit of work: planned by a source, it names its outputs (`<id>.*`) and is done once. */
export interface Unit {
  id: string;
  inputs: InputRef[];
}

/** `<unit>.stats.json`: what one unit did. */
export interface UnitStats {
  job: string;
  unit: string;
  started_at: string;
  finished_at: string;
  seconds: number;
  funnel: Funnel;
  stages: StageStats[];
  /** Input rows per second of wall time. */
  rows_per_second: number;
}

/** A unit's stats as it finishes now; `rows` is what rows_per_second counts (default the funnel's rows in). */
export function finishedUnitStats(o: { job: string; unitId: string; started: Date; funnel: Funnel; stages: StageStats[]; rows?: number }): UnitStats {
  const finished = new Date();
  const seconds = (finished.getTime() - o.started.getTime()) / 1000;
  return {
    job: o.job,
    unit: o.unitId,
    started_at: o.started.toISOString(),
    finished_at: finished.toISOString(),
    seconds,
    funnel: o.funnel,
    stages: o.stages,
    rows_per_second: (o.rows ?? o.funnel.rows_in) / Math.max(seconds, 1e-6),
  };
}

/** `<unit>.done.json`, written last: its presence means every output below is complete. */
export interface DoneMarker {
  schema: 1;
  job: string;
  unit: string;
  finished_at: string;
  funnel: Funnel;
  outputs: WrittenObject[];
}

export const doneName = (unitId: string): string => `${unitId}.done.json`;
export const statsName = (unitId: string): string => `${unitId}.stats.json`;

/** Zero-padded unit ids sort in plan order and name shards the way img2dataset users expect. */
export function unitId(index: number, total: number): string {
  return String(index).padStart(Math.max(5, String(Math.max(0, total - 1)).length), '0');
}

const decodeJson = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b));

/** A done unit's marker, `<unit>.done.json`. */
export async function readDoneMarker(store: Store, unitId: string): Promise<DoneMarker> {
  return decodeJson(await store.get(doneName(unitId))) as DoneMarker;
}

/** A done unit's stats, `<unit>.stats.json`, as this version names them. */
export async function readUnitStats(store: Store, unitId: string): Promise<UnitStats> {
  const stats = decodeJson(await store.get(statsName(unitId))) as UnitStats;
  // Outputs made before stage counts had their own name stored them as `units`.
  for (const s of stats.stages ?? []) {
    const old = s as StageStats & { units?: Record<string, number> };
    if (old.counts === undefined && old.units !== undefined) {
      old.counts = old.units;
      delete old.units;
    }
  }
  return stats;
}
