import { execFile } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { mapConcurrent } from '../src/concurrency.js';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { silentLogger } from '../src/log.js';
import { FileStore } from '../src/stores/file-store.js';
import { jobs } from '../pipelines/index.js';
import { timeMedian, type BenchResult } from './harness.js';
import { makePhotos } from './photos.js';

const run = promisify(execFile);
const WORK = join(import.meta.dirname, '.work', 'decode-resize');
const IMAGES = 160;
const SIZE = 256;
const QUALITY = 90;

/**
 * The image-shards job (read → decode-resize → tar + sidecar parquet + done marker) against bare
 * sharp doing only decode + centre-crop resize + JPEG encode of the same files at the same
 * concurrency, and against libvips' own `vipsthumbnail` (one process per core).
 */
export default async function bench(): Promise<BenchResult> {
  const imgDir = join(WORK, 'images');
  // Photo-like JPEGs, 1024×768 to 1600×1200, as web images come.
  const files = await makePhotos(imgDir, IMAGES, [1024, 1600], [768, 1200]);
  const cores = availableParallelism();
  const notes: string[] = [];

  // Both sides run at the job's default concurrency, which also measured best for bare sharp.
  const concurrency = (validateConfig({ job: 'image-shards', output: 'x', input: { kind: 'folder', path: imgDir } }, 'bench', jobs).config as unknown as { decode_concurrency: number }).decode_concurrency;
  const bare = async () => {
    for await (const _ of mapConcurrent(files, async (f) => {
      const buf = await readFile(join(imgDir, f));
      return sharp(buf, { failOn: 'truncated' }).autoOrient().resize(SIZE, SIZE, { fit: 'cover' }).jpeg({ quality: QUALITY }).toBuffer();
    }, { concurrency })) void _;
  };

  let n = 0;
  const pipeline = async () => {
    const out = join(WORK, `out-${n++}`);
    await rm(out, { recursive: true, force: true });
    const { job, config } = validateConfig({ job: 'image-shards', output: out, input: { kind: 'folder', path: imgDir, unit_rows: 1000 }, image: { size: SIZE, quality: QUALITY } }, 'bench', jobs);
    const units = await job.plan(config, silentLogger);
    const summary = await executeLocal(job, config, units, { output: new FileStore(out), log: silentLogger, progress: 'off' });
    if (summary.funnel.written !== files.length) throw new Error(`bench pipeline wrote ${summary.funnel.written} of ${files.length}`);
    await rm(out, { recursive: true, force: true });
  };

  const hasVips = await run('vipsthumbnail', ['--version']).then(() => true, () => false);
  const vips = async () => {
    const out = join(WORK, 'vips-out');
    await rm(out, { recursive: true, force: true });
    await mkdir(out);
    const chunks = Array.from({ length: cores }, (_, i) => files.filter((_, j) => j % cores === i).map((f) => join(imgDir, f)));
    await Promise.all(chunks.map((c) => run('vipsthumbnail', ['-s', `${SIZE}x${SIZE}`, '--smartcrop', 'centre', '-o', `${out}/%s.jpg[Q=${QUALITY},strip]`, ...c])));
  };

  // Interleave contenders round by round so machine noise hits all of them alike.
  const rounds = 9;
  const times: Record<string, number[]> = { pipeline: [], bare: [], vips: [] };
  await bare();
  await pipeline();
  for (let r = 0; r < rounds; r++) {
    times.bare.push(await timeMedian(bare, 1, 0));
    times.pipeline.push(await timeMedian(pipeline, 1, 0));
    if (hasVips) times.vips.push(await timeMedian(vips, 1, 0));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rate = (k: string) => files.length / med(times[k]);
  const rows = [
    { label: 'bitprep image-shards job (read, decode, resize, encode, tar, sidecar, done marker)', value: rate('pipeline'), unit: 'images/s' },
    { label: 'bare sharp (read, decode, resize, encode)', value: rate('bare'), unit: 'images/s' },
  ];
  const ratios = [{ label: 'job time / bare sharp time', value: med(times.pipeline) / med(times.bare), goal: '≤ 1.15' }];
  if (hasVips) {
    rows.push({ label: `vipsthumbnail, ${cores} processes`, value: rate('vips'), unit: 'images/s' });
    ratios.push({ label: 'job time / vipsthumbnail time', value: med(times.pipeline) / med(times.vips), goal: '' });
  } else notes.push('vipsthumbnail not found: apt-get install libvips-tools to add the vips peer');
  notes.push(`median of ${rounds} interleaved rounds; ${cores} cores; ${concurrency} images in flight (UV_THREADPOOL_SIZE ${process.env.UV_THREADPOOL_SIZE ?? 4}); sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips})`);
  return { name: 'decode-resize', data: `${files.length} JPEGs 1024×768…1600×1200 → ${SIZE}×${SIZE} centre crop, JPEG q${QUALITY}`, rows, ratios, notes };
}
