import { writeFileAtomic } from '../../src/write-file-atomic.js';
import { Command } from 'commander';
import { integerOption } from '../../src/cli/option-parsers.js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { consoleLogger, type Logger } from '../../src/log.js';
import { loadClipTokenizer } from '../models/clip-text.js';
import { ClipImageTower, ClipTextTower } from '../models/clip-towers.js';
import type { BootstrapOptions } from './bootstrap.js';
import { computeClipScore, type ClipScoreSummary } from './clip-score.js';

export interface ClipScoreRunOptions {
  imagesDir: string;
  /** Image tower: `.onnx` path or KServe model URL(s) (see clip-towers.ts for the contract). */
  imageModel: string;
  /** Text tower, the same forms. */
  textModel: string;
  /** CLIP tokenizer.json. */
  tokenizer: string;
  /** Results folder receiving clip-score.json and clip-score.jsonl. */
  out: string;
  batchSize?: number;
  limit?: number;
  /** What the models are, for the result file (e.g. "open_clip ViT-g-14 laion2b_s12b_b42k", or a STAND-IN label). */
  modelName?: string;
  imageInput?: string;
  imageOutput?: string;
  textInput?: string;
  textOutput?: string;
  cuda?: boolean;
  bootstrap?: BootstrapOptions;
  log?: Logger;
}

/** clip-score.json: the summary plus `model`, read by `bitprep tables` (evaluation/tables/results.ts). */
export type ClipScoreFile = ClipScoreSummary & { model: string };

/** Opens the towers, scores the folder, writes `<out>/clip-score.json` and `<out>/clip-score.jsonl`. */
export async function runClipScore(o: ClipScoreRunOptions): Promise<{ summary: ClipScoreFile; jsonPath: string; jsonlPath: string }> {
  const tokenizer = await loadClipTokenizer(o.tokenizer);
  const image = await ClipImageTower.open(o.imageModel, { batchSize: o.batchSize, input: o.imageInput, output: o.imageOutput, cuda: o.cuda });
  try {
    const text = await ClipTextTower.open(o.textModel, { batchSize: o.batchSize, input: o.textInput, output: o.textOutput, cuda: o.cuda });
    try {
      const { summary, rows } = await computeClipScore({ imagesDir: o.imagesDir, image, text, tokenizer, limit: o.limit, bootstrap: o.bootstrap, log: o.log });
      const file: ClipScoreFile = { ...summary, model: o.modelName ?? `image ${image.label}, text ${text.label}` };
      await mkdir(o.out, { recursive: true });
      const jsonPath = join(o.out, 'clip-score.json');
      const jsonlPath = join(o.out, 'clip-score.jsonl');
      await writeFileAtomic(jsonlPath, rows.map((r) => JSON.stringify(r) + '\n').join(''));
      await writeFileAtomic(jsonPath, JSON.stringify(file, null, 2) + '\n');
      return { summary: file, jsonPath, jsonlPath };
    } finally {
      await text.close();
    }
  } finally {
    await image.close();
  }
}

interface Options {
  imageModel: string;
  textModel: string;
  tokenizer: string;
  out?: string;
  batchSize: number;
  limit?: number;
  modelName?: string;
  imageInput?: string;
  imageOutput?: string;
  textInput?: string;
  textOutput?: string;
  cuda?: boolean;
  bootstrap: number;
  seed: number;
  json?: boolean;
}

/** `bitprep eval clip-score <images-dir> --image-model M --text-model M --tokenizer FILE`: GigaGAN's CLIP score. */
export function clipScoreCommand(): Command {
  return new Command('clip-score')
    .argument('<images-dir>', 'images with prompts: manifest.jsonl (bitprep eval generate), GenEval layout, or images + captions.txt (GigaGAN)')
    .requiredOption('--image-model <model>', 'CLIP image tower: model.onnx or http://host:8000/v2/models/NAME[,…]; pixel_values FP32 [N,3,224,224] → image_embeds FP32 [N,D]')
    .requiredOption('--text-model <model>', 'CLIP text tower, the same forms; input_ids INT64 [N,77] → text_embeds FP32 [N,D]')
    .requiredOption('--tokenizer <file>', "the CLIP model's tokenizer.json (e.g. from huggingface.co/laion/CLIP-ViT-g-14-laion2B-s12B-b42K)")
    .option('--out <dir>', 'results folder for clip-score.json and clip-score.jsonl (default: <images-dir>/clip-score-results)')
    .option('--batch-size <n>', 'rows per model call', integerOption('--batch-size', { min: 1 }), 32)
    .option('--limit <n>', "score only the first n images in folder order (GigaGAN's how_many, 30000 for COCO-30K); default all", integerOption('--limit', { min: 1 }))
    .option('--model-name <text>', 'what the towers are, written to clip-score.json (default: their paths/URLs)')
    .option('--image-input <name>', 'image tower input tensor name (default pixel_values)')
    .option('--image-output <name>', 'image tower output tensor name (default image_embeds)')
    .option('--text-input <name>', 'text tower input tensor name (default input_ids)')
    .option('--text-output <name>', 'text tower output tensor name (default text_embeds)')
    .option('--cuda', 'run .onnx towers on CUDA when available (falls back to CPU with a warning)')
    .option('--bootstrap <n>', 'resamples for the 95% interval (0 = none)', integerOption('--bootstrap'), 1000)
    .option('--seed <n>', 'seed of the bootstrap', integerOption('--seed'), 0)
    .option('--json', 'print clip-score.json')
    .action(async (imagesDir: string, o: Options) => {
      const { summary, jsonPath, jsonlPath } = await runClipScore({
        imagesDir,
        imageModel: o.imageModel,
        textModel: o.textModel,
        tokenizer: o.tokenizer,
        out: o.out ?? join(imagesDir, 'clip-score-results'),
        batchSize: o.batchSize,
        limit: o.limit,
        modelName: o.modelName,
        imageInput: o.imageInput,
        imageOutput: o.imageOutput,
        textInput: o.textInput,
        textOutput: o.textOutput,
        cuda: o.cuda,
        bootstrap: { resamples: o.bootstrap, seed: o.seed },
        log: consoleLogger,
      });
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else {
        const ci = summary.ci95 ? ` (95% CI ${summary.ci95.low.toFixed(4)}–${summary.ci95.high.toFixed(4)})` : '';
        process.stdout.write(`CLIP score ${summary.clip_score.toFixed(4)}${ci} over ${summary.n} images, ${summary.model}\n\nresult: ${jsonPath}\nper image: ${jsonlPath}\n`);
      }
    });
}
