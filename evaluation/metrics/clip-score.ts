/**
 * CLIP score as GigaGAN's evaluation code computes it (github.com/mingukkang/GigaGAN,
 * evaluation/evaluation.py `compute_clip_score` with data_util.py's transforms, run with
 * `--clip_model4eval ViT-G/14`, i.e. open_clip ViT-g-14 laion2b_s12b_b42k in float32), which the
 * Instella-T2I paper follows:
 *
 * - image: PIL `open().convert('RGB')` → CenterCropLongEdge (torchvision center_crop to the short
 *   side, offsets `int(round(excess / 2.0))`, half to even) → Resize(256, LANCZOS) (PIL; a
 *   256×256 crop is left alone) → ToTensor → Normalize(0.5, 0.5) → `tensor2pil`:
 *   `((x + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)`, float32 arithmetic then truncation,
 *   which turns some bytes v into v − 1 (GIGAGAN_ROUND_TRIP) → open_clip's preprocess (Resize 224
 *   bicubic, CenterCrop 224, ToTensor, Normalize with OpenAI mean/std: clip-preprocess.ts);
 * - text: `openai_clip.tokenize(caption, truncate=True)` with the three ids of "A photo depicts "
 *   inserted after SOT, cut to 77, EOT forced at 76 when occupied (clip-text.ts `insertPrefix`);
 * - score: the mean over images of the raw cosine of the two embeddings (no ×100, no clamp at
 *   0), so ~0.31–0.34 for good models. torchmetrics' CLIPScore (100·cos, clamped) and Hessel et
 *   al.'s CLIP-S (2.5·max(cos, 0)) are other numbers.
 * GigaGAN stops at `how_many` (30,000 COCO captions); `limit` does the same on the folder order.
 */
import type { RawImage } from '../../src/sample.js';
import { centreCropSquare, resize } from '../../src/images/pil-resize.js';
import { clipNormalize, clipResizeCrop } from '../../stages/clip-preprocess.js';
import type { Logger } from '../../src/log.js';
import { readImageFolder, readRgb, requirePrompts, type FolderKind } from '../images/image-folder.js';
import { gigaganPrefixIds, GIGAGAN_PREFIX, insertPrefix, type ClipTokenizer } from '../models/clip-text.js';
import { checkSameDim, type ClipImageTower, type ClipTextTower } from '../models/clip-towers.js';
import { bootstrapMean, DEFAULT_BOOTSTRAP, mean, type BootstrapCi, type BootstrapOptions } from './bootstrap.js';

/** The side GigaGAN resizes the centre crop to before any model preprocessing. */
export const GIGAGAN_SIZE = 256;

/**
 * byte → byte of GigaGAN's ToTensor + Normalize(0.5, 0.5) + tensor2pil round trip, each step
 * rounded to float32 as torch computes it: v/255, (x − 0.5)/0.5, (x + 1)·127.5, then truncation
 * toward zero. Where float32 lands just below an integer the byte drops by one.
 */
export function gigaganRoundTripTable(): Uint8Array {
  const f = Math.fround;
  const half = f(0.5);
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    const x = f(f(f(v / 255) - half) / half);
    const y = f(f(x + 1) * f(127.5));
    table[v] = Math.trunc(Math.min(255, Math.max(0, y)));
  }
  return table;
}

export const GIGAGAN_ROUND_TRIP = gigaganRoundTripTable();

/** GigaGAN's image up to the PIL image open_clip receives: centre crop, Lanczos to 256, the uint8 round trip. */
export function gigaganImage(rgb: RawImage): RawImage {
  if (rgb.channels !== 3) throw new Error(`clip-score: GigaGAN's path takes RGB, got ${rgb.channels} channels`);
  const square = centreCropSquare(rgb);
  const sized = square.width === GIGAGAN_SIZE ? square : resize(square, GIGAGAN_SIZE, GIGAGAN_SIZE, 'lanczos');
  const data = new Uint8Array(sized.data.length);
  for (let i = 0; i < data.length; i++) data[i] = GIGAGAN_ROUND_TRIP[sized.data[i]];
  return { data, width: GIGAGAN_SIZE, height: GIGAGAN_SIZE, channels: 3 };
}

/** The image tower's input for one RGB image: gigaganImage, then CLIP's resize/crop/normalise at `size`. */
export function gigaganPixels(rgb: RawImage, size = 224): Float32Array {
  return clipNormalize(clipResizeCrop(gigaganImage(rgb), size));
}

/** A caption's 77 ids as GigaGAN feeds them: tokenize(truncate=True), then the prefix after SOT. */
export function gigaganTokens(tok: ClipTokenizer, caption: string, prefixIds = gigaganPrefixIds(tok)): Int32Array {
  return insertPrefix(tok.tokenize(caption), prefixIds, tok.eot);
}

