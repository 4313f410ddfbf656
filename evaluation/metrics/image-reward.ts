/**
 * ImageReward benchmark score (THUDM/ImageReward, Table 1's "IR" column): per image
 *
 *   raw    = mlp(BERT(input_ids, attention_mask, cross-attending to BLIP ViT-L(pixel_values))[:, 0])
 *   reward = (raw − 0.16717362830052426) / 1.0333394966054072
 *
 * then the mean over each prompt's images, then the mean over prompts, with a bootstrap 95%
 * interval that resamples prompts (a prompt's images are not independent).
 *
 * Preprocessing is ImageReward.py's: Resize(224, BICUBIC) + CenterCrop(224) + RGB + ToTensor +
 * Normalize(CLIP mean/std), i.e. stages/clip-preprocess.ts bit for bit after PIL-style decoding
 * (image-folder.ts readRgb); text is bert-text.ts (35 ids, `[CLS] … [SEP] [PAD]…`).
 *
 * Reward model contract (an ONNX export wrapping blip.visual_encoder + blip.text_encoder + mlp,
 * run in process or behind KServe v2; tensor names overridable):
 * - input `pixel_values`   FP32  [N, 3, 224, 224]  CLIP-normalised (roughly −1.8 … 2.2)
 * - input `input_ids`      INT64 [N, 35]           BERT ids (bert-base-uncased vocab, [PAD] = 0)
 * - input `attention_mask` INT64 [N, 35]           1 on real tokens, 0 on pads
 * - output `reward`        FP32 (or FP16) [N] or [N, 1]: the RAW reward, before normalisation;
 *   bitprep normalises it and records the constants in its output.
 * N may be dynamic (any batch size) or fixed at 1 (then batch size 1).
 */
import { halfToFloat } from '../../src/formats/half-float.js';
import { ReplicaPool } from '../../src/models/replica-pool.js';
import { checkInputs, elementCount, type NamedTensors, type TensorModel } from '../../src/models/tensor.js';
import { CLIP_SIZE, clipNormalize, clipResizeCrop } from '../../stages/clip-preprocess.js';
import type { FolderImage } from '../images/image-folder.js';
import { readRgb } from '../images/image-folder.js';
import type { BertTextTokenizer } from '../models/bert-text.js';
import { bootstrapMeanOfGroups, DEFAULT_BOOTSTRAP, mean, type BootstrapCi, type BootstrapOptions } from './bootstrap.js';

/** ImageReward.py's reward normalisation (`self.mean`, `self.std`). */
export const IMAGEREWARD_NORMALISATION = { mean: 0.16717362830052426, std: 1.0333394966054072 } as const;

/** Tensor names of the reward model; each defaults to the contract's. */
export interface RewardModelNames {
  pixelValues: string;
  inputIds: string;
  attentionMask: string;
  reward: string;
}

export const DEFAULT_REWARD_NAMES: RewardModelNames = { pixelValues: 'pixel_values', inputIds: 'input_ids', attentionMask: 'attention_mask', reward: 'reward' };

/** (raw − mean) / std, in float64. */
export const normaliseReward = (raw: number): number => (raw - IMAGEREWARD_NORMALISATION.mean) / IMAGEREWARD_NORMALISATION.std;

/**
 * Throws, naming the model and the tensor, when a reward model does not meet the contract above
 * for `maxLength` ids and `batchSize` images per call. Call it on every replica before scoring.
 */
