import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { decodeRgbAsPil } from '../../src/images/pil-decode.js';
import type { RawImage } from '../../src/sample.js';
import { readGenevalLayout } from '../geneval-format/layout.js';

/**
 * One line of `manifest.jsonl`, the file the generation driver (`bitprep eval generate`) writes
 * beside a flat folder of images: which prompt and seed made each image, with what settings.
 * `file` is relative to the manifest's folder.
 */
export const manifestEntry = z.object({
  file: z.string().min(1),
  prompt: z.string(),
  prompt_index: z.number().int().min(0),
  sample_index: z.number().int().min(0),
  seed: z.number().int().optional(),
  params: z.record(z.string(), z.unknown()).optional(),
}).passthrough();
export type ManifestEntry = z.infer<typeof manifestEntry>;

export const MANIFEST = 'manifest.jsonl';

/** One image of an evaluation folder, with its prompt when the folder says which. */
export interface FolderImage {
  /** Absolute or caller-relative path to read. */
  path: string;
  /** Path relative to the folder, `/`-separated: names the image in outputs and errors. */
  rel: string;
  prompt?: string;
  /** Images of one prompt share it (ImageReward averages per prompt first). */
  promptIndex?: number;
}

/** How a folder was read, for the result files. */
export type FolderKind = 'manifest' | 'geneval' | 'captions.txt' | 'plain';

export interface ImageFolder {
  dir: string;
  kind: FolderKind;
  images: FolderImage[];
}

const IMAGE_EXT = /\.(png|jpe?g|webp|bmp|tiff?)$/i;

/** GigaGAN's natural sort: digit runs compare as numbers, the rest case-insensitively. */
export function naturalCompare(a: string, b: string): number {
  const split = (s: string) => s.split(/([0-9]+)/).map((t, i) => (i % 2 === 1 ? Number(t) : t.toLowerCase()));
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i];
    const q = y[i];
    if (p === q) continue;
    if (typeof p === 'number' && typeof q === 'number') return p - q;
    return String(p) < String(q) ? -1 : 1;
  }
  return x.length - y.length;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** Reads `manifest.jsonl`; every bad line is an error naming the file and line. */
export async function readManifest(path: string): Promise<ManifestEntry[]> {
  const text = await readFile(path, 'utf8');
  const out: ManifestEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      throw new Error(`${path} line ${i + 1}: not JSON: ${(err as Error).message}`);
    }
    const r = manifestEntry.safeParse(json);
    if (!r.success) throw new Error(`${path} line ${i + 1}: ${r.error.issues.map((x) => `${x.path.join('.') || 'line'}: ${x.message}`).join('; ')}`);
    out.push(r.data);
  });
  return out;
}

/**
 * Reads an evaluation folder in any of the layouts a user has:
 * - `manifest.jsonl` beside the images (what `bitprep eval generate` writes): prompts from it;
 * - GenEval's `<00000>/metadata.jsonl` + `samples/<0000>.png`: prompts from the metadata;
 * - GigaGAN's: images (natural sort) with `captions.txt` in the folder or its parent, line i
 *   being image i's caption (a count mismatch is an error);
 * - otherwise every image file directly in the folder, natural sort, no prompts (FID, PSNR…).
 * A manifest naming a file that is not there is an error naming both.
 */
export async function readImageFolder(dir: string): Promise<ImageFolder> {
  const manifestPath = join(dir, MANIFEST);
  if (await exists(manifestPath)) {
    const entries = await readManifest(manifestPath);
    const images: FolderImage[] = [];
    for (const e of entries) {
      const path = join(dir, e.file);
      if (!(await exists(path))) throw new Error(`${manifestPath}: image ${e.file} (prompt ${e.prompt_index}, sample ${e.sample_index}) is missing`);
      images.push({ path, rel: e.file, prompt: e.prompt, promptIndex: e.prompt_index });
    }
    return { dir, kind: 'manifest', images };
  }
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw new Error(`cannot read the images folder ${dir}: ${(err as Error).message}`);
  }
  if (names.some((n) => /^[0-9]+$/.test(n)) && !names.some((n) => IMAGE_EXT.test(n))) {
    const prompts = await readGenevalLayout(dir);
    if (prompts.length > 0) {
      const images = prompts.flatMap((p, i) => p.images.map((img) => ({ path: join(dir, img.rel), rel: img.rel, prompt: p.metadata.value.prompt, promptIndex: i })));
      return { dir, kind: 'geneval', images };
    }
  }
  const files: string[] = [];
  for (const n of names.filter((x) => IMAGE_EXT.test(x)).sort(naturalCompare)) {
    if ((await stat(join(dir, n))).isFile()) files.push(n);
  }
  if (files.length === 0) throw new Error(`${dir}: no images (png, jpg, webp, bmp, tiff) and no ${MANIFEST}`);
  for (const captions of [join(dir, 'captions.txt'), join(dirname(dir), 'captions.txt')]) {
    if (!(await exists(captions))) continue;
    // GigaGAN reads it with splitlines(): a final newline adds no line.
    const lines = (await readFile(captions, 'utf8')).split(/\r\n|\n|\r/);
    if (lines.at(-1) === '') lines.pop();
    if (lines.length < files.length) throw new Error(`${captions}: ${lines.length} captions for ${files.length} images in ${dir}`);
    return { dir, kind: 'captions.txt', images: files.map((f, i) => ({ path: join(dir, f), rel: f, prompt: lines[i], promptIndex: i })) };
  }
  return { dir, kind: 'plain', images: files.map((f) => ({ path: join(dir, f), rel: f })) };
}

/** The prompts of a folder, or an error saying which layouts give them. */
export function requirePrompts(folder: ImageFolder, metric: string): Required<FolderImage>[] {
  const missing = folder.images.find((i) => i.prompt === undefined);
  if (missing) {
    throw new Error(`${metric} needs each image's prompt; ${folder.dir} has none for ${missing.rel}: give a folder written by \`bitprep eval generate\` (${MANIFEST}), GenEval's layout, or images with captions.txt`);
  }
  return folder.images as Required<FolderImage>[];
}

/** Decodes an image file to 8-bit RGB as PIL's `Image.open(p).convert('RGB')` does (src/images/pil-decode.ts); errors name the file. */
export async function readRgb(path: string): Promise<RawImage> {
  try {
    return await decodeRgbAsPil(path);
  } catch (err) {
    throw new Error(`${path}: cannot decode image: ${(err as Error).message}`);
  }
}

/** `basename` of an image's folder-relative name without extension (result keys). */
export const imageStem = (rel: string): string => basename(rel).replace(/\.[^.]+$/, '');
