/**
 * `bitprep eval reconstruction`: how well a tokenizer reconstructs images (Table 2: rFID, PSNR,
 * SSIM on ImageNet val and COCO, both at 512×512, the paper's "Tokenizer reconstruction at
 * 512x512 on ImageNet and MS-COCO"). Originals and reconstructions are paired by file
 * name stem. The tokenizer sees centre-cropped, resized originals, so an original whose size
 * differs from its reconstruction's is centre-cropped to a square and resized to `--resolution`
 * with PIL BICUBIC first (crop then resize; counted in the output as `originals_resized`).
 *
 * PSNR: skimage's peak_signal_noise_ratio on 8-bit RGB (data range 255), mean of per-image dB.
 * SSIM: skimage's structural_similarity in the named convention(s) (ssim.ts). Both with a
 * bootstrap 95% interval over images. rFID: clean-fid's preprocessing without GigaGAN's LANCZOS
 * 256 step (the images are already at the tokenizer's resolution), originals vs reconstructions.
 */
import { Command, Option } from 'commander';
import { integerOption } from '../../src/cli/option-parsers.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { batch, mapConcurrent } from '../../src/concurrency.js';
import { centreCropSquare, resize } from '../../src/images/pil-resize.js';
import { consoleLogger, type Logger } from '../../src/log.js';
import type { RawImage } from '../../src/sample.js';
import { imageStem, readImageFolder, readRgb, type FolderImage } from '../images/image-folder.js';
import { bootstrapMean, DEFAULT_BOOTSTRAP, mean, type BootstrapCi, type BootstrapOptions } from './bootstrap.js';
import { FeatureStatistics, frechetDistance } from './frechet.js';
import { cleanFidResize, hwcToChw, InceptionModel, protocolName, type InceptionContract } from './inception-features.js';
import { psnr } from './psnr.js';
import { ssim, type SsimConvention } from './ssim.js';

import { DATASET_RESOLUTION, type ReconstructionDataset } from './reconstruction-protocol.js';


/** How each SSIM convention is named in reconstruction.json (the tables print it beside the number). */
export const SSIM_CONVENTION_NAMES: Readonly<Record<SsimConvention, string>> = {
  skimage: 'skimage (7×7 uniform window, sample covariance, data_range 255, mean over RGB)',
  wang: 'wang (11-tap Gaussian σ 1.5, population covariance, data_range 255, mean over RGB)',
};

export interface ReconstructionOptions {
  dataset: ReconstructionDataset;
  /** Side originals are centre-cropped and resized to when their size differs; default by dataset. */
  resolution?: number;
  /** SSIM conventions; the first is reported as `ssim`. Default ['skimage', 'wang']. */
  ssimConventions?: SsimConvention[];
  /** Inception model for rFID (omitted: no rFID). */
  inception?: string;
  contract?: Partial<InceptionContract>;
  /** How the result names the Inception model (default: the .onnx path or KServe model name). */
  modelLabel?: string;
  cuda?: boolean;
  batchSize?: number;
  /** Image pairs decoded and scored at once (default 3). */
  concurrency?: number;
  bootstrap?: BootstrapOptions;
  /** Results folder: `reconstruction.json` there is written, keeping the other dataset's entry. */
  out?: string;
  log?: Logger;
}

/** One dataset's entry of reconstruction.json. */
export interface ReconstructionEntry {
  psnr: number;
  psnr_ci95: BootstrapCi | null;
  psnr_convention: string;
  /** Pairs left out of the PSNR mean because they are identical (PSNR +∞). */
  psnr_identical: number;
  ssim: number;
  ssim_convention: string;
  ssim_ci95: BootstrapCi | null;
  ssim_by_convention: Partial<Record<SsimConvention, { ssim: number; ci95: BootstrapCi | null; convention: string }>>;
  rfid?: number;
  rfid_model?: string;
  rfid_protocol?: string;
  rfid_note?: string;
  n: number;
  /** The side originals are brought to when they differ from their reconstruction (--resolution). */
  resolution: number;
  /** The size the pairs were scored at: the reconstructions' (W×H, or "mixed"); Table 2 flags anything but 512×512. */
  evaluated_at: string;
  originals: string;
  reconstructions: string;
  originals_resized: number;
  original_preprocessing: string;
}

