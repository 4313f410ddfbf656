import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { loadConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { consoleLogger } from '../src/log.js';
import { formatFunnel } from '../src/run-summary.js';
import { openStore } from '../src/stores/open-store.js';
import { packageRoot } from '../src/package-root.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { generateDemoData } from './demo-data.js';
import { startDemoImageServer } from './demo-server.js';
import { jobs } from './index.js';

const CONFIG = join(packageRoot, 'configs', 'demo.yaml');

/**
 * Generates sample data under `<out>/demo-data`, serves its images on 127.0.0.1 as the web would
 * (with one opt-out and one missing file), runs configs/demo.yaml into `<out>/demo-out` (from
 * scratch), and prints the funnel and where everything is. Returns the exit code.
 */
export async function runDemo(opts: { out: string; images: number; progress: string }): Promise<number> {
  const root = resolve(opts.out);
  const dataDir = join(root, 'demo-data');
  const outDir = join(root, 'demo-out');
  const log = consoleLogger;
  const t0 = Date.now();
  const server = await startDemoImageServer(join(dataDir, 'images'));
  let summary;
  try {
    log.info(`generating ${opts.images} images and a LAION-schema parquet in ${dataDir}, served at ${server.url} …`);
    const data = await generateDemoData(dataDir, opts.images, 42, { urlBase: server.url });
    log.info(`  ${data.rows} rows (planted: ${Object.entries(data.planted).map(([k, v]) => `${v} ${k}`).join(', ')}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // Stand-ins so the aesthetic stage runs offline: the real CLIP ViT-L/14 and LAION head are GBs.
    const models = join(dataDir, 'models');
    await mkdir(models, { recursive: true });
    await writeFile(join(models, 'clip-standin.onnx'), buildClipStandinModel(7));
    await writeAestheticHead(join(models, 'aesthetic-head-standin.safetensors'), randomAestheticLayers(7));
    await rm(outDir, { recursive: true, force: true });
    const { job, config } = await loadConfig(CONFIG, jobs, [
      ['output', outDir],
      ['input.paths', [join(dataDir, 'laion')]],
      ['aesthetic.head', join(models, 'aesthetic-head-standin.safetensors')],
      ['aesthetic.clip.model.onnx', join(models, 'clip-standin.onnx')],
    ]);
    const units = await job.plan(config, log);
    log.info(`running ${job.name}: ${units.length} units → ${outDir}`);
    summary = await executeLocal(job, config, units, { output: openStore(outDir), log, progress: opts.progress as 'auto' });
  } finally {
    await server.close();
  }
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
    `  <unit>.done.json    written last: counts, bytes and SHA-256 of each output`,
    `  run-summary.json    the funnel and throughput of the run`,
    `sample data in ${rel(dataDir)}/ (config: configs/demo.yaml; its URLs pointed at the demo's server, now closed)`,
    `NOTE: aesthetic scores here come from a tiny stand-in CLIP tower built in TypeScript and random head`,
    `      weights (${rel(join(dataDir, 'models'))}/), not CLIP ViT-L/14 and LAION's predictor: the plumbing is real,`,
    `      the scores mean nothing. README: Aesthetic score says how to use the real ones. OCR is real (tesseract.js, offline).`,
    `try new thresholds without decoding again: node bin/bitprep.js refilter ${rel(outDir)} --set ocr.max_density=0.05 --set aesthetic.min_score=5`,
    `next: node bin/bitprep.js summary ${rel(outDir)}   (the funnel again, from the done markers)`,
    `      any Parquet reader: select status, dropped_by, error_code, count(*) from '${rel(outDir)}/*.parquet' group by all`,
    '',
  ];
  process.stdout.write(out.join('\n'));
  const failedUnits = summary.this_run?.units_failed.length ?? 0;
  return failedUnits === 0 && summary.funnel_balances ? 0 : 1;
}
