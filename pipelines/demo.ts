import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { consoleLogger } from '../src/log.js';
import { formatFunnel, type RunSummary } from '../src/run-summary.js';
import { openStore } from '../src/stores/open-store.js';
import { packageRoot } from '../src/package-root.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { formatLatentStats, LatentStats } from '../stages/latent-stats.js';
import { runDedup } from '../stages/dedup/dedup-run.js';
import { readLatentManifest, readLatents } from '../src/formats/latent-shards.js';
import { generateDemoData } from './demo-data.js';
import { runDemoEval } from './demo-eval.js';
import { collectReport } from './report/collect.js';
import { renderReport } from './report/html.js';
import { startDemoModelServer } from './demo-model-server.js';
import { startDemoImageServer } from './demo-server.js';
import { generateDalleTars, generateDiffusionDbParquet } from './demo-synthetic-data.js';
import { jobs } from './index.js';

const CONFIG = join(packageRoot, 'configs', 'demo.yaml');
const shipped = (name: string) => join(packageRoot, 'configs', name);

/**
 * Generates sample data under `<out>/demo-data`, serves its images on 127.0.0.1 as the web would
 * (with one opt-out and one missing file), runs configs/demo.yaml into `<out>/demo-out` (from
 * scratch), then recaption on that output, dalle-ingest and diffusiondb-synth on generated
 * Dalle3- and DiffusionDB-shaped data with the shipped configs against a stand-in model server,
 * and prints the funnels and where everything is. Returns the exit code.
 */
