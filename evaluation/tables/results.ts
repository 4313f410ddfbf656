import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { DATASET_RESOLUTION } from '../metrics/reconstruction-protocol.js';
import type { Cell, TableId } from './published.js';

/**
 * A results directory, every file optional (a missing metric prints as "—"):
 *
 * - `geneval/summary.json`: written by `bitprep eval geneval --out <dir>/geneval`; Table 1's six task
 *   accuracies (`tasks.<tag>.accuracy`), `overall` and its `overall_ci95` interval.
 * - `clip-score.json`: `{"clip_score": 0.318, "ci95"?: {"low": 0.31, "high": 0.32}}` (Table 1, CLIP).
 * - `imagereward.json`: `{"image_reward": 0.9, "ci95"?: {"low": …, "high": …}}` (Table 1, IR).
 * - `reconstruction.json`: `{"imagenet"?: {"rfid"?, "psnr"?, "ssim"?, "ssim_convention"?}, "coco"?: {…}}` (Table 2);
 *   `ssim_convention` names the SSIM variant (e.g. "gaussian-11-rgb-mean"), since published SSIMs differ by it.
 * - `fid.json`: `{"fid_30k": 16.33}` (Table 3).
 * - `speed.json`: `{"steps": 20, "sec_per_img": 0.38}` (Table 3).
 */
export const RESULT_FILES = ['geneval/summary.json', 'clip-score.json', 'imagereward.json', 'reconstruction.json', 'fid.json', 'speed.json'] as const;

const ci95 = z.object({ low: z.number(), high: z.number() });
const fraction = z.number().min(0).max(1);

// Only the fields the tables use; the rest of eval geneval's summary (counts, protocol…) is ignored.
const genevalSummary = z.object({
  tasks: z.record(z.string(), z.object({ accuracy: fraction })),
  overall: fraction,
  overall_ci95: ci95.optional(),
  missing_tasks: z.array(z.string()).default([]),
});
const clipScore = z.object({ clip_score: z.number().finite(), ci95: ci95.optional() });
const imageReward = z.object({ image_reward: z.number().finite(), ci95: ci95.optional() });
const reconSet = z.object({ rfid: z.number().min(0).optional(), psnr: z.number().finite().optional(), ssim: z.number().max(1).optional(), ssim_convention: z.string().optional(), evaluated_at: z.string().optional() });
const reconstruction = z.object({ imagenet: reconSet.optional(), coco: reconSet.optional() });
const fid = z.object({ fid_30k: z.number().min(0), n: z.number().int().positive().optional(), model: z.string().optional() });
const speed = z.object({ steps: z.number().int().positive(), sec_per_img: z.number().positive(), batch_size: z.number().int().positive().optional() });

export interface UserRow {
  /** Cells by column key; absent keys print as "—". */
  cells: Record<string, Cell>;
  /** What the cells cannot show (intervals, conventions, caveats), printed under the table. */
  notes: string[];
}

export interface UserResults {
  name: string;
  dir: string;
  tables: Record<TableId, UserRow>;
}

export interface ResultsOptions {
  /** Row label; default the directory's name. */
  name?: string;
  size?: string;
  resolution?: number;
}

/** Reads and validates one optional JSON file; undefined when absent. Errors name the file and the field. */
async function readJson<S extends z.ZodType>(dir: string, file: string, schema: S): Promise<z.output<S> | undefined> {
  const path = join(dir, file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new Error(`${path}: ${issues.join('; ')}`);
  }
  return parsed.data;
}

const ciText = (ci: { low: number; high: number }, d: number) => `95% CI [${ci.low.toFixed(d)}, ${ci.high.toFixed(d)}]`;

/**
 * Reads a results directory (schema: RESULT_FILES) into one user row per table. A directory with
 * none of the files is an error, since that is almost always a wrong path.
 */
export async function readResults(dir: string, o: ResultsOptions = {}): Promise<UserResults> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`${dir}: not a results directory`);
  const name = o.name ?? basename(resolve(dir));
  const [gen, clip, ir, rec, f, sp] = await Promise.all([
    readJson(dir, 'geneval/summary.json', genevalSummary),
    readJson(dir, 'clip-score.json', clipScore),
    readJson(dir, 'imagereward.json', imageReward),
    readJson(dir, 'reconstruction.json', reconstruction),
    readJson(dir, 'fid.json', fid),
    readJson(dir, 'speed.json', speed),
  ]);
  if ([gen, clip, ir, rec, f, sp].every((x) => x === undefined)) throw new Error(`${dir}: none of ${RESULT_FILES.join(', ')} found`);

  const t1: UserRow = { cells: { model: name, size: o.size ?? null, resolution: o.resolution ?? null }, notes: [] };
  if (gen) {
    for (const [tag, t] of Object.entries(gen.tasks)) t1.cells[tag] = t.accuracy;
    t1.cells.overall = gen.overall;
    if (gen.overall_ci95) t1.notes.push(`${name}: GenEval overall ${ciText(gen.overall_ci95, 3)}`);
    if (gen.missing_tasks.length > 0) t1.notes.push(`${name}: GenEval has no images for ${gen.missing_tasks.join(', ')}; its overall is not comparable with the published ones`);
  }
  if (clip) {
    t1.cells.clip = clip.clip_score;
    if (clip.ci95) t1.notes.push(`${name}: CLIP score ${ciText(clip.ci95, 4)}`);
  }
  if (ir) {
    t1.cells.image_reward = ir.image_reward;
    if (ir.ci95) t1.notes.push(`${name}: ImageReward ${ciText(ir.ci95, 4)}`);
  }

  const t2: UserRow = { cells: { tokenizer: name }, notes: [] };
  const offSize: string[] = [];
  for (const set of ['imagenet', 'coco'] as const) {
    const r = rec?.[set];
    if (!r) continue;
    // Table 2 is at 512×512 on both sets (DATASET_RESOLUTION): a row scored at another size is not comparable.
    const want = `${DATASET_RESOLUTION[set]}×${DATASET_RESOLUTION[set]}`;
    if (r.evaluated_at !== want) {
      offSize.push(`${set} ${r.evaluated_at ?? '?'}`);
      t2.notes.push(`${name}: ${set} ${r.evaluated_at ? `scored at ${r.evaluated_at}` : 'scored at a size reconstruction.json does not record'}, not the ${want} of Table 2: not comparable with the published rows`);
    }
    t2.cells[`${set}_rfid`] = r.rfid ?? null;
    t2.cells[`${set}_psnr`] = r.psnr ?? null;
    t2.cells[`${set}_ssim`] = r.ssim ?? null;
    if (r.ssim_convention) t2.notes.push(`${name}: ${set} SSIM convention ${r.ssim_convention}`);
  }

  if (offSize.length > 0) t2.cells.tokenizer = `${name} (${offSize.join(', ')})`;

  const t3: UserRow = { cells: { model: name, size: o.size ?? null, steps: sp?.steps ?? null, fid_30k: f?.fid_30k ?? null, sec_per_img: sp?.sec_per_img ?? null }, notes: [] };
  // FID is biased by the sample size, so a FID over another count is not a FID-30K.
  if (f?.n !== undefined && f.n !== 30_000) t3.notes.push(`${name}: FID over ${f.n} generated images, not 30,000: not comparable with FID-30K`);
  if (sp?.batch_size !== undefined) t3.notes.push(`${name}: seconds per image at batch size ${sp.batch_size}`);
  return { name, dir, tables: { '1': t1, '2': t2, '3': t3 } };
}
