import { Command } from 'commander';
import { integerOption } from '../../src/cli/option-parsers.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { consoleLogger } from '../../src/log.js';
import { loadTensorModels, parseModelSpec } from '../../src/models/model-source.js';
import { ReplicaPool } from '../../src/models/replica-pool.js';
import type { TensorModel } from '../../src/models/tensor.js';
import { readImageFolder, requirePrompts, type FolderKind } from '../images/image-folder.js';
import { loadBertTokenizer } from '../models/bert-text.js';
import type { BootstrapOptions } from './bootstrap.js';
import { checkRewardModel, DEFAULT_REWARD_NAMES, scoreImageReward, type ImageRewardSummary, type RewardModelNames } from './image-reward.js';

/** Where the numbers come from, written with them. */
export const IMAGEREWARD_PROTOCOL =
  'THUDM/ImageReward: Resize(224, bicubic) + CenterCrop(224) + CLIP mean/std; BERT ids max_length 35 (padding max_length, truncation); ' +
  'reward = (raw - 0.16717362830052426) / 1.0333394966054072; score = mean over prompts of the mean over each prompt\'s images; 95% CI by bootstrap over prompts';

/** Everything `imagereward.json` holds; `bitprep tables` reads image_reward and ci95. */
export interface ImageRewardResult extends ImageRewardSummary {
  metric: 'imagereward';
  protocol: string;
  /** The --model argument (file or KServe URLs). */
  model: string;
  /** True when the model file is a bitprep stand-in (its name says STANDIN): the score means nothing. */
  stand_in: boolean;
  tensor_names: RewardModelNames;
  tokenizer: { path: string; sha256: string; max_length: number; pad_id: number };
  images: { dir: string; layout: FolderKind };
  batch_size: number;
}

export interface ImageRewardRunOptions {
  imagesDir: string;
  /** A model spec as parseModelSpec reads it: `reward.onnx` or `http://host:8000/v2/models/NAME[,…]`. */
  model: string;
  /** bert-base-uncased's tokenizer.json (local). */
  tokenizer: string;
  /** Results directory: imagereward.json and imagereward.jsonl go there. */
  out: string;
  batchSize?: number;
  cuda?: boolean;
  names?: Partial<RewardModelNames>;
  bootstrap?: BootstrapOptions;
}

