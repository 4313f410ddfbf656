import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { writeParquet } from '../src/formats/parquet-write.js';
import { silentLogger } from '../src/log.js';
import { seededRandom } from '../src/seeded-random.js';
import { FileStore } from '../src/stores/file-store.js';
import { jobs } from '../pipelines/index.js';
import type { BenchResult } from './harness.js';
import { startImageHost } from './image-host.js';
import { makePhotos } from './photos.js';

const WORK = join(import.meta.dirname, '.work', 'laion-memory');
const ROWS = 200_000;
const UNIT_ROWS = 10_000;
/** Resident memory the run must stay under, whatever the row count. */
const RSS_BOUND_MB = 512;

/**
 * Memory over a 200k-row laion-filter run served locally: 10% dropped by a column filter, and of
 * the rest about half 404s, a third tiny images dropped by min_edge, and a sixth real photos (500
 * distinct, so repeats within a unit are exact duplicates). Resident memory is sampled every
 * 200 ms; the peer is the run itself: the peak over its second half against the peak over its
 * first quarter (flat memory: ≈ 1), and the overall peak against a stated bound.
 */
export default async function bench(): Promise<BenchResult> {
  const imgDir = join(WORK, 'images');
  process.stderr.write(`  preparing ${ROWS} rows (images cached in ${imgDir}) …\n`);
  const photos = await makePhotos(imgDir, 500, [300, 480], [260, 400], 23);
  await sharp({ create: { width: 32, height: 32, channels: 3, background: '#445566' } }).png().toFile(join(imgDir, 'tiny.png'));
  const host = await startImageHost(imgDir);
  const out = join(WORK, 'out');
  try {
    const r = seededRandom(3);
    const rows = Array.from({ length: ROWS }, (_, i) => {
      const x = r();
      const file = x < 0.5 ? `missing-${i}.jpg` : x < 0.83 ? 'tiny.png' : photos[Math.floor(r() * photos.length)];
      return { URL: `${host.url}/${file}`, TEXT: `row ${i}`, WIDTH: 400n, HEIGHT: 300n, similarity: 0.3, punsafe: 0.01, pwatermark: r() < 0.1 ? 0.95 : 0.1 };
    });
    const parquet = join(WORK, 'in', 'part-00000.parquet');
    await mkdir(join(WORK, 'in'), { recursive: true });
    await writeFile(parquet, writeParquet(rows));
    rows.length = 0;
    await rm(out, { recursive: true, force: true });

    const { job, config } = validateConfig({
      job: 'laion-filter',
      output: out,
      input: { kind: 'parquet', paths: [parquet], unit_rows: UNIT_ROWS },
      filters: [{ name: 'watermark', keep: 'pwatermark < 0.8' }],
      fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0 },
      image: { size: 256, min_edge: 128 },
    }, 'bench', jobs);
    const units = await job.plan(config, silentLogger);

    global.gc?.();
    const baseline = process.memoryUsage().rss;
    const samples: { rows: number; rss: number }[] = [];
    let rowsDone = 0;
    const timer = setInterval(() => samples.push({ rows: rowsDone, rss: process.memoryUsage().rss }), 200);
    const t0 = performance.now();
    let summary;
    try {
      summary = await executeLocal(job, config, units, { output: new FileStore(out), log: silentLogger, progress: 'off', onRows: (n) => (rowsDone += n) });
    } finally {
      clearInterval(timer);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (summary.funnel.rows_in !== ROWS || !summary.funnel_balances) throw new Error(`memory bench: funnel ${JSON.stringify(summary.funnel)}`);
    const mb = (b: number) => b / 2 ** 20;
    const peakWhere = (lo: number, hi: number) => Math.max(...samples.filter((s) => s.rows >= lo * ROWS && s.rows < hi * ROWS).map((s) => s.rss), 0);
    const early = peakWhere(0, 0.25);
    const late = peakWhere(0.5, 1.01);
    const peak = Math.max(...samples.map((s) => s.rss));
    if (mb(peak) > RSS_BOUND_MB) throw new Error(`memory bench: peak RSS ${mb(peak).toFixed(0)} MB over the ${RSS_BOUND_MB} MB bound`);
    const f = summary.funnel;
    return {
      name: 'laion-memory',
      data: `${ROWS} LAION-schema rows in ${units.length} units of ${UNIT_ROWS}, served by a local host in another process: written ${f.written}, dropped ${JSON.stringify(f.dropped)}, failed ${JSON.stringify(f.failed)}`,
      rows: [
        { label: 'rows through the job', value: ROWS / seconds, unit: 'rows/s' },
        { label: 'resident memory before the run', value: mb(baseline), unit: 'MB' },
        { label: 'peak resident memory, first quarter of rows', value: mb(early), unit: 'MB' },
        { label: 'peak resident memory, second half of rows', value: mb(late), unit: 'MB' },
        { label: 'peak resident memory, whole run', value: mb(peak), unit: 'MB' },
      ],
      ratios: [
        { label: 'peak RSS second half / first quarter', value: late / early, goal: '≤ 1.15 (flat)' },
        { label: `peak RSS / ${RSS_BOUND_MB} MB bound`, value: mb(peak) / RSS_BOUND_MB, goal: '< 1' },
      ],
      notes: [`${samples.length} RSS samples every 200 ms over ${seconds.toFixed(0)} s; RSS includes sharp's libvips caches and the V8 heap, which grows to its own limit before collecting`],
    };
  } finally {
    await host.close();
    await rm(out, { recursive: true, force: true });
  }
}