/** Pairs the two folders' images by file name stem; any image without a partner is an error naming it. */
export async function pairByStem(originalsDir: string, reconstructionsDir: string): Promise<{ stem: string; original: FolderImage; reconstruction: FolderImage }[]> {
  const index = (images: FolderImage[], dir: string) => {
    const m = new Map<string, FolderImage>();
    for (const img of images) {
      const stem = imageStem(img.rel);
      const prev = m.get(stem);
      if (prev) throw new Error(`${dir}: ${prev.rel} and ${img.rel} share the name ${stem}; pairing is by file name without extension`);
      m.set(stem, img);
    }
    return m;
  };
  const originals = index((await readImageFolder(originalsDir)).images, originalsDir);
  const recons = index((await readImageFolder(reconstructionsDir)).images, reconstructionsDir);
  const list = (names: string[]) => `${names.slice(0, 10).join(', ')}${names.length > 10 ? ` and ${names.length - 10} more` : ''}`;
  const noRecon = [...originals.values()].filter((i) => !recons.has(imageStem(i.rel))).map((i) => i.rel);
  const noOrig = [...recons.values()].filter((i) => !originals.has(imageStem(i.rel))).map((i) => i.rel);
  const problems: string[] = [];
  if (noRecon.length > 0) problems.push(`${noRecon.length} original(s) in ${originalsDir} have no reconstruction in ${reconstructionsDir}: ${list(noRecon)}`);
  if (noOrig.length > 0) problems.push(`${noOrig.length} reconstruction(s) in ${reconstructionsDir} have no original in ${originalsDir}: ${list(noOrig)}`);
  if (problems.length > 0) throw new Error(`${problems.join('; ')} (images are paired by file name without extension)`);
  return [...originals.entries()].map(([stem, original]) => ({ stem, original, reconstruction: recons.get(stem) as FolderImage }));
}

/** The original as the tokenizer saw it: unchanged when it already has the reconstruction's size. */
export function matchOriginal(original: RawImage, reconstruction: RawImage, resolution: number): { image: RawImage; resized: boolean } {
  if (original.width === reconstruction.width && original.height === reconstruction.height) return { image: original, resized: false };
  return { image: resize(centreCropSquare(original), resolution, resolution, 'bicubic'), resized: true };
}