export interface ClipScoreOptions {
  imagesDir: string;
  image: ClipImageTower;
  text: ClipTextTower;
  tokenizer: ClipTokenizer;
  /** Score only the first `limit` images in folder order (GigaGAN's how_many); default all. */
  limit?: number;
  bootstrap?: BootstrapOptions;
  /** Images prepared while the previous window is embedded (default 4 × the image tower's batch size, at least 64). */
  window?: number;
  log?: Logger;
}

/** One image's score line (clip-score.jsonl). */
export interface ClipScoreRow {
  file: string;
  prompt: string;
  cosine: number;
}

export interface ClipScoreSummary {
  metric: 'clip_score';
  /** Mean raw cosine over images (float64). */
  clip_score: number;
  ci95?: BootstrapCi;
  n: number;
  limit: number | null;
  images_dir: string;
  folder_kind: FolderKind;
  protocol: 'gigagan';
  prefix: string;
  prefix_ids: number[];
  image_preprocess: string;
  score: string;
  tokenizer: string;
  tokenizer_sha256: string;
  image_model: string;
  text_model: string;
}

/** Scores a folder (readImageFolder layouts with prompts); per-image rows in folder order. */
export async function computeClipScore(o: ClipScoreOptions): Promise<{ summary: ClipScoreSummary; rows: ClipScoreRow[] }> {
  const folder = await readImageFolder(o.imagesDir);
  const all = requirePrompts(folder, 'clip-score');
  if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit >= 1)) throw new Error(`clip-score: limit must be a positive integer, got ${o.limit}`);
  const images = o.limit !== undefined ? all.slice(0, o.limit) : all;
  if (o.limit !== undefined && all.length < o.limit) o.log?.warn(`clip-score: ${o.imagesDir} has ${all.length} images, fewer than the limit ${o.limit}`);
  const prefixIds = gigaganPrefixIds(o.tokenizer);
  const size = o.image.imageSize;
  const window = o.window ?? Math.max(64, 4 * o.image.batchSize);

  const prepare = async (from: number) => {
    const part = images.slice(from, from + window);
    const pixels: Float32Array[] = [];
    for (const img of part) {
      const rgb = await readRgb(img.path);
      pixels.push(gigaganPixels(rgb, size));
    }
    const ids = part.map((img) => gigaganTokens(o.tokenizer, img.prompt, prefixIds));
    return { part, pixels, ids };
  };
  const embed = async (w: Awaited<ReturnType<typeof prepare>>) => {
    const [ie, te] = await Promise.all([o.image.embed(w.pixels, w.part.map((i) => i.rel)), o.text.embed(w.ids, w.part.map((i) => `the prompt of ${i.rel}`))]);
    return w.part.map((img, k): ClipScoreRow => {
      const a = ie[k];
      const b = te[k];
      checkSameDim(o.image, a.length, o.text, b.length);
      let dot = 0;
      for (let j = 0; j < a.length; j++) dot += a[j] * b[j];
      return { file: img.rel, prompt: img.prompt, cosine: dot };
    });
  };

  const rows: ClipScoreRow[] = [];
  // Reading and preprocessing (JS, this thread) overlap the previous window's model calls.
  let pending: Promise<ClipScoreRow[]> | undefined;
  for (let at = 0; at < images.length; at += window) {
    const w = await prepare(at);
    if (pending) rows.push(...(await pending));
    pending = embed(w);
    // An unobserved rejection while the next window is read would be reported as unhandled.
    pending.catch(() => {});
  }
  if (pending) rows.push(...(await pending));
  o.log?.info(`clip-score: ${rows.length} images scored`);

  const cos = rows.map((r) => r.cosine);
  const summary: ClipScoreSummary = {
    metric: 'clip_score',
    clip_score: mean(cos),
    n: rows.length,
    limit: o.limit ?? null,
    images_dir: o.imagesDir,
    folder_kind: folder.kind,
    protocol: 'gigagan',
    prefix: GIGAGAN_PREFIX,
    prefix_ids: prefixIds,
    image_preprocess: `RGB, centre crop to the short side, PIL Lanczos to ${GIGAGAN_SIZE}, [-1, 1] uint8 round trip (truncating), PIL bicubic to ${size}, centre crop, OpenAI mean/std`,
    score: 'mean raw cosine (no ×100, no clamp)',
    tokenizer: o.tokenizer.path,
    tokenizer_sha256: o.tokenizer.sha256,
    image_model: o.image.label,
    text_model: o.text.label,
  };
  const ci = bootstrapMean(cos, o.bootstrap ?? DEFAULT_BOOTSTRAP);
  if (ci) summary.ci95 = ci;
  return { summary, rows };
}
