import { appendFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';

/** One measured contender in a benchmark. */
export interface BenchRow {
  label: string;
  /** Throughput in `unit`; higher is better. */
  value: number;
  unit: string;
}

/** What a `bench/*.bench.ts` module's default export returns. */
export interface BenchResult {
  name: string;
  /** Data set description: what every contender processed. */
  data: string;
  rows: BenchRow[];
  /** Ratios of interest, e.g. "pipeline / bare sharp": value as a fraction (1.0 = equal). */
  ratios: { label: string; value: number; goal?: string }[];
  notes?: string[];
}

/** Median of several timed runs in seconds; the first `warmup` runs are discarded. */
export async function timeMedian(fn: () => Promise<unknown>, runs = 5, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export function formatResult(r: BenchResult): string {
  const lines = [`### ${r.name} — ${new Date().toISOString()} (${cpus().length} cores, node ${process.version})`, '', `Data: ${r.data}`, '', '| contender | throughput |', '| --- | --- |'];
  for (const row of r.rows) lines.push(`| ${row.label} | ${row.value.toFixed(1)} ${row.unit} |`);
  lines.push('', '| ratio | value | goal |', '| --- | --- | --- |');
  for (const q of r.ratios) lines.push(`| ${q.label} | ${q.value.toFixed(3)} | ${q.goal ?? ''} |`);
  for (const n of r.notes ?? []) lines.push('', `- ${n}`);
  return lines.join('\n') + '\n\n';
}

export async function appendResults(path: string, text: string): Promise<void> {
  if (!existsSync(path)) await writeFile(path, '# Benchmark results\n\nAppended by `npm run bench`; compare ratios, not absolutes (2 noisy cores).\n\n');
  await appendFile(path, text);
}
