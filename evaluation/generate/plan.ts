import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadCocoCaptions, loadGenevalPrompts, loadImageRewardPrompts } from '../prompts/prompt-sets.js';

/** The prompt sets `bitprep eval generate` knows; `lines` is a plain text file, one prompt per line. */
export const PROMPT_SETS = ['geneval', 'imagereward', 'coco', 'lines'] as const;
export type PromptSetName = (typeof PROMPT_SETS)[number];

/**
 * Images per prompt when not given: 4 for GenEval (its protocol scores 4 per prompt), 1 otherwise.
 * ImageReward's paper generates 10 per prompt, but 1 is the common practice; either way the count
 * is recorded in generation.json so results say which was used.
 */
export function defaultImagesPerPrompt(set: PromptSetName): number {
  return set === 'geneval' ? 4 : 1;
}

/** One prompt of the plan. `id` names its files, `index` is its position in the set (0-based). */
export interface PlannedPrompt {
  index: number;
  id: string;
  prompt: string;
  /** GenEval only: the prompt's metadata line exactly as in the metadata file (no line ending). */
  metadataLine?: string;
}

/** One image to generate: which prompt and sample, its seed, and its path relative to the output folder. */
export interface PlannedImage {
  promptIndex: number;
  promptId: string;
  prompt: string;
  sample: number;
  seed: number;
  /** `/`-separated, relative to the output folder. */
  file: string;
}

export interface GenerationPlan {
  set: PromptSetName;
  /** `geneval`: GenEval's `<00000>/samples/0000.png`; `flat`: `images/<prompt id>_<sample>.png`. */
  layout: 'geneval' | 'flat';
  prompts: PlannedPrompt[];
  /** Prompt-major, then sample: the order of manifest.jsonl. */
  images: PlannedImage[];
}

export interface LoadedPrompts {
  prompts: PlannedPrompt[];
  /** SHA-256 (hex) of the prompt file's bytes, so results can name exactly which prompt file was used. */
  sha256: string;
}

export interface LoadPromptOptions {
  /** Keep the first N prompts (after COCO sampling): smoke runs. */
  limit?: number;
  /** COCO only: sample this many captions (see loadCocoCaptions); all when absent. */
  sample?: number;
  /** COCO only: seed of that sample (default 0). */
  sampleSeed?: number;
}

/**
 * The image seed of sample `sample` of the prompt with id `promptId`: the first 4 bytes of
 * SHA-256("<base>:<promptId>:<sample>") read as a big-endian unsigned integer, shifted right by one
 * bit, so it lies in [0, 2^31-1] (what every sampler accepts). It depends on nothing else: rerunning,
 * appending prompts, or changing the number of images per prompt never changes an existing image's seed.
 */
export function imageSeed(base: number, promptId: string, sample: number): number {
  return createHash('sha256').update(`${base}:${promptId}:${sample}`).digest().readUInt32BE(0) >>> 1;
}

// Ids become file names in the flat layout, so they must be safe there on every OS.
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function textLines(text: string): string[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Loads a prompt set from its local file (never downloads); errors name the file and line. */
export async function loadPromptSet(set: PromptSetName, file: string, opts: LoadPromptOptions = {}): Promise<LoadedPrompts> {
  const bytes = await readFile(file).catch((err: unknown) => {
    throw new Error(`cannot read the prompt file ${file}: ${(err as Error).message}`);
  });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (opts.sample !== undefined && set !== 'coco') throw new Error(`a caption sample size is only for --prompts coco, not ${set}`);
  let prompts: PlannedPrompt[];
  if (set === 'geneval') {
    const loaded = await loadGenevalPrompts(file);
    // GenEval's own generator writes json.dump(metadata) into each prompt folder, which for the
    // canonical file (itself written by json.dumps) is the line as it is; copying the line keeps
    // that byte-for-byte for any file, where re-serialising could reorder keys or reformat numbers.
    const lines = textLines(bytes.toString('utf8'));
    prompts = loaded.map((p, i) => ({ index: i, id: p.id, prompt: p.prompt, metadataLine: lines[i] }));
  } else if (set === 'imagereward') {
    prompts = (await loadImageRewardPrompts(file)).map((p, i) => ({ index: i, id: p.id, prompt: p.prompt }));
  } else if (set === 'coco') {
    prompts = (await loadCocoCaptions(file, { images: opts.sample, seed: opts.sampleSeed })).map((p, i) => ({ index: i, id: p.id, prompt: p.prompt }));
  } else {
    const lines = textLines(bytes.toString('utf8'));
    if (lines.length === 0) throw new Error(`${file}: no prompts`);
    prompts = lines.map((prompt, i) => {
      if (prompt.trim() === '') throw new Error(`${file}:${i + 1}: blank prompt (prompt ids are line numbers, so blank lines are not skipped)`);
      return { index: i, id: String(i), prompt };
    });
  }
  if (opts.limit !== undefined) {
    if (!Number.isInteger(opts.limit) || opts.limit <= 0) throw new Error(`limit must be a positive integer, got ${opts.limit}`);
    prompts = prompts.slice(0, opts.limit);
  }
  for (const p of prompts) {
    if (p.prompt.trim() === '') throw new Error(`${file}: prompt ${p.id} (index ${p.index}) is empty`);
    if (!SAFE_ID.test(p.id)) throw new Error(`${file}: prompt id ${JSON.stringify(p.id)} (index ${p.index}) cannot name a file (allowed: letters, digits, . _ -)`);
  }
  return { prompts, sha256 };
}

/**
 * The deterministic plan: for each prompt (in set order) and each sample j < imagesPerPrompt, the
 * seed `imageSeed(seedBase, prompt id, j)` and the file. GenEval: `<id>/samples/<jjjj>.png` (id is
 * the 5-digit line index; GenEval's layout). Others: `images/<id>_<jjjj>.png`, where id is the
 * ImageReward id, the COCO image id (or caption line index for a plain list), or the line index.
 */
export function buildPlan(set: PromptSetName, prompts: PlannedPrompt[], opts: { imagesPerPrompt: number; seedBase: number }): GenerationPlan {
  const { imagesPerPrompt, seedBase } = opts;
  if (!Number.isInteger(imagesPerPrompt) || imagesPerPrompt <= 0) throw new Error(`images per prompt must be a positive integer, got ${imagesPerPrompt}`);
  if (!Number.isInteger(seedBase) || seedBase < 0) throw new Error(`seed must be a non-negative integer, got ${seedBase}`);
  const seen = new Set<string>();
  for (const p of prompts) {
    if (seen.has(p.id)) throw new Error(`prompt id ${JSON.stringify(p.id)} appears twice (index ${p.index}): ids name files`);
    seen.add(p.id);
  }
  const layout = set === 'geneval' ? 'geneval' : 'flat';
  const digits = Math.max(4, String(imagesPerPrompt - 1).length);
  const images: PlannedImage[] = prompts.flatMap((p) =>
    Array.from({ length: imagesPerPrompt }, (_, j) => {
      const name = String(j).padStart(digits, '0');
      return {
        promptIndex: p.index,
        promptId: p.id,
        prompt: p.prompt,
        sample: j,
        seed: imageSeed(seedBase, p.id, j),
        file: layout === 'geneval' ? `${p.id}/samples/${name}.png` : `images/${p.id}_${name}.png`,
      };
    }),
  );
  return { set, layout, prompts, images };
}