/** Scores reconstructions against originals; writes/merges `<out>/reconstruction.json` when `out` is set. */
export async function runReconstruction(originalsDir: string, reconstructionsDir: string, o: ReconstructionOptions): Promise<ReconstructionEntry> {
  const log = o.log ?? consoleLogger;
  const resolution = o.resolution ?? DATASET_RESOLUTION[o.dataset];
  const conventions = o.ssimConventions ?? ['skimage', 'wang'];
  if (conventions.length === 0) throw new Error('reconstruction: no SSIM convention given');
  const pairs = await pairByStem(originalsDir, reconstructionsDir);
  if (pairs.length === 0) throw new Error(`${originalsDir}: no image pairs`);
  const model = o.inception ? await InceptionModel.open(o.inception, { contract: o.contract, cuda: o.cuda, label: o.modelLabel }) : undefined;

  const psnrs: number[] = [];
  let identical = 0;
  const ssims: number[][] = conventions.map(() => []);
  let resizedCount = 0;
  let warnedSize = false;
  const sizes = new Set<string>();
  let origStats: FeatureStatistics | undefined;
  let reconStats: FeatureStatistics | undefined;
  try {
    const scored = mapConcurrent(pairs, async (p) => {
      const [orig, recon] = await Promise.all([readRgb(p.original.path), readRgb(p.reconstruction.path)]);
      const { image, resized } = matchOriginal(orig, recon, resolution);
      if (image.width !== recon.width || image.height !== recon.height) {
        throw new Error(`${p.original.path} (${orig.width}×${orig.height}, centre-cropped and resized to ${image.width}×${image.height}) and ${p.reconstruction.path} (${recon.width}×${recon.height}) differ in size; is --resolution ${resolution} right?`);
      }
      sizes.add(`${recon.width}×${recon.height}`);
      if (!warnedSize && (recon.width !== resolution || recon.height !== resolution)) {
        warnedSize = true;
        log.warn(`${p.reconstruction.path} is ${recon.width}×${recon.height}, not the ${resolution}×${resolution} the ${o.dataset} benchmark uses`);
      }
      const label = `${p.original.path} vs ${p.reconstruction.path}`;
      try {
        const ps = psnr(image, recon).psnr;
        const ss = conventions.map((c) => ssim(image, recon, { convention: c }).ssim);
        const inputs = model ? { orig: hwcToChw(cleanFidResize(image, { resize: 0 })), recon: hwcToChw(cleanFidResize(recon, { resize: 0 })) } : undefined;
        return { label, psnr: ps, ssim: ss, resized, inputs };
      } catch (err) {
        throw new Error(`${label}: ${(err as Error).message}`);
      }
    }, { concurrency: o.concurrency ?? 3 });
    for await (const group of batch(scored, { size: o.batchSize ?? 32 })) {
      for (const r of group) {
        if (r.psnr === Infinity) identical++;
        else psnrs.push(r.psnr);
        r.ssim.forEach((v, i) => ssims[i].push(v));
        if (r.resized) resizedCount++;
      }
      if (model) {
        const what = group.length === 1 ? group[0].label : `${group[0].label} … ${group[group.length - 1].label}`;
        const fo = await model.features(group.map((r) => r.inputs!.orig), `originals of ${what}`);
        const fr = await model.features(group.map((r) => r.inputs!.recon), `reconstructions of ${what}`);
        origStats ??= new FeatureStatistics(model.dim as number);
        reconStats ??= new FeatureStatistics(model.dim as number);
        origStats.add(fo);
        reconStats.add(fr);
      }
    }
  } finally {
    await model?.close();
  }

  if (psnrs.length === 0) throw new Error(`every reconstruction in ${reconstructionsDir} is identical to its original: PSNR is infinite`);
  if (identical > 0) log.warn(`${identical} reconstruction(s) identical to their originals (PSNR +∞) are left out of the PSNR mean`);
  const bootstrap = o.bootstrap ?? DEFAULT_BOOTSTRAP;
  const byConvention: ReconstructionEntry['ssim_by_convention'] = {};
  conventions.forEach((c, i) => {
    byConvention[c] = { ssim: mean(ssims[i]), ci95: bootstrapMean(ssims[i], bootstrap) ?? null, convention: SSIM_CONVENTION_NAMES[c] };
  });
  const primary = byConvention[conventions[0]]!;
  const entry: ReconstructionEntry = {
    psnr: mean(psnrs),
    psnr_ci95: bootstrapMean(psnrs, bootstrap) ?? null,
    psnr_convention: 'skimage peak_signal_noise_ratio, data_range 255 on 8-bit RGB, mean of per-image dB',
    psnr_identical: identical,
    ssim: primary.ssim,
    ssim_convention: primary.convention,
    ssim_ci95: primary.ci95,
    ssim_by_convention: byConvention,
    n: pairs.length,
    resolution,
    evaluated_at: sizes.size === 1 ? [...sizes][0] : 'mixed',
    originals: originalsDir,
    reconstructions: reconstructionsDir,
    originals_resized: resizedCount,
    original_preprocessing: `originals whose size differs from their reconstruction's: centre crop to a square, PIL BICUBIC to ${resolution}×${resolution}; others unchanged`,
  };
  if (model && origStats && reconStats) {
    if (pairs.length < 2) throw new Error('rFID needs at least 2 image pairs');
    entry.rfid = Math.max(0, frechetDistance(reconStats.statistics(), origStats.statistics()));
    entry.rfid_model = model.label;
    entry.rfid_protocol = `${protocolName(0)}, originals vs reconstructions at their own size`;
    entry.rfid_note = 'no interval: FID is biased at finite n and a bootstrap with replacement biases it further';
  }
  if (o.out) await mergeReconstructionJson(o.out, o.dataset, entry);
  return entry;
}

