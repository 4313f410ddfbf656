import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import sharp from 'sharp';
import type { Logger } from '../src/log.js';
import { generateImages } from '../evaluation/generate/generate.js';
import { ClipColorClassifier } from '../evaluation/geneval/clip-color.js';
import { detectFolder } from '../evaluation/geneval/detect.js';
import { GENEVAL_OBJECT_NAMES } from '../evaluation/geneval/detector.js';
import { OFFICIAL_PROTOCOL } from '../evaluation/geneval/protocol.js';
import { scoreGeneval } from '../evaluation/geneval/run.js';
import { ClipImageTower, ClipTextTower } from '../evaluation/models/clip-towers.js';
import { loadClipTokenizer } from '../evaluation/models/clip-text.js';
import { runClipScore } from '../evaluation/metrics/clip-score-command.js';
import { runFid, runFidStats } from '../evaluation/metrics/fid-command.js';
import { runImageReward } from '../evaluation/metrics/imagereward-command.js';
import { runReconstruction, mergeReconstructionJson } from '../evaluation/metrics/reconstruction-command.js';
import { DATASET_RESOLUTION } from '../evaluation/metrics/reconstruction-protocol.js';
import { runSpeed } from '../evaluation/speed/speed-command.js';
import { buildClipImageStandin, buildClipStandinTokenizer, buildClipTextStandin, STANDIN_CLIP_NAME } from '../evaluation/standins/clip-standin.js';
import { buildDetectorStandinModel, loadDetectorStandin } from '../evaluation/standins/detector-standin.js';
import { buildInceptionStandinModel, INCEPTION_STANDIN_LABEL } from '../evaluation/standins/inception-standin.js';
import { writeRewardStandin } from '../evaluation/standins/reward-standin.js';
import { readResults } from '../evaluation/tables/results.js';
import { assembleTable, renderTable } from '../evaluation/tables/format.js';
import { TABLES, type TableId } from '../evaluation/tables/published.js';
import { writeDemoEvalPrompts } from './demo-eval-data.js';
import { startDemoModelServer } from './demo-model-server.js';

/** The served name of the demo's "model under evaluation" (the stand-in server draws shapes). */
const MODEL = 'instella-t2i-STANDIN';
const SIZE = 256;
/** Reconstruction as Table 2 scores it. */
const RECON_SIZE = DATASET_RESOLUTION.imagenet;

export interface DemoEvalResult {
  /** The results directory `bitprep tables` reads. */
  results: string;
  /** What the demo prints: the command lines, the tables and the stand-in notes. */
  report: string;
}

/**
 * The demo's last act: the evaluation suite end to end on tiny prompt sets, with every model a
 * STAND-IN (the image "model" is the demo server's seeded drawings; CLIP, Inception, the reward
 * model and the detector are tiny seeded ONNX graphs with the real contracts). Generation, layouts,
 * preprocessing, metrics, intervals, result files and tables are the real code paths; the numbers
 * mean nothing. `originals` holds decodable photos-like images for the reconstruction and FID
 * reference (the demo's LAION images).
 */
