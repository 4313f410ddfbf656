/**
 * `bitprep eval fid-stats` (reference statistics, e.g. MSCOCO val2014) and `bitprep eval fid`
 * (FID of generated images against reference statistics or a reference folder), both with
 * clean-fid's "clean" preprocessing after GigaGAN's centre crop + LANCZOS 256 (inception-features.ts).
 */
import { Command } from 'commander';
import { integerOption } from '../../src/cli/option-parsers.js';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { readNpz, writeNpz } from '../../src/formats/npz.js';
import { consoleLogger, type Logger } from '../../src/log.js';
import { readImageFolder } from '../images/image-folder.js';
import { frechetDistanceTerms, readFrechetStatistics, type FrechetStatistics } from './frechet.js';
import { CLEAN_FID_RESIZE, featureStatisticsOf, InceptionModel, protocolName, type InceptionContract } from './inception-features.js';

/** The image count FID-30K is defined on (Table 3). */
export const FID_30K = 30_000;

const CI95_NOTE = 'no interval: FID is biased at finite n and resampling images with replacement duplicates them, ' +
  'which shrinks the covariance and biases FID further, so a percentile bootstrap does not give a valid 95% interval';

/** Inputs shared by both commands. */
export interface InceptionRunOptions {
  /** .onnx path or KServe model URLs (see parseModelSpec). */
  inception: string;
  /** Centre crop + LANCZOS side before clean-fid's resize; 0 skips it. Default 256. */
  resize?: number;
  batchSize?: number;
  /** Use only the first `limit` images of a folder (natural order). */
  limit?: number;
  cuda?: boolean;
  contract?: Partial<InceptionContract>;
  /** How result files name the model (default: the .onnx path or KServe model name). */
  modelLabel?: string;
  log?: Logger;
}

/** Files of an image folder (any readImageFolder layout), optionally only the first `limit`. */
async function folderPaths(dir: string, limit: number | undefined): Promise<string[]> {
  const folder = await readImageFolder(dir);
  const paths = folder.images.map((i) => i.path);
  return limit !== undefined ? paths.slice(0, limit) : paths;
}

async function folderStatistics(model: InceptionModel, dir: string, o: InceptionRunOptions): Promise<FrechetStatistics> {
  const paths = await folderPaths(dir, o.limit);
  const log = o.log ?? consoleLogger;
  const every = Math.max(1000, o.batchSize ?? 32);
  let next = every;
  const stats = await featureStatisticsOf(model, paths, {
    resize: o.resize ?? CLEAN_FID_RESIZE,
    batchSize: o.batchSize ?? 32,
    onProgress: (done) => {
      if (done >= next) {
        log.info(`${dir}: ${done}/${paths.length} images`);
        next += every;
      }
    },
  });
  return stats.statistics();
}

/** Writes stats as clean-fid reads them (`mu`, `sigma` float64) plus `n`, the image count, as a 0-d float64 member. */
export async function writeStatsWithCount(path: string, s: FrechetStatistics): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const members = { mu: { data: s.mu, shape: [s.dim] }, sigma: { data: s.sigma, shape: [s.dim, s.dim] }, n: { data: [s.count ?? NaN], shape: [] } };
  await writeNpz(path, members);
}

/** Reads a stats file, with its image count when it records one (`n`, as writeStatsWithCount stores it). */
export async function readStatsWithCount(path: string): Promise<FrechetStatistics> {
  const s = await readFrechetStatistics(path);
  const z = await readNpz(path);
  if (z.has('n')) {
    const n = z.get('n').data[0];
    if (Number.isInteger(n) && n > 0) s.count = n;
  }
  return s;
}

/** What `fid-stats` wrote. */
export interface FidStatsResult {
  out: string;
  n: number;
  dim: number;
  images: string;
  model: string;
  protocol: string;
}

/** Reference statistics of a folder: `out` gets `mu`, `sigma` and `n`. */
export async function runFidStats(imagesDir: string, out: string, o: InceptionRunOptions): Promise<FidStatsResult> {
  const model = await InceptionModel.open(o.inception, { contract: o.contract, cuda: o.cuda, label: o.modelLabel });
  try {
    const s = await folderStatistics(model, imagesDir, o);
    await writeStatsWithCount(out, s);
    return { out, n: s.count as number, dim: s.dim, images: imagesDir, model: model.label, protocol: protocolName(o.resize ?? CLEAN_FID_RESIZE) };
  } finally {
    await model.close();
  }
}

/** `fid.json`: the tables read `fid_30k`; the rest says what the number is. */
export interface FidResult {
  /** The FID, under Table 3's key whatever `n` is: check `n` before calling it FID-30K. */
  fid_30k: number;
  n: number;
  ref: string;
  ref_n: number | null;
  images: string;
  model: string;
  protocol: string;
  feature_dim: number;
  terms: { mean: number; trace_generated: number; trace_reference: number; trace_sqrt: number };
  ci95: null;
  ci95_note: string;
}

export interface FidOptions extends InceptionRunOptions {
  /** `.npz` stats file or a folder of reference images (given the same preprocessing). */
  ref: string;
  /** Results folder for `fid.json`; nothing is written when undefined. */
  out?: string;
  /** Also write the generated images' stats here. */
  saveStats?: string;
}