/** Writes `<out>/reconstruction.json` with `dataset`'s entry replaced and every other key kept. */
export async function mergeReconstructionJson(out: string, dataset: ReconstructionDataset, entry: ReconstructionEntry): Promise<string> {
  const path = join(out, 'reconstruction.json');
  let existing: Record<string, unknown> = {};
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path}: not valid JSON (${(err as Error).message}); not overwriting it`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`${path}: expected a JSON object keyed by dataset; not overwriting it`);
    existing = parsed as Record<string, unknown>;
  }
  await mkdir(out, { recursive: true });
  await writeFile(path, JSON.stringify({ ...existing, [dataset]: entry }, null, 2) + '\n');
  return path;
}

interface CliOptions {
  dataset: ReconstructionDataset;
  inception?: string;
  inceptionInput: string;
  inceptionOutput: string;
  modelLabel?: string;
  resolution?: number;
  out?: string;
  ssimConvention: 'skimage' | 'wang' | 'both';
  batchSize: number;
  bootstrap: number;
  seed: number;
  cuda?: boolean;
  json?: boolean;
}

const fmtCi = (ci: BootstrapCi | null, d: number) => (ci ? ` [${ci.low.toFixed(d)}, ${ci.high.toFixed(d)}]` : '');

/** `bitprep eval reconstruction <originals-dir> <reconstructions-dir> --dataset imagenet|coco`: PSNR, SSIM and rFID (Table 2). */
export function reconstructionCommand(): Command {
  return new Command('reconstruction')
    .argument('<originals-dir>', 'original images')
    .argument('<reconstructions-dir>', 'reconstructions, paired with the originals by file name without extension')
    .addOption(new Option('--dataset <name>', 'the Table 2 benchmark these are: its entry in reconstruction.json').choices(['imagenet', 'coco']).makeOptionMandatory())
    .option('--resolution <n>', 'side originals are centre-cropped and BICUBIC-resized to when their size differs from the reconstruction (default 512, Table 2\'s resolution for both)', integerOption('--resolution', { min: 7 }))
    .addOption(new Option('--ssim-convention <c>', 'SSIM convention(s); with both, `ssim` is the skimage one').choices(['skimage', 'wang', 'both']).default('both'))
    .option('--inception <model>', 'Inception for rFID: .onnx file or KServe URLs (input FP32 [N,3,299,299] in [0,255], output FP32 [N,2048])')
    .option('--inception-input <name>', 'Inception input tensor name', 'images')
    .option('--inception-output <name>', 'Inception output tensor name', 'features')
    .option('--model-label <text>', 'how the result names the Inception model (default: the .onnx path or KServe model name); say STAND-IN for a stand-in')
    .option('--batch-size <n>', 'image pairs per Inception batch', integerOption('--batch-size', { min: 1 }), 32)
    .option('--out <dir>', 'results folder; reconstruction.json there keeps the other dataset (default: <reconstructions-dir>/reconstruction-results)')
    .option('--bootstrap <n>', 'bootstrap resamples for the 95% intervals (0 = none)', integerOption('--bootstrap'), DEFAULT_BOOTSTRAP.resamples)
    .option('--seed <n>', 'bootstrap seed', integerOption('--seed'), DEFAULT_BOOTSTRAP.seed)
    .option('--cuda', 'run an .onnx Inception on CUDA (falls back to CPU with a warning)')
    .option('--json', 'print the entry as JSON')
    .action(async (originalsDir: string, reconstructionsDir: string, o: CliOptions) => {
      const out = o.out ?? join(reconstructionsDir, 'reconstruction-results');
      const r = await runReconstruction(originalsDir, reconstructionsDir, {
        dataset: o.dataset,
        resolution: o.resolution,
        ssimConventions: o.ssimConvention === 'both' ? ['skimage', 'wang'] : [o.ssimConvention],
        inception: o.inception,
        contract: { input: o.inceptionInput, output: o.inceptionOutput },
        modelLabel: o.modelLabel,
        cuda: o.cuda,
        batchSize: o.batchSize,
        bootstrap: { resamples: o.bootstrap, seed: o.seed },
        out,
        log: consoleLogger,
      });
      if (o.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + '\n');
        return;
      }
      const lines = [`${o.dataset}: ${r.n} pairs at ${r.resolution} (${r.originals_resized} originals cropped and resized)`, `PSNR ${r.psnr.toFixed(3)} dB${fmtCi(r.psnr_ci95, 3)}`];
      for (const [, s] of Object.entries(r.ssim_by_convention)) lines.push(`SSIM ${s.ssim.toFixed(4)}${fmtCi(s.ci95, 4)}  ${s.convention}`);
      if (r.rfid !== undefined) lines.push(`rFID ${r.rfid.toFixed(4)} (${r.rfid_protocol}; model ${r.rfid_model})`);
      lines.push(`results: ${join(out, 'reconstruction.json')}`);
      process.stdout.write(lines.join('\n') + '\n');
    });
}