export async function runDemoEval(root: string, originals: string, log: Logger): Promise<DemoEvalResult> {
  const dir = join(root, 'demo-eval');
  await rm(dir, { recursive: true, force: true });
  const models = join(dir, 'models');
  const results = join(dir, 'results');
  await mkdir(models, { recursive: true });
  const prompts = await writeDemoEvalPrompts(join(dir, 'prompts'));
  const commands: string[] = [];
  const rel = (p: string) => relative(process.cwd(), p) || '.';

  // Stand-in models, written where a user's exported models would be.
  const clipImage = join(models, 'clip-image-STANDIN.onnx');
  const clipText = join(models, 'clip-text-STANDIN.onnx');
  const clipTokenizer = join(models, 'clip-tokenizer-STANDIN.json');
  const inception = join(models, 'inception-STANDIN.onnx');
  const detectorPath = join(models, 'detector-STANDIN.onnx');
  await writeFile(clipImage, buildClipImageStandin(1).bytes);
  await writeFile(clipText, buildClipTextStandin(1).bytes);
  await writeFile(clipTokenizer, JSON.stringify(buildClipStandinTokenizer(['photo', 'depicts', 'red', 'blue', 'green', 'of'])));
  // 64 features instead of Inception's 2048: the demo's dozen images could not fill a 2048-d covariance anyway.
  await writeFile(inception, buildInceptionStandinModel(1, 64));
  await writeFile(detectorPath, buildDetectorStandinModel(1));
  const reward = await writeRewardStandin(models, 1);

  const server = await startDemoModelServer([MODEL]);
  try {
    const gen = async (set: 'geneval' | 'imagereward' | 'coco', file: string, out: string, perPrompt: number) => {
      commands.push(`bitprep eval generate --prompts ${set} --prompt-file ${rel(file)} --endpoint <url> --model ${MODEL} --size ${SIZE}x${SIZE} --images-per-prompt ${perPrompt} --param steps=20 --out ${rel(out)}`);
      const s = await generateImages({ out, promptSet: set, promptFile: file, imagesPerPrompt: perPrompt, width: SIZE, height: SIZE, seedBase: 0, params: { steps: 20 }, backend: { kind: 'endpoint', endpoint: server.baseUrl, model: MODEL, concurrency: 4 } });
      if (s.failed > 0) throw new Error(`demo evaluation: ${s.failed} images failed to generate into ${out}`);
      log.info(`  generated ${s.written} ${set} images → ${rel(out)}`);
    };
    log.info(`evaluation with STAND-IN models (numbers mean nothing) in ${rel(dir)}/ …`);
    const genevalDir = join(dir, 'geneval-images');
    const irDir = join(dir, 'imagereward-images');
    const cocoDir = join(dir, 'coco-images');
    await gen('geneval', prompts.geneval, genevalDir, 2);
    await gen('imagereward', prompts.imagereward, irDir, 2);
    await gen('coco', prompts.coco, cocoDir, 1);

    const speedRuns = { warmup: 1, runs: 3 };
    commands.push(`bitprep eval speed --endpoint <url> --model ${MODEL} --steps 20 --batch-size 1 --size ${SIZE}x${SIZE} --runs ${speedRuns.runs} --out ${rel(results)}`);
    await runSpeed({ endpoint: server.baseUrl, model: MODEL, steps: 20, batchSize: 1, size: `${SIZE}x${SIZE}`, ...speedRuns, out: results });
  } finally {
    await server.close();
  }

  // GenEval: detections from the stand-in detector, colors from the stand-in CLIP.
  const detections = join(dir, 'detections.jsonl');
  commands.push(`bitprep eval detect ${rel(join(dir, 'geneval-images'))} --detector ${rel(detectorPath)} --out ${rel(detections)}`);
  const detector = await loadDetectorStandin(1);
  try {
    await detectFolder({ imagesDir: join(dir, 'geneval-images'), out: detections, detector, log });
  } finally {
    await detector.close();
  }
  commands.push(`bitprep eval geneval ${rel(join(dir, 'geneval-images'))} --detections ${rel(detections)} --clip-image ${rel(clipImage)} --clip-text ${rel(clipText)} --clip-tokenizer ${rel(clipTokenizer)} --out ${rel(join(results, 'geneval'))}`);
  const image = await ClipImageTower.open(clipImage, {});
  const text = await ClipTextTower.open(clipText, {});
  try {
    const colors = new ClipColorClassifier({ image, text, tokenizer: await loadClipTokenizer(clipTokenizer), name: STANDIN_CLIP_NAME });
    await scoreGeneval({ imagesDir: join(dir, 'geneval-images'), detections, out: join(results, 'geneval'), protocol: OFFICIAL_PROTOCOL, colors, objectNames: [...GENEVAL_OBJECT_NAMES], log });
  } finally {
    await image.close();
    await text.close();
  }

  commands.push(`bitprep eval clip-score ${rel(join(dir, 'coco-images', 'images'))} --image-model ${rel(clipImage)} --text-model ${rel(clipText)} --tokenizer ${rel(clipTokenizer)} --out ${rel(results)}`);
  await runClipScore({ imagesDir: join(dir, 'coco-images'), imageModel: clipImage, textModel: clipText, tokenizer: clipTokenizer, out: results, modelName: STANDIN_CLIP_NAME, log });

  commands.push(`bitprep eval imagereward ${rel(join(dir, 'imagereward-images'))} --model ${rel(reward.model)} --tokenizer ${rel(reward.tokenizer)} --out ${rel(results)}`);
  await runImageReward({ imagesDir: join(dir, 'imagereward-images'), model: reward.model, tokenizer: reward.tokenizer, out: results });

  // Reconstruction and FID references: the demo's photos at Table 2's 512×512, and a JPEG round trip standing in for the BIT decoder.
  const origDir = join(dir, 'recon', 'originals');
  const reconDir = join(dir, 'recon', 'reconstructions');
  await mkdir(origDir, { recursive: true });
  await mkdir(reconDir, { recursive: true });
  const files = (await readdir(originals)).filter((f) => /\.(jpe?g|png|webp)$/i.test(f) && !f.startsWith('broken-')).sort();
  let n = 0;
  for (const f of files) {
    if (n >= 16) break;
    const stem = f.replace(/\.[^.]+$/, '');
    const png = await sharp(join(originals, f)).resize(RECON_SIZE, RECON_SIZE, { fit: 'cover' }).removeAlpha().png().toBuffer().catch(() => undefined);
    if (!png) continue;
    await writeFile(join(origDir, `${stem}.png`), png);
    await writeFile(join(reconDir, `${stem}.png`), await sharp(await sharp(png).jpeg({ quality: 30 }).toBuffer()).png().toBuffer());
    n++;
  }
  commands.push(`bitprep eval reconstruction ${rel(origDir)} ${rel(reconDir)} --dataset imagenet --inception ${rel(inception)} --out ${rel(results)}`);
  const entry = await runReconstruction(origDir, reconDir, { dataset: 'imagenet', resolution: RECON_SIZE, inception, modelLabel: INCEPTION_STANDIN_LABEL, log });
  await mergeReconstructionJson(results, 'imagenet', entry);

  const refStats = join(dir, 'reference-stats.npz');
  commands.push(`bitprep eval fid-stats ${rel(origDir)} --inception ${rel(inception)} --out ${rel(refStats)}`);
  await runFidStats(origDir, refStats, { inception, modelLabel: INCEPTION_STANDIN_LABEL, log });
  commands.push(`bitprep eval fid ${rel(join(dir, 'coco-images', 'images'))} --ref ${rel(refStats)} --inception ${rel(inception)} --out ${rel(results)}`);
  await runFid(join(dir, 'coco-images', 'images'), { ref: refStats, inception, out: results, modelLabel: INCEPTION_STANDIN_LABEL, log });

  commands.push(`bitprep tables ${rel(results)} --table all --name "demo (STAND-IN)" --resolution ${SIZE}`);
  const user = await readResults(results, { name: 'demo (STAND-IN)', resolution: SIZE });
  const tables = (['1', '2', '3'] as TableId[]).map((id) => renderTable(assembleTable(TABLES[id], [user]), 'markdown')).join('\n\n');
  const report = [
    `evaluation run in ${rel(dir)}/ (every model a STAND-IN), as these commands would run it:`,
    ...commands.map((c) => `  ${c}`),
    '',
    tables,
    '',
    'NOTE: the numbers above come from STAND-IN models: the image "model" is the demo server\'s seeded drawings; CLIP, Inception,',
    '      the ImageReward model and the GenEval detector are tiny seeded ONNX graphs with the real input/output contracts',
    `      (${rel(models)}/), and the "reconstructions" are JPEG q30 round trips, not the BIT decoder. The protocols, preprocessing,`,
    '      metrics, intervals and result files are the real ones; README: Evaluation says how to export and point at the real models.',
  ].join('\n');
  return { results, report };
}