export async function runDemo(opts: { out: string; images: number; progress: string }): Promise<number> {
  const root = resolve(opts.out);
  const dataDir = join(root, 'demo-data');
  const outDir = join(root, 'demo-out');
  const log = consoleLogger;
  const t0 = Date.now();
  const server = await startDemoImageServer(join(dataDir, 'images'));
  let summary;
  const later: { name: string; dir: string; summary: RunSummary }[] = [];
  let latentReport = '';
  let mixReport = '';
  const runJob = async (path: string, overrides: [string, unknown][]): Promise<RunSummary> => {
    const { job, config } = await loadConfig(path, jobs, overrides);
    await rm(config.output, { recursive: true, force: true });
    const units = await job.plan(config, log);
    log.info(`running ${job.name}: ${units.length} units → ${config.output}`);
    return executeLocal(job, config, units, { output: openStore(config.output), log, progress: opts.progress as 'auto' });
  };
  try {
    log.info(`generating ${opts.images} images and a LAION-schema parquet in ${dataDir}, served at ${server.url} …`);
    const data = await generateDemoData(dataDir, opts.images, 42, { urlBase: server.url });
    log.info(`  ${data.rows} rows (planted: ${Object.entries(data.planted).map(([k, v]) => `${v} ${k}`).join(', ')}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // Stand-ins so the aesthetic stage runs offline: the real CLIP ViT-L/14 and LAION head are GBs.
    const models = join(dataDir, 'models');
    await mkdir(models, { recursive: true });
    await writeFile(join(models, 'clip-standin.onnx'), buildClipStandinModel(7));
    await writeAestheticHead(join(models, 'aesthetic-head-standin.safetensors'), randomAestheticLayers(7));
    summary = await runJob(CONFIG, [
      ['output', outDir],
      ['input.paths', [join(dataDir, 'laion')]],
      ['aesthetic.head', join(models, 'aesthetic-head-standin.safetensors')],
      ['aesthetic.clip.model.onnx', join(models, 'clip-standin.onnx')],
    ]);
  } finally {
    await server.close();
  }
  // The run's HTML report (funnel, histograms with thresholds, kept and dropped thumbnails), as `bitprep report` writes it.
  await openStore(outDir).put('report.html', await renderReport(await collectReport(openStore(outDir), { thumbnails: 24 })));

  // The rest of the dataflow on the shipped configs, against a stand-in model server (no model behind it).
  const stand = await startDemoModelServer(['Qwen/Qwen2.5-VL-7B-Instruct', 'black-forest-labs/FLUX.1-schnell', 'PixArt-alpha/PixArt-Sigma-XL-2-1024-MS']);
  try {
    log.info(`stand-in model server (not a model: colour statistics and seeded drawings) at ${stand.baseUrl}`);
    const recaptionDir = join(root, 'demo-recaption');
    later.push({ name: 'recaption (laion-filter output → long and short captions)', dir: recaptionDir, summary: await runJob(shipped('recaption.yaml'), [
      ['output', recaptionDir],
      ['input.paths', [outDir]],
      ['server.base_url', stand.baseUrl],
      ['server.max_in_flight', 16],
      ['concurrency', 16],
    ]) });
    const dalle = await generateDalleTars(join(dataDir, 'dalle3'), 24, 5);
    const dalleDir = join(root, 'demo-dalle');
    // The tars are read over HTTP from a local server, through the code path of https:// and hf://
    // inputs (plain http allowed for this trusted local server only: BITPREP_ALLOW_HTTP).
    const tarHost = await startDemoImageServer(dalle.dir);
    const allowHttp = process.env.BITPREP_ALLOW_HTTP;
    process.env.BITPREP_ALLOW_HTTP = '1';
    try {
      const tars = (await readdir(dalle.dir)).filter((n) => n.endsWith('.tar')).sort().map((n) => `${tarHost.url}/${n}`);
      log.info(`dalle-ingest reads ${tars.length} tars over HTTP from ${tarHost.url}`);
      later.push({ name: 'dalle-ingest (Dalle3-1M-shaped tars, read over HTTP)', dir: dalleDir, summary: await runJob(shipped('dalle-ingest.yaml'), [
        ['output', dalleDir],
        ['input.paths', tars],
      ]) });
    } finally {
      if (allowHttp === undefined) delete process.env.BITPREP_ALLOW_HTTP;
      else process.env.BITPREP_ALLOW_HTTP = allowHttp;
      await tarHost.close();
    }
    const ddb = await generateDiffusionDbParquet(join(dataDir, 'diffusiondb-metadata.parquet'), 60, 9);
    const synthDir = join(root, 'demo-synth');
    later.push({ name: 'diffusiondb-synth (DiffusionDB-shaped prompts × 2 models)', dir: synthDir, summary: await runJob(shipped('diffusiondb-synth.yaml'), [
      ['output', synthDir],
      ['input.paths', [ddb.path]],
      ['parallel_units', 2],
      ['models', [
        { name: 'flux-schnell', preset: 'flux-schnell', served_model: 'black-forest-labs/FLUX.1-schnell', endpoints: [stand.baseUrl], size: '512x512' },
        { name: 'pixart-sigma', preset: 'pixart-sigma', served_model: 'PixArt-alpha/PixArt-Sigma-XL-2-1024-MS', endpoints: [stand.baseUrl], size: '512x512' },
      ]],
    ]) });
  } finally {
    await stand.close();
  }

  // Pre-encode the three image sets with a STAND-IN encoder that has the real contract (not the BIT tokenizer).
  const encoderPath = join(dataDir, 'models', 'bit-encoder-standin.onnx');
  await writeFile(encoderPath, buildBitEncoderStandin(7).onnx);
  const latentSets: { source: string; from: string; dir: string }[] = [
    { source: 'laion', from: join(root, 'demo-recaption'), dir: join(root, 'demo-latents', 'laion') },
    { source: 'dalle3', from: join(root, 'demo-dalle'), dir: join(root, 'demo-latents', 'dalle3') },
    { source: 'diffusiondb-synth', from: join(root, 'demo-synth'), dir: join(root, 'demo-latents', 'diffusiondb-synth') },
  ];
  for (const set of latentSets) {
    later.push({ name: `pre-encode (${set.source} → latents, stand-in encoder)`, dir: set.dir, summary: await runJob(shipped('pre-encode.yaml'), [
      ['output', set.dir],
      ['input.paths', [set.from]],
      ['source', set.source],
      ['encoder.model', { onnx: encoderPath }],
      ['encoder.batch_size', 8],
    ]) });
  }
  // Copies across the image sets (same bytes, or within 6 bits of perceptual hash), as views the mix leaves out.
  const dedupDir = join(root, 'demo-dedup');
  const dedup = await runDedup(latentSets.map((x) => x.from), dedupDir, log, { phash: 6 });
  const mixDir = join(root, 'demo-mix');
  later.push({ name: 'training-mix (laion : synthetic = 3 : 1, 2 ranks)', dir: mixDir, summary: await runJob(shipped('training-mix.yaml'), [
    ['output', mixDir],
    ['sets', [
      { name: 'laion', paths: [latentSets[0].dir], weight: 3 },
      { name: 'synthetic', paths: [latentSets[1].dir, latentSets[2].dir], weight: 1 },
    ]],
    ['dedup.exclude', [dedupDir]],
    ['parallel_units', 2],
    // The paper's 8 ranks × 512 would need 4096 samples; the demo has a few dozen.
    ['world_size', 2],
    ['global_batch', 8],
    ['shard_size', 16],
  ]) });
  const mixIndex = JSON.parse(new TextDecoder().decode(await openStore(mixDir).get('index.json'))) as { rows: number; shards: unknown[] };
  mixReport = `${mixIndex.rows} samples in ${mixIndex.shards.length} shards for 2 ranks (mix.json: sets, shares, caption policy, each rank's shards)`;
  const stats = new LatentStats();
  const laionStore = openStore(latentSets[0].dir);
  for await (const { latent } of readLatents(laionStore, await readLatentManifest(laionStore))) stats.add(latent);
  latentReport = formatLatentStats(stats.result());
  const evaluation = await runDemoEval(root, join(dataDir, 'images'), log);
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const out = [
    '',
    'funnel',
    formatFunnel(summary.funnel),
    `(rows in = written + dropped + failed: ${summary.funnel_balances ? 'yes' : 'NO'})`,
    '',
    `outputs in ${rel(outDir)}/`,
    `  <unit>.tar          WebDataset image shards (<key>.jpg, <key>.json, <key>.txt)`,
    `  <unit>.parquet      every input row once, with status ok / dropped / failed and the reason`,
    `  <unit>.stats.json   per-stage counts and timings`,
    `  <unit>.thumbs       a tar of small JPEGs of rows dropped after decoding, for the report`,
    `  <unit>.done.json    written last: counts, bytes and SHA-256 of each output`,
    `  report.html         funnel, histograms with the thresholds, kept and dropped thumbnails (bitprep report; open it in a browser)`,
    `  run-summary.json    the funnel and throughput of the run`,
    `sample data in ${rel(dataDir)}/ (config: configs/demo.yaml; its URLs pointed at the demo's server, now closed)`,
    `NOTE: aesthetic scores here come from a tiny stand-in CLIP tower built in TypeScript and random head`,
    `      weights (${rel(join(dataDir, 'models'))}/), not CLIP ViT-L/14 and LAION's predictor: the plumbing is real,`,
    `      the scores mean nothing. README: Aesthetic score says how to use the real ones. OCR is real (tesseract.js, offline).`,
    `try new thresholds without decoding again: node bin/bitprep.js refilter ${rel(outDir)} --set ocr.max_density=0.05 --set aesthetic.min_score=5`,
    `next: node bin/bitprep.js summary ${rel(outDir)}   (the funnel again, from the done markers)`,
    `      any Parquet reader: select status, dropped_by, error_code, count(*) from '${rel(outDir)}/*.parquet' group by all`,
    ...later.flatMap((j) => ['', `${j.name} → ${rel(j.dir)}/`, formatFunnel(j.summary.funnel)]),
    '',
    '',
    `latents stats of ${rel(latentSets[0].dir)}/ (bitprep latents stats):`,
    latentReport,
    `bitprep dedup over the three image sets (--phash 6) → ${rel(dedupDir)}/: ${dedup.total_rows} rows, ${dedup.total_duplicates} exact and ${dedup.total_near_duplicates} near copies of an earlier row; the mix leaves them out (dedup.exclude)`,
    `training mix in ${rel(join(root, 'demo-mix'))}/: ${mixReport}`,
    `  feed rank 0 to a trainer as Arrow IPC: node bin/bitprep.js feed ${rel(join(root, 'demo-mix'))} --rank 0 --world-size 2 | python train.py`,
    `NOTE: the latents come from a STAND-IN encoder with the BIT encoder's contract (stages/bit-encoder-standin.ts: one convolution,`,
    `      random weights), not the BIT tokenizer; README: Pre-encode says how to export and serve the real one.`,
    `NOTE: captions in ${rel(join(root, 'demo-recaption'))}/ and images in ${rel(join(root, 'demo-synth'))}/ come from a STAND-IN server (pipelines/demo-model-server.ts):`,
    `      colour statistics and seeded drawings, not Qwen2.5-VL, FLUX.1-schnell or PixArt-Σ. Requests, validation, retries, the caption cache and`,
    `      the shards are real; point server.base_url / models[].endpoints at vLLM and image servers for real ones (README: Recaption, Synthetic data).`,
    '',
    '',
    evaluation.report,
    '',
  ];
  process.stdout.write(out.join('\n'));
  const failedUnits = summary.this_run?.units_failed.length ?? 0;
  const laterOk = later.every((j) => (j.summary.this_run?.units_failed.length ?? 0) === 0 && j.summary.funnel_balances);
  return failedUnits === 0 && summary.funnel_balances && laterOk ? 0 : 1;
}