export function checkRewardModel(model: TensorModel, names: RewardModelNames, maxLength: number, batchSize: number): void {
  const list = (l: { name: string }[]) => l.map((t) => t.name).join(', ');
  const want: [string, 'FP32' | 'INT64', number[], string][] = [
    [names.pixelValues, 'FP32', [3, CLIP_SIZE, CLIP_SIZE], '--pixel-input'],
    [names.inputIds, 'INT64', [maxLength], '--ids-input'],
    [names.attentionMask, 'INT64', [maxLength], '--mask-input'],
  ];
  for (const [name, dtype, dims, flag] of want) {
    const spec = model.inputs.find((t) => t.name === name);
    if (!spec) throw new Error(`reward model ${model.name}: no input "${name}" (inputs: ${list(model.inputs)}); name it with ${flag}`);
    if (spec.dtype !== dtype) throw new Error(`reward model ${model.name}: input "${name}" is ${spec.dtype}, expected ${dtype}`);
    const shapeOk = spec.shape.length === dims.length + 1 && dims.every((d, i) => spec.shape[i + 1] < 0 || spec.shape[i + 1] === d);
    if (!shapeOk) throw new Error(`reward model ${model.name}: input "${name}" has shape [${spec.shape.join(', ')}], expected [N, ${dims.join(', ')}]`);
    const n = spec.shape[0];
    if (n >= 0 && !(n === 1 && batchSize === 1)) throw new Error(`reward model ${model.name}: input "${name}" has a fixed batch of ${n}; export it with a dynamic batch axis (or use --batch-size 1 with a batch-1 model)`);
  }
  const extra = model.inputs.filter((t) => !want.some(([n]) => n === t.name));
  if (extra.length > 0) throw new Error(`reward model ${model.name}: takes inputs ${list(model.inputs)}; ImageReward feeds only ${want.map(([n]) => n).join(', ')}`);
  const out = model.outputs.find((t) => t.name === names.reward);
  if (!out) throw new Error(`reward model ${model.name}: no output "${names.reward}" (outputs: ${list(model.outputs)}); name it with --reward-output`);
  if (out.dtype !== 'FP32' && out.dtype !== 'FP16') throw new Error(`reward model ${model.name}: output "${names.reward}" is ${out.dtype}, expected FP32`);
  if (!(out.shape.length === 1 || (out.shape.length === 2 && (out.shape[1] < 0 || out.shape[1] === 1)))) {
    throw new Error(`reward model ${model.name}: output "${names.reward}" has shape [${out.shape.join(', ')}], expected [N] or [N, 1] (one raw reward per image)`);
  }
}

/** One scored image, as written to imagereward.jsonl. */
export interface ImageRewardRow {
  file: string;
  prompt: string;
  prompt_index: number;
  raw: number;
  reward: number;
}

/** The benchmark score of a set of scored images. */
export interface ImageRewardSummary {
  /** Mean over prompts of the mean over each prompt's images. */
  image_reward: number;
  ci95?: BootstrapCi;
  n_images: number;
  n_prompts: number;
  images_per_prompt: { min: number; max: number };
  normalisation: { mean: number; std: number };
}

/** Groups rows by prompt (first-seen order) and averages as the benchmark does. */
export function summariseRewards(rows: readonly ImageRewardRow[], bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP): ImageRewardSummary {
  if (rows.length === 0) throw new Error('ImageReward: no images to score');
  const groups = new Map<number, number[]>();
  for (const r of rows) {
    const g = groups.get(r.prompt_index);
    if (g) g.push(r.reward);
    else groups.set(r.prompt_index, [r.reward]);
  }
  const lists = [...groups.values()];
  const sizes = lists.map((g) => g.length);
  return {
    image_reward: mean(lists.map((g) => mean(g))),
    ci95: bootstrapMeanOfGroups(lists, bootstrap),
    n_images: rows.length,
    n_prompts: lists.length,
    images_per_prompt: { min: Math.min(...sizes), max: Math.max(...sizes) },
    normalisation: { ...IMAGEREWARD_NORMALISATION },
  };
}

export interface ScoreImageRewardOptions {
  /** Images with prompts (requirePrompts of readImageFolder). Without promptIndex, equal prompt texts form a group. */
  images: readonly FolderImage[];
  /** One model, or replicas of it (each batch goes to one). */
  model: TensorModel | ReplicaPool<TensorModel>;
  tokenizer: BertTextTokenizer;
  /** Images per model call (default 16). */
  batchSize?: number;
  names?: Partial<RewardModelNames>;
  bootstrap?: BootstrapOptions;
  /** Told after each batch, with images done so far. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Scores every image and summarises. Pixels are streamed: images are decoded a batch ahead of the
 * model, and at most 2 batches per replica are held as tensors at once, so memory does not grow
 * with the folder. Errors name the image (decode) or the batch's first image (model call).
 */
export async function scoreImageReward(opts: ScoreImageRewardOptions): Promise<{ summary: ImageRewardSummary; rows: ImageRewardRow[] }> {
  const names: RewardModelNames = { ...DEFAULT_REWARD_NAMES, ...opts.names };
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`ImageReward: batch size must be a positive integer, got ${batchSize}`);
  const pool = opts.model instanceof ReplicaPool ? opts.model : new ReplicaPool([{ name: opts.model.name, client: opts.model }]);
  const maxInFlight = 2 * pool.names.length;
  const tok = opts.tokenizer;
  const len = tok.maxLength;
  const images = opts.images;
  if (images.length === 0) throw new Error('ImageReward: no images to score');

