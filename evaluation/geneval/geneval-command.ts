import { Command, InvalidArgumentError } from 'commander';
import { fractionOption, integerOption } from '../../src/cli/option-parsers.js';
import { join } from 'node:path';
import { consoleLogger } from '../../src/log.js';
import { loadClipTokenizer } from '../models/clip-text.js';
import { ClipImageTower, ClipTextTower } from '../models/clip-towers.js';
import { ClipColorClassifier } from './clip-color.js';
import type { ColorClassifier } from './color.js';
import { OFFICIAL_PROTOCOL, type GenevalProtocol } from './protocol.js';
import { readObjectNames, scoreGeneval } from './run.js';
import { formatSummary } from './summary.js';

interface Options {
  detections: string;
  out?: string;
  json?: boolean;
  skipMissing?: boolean;
  objectNames?: string;
  threshold: number;
  countingThreshold: number;
  maxObjects: number;
  maxOverlap: number;
  positionThreshold: number;
  bootstrap: number;
  seed: number;
  clipImage?: string;
  clipText?: string;
  clipTokenizer?: string;
  clipName?: string;
  cuda?: boolean;
}

/** The CLIP color classifier the --clip-* options ask for, or undefined (colors from the detections file). */
async function openClipColors(o: Options): Promise<{ classifier: ColorClassifier; close(): Promise<void> } | undefined> {
  const given = [o.clipImage, o.clipText, o.clipTokenizer].filter((x) => x !== undefined).length;
  if (given === 0) {
    if (o.clipName !== undefined) throw new InvalidArgumentError('--clip-name names the CLIP color classifier; give --clip-image, --clip-text and --clip-tokenizer too');
    return undefined;
  }
  if (given < 3) throw new InvalidArgumentError('the CLIP color classifier needs all of --clip-image, --clip-text and --clip-tokenizer');
  const tokenizer = await loadClipTokenizer(o.clipTokenizer!);
  const image = await ClipImageTower.open(o.clipImage!, { cuda: o.cuda, batchSize: 16 });
  let text: ClipTextTower;
  try {
    text = await ClipTextTower.open(o.clipText!, { cuda: o.cuda });
  } catch (err) {
    await image.close();
    throw err;
  }
  return {
    classifier: new ClipColorClassifier({ image, text, tokenizer, name: o.clipName }),
    close: async () => {
      await Promise.all([image.close(), text.close()]);
    },
  };
}

/** `bitprep eval geneval <images-dir> --detections FILE`: GenEval's correctness rules and summary from precomputed detections. */
export function genevalCommand(): Command {
  const p = OFFICIAL_PROTOCOL;
  return new Command('geneval')
    .argument('<images-dir>', 'GenEval layout: <00000>/metadata.jsonl and <00000>/samples/0000.png… per prompt')
    .requiredOption('--detections <file>', 'JSON Lines, one line per image: {"image": "00000/samples/0000.png", "detections": {"<class>": [[x1, y1, x2, y2, score], …]}}')
    .option('--out <dir>', 'where results.jsonl and summary.json go (default: <images-dir>/geneval-results)')
    .option('--json', 'print the summary as JSON')
    .option('--skip-missing', 'score without the images that have no detections line (default: that is an error)')
    .option('--object-names <file>', "GenEval's object_names.txt: check every class name against it and order `details` by it")
    .option('--threshold <t>', 'keep detections with score above this', fractionOption('--threshold'), p.threshold)
    .option('--counting-threshold <t>', 'the same for the counting tag', fractionOption('--counting-threshold'), p.counting_threshold)
    .option('--max-objects <n>', 'detections kept per class', integerOption('--max-objects', { min: 1 }), p.max_objects)
    .option('--max-overlap <t>', 'same-class NMS: drop boxes whose IoU with a kept one is ≥ this (1 = off, as officially)', fractionOption('--max-overlap'), p.max_overlap)
    .option('--position-threshold <t>', 'margin of the position rule, as a fraction of the summed box sizes', fractionOption('--position-threshold'), p.position_threshold)
    .option('--bootstrap <n>', 'resamples for the 95% interval of the overall score (0 = none)', integerOption('--bootstrap'), 1000)
    .option('--seed <n>', 'seed of the bootstrap', integerOption('--seed'), 0)
    .option('--clip-image <model>', "classify colors with CLIP as GenEval does (ViT-L-14 openai) instead of the detections' color labels: the image tower, model.onnx or http://host:8000/v2/models/NAME; pixel_values FP32 [N,3,224,224] → image_embeds FP32 [N,D]")
    .option('--clip-text <model>', 'the CLIP text tower, the same forms; input_ids INT64 [N,77] → text_embeds FP32 [N,D]')
    .option('--clip-tokenizer <file>', "the CLIP model's tokenizer.json (e.g. from huggingface.co/openai/clip-vit-large-patch14)")
    .option('--clip-name <text>', 'what the CLIP towers are, recorded as color_source (default: "clip ViT-L-14 openai (image: …, text: …)")')
    .option('--cuda', 'run .onnx CLIP towers on CUDA when available (falls back to CPU with a warning)')
    .action(async (imagesDir: string, o: Options) => {
      const protocol: GenevalProtocol = {
        threshold: o.threshold,
        counting_threshold: o.countingThreshold,
        max_objects: o.maxObjects,
        max_overlap: o.maxOverlap,
        position_threshold: o.positionThreshold,
      };
      const changed = (Object.keys(p) as (keyof GenevalProtocol)[]).filter((k) => protocol[k] !== p[k]);
      if (changed.length > 0) consoleLogger.warn(`non-default ${changed.join(', ')}: scores are not comparable with published GenEval numbers`);
      const clip = await openClipColors(o);
      const { summary, resultsPath, summaryPath } = await scoreGeneval({
        imagesDir,
        detections: o.detections,
        out: o.out ?? join(imagesDir, 'geneval-results'),
        protocol,
        skipMissing: o.skipMissing,
        objectNames: o.objectNames ? await readObjectNames(o.objectNames) : undefined,
        bootstrap: { resamples: o.bootstrap, seed: o.seed },
        log: consoleLogger,
        colors: clip?.classifier,
      }).finally(() => clip?.close());
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else process.stdout.write(`${formatSummary(summary)}\n\nresults: ${resultsPath}\nsummary: ${summaryPath}\n`);
    });
}
