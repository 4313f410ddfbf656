import type { Sample } from './sample.js';

/** Counters one stage keeps; they roll up into the unit's and the run's stats. */
export interface StageStats {
  name: string;
  /** Samples that reached the stage with status ok. */
  in: number;
  ok: number;
  dropped: number;
  failed: number;
  /** Summed time spent inside the stage's work function (busy time, not wall time). */
  busySeconds: number;
  /** Stage-specific counts: images, bytes, tokens… (work units are a run's, not a stage's). */
  counts: Record<string, number>;
}

/** Adds `n` to one of a stage's counts. */
export function addCount(stats: StageStats, key: string, n = 1): void {
  stats.counts[key] = (stats.counts[key] ?? 0) + n;
}

/** The run's funnel: where every input row ended. rows_in = written + Σdropped + Σfailed. */
export interface Funnel {
  rows_in: number;
  written: number;
  dropped: Record<string, number>;
  failed: Record<string, number>;
}

export function emptyFunnel(): Funnel {
  return { rows_in: 0, written: 0, dropped: {}, failed: {} };
}

/** The funnel key of a failure: stage, plus the error's code when it has one. */
export function failureReason(status: Extract<Sample['status'], { kind: 'failed' }>): string {
  return status.code ? `${status.stage}:${status.code}` : status.stage;
}

export function countInFunnel(f: Funnel, s: Sample): void {
  f.rows_in++;
  const st = s.status;
  if (st.kind === 'ok') f.written++;
  else if (st.kind === 'dropped') f.dropped[st.by] = (f.dropped[st.by] ?? 0) + 1;
  else f.failed[failureReason(st)] = (f.failed[failureReason(st)] ?? 0) + 1;
}

export function addFunnels(into: Funnel, add: Funnel): Funnel {
  into.rows_in += add.rows_in;
  into.written += add.written;
  for (const [k, v] of Object.entries(add.dropped)) into.dropped[k] = (into.dropped[k] ?? 0) + v;
  for (const [k, v] of Object.entries(add.failed)) into.failed[k] = (into.failed[k] ?? 0) + v;
  return into;
}

export function funnelBalances(f: Funnel): boolean {
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  return f.rows_in === f.written + sum(f.dropped) + sum(f.failed);
}

/** Per-stage counters of one unit, created on first use and kept in pipeline order. */
export class StatsCollector {
  private readonly stages = new Map<string, StageStats>();

  stage(name: string): StageStats {
    let s = this.stages.get(name);
    if (!s) {
      s = { name, in: 0, ok: 0, dropped: 0, failed: 0, busySeconds: 0, counts: {} };
      this.stages.set(name, s);
    }
    return s;
  }

  all(): StageStats[] {
    return [...this.stages.values()];
  }
}

/** Sums per-stage stats of several units, by stage name. */
export function mergeStageStats(lists: StageStats[][]): StageStats[] {
  const out = new StatsCollector();
  for (const list of lists) {
    for (const s of list) {
      const t = out.stage(s.name);
      t.in += s.in;
      t.ok += s.ok;
      t.dropped += s.dropped;
      t.failed += s.failed;
      t.busySeconds += s.busySeconds;
      for (const [k, v] of Object.entries(s.counts)) t.counts[k] = (t.counts[k] ?? 0) + v;
    }
  }
  return out.all();
}