/** Scores a folder and writes `<out>/imagereward.json` (summary) and `<out>/imagereward.jsonl` (per image). */
export async function runImageReward(o: ImageRewardRunOptions): Promise<{ result: ImageRewardResult; jsonPath: string; jsonlPath: string }> {
  const folder = await readImageFolder(o.imagesDir);
  const images = requirePrompts(folder, 'ImageReward');
  const tokenizer = await loadBertTokenizer(o.tokenizer);
  const names: RewardModelNames = { ...DEFAULT_REWARD_NAMES, ...o.names };
  const batchSize = o.batchSize ?? 16;
  const stand_in = /stand-?in/i.test(o.model);
  if (stand_in) consoleLogger.warn(`${o.model} is a STAND-IN reward model: its scores are not ImageReward scores`);
  const replicas = await loadTensorModels(parseModelSpec(o.model, { cuda: o.cuda }), 'imagereward');
  let scored: Awaited<ReturnType<typeof scoreImageReward>>;
  try {
    // Before any image is decoded: a wrong export should fail in a second, not after a batch.
    for (const r of replicas) checkRewardModel(r.client, names, tokenizer.maxLength, batchSize);
    scored = await scoreImageReward({ images, model: new ReplicaPool<TensorModel>(replicas), tokenizer, batchSize, names, bootstrap: o.bootstrap });
  } finally {
    await Promise.all(replicas.map((r) => r.client.close()));
  }
  const result: ImageRewardResult = {
    metric: 'imagereward',
    ...scored.summary,
    protocol: IMAGEREWARD_PROTOCOL,
    model: o.model,
    stand_in,
    tensor_names: names,
    tokenizer: { path: o.tokenizer, sha256: tokenizer.sha256, max_length: tokenizer.maxLength, pad_id: tokenizer.padId },
    images: { dir: o.imagesDir, layout: folder.kind },
    batch_size: batchSize,
  };
  await mkdir(o.out, { recursive: true });
  const jsonPath = join(o.out, 'imagereward.json');
  const jsonlPath = join(o.out, 'imagereward.jsonl');
  await writeFile(jsonPath, JSON.stringify(result, null, 2) + '\n');
  await writeFile(jsonlPath, scored.rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { result, jsonPath, jsonlPath };
}

interface Options {
  model: string;
  tokenizer: string;
  out?: string;
  batchSize: number;
  cuda?: boolean;
  json?: boolean;
  pixelInput: string;
  idsInput: string;
  maskInput: string;
  rewardOutput: string;
  bootstrap: number;
  seed: number;
}

/** `bitprep eval imagereward <images-dir> --model M --tokenizer tokenizer.json`: ImageReward benchmark score (Table 1, IR). */
export function imageRewardCommand(): Command {
  return new Command('imagereward')
    .argument('<images-dir>', 'images with prompts: manifest.jsonl (bitprep eval generate), GenEval layout, or images + captions.txt')
    .requiredOption('--model <model>', 'reward model: an .onnx file or KServe URLs http://host:8000/v2/models/NAME (comma-separated replicas); inputs pixel_values FP32 [N,3,224,224], input_ids and attention_mask INT64 [N,35]; output the RAW reward FP32 [N] or [N,1]')
    .requiredOption('--tokenizer <file>', "bert-base-uncased's tokenizer.json (ImageReward's BLIP text side), local")
    .option('--out <dir>', 'results directory for imagereward.json and imagereward.jsonl (default: <images-dir>/imagereward-results)')
    .option('--batch-size <n>', 'images per model call', integerOption('--batch-size', { min: 1 }), 16)
    .option('--cuda', 'run an .onnx model on the GPU when the CUDA execution provider is installed (falls back to CPU)')
    .option('--json', 'print imagereward.json instead of a summary line')
    .option('--pixel-input <name>', 'name of the model input taking the pixels', DEFAULT_REWARD_NAMES.pixelValues)
    .option('--ids-input <name>', 'name of the model input taking the token ids', DEFAULT_REWARD_NAMES.inputIds)
    .option('--mask-input <name>', 'name of the model input taking the attention mask', DEFAULT_REWARD_NAMES.attentionMask)
    .option('--reward-output <name>', 'name of the model output holding the raw reward', DEFAULT_REWARD_NAMES.reward)
    .option('--bootstrap <n>', 'resamples for the 95% interval (0 = none)', integerOption('--bootstrap'), 1000)
    .option('--seed <n>', 'seed of the bootstrap', integerOption('--seed'), 0)
    .action(async (imagesDir: string, o: Options) => {
      const { result, jsonPath, jsonlPath } = await runImageReward({
        imagesDir,
        model: o.model,
        tokenizer: o.tokenizer,
        out: o.out ?? join(imagesDir, 'imagereward-results'),
        batchSize: o.batchSize,
        cuda: o.cuda,
        names: { pixelValues: o.pixelInput, inputIds: o.idsInput, attentionMask: o.maskInput, reward: o.rewardOutput },
        bootstrap: { resamples: o.bootstrap, seed: o.seed },
      });
      if (o.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        return;
      }
      const ci = result.ci95 ? ` (95% CI ${result.ci95.low.toFixed(4)} – ${result.ci95.high.toFixed(4)})` : '';
      const label = result.stand_in ? ' [STAND-IN model: not an ImageReward score]' : '';
      process.stdout.write(`ImageReward ${result.image_reward.toFixed(4)}${ci} over ${result.n_prompts} prompts, ${result.n_images} images${label}\nsummary: ${jsonPath}\nper image: ${jsonlPath}\n`);
    });
}
