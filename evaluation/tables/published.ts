/**
 * Tables 1–3 of "Instella-T2I: Pushing the Limits of 1D Discrete Latent Space Image Generation"
 * (AMD, 2025), copied from the paper so `bitprep tables` can print them next to a user's results
 * without any network or reference files at run time. Numbers are the paper's, unchanged; `null`
 * marks a cell the paper leaves empty.
 */

export type TableId = '1' | '2' | '3';
export type Cell = string | number | null;

export interface Column {
  key: string;
  /** Header as printed (the paper's abbreviations). */
  header: string;
  kind: 'text' | 'number';
  /** Decimals the paper prints for this column; user values and deltas use the same. */
  decimals: number;
  /** A measured quantity: user rows fill it from results and the delta row compares it. Others describe the model. */
  metric: boolean;
}

export interface PublishedTable {
  id: TableId;
  title: string;
  columns: Column[];
  /** Cells in `columns` order; the first column is the row's name. */
  rows: Cell[][];
  /** The paper's own model: the default `--compare` row (the first row of that name). */
  ownRow: string;
  notes: string[];
}

const text = (key: string, header: string): Column => ({ key, header, kind: 'text', decimals: 0, metric: false });
const num = (key: string, header: string, decimals: number, metric = true): Column => ({ key, header, kind: 'number', decimals, metric });

export const PROTOCOLS = {
  table1: 'Sampling Alg. 1, alpha (CFG) 7.5, tau 0.75, 100 steps. GenEval: 553 prompts x 4 images. CLIP: 30K images from MSCOCO 2014 captions, ViT-G/14, images resized to 256. ImageReward: 100 prompts, one image each.',
  table3: 'Sampling Alg. 2, alpha 4.0, tau 0.6, 20 steps. FID: evaluation code of Kang et al. 2023 (GigaGAN), images resized to 256, compared with MSCOCO val2014.',
  latents: '128 tokens x 64 binary values per image; inference binarisation is deterministic (sigmoid(logit) > 0.5).',
  training: 'Global batch 4096 on 8 GPUs (512 per GPU); about 120 images/s/GPU training throughput; text prompts tokenized to at most 128 tokens (AMD-OLMo-1B tokenizer).',
  data: 'LAION-COCO (~600M) annotated with aesthetic score, OCR density and OCR size, filtered to ~100M, recaptioned with Qwen2.5-VL-7B (one long, one short caption). Synthetic: DiffusionDB prompts rendered once per prompt and model by FLUX.1-schnell, PixArt-Sigma, SD3.5; plus Dalle3-1M. Images whose shorter edge is under half the target resolution are excluded.',
} as const;

export const TABLE1: PublishedTable = {
  id: '1',
  title: 'Text-to-image evaluation: GenEval per task and overall, CLIP score, ImageReward (IR)',
  columns: [
    text('model', 'Model'),
    text('size', 'Size'),
    num('resolution', 'Res.', 0, false),
    num('single_object', 'Single obj.', 2),
    num('two_object', 'Two obj.', 2),
    num('counting', 'Counting', 2),
    num('colors', 'Colors', 2),
    num('color_attr', 'Color attr.', 2),
    num('position', 'Position', 2),
    num('overall', 'Overall', 2),
    num('clip', 'CLIP', 3),
    num('image_reward', 'IR', 3),
  ],
  rows: [
    ['SDv1.5', '0.9B', 512, 0.97, 0.38, 0.35, 0.76, 0.06, 0.04, 0.43, 0.318, 0.201],
    ['SDv2.1', '0.9B', 512, 0.98, 0.51, 0.44, 0.85, 0.17, 0.07, 0.50, 0.338, 0.372],
    ['PixArt-alpha', '0.6B', 1024, 0.98, 0.50, 0.44, 0.80, 0.07, 0.08, 0.48, 0.321, 0.871],
    ['PixArt-sigma', '0.6B', 1024, 0.98, 0.59, 0.50, 0.80, 0.15, 0.10, 0.52, 0.325, 0.872],
    ['SDXL', '2.6B', 1024, 0.98, 0.74, 0.39, 0.85, 0.23, 0.15, 0.55, 0.335, 0.600],
    ['SD3-Medium', '8.0B', 1024, 0.97, 0.89, 0.69, 0.82, 0.47, 0.34, 0.69, 0.334, 0.871],
    ['Chameleon', '7.0B', 512, null, null, null, null, null, null, 0.39, null, null],
    ['Emu3', '8.0B', 1024, 0.98, 0.71, 0.34, 0.81, 0.17, 0.21, 0.54, 0.333, 0.872],
    ['Instella AR', '0.8B', 1024, 0.96, 0.43, 0.40, 0.80, 0.14, 0.08, 0.46, 0.313, 0.538],
    ['Instella Diff', '1.2B', 1024, 0.99, 0.78, 0.66, 0.85, 0.45, 0.12, 0.64, 0.332, 0.900],
  ],
  ownRow: 'Instella Diff',
  notes: [
    'GenEval overall is the unweighted mean of the six task accuracies; the published per-task values are rounded, so recomputing overall from them can differ by 0.01.',
    'Another published copy of this table gives Emu3 color_attr 0.21 and position 0.17 (swapped); the paper\'s values are kept here.',
    `Protocol: ${PROTOCOLS.table1}`,
  ],
};

