import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parseMetadata, type GenevalMetadata } from '../geneval-format/metadata.js';

/** One evaluation prompt; `id` is stable across runs, so it can name output folders and result rows. */
export interface PromptItem {
  id: string;
  prompt: string;
}

/** A GenEval prompt: `id` is the zero-padded line index, the folder name GenEval's image layout expects. */
export interface GenevalPrompt extends PromptItem {
  tag: string;
  metadata: GenevalMetadata;
  /** The line's object as parsed, whose key order GenEval's results.jsonl `metadata` string keeps. */
  raw: Record<string, unknown>;
}

/** An MSCOCO caption; `imageId`/`annotationId` are set when it came from a COCO annotation file. */
export interface CocoCaption extends PromptItem {
  imageId?: number;
  annotationId?: number;
}

// GenEval indexes prompts by line, so a blank line in the middle would shift every later folder:
// only the final newline is tolerated.
function jsonlLines(text: string): string[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Loads GenEval's evaluation_metadata.jsonl (553 lines in the canonical file); errors name file and line. */
export async function loadGenevalPrompts(path: string): Promise<GenevalPrompt[]> {
  const lines = jsonlLines(await readFile(path, 'utf8'));
  if (lines.length === 0) throw new Error(`${path}: no GenEval prompts`);
  return lines.map((line, i) => {
    const where = `${path}:${i + 1}`;
    if (line.trim() === '') throw new Error(`${where}: blank line (GenEval numbers prompts by line)`);
    const { value, raw } = parseMetadata(line, where);
    return { id: String(i).padStart(5, '0'), prompt: value.prompt, tag: value.tag, metadata: value, raw };
  });
}

const imageRewardEntry = z.strictObject({ id: z.string().min(1), prompt: z.string().min(1) });

// JSON.parse gives no positions, so entries are located by their index; for the canonical
// pretty-printed file that is enough to find the entry, and the line of its `"id"` is added when found.
function lineOfEntry(text: string, id: unknown): string {
  if (typeof id !== 'string') return '';
  const at = text.indexOf(JSON.stringify(id));
  return at < 0 ? '' : `:${text.slice(0, at).split('\n').length}`;
}

async function readJson(path: string): Promise<{ text: string; value: unknown }> {
  const text = await readFile(path, 'utf8');
  try {
    return { text, value: JSON.parse(text) };
  } catch (err) {
    throw new Error(`${path}: not JSON: ${(err as Error).message}`);
  }
}

const issues = (e: z.ZodError) => e.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');

/** Loads ImageReward's benchmark-prompts.json (100 `{id, prompt}`); ids must be unique. */
export async function loadImageRewardPrompts(path: string): Promise<PromptItem[]> {
  const { text, value } = await readJson(path);
  if (!Array.isArray(value)) throw new Error(`${path}: expected a JSON array of {id, prompt}`);
  const seen = new Set<string>();
  return value.map((entry: unknown, i) => {
    const r = imageRewardEntry.safeParse(entry);
    const where = `${path}${lineOfEntry(text, (entry as { id?: unknown } | null)?.id)} (entry ${i})`;
    if (!r.success) throw new Error(`${where}: not an ImageReward prompt: ${issues(r.error)}`);
    if (seen.has(r.data.id)) throw new Error(`${where}: duplicate id ${JSON.stringify(r.data.id)}`);
    seen.add(r.data.id);
    return { id: r.data.id, prompt: r.data.prompt };
  });
}

const cocoAnnotation = z.looseObject({ image_id: z.number().int(), id: z.number().int(), caption: z.string() });
const cocoFile = z.looseObject({ annotations: z.array(z.unknown()) });

/** How to pick MSCOCO captions: `images` limits the sample (all when absent), `seed` picks which. */
export interface CocoSampleOptions {
  images?: number;
  seed?: number;
}

/**
 * The seeded rank used for sampling: the first 8 bytes of SHA-256("<seed>:<kind>:<id>") as an
 * unsigned integer. A hash rank, unlike a seeded shuffle, gives each id the same rank whatever else
 * the file holds, so the N-image sample is the first N of the (N+1)-image one and is reproducible
 * from this description alone in any language.
 */
export function seededRank(seed: number, kind: string, id: number | string): bigint {
  return createHash('sha256').update(`${seed}:${kind}:${id}`).digest().readBigUInt64BE(0);
}

const byRank = <T>(key: (x: T) => bigint, tie: (x: T) => number) => (a: T, b: T) => {
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : tie(a) - tie(b);
};

function takeSample<T>(items: T[], n: number | undefined, path: string, what: string): T[] {
  if (n === undefined) return items;
  if (!Number.isInteger(n) || n <= 0) throw new Error(`sample size must be a positive integer, got ${n}`);
  if (n > items.length) throw new Error(`${path}: asked for ${n} ${what} but the file has ${items.length}`);
  return items.slice(0, n);
}

/**
 * Loads MSCOCO 2014 captions from either a plain list (a text file with one caption per line, or a
 * JSON array of strings) or a COCO annotation file such as captions_val2014.json.
 *
 * For a COCO file, each image contributes one caption: images are ordered by
 * `seededRank(seed, "image", image_id)` and the first `images` kept; of each image's captions the
 * one with the lowest `seededRank(seed, "caption", annotation id)` is taken. Ties (never seen in
 * practice) fall back to the smaller id. Output is in rank order; `id` is the image id.
 *
 * For a plain list, `images` samples that many lines by `seededRank(seed, "line", index)` (the whole
 * list, in file order, when absent); `id` is the zero-based line index.
 */
export async function loadCocoCaptions(path: string, opts: CocoSampleOptions = {}): Promise<CocoCaption[]> {
  const seed = opts.seed ?? 0;
  const text = await readFile(path, 'utf8');
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path}: not JSON: ${(err as Error).message}`);
    }
    if (Array.isArray(value)) {
      const captions = value.map((c, i) => {
        if (typeof c !== 'string' || c.trim() === '') throw new Error(`${path} (entry ${i}): expected a non-empty caption string, got ${JSON.stringify(c)}`);
        return c;
      });
      return sampleList(captions, opts.images, seed, path);
    }
    return sampleCoco(value, opts.images, seed, path);
  }
  const lines = jsonlLines(text);
  lines.forEach((l, i) => {
    if (l.trim() === '') throw new Error(`${path}:${i + 1}: blank caption`);
  });
  return sampleList(lines, opts.images, seed, path);
}

function sampleList(captions: string[], n: number | undefined, seed: number, path: string): CocoCaption[] {
  if (captions.length === 0) throw new Error(`${path}: no captions`);
  const items = captions.map((prompt, i) => ({ id: String(i), prompt, index: i }));
  if (n === undefined) return items.map(({ id, prompt }) => ({ id, prompt }));
  const ranked = [...items].sort(byRank((x) => seededRank(seed, 'line', x.index), (x) => x.index));
  return takeSample(ranked, n, path, 'captions').map(({ id, prompt }) => ({ id, prompt }));
}

function sampleCoco(value: unknown, n: number | undefined, seed: number, path: string): CocoCaption[] {
  const file = cocoFile.safeParse(value);
  if (!file.success) throw new Error(`${path}: not a COCO caption file (expected {annotations: [{image_id, id, caption}]}): ${issues(file.error)}`);
  const best = new Map<number, z.infer<typeof cocoAnnotation>>();
  const captionRank = (id: number) => seededRank(seed, 'caption', id);
  file.data.annotations.forEach((a, i) => {
    const r = cocoAnnotation.safeParse(a);
    if (!r.success) throw new Error(`${path} (annotations[${i}]): not a COCO caption annotation: ${issues(r.error)}`);
    const prev = best.get(r.data.image_id);
    if (!prev || byRank((x: { id: number }) => captionRank(x.id), (x) => x.id)(r.data, prev) < 0) best.set(r.data.image_id, r.data);
  });
  if (best.size === 0) throw new Error(`${path}: no caption annotations`);
  const ranked = [...best.values()].sort(byRank((x) => seededRank(seed, 'image', x.image_id), (x) => x.image_id));
  // Some COCO captions end in spaces or a newline, which would break one-caption-per-line exports.
  return takeSample(ranked, n, path, 'images').map((a) => ({ id: String(a.image_id), prompt: a.caption.trim(), imageId: a.image_id, annotationId: a.id }));
}
