import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { psnr, type MetricImage } from '../evaluation/metrics/psnr.js';
import { ssim } from '../evaluation/metrics/ssim.js';
import { seededRandom } from '../src/seeded-random.js';
import type { BenchResult } from './harness.js';

const run = promisify(execFile);
const WORK = join(import.meta.dirname, '.work', 'ssim');
// Debian's interpreter by path: a pyenv python earlier on PATH has no scikit-image.
const PYTHON = '/usr/bin/python3';
const PAIRS = 200;
const SIZE = 512;
const WARMUP = 3;
const PAIR_BYTES = SIZE * SIZE * 3;

/**
 * Photo-like originals (gradient, shapes, grain) and their degraded copies (JPEG at quality
 * 20–70, every fifth one blurred instead), stored as two flat uint8 files of PAIRS×H×W×3 so both
 * sides read identical pixels. Reused while the tag matches.
 */
async function makePairs(): Promise<{ a: Buffer; b: Buffer }> {
  const tag = `${PAIRS} ${SIZE} v1`;
  const [aPath, bPath, stamp] = [join(WORK, 'a.u8'), join(WORK, 'b.u8'), join(WORK, 'done')];
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')) === tag) return { a: await readFile(aPath), b: await readFile(bPath) };
  await rm(WORK, { recursive: true, force: true });
  await mkdir(WORK, { recursive: true });
  const a = Buffer.alloc(PAIRS * PAIR_BYTES);
  const b = Buffer.alloc(PAIRS * PAIR_BYTES);
  const r = seededRandom(11);
  const c = () => `rgb(${Math.floor(r() * 256)},${Math.floor(r() * 256)},${Math.floor(r() * 256)})`;
  const raw = { width: SIZE, height: SIZE, channels: 3 as const };
  for (let i = 0; i < PAIRS; i++) {
    const shapes = Array.from({ length: 8 }, () => `<circle cx="${r() * SIZE}" cy="${r() * SIZE}" r="${10 + r() * SIZE / 4}" fill="${c()}" fill-opacity="${0.3 + r() * 0.7}"/><rect x="${r() * SIZE}" y="${r() * SIZE}" width="${r() * SIZE / 2}" height="${r() * SIZE / 3}" fill="${c()}" transform="rotate(${r() * 40 - 20})"/>`).join('');
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${SIZE}" height="${SIZE}"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${c()}"/><stop offset="1" stop-color="${c()}"/></linearGradient></defs><rect width="${SIZE}" height="${SIZE}" fill="url(#g)"/>${shapes}</svg>`;
    const grain = await sharp({ create: { ...raw, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 20 } } }).png({ compressionLevel: 0 }).toBuffer();
    const original = await sharp(Buffer.from(svg)).composite([{ input: grain, blend: 'soft-light' }]).removeAlpha().raw().toBuffer();
    const degraded = i % 5 === 4
      ? await sharp(original, { raw }).blur(1 + r()).raw().toBuffer()
      : await sharp(await sharp(original, { raw }).jpeg({ quality: 20 + 10 * (i % 6) }).toBuffer()).removeAlpha().raw().toBuffer();
    if (original.length !== PAIR_BYTES || degraded.length !== PAIR_BYTES) throw new Error(`bench ssim: pair ${i} has the wrong size`);
    original.copy(a, i * PAIR_BYTES);
    degraded.copy(b, i * PAIR_BYTES);
  }
  await writeFile(aPath, a);
  await writeFile(bPath, b);
  await writeFile(stamp, tag);
  return { a, b };
}

// Times each metric over all pairs after a short warm-up, inside Python, after the arrays are loaded.
const PY_SCRIPT = `
import json, sys, time
import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
a_path, b_path, n, size, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
a = np.fromfile(a_path, dtype=np.uint8).reshape(n, size, size, 3)
b = np.fromfile(b_path, dtype=np.uint8).reshape(n, size, size, 3)
metrics = {
    'psnr': lambda x, y: peak_signal_noise_ratio(x, y, data_range=255),
    'skimage': lambda x, y: structural_similarity(x, y, data_range=255, channel_axis=-1),
    'wang': lambda x, y: structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
}
out = {'version': skimage.__version__, 'numpy': np.__version__, 'results': {}}
for name, f in metrics.items():
    for i in range(warmup):
        f(a[i], b[i])
    t0 = time.perf_counter()
    values = [float(f(a[i], b[i])) for i in range(n)]
    out['results'][name] = {'seconds': time.perf_counter() - t0, 'values': [repr(v) for v in values]}
print(json.dumps(out))
`;

type Metric = 'psnr' | 'skimage' | 'wang';
const METRICS: Metric[] = ['psnr', 'skimage', 'wang'];

/**
 * bitprep's PSNR and SSIM (both conventions) against scikit-image on the same 200 pairs of
 * 512×512 RGB images, one thread each; values must agree within 1e-6 or the bench fails.
 */
export default async function bench(): Promise<BenchResult> {
  const { a, b } = await makePairs();
  const image = (buf: Buffer, i: number): MetricImage => ({ data: new Uint8Array(buf.buffer, buf.byteOffset + i * PAIR_BYTES, PAIR_BYTES), width: SIZE, height: SIZE, channels: 3 });
  const score: Record<Metric, (i: number) => number> = {
    psnr: (i) => psnr(image(a, i), image(b, i), { dataRange: 255 }).psnr,
    skimage: (i) => ssim(image(a, i), image(b, i), { convention: 'skimage', dataRange: 255 }).ssim,
    wang: (i) => ssim(image(a, i), image(b, i), { convention: 'wang', dataRange: 255 }).ssim,
  };

  const ours = {} as Record<Metric, { seconds: number; values: number[] }>;
  for (const m of METRICS) {
    for (let i = 0; i < WARMUP; i++) score[m](i);
    const t0 = process.hrtime.bigint();
    const values = Array.from({ length: PAIRS }, (_, i) => score[m](i));
    ours[m] = { seconds: Number(process.hrtime.bigint() - t0) / 1e9, values };
  }

  const { stdout } = await run(PYTHON, ['-c', PY_SCRIPT, join(WORK, 'a.u8'), join(WORK, 'b.u8'), String(PAIRS), String(SIZE), String(WARMUP)], { maxBuffer: 1 << 26 });
  const py = JSON.parse(stdout) as { version: string; numpy: string; results: Record<Metric, { seconds: number; values: string[] }> };

  const maxDiff = {} as Record<Metric, number>;
  for (const m of METRICS) {
    const theirs = py.results[m].values.map(Number);
    maxDiff[m] = Math.max(...theirs.map((v, i) => (m === 'psnr' ? Math.abs(ours[m].values[i] - v) / Math.abs(v) : Math.abs(ours[m].values[i] - v))));
    if (!(maxDiff[m] < 1e-6)) throw new Error(`bench ssim: ${m} disagrees with scikit-image by ${maxDiff[m]}`);
  }

  const label: Record<Metric, string> = { psnr: 'PSNR', skimage: 'SSIM, skimage convention (7×7 uniform, sample covariance)', wang: 'SSIM, wang convention (11-tap Gaussian σ 1.5, population covariance)' };
  const rate = (seconds: number) => PAIRS / seconds;
  const rows = METRICS.flatMap((m) => [
    { label: `bitprep ${label[m]}`, value: rate(ours[m].seconds), unit: 'pairs/s' },
    { label: `scikit-image ${py.version} ${label[m]}`, value: rate(py.results[m].seconds), unit: 'pairs/s' },
  ]);
  const ratios = METRICS.map((m) => ({ label: `${m === 'psnr' ? 'PSNR' : `SSIM ${m}`}: bitprep / scikit-image throughput`, value: py.results[m].seconds / ours[m].seconds, goal: '≥ 1' }));
  const ms = (s: number) => ((s / PAIRS) * 1000).toFixed(1);
  return {
    name: 'ssim',
    data: `${PAIRS} pairs of ${SIZE}×${SIZE} RGB uint8 (drawn photo-like originals vs JPEG q20–70 or blurred copies), data_range 255; one pass each after ${WARMUP} warm-up pairs, one thread each`,
    rows,
    ratios,
    notes: [
      `ms per pair, bitprep / scikit-image: ${METRICS.map((m) => `${m} ${ms(ours[m].seconds)} / ${ms(py.results[m].seconds)}`).join('; ')}`,
      `agreement with scikit-image ${py.version} (numpy ${py.numpy}, Debian ${PYTHON}): max abs SSIM diff skimage ${maxDiff.skimage.toExponential(1)}, wang ${maxDiff.wang.toExponential(1)}; max rel PSNR diff ${maxDiff.psnr.toExponential(1)}`,
      'Python time is measured inside Python around the metric calls only (interpreter start and array loading excluded)',
    ],
  };
}