export const TABLE2: PublishedTable = {
  id: '2',
  title: 'Tokenizer reconstruction at 512x512 on ImageNet and MS-COCO',
  columns: [
    text('tokenizer', 'Tokenizer'),
    text('kind', 'Kind'),
    text('size', 'Size'),
    num('tokens', 'Tokens', 0, false),
    num('imagenet_rfid', 'IN rFID', 2),
    num('imagenet_psnr', 'IN PSNR', 2),
    num('imagenet_ssim', 'IN SSIM', 3),
    num('coco_rfid', 'COCO rFID', 2),
    num('coco_psnr', 'COCO PSNR', 2),
    num('coco_ssim', 'COCO SSIM', 3),
  ],
  rows: [
    ['SD-VAE', 'continuous', '84M', 4096, 0.19, 27.36, 0.849, 2.41, 26.48, 0.841],
    ['DC-AE', 'continuous', '323M', 256, 0.21, 26.23, 0.815, 2.85, 25.47, 0.811],
    ['TexTok', 'continuous', '176M', 256, 0.73, 24.45, 0.668, null, null, null],
    ['MAETok', 'continuous', '176M', 128, 0.62, 22.18, 0.701, 5.91, 22.48, 0.695],
    ['VQ-GAN', 'discrete', '66M', 1024, 5.37, 20.51, 0.631, 9.48, 19.54, 0.618],
    ['TiTok-B', 'discrete', '202M', 128, 1.52, null, null, null, null, null],
    ['LlamaGen', 'discrete', '116M', 1024, 0.87, null, null, null, null, null],
    ['BIT', 'discrete', '397M', 128, 1.32, 22.25, 0.704, 7.14, 21.59, 0.69],
  ],
  ownRow: 'BIT',
  notes: [`Latents: ${PROTOCOLS.latents}`],
};

export const TABLE3: PublishedTable = {
  id: '3',
  title: 'Efficiency: steps, FID-30K, seconds per image, training GPU-days',
  columns: [
    text('model', 'Model'),
    text('size', 'Size'),
    num('steps', 'Steps', 0, false),
    num('fid_30k', 'FID-30K', 2),
    num('sec_per_img', 'Sec/img', 2),
    num('gpu_days', 'GPU-days', 0),
    text('gpu', 'GPU'),
  ],
  rows: [
    ['SDv1.5', '0.9B', 50, 14.35, 1.34, 6250, 'A100'],
    ['PixArt-alpha', '0.6B', 20, 21.30, 2.28, 753, 'A100'],
    ['Diffusion BIT', '1B', 20, 16.33, 0.38, 177, 'MI300X'],
    ['Diffusion BIT', '1B', 50, 15.10, 1.32, 177, 'MI300X'],
  ],
  ownRow: 'Diffusion BIT',
  notes: [`Protocol: ${PROTOCOLS.table3}`, `Training: ${PROTOCOLS.training}`],
};

export const TABLES: Record<TableId, PublishedTable> = { '1': TABLE1, '2': TABLE2, '3': TABLE3 };
