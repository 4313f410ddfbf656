import { loadPlanPins } from '../executors/local.js';
import { openStore } from '../stores/open-store.js';
import type { BaseJobConfig, Job } from '../job.js';
import type { Logger } from '../log.js';
import type { Unit } from '../units/unit.js';
import { ConfigError } from './config-error.js';

/**
 * Everything wrong with a config that could be found before any work, listed at once. A
 * ConfigError, so the CLI prints it without a stack trace and exits 2.
 */
export class PreflightError extends ConfigError {
  constructor(
    /** What the config is called in the message: its file, or the job's name. */
    readonly source: string,
    /** One line each, naming the config key, the file and the column where there is one. */
    readonly problems: readonly string[],
  ) {
    super(`config ${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'PreflightError';
  }
}

/** A problem is one line: a multi-line message (a parser's caret diagram, a list) is folded. */
function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The checks `bitprep plan` and the start of `bitprep run` (and a queue worker) make before any
 * work: the job's `check` (inputs exist, named columns exist in every input's schema, expressions
 * compile, address ranges parse, model files exist and honour their contracts), then its `plan`.
 * Returns the planned units when there is no problem; otherwise throws one PreflightError listing
 * every problem, `check`'s and, where `check` found none, `plan`'s own error as one more line.
 *
 * `plan` is not run when `check` found problems: a plan over a config known to be wrong can only
 * repeat them (a missing input again), can be costly (training-mix reads every key), and may
 * write to the output (training-mix saves its selection); and a planner that tolerates a missing
 * input would plan a phantom unit that the first run then pins in `_plan.json`.
 *
 * `source` names the config in the message (`config <source>: 3 problems:`); give the file path.
 */
export async function preflight<C extends BaseJobConfig>(job: Job<C>, cfg: C, log: Logger, source: string = job.name): Promise<{ units: Unit[] }> {
  const problems: string[] = [];
  const add = (p: string) => {
    const line = oneLine(p);
    if (!problems.includes(line)) problems.push(line);
  };
  // Remote inputs planned into this output before are checked and planned at the revisions pinned then.
  try {
    await loadPlanPins(openStore(cfg.output));
  } catch (err) {
    add(`${cfg.output}: cannot read its _plan.json: ${messageOf(err)}`);
  }
  if (job.check) {
    try {
      for (const p of await job.check(cfg, log)) add(p);
    } catch (err) {
      // A check that throws is a bug in the check, but its message still says what it hit.
      add(`${job.name} check failed: ${messageOf(err)}`);
    }
  }
  if (problems.length > 0) throw new PreflightError(source, problems);
  let units: Unit[];
  try {
    units = await job.plan(cfg, log);
  } catch (err) {
    add(messageOf(err));
    throw new PreflightError(source, problems);
  }
  return { units };
}

/**
 * Optimal string alignment distance (Levenshtein plus adjacent transpositions), so `WIDHT` is
 * one edit from `WIDTH`.
 */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev2 = new Array<number>(n + 1).fill(0);
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = new Array<number>(n + 1);
    cur[0] = i;
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[n];
}

/**
 * The names among `candidates` that `name` was probably meant to be, for a "did you mean"
 * hint: the same name in another case, else the closest by edit distance (case-insensitive)
 * within a budget that grows with the name's length (none for names of 1–2 characters, 1 up
 * to 5, 2 up to 10, 3 beyond). Ties are all given, up to three, joined with "or"; undefined
 * when nothing is close.
 */
export function didYouMean(name: string, candidates: Iterable<string>): string | undefined {
  const lower = name.toLowerCase();
  const all = [...new Set(candidates)].filter((c) => c !== name);
  const sameCase = all.filter((c) => c.toLowerCase() === lower);
  if (sameCase.length > 0) return sameCase.slice(0, 3).join(' or ');
  const budget = name.length <= 2 ? 0 : name.length <= 5 ? 1 : name.length <= 10 ? 2 : 3;
  let best = budget + 1;
  let found: string[] = [];
  for (const c of all) {
    if (Math.abs(c.length - name.length) > budget) continue;
    const d = editDistance(lower, c.toLowerCase());
    if (d > budget) continue;
    if (d < best) {
      best = d;
      found = [c];
    } else if (d === best) found.push(c);
  }
  return found.length > 0 ? found.slice(0, 3).join(' or ') : undefined;
}