  // Prompt groups: the folder's prompt index where it has one, else the prompt text.
  const indexOfText = new Map<string, number>();
  const promptIndex = images.map((img) => {
    if (img.prompt === undefined) throw new Error(`ImageReward: image ${img.rel} has no prompt`);
    if (img.promptIndex !== undefined) return img.promptIndex;
    let i = indexOfText.get(img.prompt);
    if (i === undefined) indexOfText.set(img.prompt, (i = indexOfText.size));
    return i;
  });

  const per = 3 * CLIP_SIZE * CLIP_SIZE;
  const prepare = async (start: number, end: number): Promise<NamedTensors> => {
    const n = end - start;
    const pixels = new Float32Array(n * per);
    const ids = new BigInt64Array(n * len);
    const mask = new BigInt64Array(n * len);
    await Promise.all(
      Array.from({ length: n }, async (_, k) => {
        const img = images[start + k];
        const rgb = await readRgb(img.path);
        clipNormalize(clipResizeCrop(rgb, CLIP_SIZE), pixels, k * per);
        tok.encodeInto(img.prompt as string, ids, mask, k);
      }),
    );
    return {
      [names.pixelValues]: { dtype: 'FP32', shape: [n, 3, CLIP_SIZE, CLIP_SIZE], data: pixels },
      [names.inputIds]: { dtype: 'INT64', shape: [n, len], data: ids },
      [names.attentionMask]: { dtype: 'INT64', shape: [n, len], data: mask },
    };
  };

  const raw = new Float64Array(images.length);
  const checked = new WeakSet<TensorModel>();
  const run = async (start: number, inputs: NamedTensors): Promise<void> => {
    const n = inputs[names.pixelValues].shape[0];
    const what = `batch of ${n} from image ${images[start].rel}`;
    const out = await pool.run(async (model) => {
      if (!checked.has(model)) {
        checkRewardModel(model, names, len, batchSize);
        checked.add(model);
      }
      checkInputs(model.name, model.inputs, inputs);
      return model.infer(inputs, { outputs: [names.reward] });
    }, { cost: n }).catch((err: unknown) => {
      throw new Error(`ImageReward: ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    const t = out[names.reward];
    if (!t) throw new Error(`ImageReward: ${what}: the model returned no "${names.reward}"`);
    if (t.shape[0] !== n || elementCount(t.shape) !== n) throw new Error(`ImageReward: ${what}: output "${names.reward}" has shape [${t.shape.join(', ')}], expected [${n}] or [${n}, 1]`);
    for (let k = 0; k < n; k++) {
      const v = t.dtype === 'FP16' ? halfToFloat((t.data as Uint16Array)[k]) : Number(t.data[k]);
      if (!Number.isFinite(v)) throw new Error(`ImageReward: image ${images[start + k].rel}: the model's reward is ${v}`);
      raw[start + k] = v;
    }
  };

  // The pipeline: prepare batch k+1 while earlier batches run; never more than maxInFlight batches held.
  const inFlight: Promise<void>[] = [];
  let failure: unknown;
  let done = 0;
  for (let start = 0; start < images.length && failure === undefined; start += batchSize) {
    const end = Math.min(images.length, start + batchSize);
    let inputs: NamedTensors;
    try {
      inputs = await prepare(start, end);
    } catch (err) {
      // Let the batches already sent finish, so nothing runs on after the error is reported.
      await Promise.all(inFlight);
      throw err;
    }
    const p = run(start, inputs).then(
      () => {
        done += end - start;
        opts.onProgress?.(done, images.length);
      },
      (err: unknown) => void (failure ??= err),
    );
    inFlight.push(p);
    if (inFlight.length >= maxInFlight) await inFlight.shift();
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;

  const rows: ImageRewardRow[] = images.map((img, i) => ({ file: img.rel, prompt: img.prompt as string, prompt_index: promptIndex[i], raw: raw[i], reward: normaliseReward(raw[i]) }));
  return { summary: summariseRewards(rows, opts.bootstrap), rows };
}
