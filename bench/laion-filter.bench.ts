import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { mapConcurrent } from '../src/concurrency.js';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { writeParquet } from '../src/formats/parquet-write.js';
import { silentLogger } from '../src/log.js';
import { FileStore } from '../src/stores/file-store.js';
import { jobs } from '../pipelines/index.js';
import { timeMedian, type BenchResult } from './harness.js';
import { startImageHost } from './image-host.js';
import { makePhotos } from './photos.js';

const WORK = join(import.meta.dirname, '.work', 'laion-filter');
const IMAGES = 2000;
const SIZE = 512;
const QUALITY = 95;

/**
 * The laion-filter job end to end (parquet → column filters → HTTP download from a local host in
 * another process → decode, centre crop to 512, JPEG q95 → exact dedup → tar + sidecar parquet +
 * done marker) against bare sharp decoding and resizing the same files from disk at the same
 * concurrency. configs/laion-filter.yaml's image settings.
 */
export default async function bench(): Promise<BenchResult> {
  const imgDir = join(WORK, 'images');
  process.stderr.write(`  generating ${IMAGES} photo-like JPEGs (once; cached in ${imgDir}) …\n`);
  const files = await makePhotos(imgDir, IMAGES, [500, 1280], [375, 960], 11);
  const cores = availableParallelism();
  const host = await startImageHost(imgDir);
  try {
    const parquet = join(WORK, 'in', 'part-00000.parquet');
    await mkdir(join(WORK, 'in'), { recursive: true });
    const rows = files.map((f, i) => ({ URL: `${host.url}/${f}`, TEXT: `photo ${i}`, WIDTH: 1000n, HEIGHT: 800n, similarity: 0.3, punsafe: 0.01, pwatermark: 0.1 }));
    await writeFile(parquet, writeParquet(rows));

    const base = {
      job: 'laion-filter',
      input: { kind: 'parquet', paths: [parquet], unit_rows: 500 },
      filters: [{ name: 'watermark', keep: 'pwatermark < 0.8' }, { name: 'nsfw', keep: 'punsafe < 0.5' }],
      fetch: { allow_addresses: ['127.0.0.1/32'] },
      image: { size: SIZE, mode: 'centre_crop', min_edge: SIZE / 2, quality: QUALITY },
    };
    const concurrency = (validateConfig({ ...base, output: 'x' }, 'bench', jobs).config as unknown as { decode_concurrency: number }).decode_concurrency;

    let n = 0;
    const job = async () => {
      const out = join(WORK, `out-${n++}`);
      await rm(out, { recursive: true, force: true });
      const { job, config } = validateConfig({ ...base, output: out }, 'bench', jobs);
      const units = await job.plan(config, silentLogger);
      const summary = await executeLocal(job, config, units, { output: new FileStore(out), log: silentLogger, progress: 'off' });
      if (summary.funnel.written !== files.length) throw new Error(`bench job wrote ${summary.funnel.written} of ${files.length}: ${JSON.stringify(summary.funnel)}`);
      await rm(out, { recursive: true, force: true });
    };
    const bare = async () => {
      for await (const _ of mapConcurrent(files, async (f) => {
        const buf = await readFile(join(imgDir, f));
        return sharp(buf, { failOn: 'truncated' }).autoOrient().resize(SIZE, SIZE, { fit: 'cover' }).jpeg({ quality: QUALITY }).toBuffer();
      }, { concurrency })) void _;
    };

    // Interleaved rounds so machine noise hits both alike.
    const rounds = 3;
    const times: Record<'job' | 'bare', number[]> = { job: [], bare: [] };
    for (let r = 0; r < rounds; r++) {
      times.bare.push(await timeMedian(bare, 1, r === 0 ? 1 : 0));
      times.job.push(await timeMedian(job, 1, 0));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const rate = (k: 'job' | 'bare') => files.length / med(times[k]);
    const totalBytes = (await Promise.all(files.map((f) => readFile(join(imgDir, f)).then((b) => b.length)))).reduce((a, b) => a + b, 0);
    return {
      name: 'laion-filter',
      data: `${files.length} photo-like JPEGs 500×375…1280×960 (${(totalBytes / files.length / 1024).toFixed(0)} KiB mean) served over HTTP by a local host in another process → ${SIZE}×${SIZE} centre crop, JPEG q${QUALITY}`,
      rows: [
        { label: 'bitprep laion-filter job (parquet, filters, HTTP download, decode, resize, encode, dedup, tar, sidecar, done marker)', value: rate('job'), unit: 'images/s' },
        { label: `  per core (${cores} cores)`, value: rate('job') / cores, unit: 'images/s/core' },
        { label: 'bare sharp from disk (read, decode, resize, encode)', value: rate('bare'), unit: 'images/s' },
        { label: 'img2dataset published figure (network included)', value: 80, unit: 'images/s/core' },
      ],
      ratios: [
        { label: 'job time / bare sharp time', value: med(times.job) / med(times.bare), goal: '≤ 1.3 (download, hashing and shards on top of decode)' },
        { label: 'job images/s per core / img2dataset 80', value: rate('job') / cores / 80, goal: '' },
      ],
      notes: [
        `median of ${rounds} interleaved rounds; ${concurrency} images decoding at once; fetch defaults (64 in flight); the host shares the same ${cores} cores`,
        `the host process serves files with node:http on the same machine; its CPU is not charged to the job but competes with it for the cores`,
      ],
    };
  } finally {
    await host.close();
  }
}
