import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { emptyFunnel, type Funnel } from './stats.js';
import type { UnitStats } from './units/unit.js';

/**
 * `--metrics-file`: the run's counters in Prometheus' text exposition format, rewritten (whole,
 * by rename, so a reader never sees half a file) at the start and as every unit ends — what
 * node_exporter's textfile collector serves to a cluster dashboard. Counters cover this run:
 * units done and failed, rows in and written, dropped and failed rows by reason, and the
 * seconds units spent; every series carries the job and output as labels.
 */
export class MetricsFile {
  private readonly funnel: Funnel = emptyFunnel();
  private unitsDone = 0;
  private unitsFailed = 0;
  private unitSeconds = 0;
  private readonly started = Date.now() / 1000;
  private last = 0;

  constructor(
    private readonly path: string,
    private readonly labels: { job: string; output: string },
    private readonly planned: number,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.write();
  }

  unitDone(stats: UnitStats | undefined): void {
    this.last = Date.now() / 1000;
    if (!stats) this.unitsFailed++;
    else {
      this.unitsDone++;
      this.unitSeconds += stats.seconds;
      const f = stats.funnel;
      this.funnel.rows_in += f.rows_in;
      this.funnel.written += f.written;
      for (const [k, n] of Object.entries(f.dropped)) this.funnel.dropped[k] = (this.funnel.dropped[k] ?? 0) + n;
      for (const [k, n] of Object.entries(f.failed)) this.funnel.failed[k] = (this.funnel.failed[k] ?? 0) + n;
    }
    this.write();
  }

  /** The file's text. */
  render(): string {
    const base = `job=${quote(this.labels.job)},output=${quote(this.labels.output)}`;
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, series: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [extra, v] of series) lines.push(`${name}{${base}${extra ? `,${extra}` : ''}} ${v}`);
    };
    metric('bitprep_units_planned', 'gauge', "Units in the output's plan (this run does those not done yet, of its shard).", [['', this.planned]]);
    metric('bitprep_units_done_total', 'counter', 'Units this run finished.', [['', this.unitsDone]]);
    metric('bitprep_units_failed_total', 'counter', 'Units this run left undone after an error.', [['', this.unitsFailed]]);
    metric('bitprep_rows_in_total', 'counter', 'Input rows of the units this run finished.', [['', this.funnel.rows_in]]);
    metric('bitprep_rows_written_total', 'counter', 'Rows written to the outputs.', [['', this.funnel.written]]);
    metric('bitprep_rows_dropped_total', 'counter', 'Rows dropped, by reason.', Object.entries(this.funnel.dropped).map(([k, n]) => [`reason=${quote(k)}`, n]));
    metric('bitprep_rows_failed_total', 'counter', 'Rows failed, by stage and error code.', Object.entries(this.funnel.failed).map(([k, n]) => [`reason=${quote(k)}`, n]));
    metric('bitprep_unit_seconds_total', 'counter', 'Seconds the finished units took.', [['', round(this.unitSeconds)]]);
    metric('bitprep_run_start_time_seconds', 'gauge', 'When this run started (Unix time).', [['', round(this.started)]]);
    metric('bitprep_last_unit_time_seconds', 'gauge', 'When the last unit ended (Unix time; 0 before the first).', [['', round(this.last)]]);
    return lines.join('\n') + '\n';
  }

  private write(): void {
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, this.render());
    renameSync(tmp, this.path);
  }
}

const round = (v: number): number => Math.round(v * 1000) / 1000;

/** A label value as the exposition format quotes it. */
const quote = (v: string): string => `"${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`;
