import { seededRandom } from '../../src/seeded-random.js';
import { TASKS } from '../geneval-format/metadata.js';
import { percentile } from '../metrics/bootstrap.js';

/** One line of results.jsonl, with the official evaluator's fields and meanings. */
export interface ImageResult {
  filename: string;
  tag: string;
  prompt: string;
  correct: boolean;
  reason: string;
  /** The prompt's metadata as Python's json.dumps writes it; prompts are grouped by this string. */
  metadata: string;
  /** Kept detections per class, `[x1, y1, x2, y2, score]` each, as json.dumps writes them. */
  details: string;
}

export interface TaskScore {
  accuracy: number;
  /** Bootstrap 95% interval of the accuracy (prompts resampled), from the overall's resamples. */
  ci95?: { low: number; high: number };
  correct: number;
  images: number;
  prompts: number;
}

export interface BootstrapCi {
  low: number;
  high: number;
  resamples: number;
  seed: number;
  unit: 'prompt';
  stratified_by: 'tag';
  method: 'percentile';
}

export interface GenevalSummary {
  total_images: number;
  total_prompts: number;
  /** Fraction of images judged correct ("% correct images"). */
  correct_images: number;
  /** Fraction of prompts with at least one correct image ("% correct prompts"). */
  correct_prompts: number;
  /** Per tag: the six GenEval tasks in their usual order, then any other tag in order of appearance. */
  tasks: Record<string, TaskScore>;
  /** Unweighted mean of the task accuracies: GenEval's "Overall score (avg. over tasks)". */
  overall: number;
  overall_ci95?: BootstrapCi;
  /** Standard tasks with no images: the overall is then not comparable with published numbers. */
  missing_tasks: string[];
}

interface PromptTally {
  correct: number;
  images: number;
}

/**
 * Percentile bootstrap 95% interval of the overall score. The resampling unit is the prompt (its
 * images stay together, since images of one prompt are not independent), drawn with replacement
 * within each tag so every resample keeps the benchmark's task mix; each resample's overall is the
 * mean of its task accuracies (correct images / images over the drawn prompts), as the point estimate is.
 */
export function bootstrapOverall(byTag: ReadonlyMap<string, PromptTally[]>, resamples: number, seed: number): BootstrapCi & { tasks: Record<string, { low: number; high: number }> } {
  const rand = seededRandom(seed);
  const names = [...byTag.keys()];
  const tags = [...byTag.values()];
  const values: number[] = [];
  // The same resamples give each task's interval, so they are consistent with the overall's.
  const perTag = tags.map(() => new Float64Array(resamples));
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    tags.forEach((prompts, k) => {
      let correct = 0;
      let images = 0;
      for (let i = 0; i < prompts.length; i++) {
        const p = prompts[Math.floor(rand() * prompts.length)];
        correct += p.correct;
        images += p.images;
      }
      const acc = images > 0 ? correct / images : 0;
      perTag[k][b] = acc;
      sum += acc;
    });
    values.push(sum / tags.length);
  }
  values.sort((x, y) => x - y);
  const tasks = Object.fromEntries(names.map((n, k) => {
    const v = perTag[k].sort();
    return [n, { low: percentile(v, 0.025), high: percentile(v, 0.975) }];
  }));
  return { low: percentile(values, 0.025), high: percentile(values, 0.975), resamples, seed, unit: 'prompt', stratified_by: 'tag', method: 'percentile', tasks };
}

/**
 * GenEval's summary (summary_scores.py) of per-image results: image and prompt accuracy, per-tag
 * accuracy, the overall mean over tags, plus a seeded bootstrap interval (`resamples` 0: none).
 * A prompt is a distinct `metadata` string, as officially.
 */
export function summarizeResults(results: readonly ImageResult[], bootstrap: { resamples: number; seed: number } = { resamples: 1000, seed: 0 }): GenevalSummary {
  if (results.length === 0) throw new Error('no images to summarise');
  const prompts = new Map<string, PromptTally & { tag: string }>();
  const tasks: Record<string, TaskScore> = {};
  for (const r of results) {
    const p = prompts.get(r.metadata) ?? { tag: r.tag, correct: 0, images: 0 };
    if (!prompts.has(r.metadata)) prompts.set(r.metadata, p);
    p.images++;
    if (r.correct) p.correct++;
    const t = (tasks[r.tag] ??= { accuracy: 0, correct: 0, images: 0, prompts: 0 });
    t.images++;
    if (r.correct) t.correct++;
  }
  const byTag = new Map<string, PromptTally[]>();
  for (const p of prompts.values()) {
    tasks[p.tag].prompts++;
    const list = byTag.get(p.tag);
    if (list) list.push(p);
    else byTag.set(p.tag, [p]);
  }
  for (const t of Object.values(tasks)) t.accuracy = t.correct / t.images;
  // Officially the order is first appearance (groupby(sort=False)), which for the standard metadata is this order.
  const tagOrder = [...TASKS.filter((t) => t in tasks), ...Object.keys(tasks).filter((t) => !(TASKS as readonly string[]).includes(t))];
  const ordered = Object.fromEntries(tagOrder.map((t) => [t, tasks[t]]));
  const accs = Object.values(ordered).map((t) => t.accuracy);
  const summary: GenevalSummary = {
    total_images: results.length,
    total_prompts: prompts.size,
    correct_images: results.filter((r) => r.correct).length / results.length,
    correct_prompts: [...prompts.values()].filter((p) => p.correct > 0).length / prompts.size,
    tasks: ordered,
    overall: accs.reduce((a, b) => a + b, 0) / accs.length,
    missing_tasks: TASKS.filter((t) => !(t in tasks)),
  };
  if (bootstrap.resamples > 0) {
    const { tasks: taskCis, ...overall } = bootstrapOverall(byTag, bootstrap.resamples, bootstrap.seed);
    summary.overall_ci95 = overall;
    for (const [tag, ci] of Object.entries(taskCis)) ordered[tag].ci95 = ci;
  }
  return summary;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** The summary as summary_scores.py prints it, plus the interval line. */
export function formatSummary(s: GenevalSummary): string {
  const lines = ['Summary', '=======', `Total images: ${s.total_images}`, `Total prompts: ${s.total_prompts}`, `% correct images: ${pct(s.correct_images)}`, `% correct prompts: ${pct(s.correct_prompts)}`, '', 'Task breakdown', '=============='];
  for (const [tag, t] of Object.entries(s.tasks)) lines.push(`${tag.padEnd(16)} = ${pct(t.accuracy)} (${t.correct} / ${t.images})${t.ci95 ? `  95% CI [${pct(t.ci95.low)}, ${pct(t.ci95.high)}]` : ''}`);
  lines.push('', `Overall score (avg. over tasks): ${s.overall.toFixed(5)}`);
  if (s.overall_ci95) lines.push(`95% CI (bootstrap over prompts within tasks, ${s.overall_ci95.resamples} resamples, seed ${s.overall_ci95.seed}): [${s.overall_ci95.low.toFixed(5)}, ${s.overall_ci95.high.toFixed(5)}]`);
  if (s.missing_tasks.length > 0) lines.push(`note: no images for ${s.missing_tasks.join(', ')}: the overall is the mean over the tasks present, not comparable with published GenEval numbers`);
  return lines.join('\n');
}