/** FID of a folder of generated images against reference statistics or images. */
export async function runFid(imagesDir: string, o: FidOptions): Promise<FidResult> {
  const log = o.log ?? consoleLogger;
  const refIsDir = (await stat(o.ref).catch(() => undefined))?.isDirectory() ?? false;
  // Read the reference file first: a wrong path should fail before minutes of feature extraction.
  let ref = refIsDir ? undefined : await readStatsWithCount(o.ref);
  const model = await InceptionModel.open(o.inception, { contract: o.contract, cuda: o.cuda, label: o.modelLabel });
  let gen: FrechetStatistics;
  try {
    gen = await folderStatistics(model, imagesDir, o);
    if (!ref) ref = await folderStatistics(model, o.ref, { ...o, limit: undefined });
  } finally {
    await model.close();
  }
  if (ref.dim !== gen.dim) throw new Error(`${o.ref}: reference statistics are ${ref.dim}-d but ${o.inception} gives ${gen.dim}-d features`);
  if (o.saveStats) await writeStatsWithCount(o.saveStats, gen);
  const t = frechetDistanceTerms(gen, ref);
  const n = gen.count as number;
  if (n !== FID_30K) log.warn(`FID from ${n} images, not ${FID_30K}: written as fid_30k with n = ${n}; FID is biased upward at small n, so it is not comparable with published FID-30K`);
  const result: FidResult = {
    fid_30k: Math.max(0, t.distance),
    n,
    ref: o.ref,
    ref_n: ref.count ?? null,
    images: imagesDir,
    model: model.label,
    protocol: protocolName(o.resize ?? CLEAN_FID_RESIZE),
    feature_dim: gen.dim,
    terms: { mean: t.meanTerm, trace_generated: t.traceSigma1, trace_reference: t.traceSigma2, trace_sqrt: t.traceSqrt },
    ci95: null,
    ci95_note: CI95_NOTE,
  };
  if (o.out) {
    await mkdir(o.out, { recursive: true });
    await writeFile(join(o.out, 'fid.json'), JSON.stringify(result, null, 2) + '\n');
  }
  return result;
}

/** `--resize`: a side in pixels, or 0 / none for plain clean-fid (no crop, no LANCZOS step). */
export const parseResize = (v: string): number => (v.trim().toLowerCase() === 'none' ? 0 : integerOption('--resize')(v));

interface CliOptions {
  inception: string;
  resize: number;
  batchSize: number;
  limit?: number;
  cuda?: boolean;
  inceptionInput: string;
  inceptionOutput: string;
  modelLabel?: string;
  json?: boolean;
}

/** The options both commands share, documented once. */
function inceptionOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--inception <model>', 'Inception: .onnx file or KServe URLs http://host:8000/v2/models/NAME[,…]; input FP32 [N,3,299,299] in [0,255], output FP32 [N,2048] pool3')
    .option('--inception-input <name>', 'input tensor name', 'images')
    .option('--inception-output <name>', 'output tensor name', 'features')
    .option('--model-label <text>', 'how the result names the model (default: the .onnx path or KServe model name); say STAND-IN for a stand-in')
    .option('--resize <n>', 'centre crop + PIL LANCZOS to n×n before clean-fid (GigaGAN: 256); 0 or none skips it', parseResize, CLEAN_FID_RESIZE)
    .option('--batch-size <n>', 'images per Inception call', integerOption('--batch-size', { min: 1 }), 32)
    .option('--limit <n>', 'use only the first n images (natural file order)', integerOption('--limit', { min: 2 }))
    .option('--cuda', 'run an .onnx model on CUDA (falls back to CPU with a warning)')
    .option('--json', 'print the result as JSON');
}

const runOptions = (o: CliOptions): InceptionRunOptions => ({
  inception: o.inception, resize: o.resize, batchSize: o.batchSize, limit: o.limit, cuda: o.cuda,
  contract: { input: o.inceptionInput, output: o.inceptionOutput }, modelLabel: o.modelLabel, log: consoleLogger,
});

/** `bitprep eval fid-stats <images-dir> --inception MODEL --out ref.npz`: reference statistics (mu, sigma, n) as numpy reads them. */
export function fidStatsCommand(): Command {
  return inceptionOptions(
    new Command('fid-stats')
      .argument('<images-dir>', 'reference images')
      .requiredOption('--out <file>', '.npz to write'),
  ).action(async (imagesDir: string, o: CliOptions & { out: string }) => {
    const r = await runFidStats(imagesDir, o.out, runOptions(o));
    if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else process.stdout.write(`${r.n} images, ${r.dim}-d features (${r.protocol}, model ${r.model})\nstatistics: ${r.out}\n`);
  });
}

/** `bitprep eval fid <images-dir> --ref ref.npz|<ref-dir> --inception MODEL`: FID, written to `<out>/fid.json`. */
export function fidCommand(): Command {
  return inceptionOptions(
    new Command('fid')
      .argument('<images-dir>', 'generated images')
      .requiredOption('--ref <npz-or-dir>', 'reference statistics (.npz with mu, sigma; e.g. from fid-stats) or a folder of reference images')
      .option('--out <dir>', 'results folder for fid.json (default: <images-dir>/fid-results)')
      .option('--save-stats <file>', "also write the generated images' statistics (.npz)"),
  ).action(async (imagesDir: string, o: CliOptions & { ref: string; out?: string; saveStats?: string }) => {
    const out = o.out ?? join(imagesDir, 'fid-results');
    const r = await runFid(imagesDir, { ...runOptions(o), ref: o.ref, out, saveStats: o.saveStats });
    if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else process.stdout.write(`FID ${r.fid_30k.toFixed(4)} (n = ${r.n}, reference ${r.ref}${r.ref_n ? `, ${r.ref_n} images` : ''}; ${r.protocol}; model ${r.model})\nresults: ${join(out, 'fid.json')}\n`);
  });
}
