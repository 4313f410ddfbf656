import type { AnyJob } from '../job.js';

/**
 * Settings every job may change on a rerun: they decide how a run goes, never what it writes.
 * Model sources (src/models/model-source.ts) are found wherever they sit: their endpoints,
 * replicas and runtime knobs are operational, the ONNX file and the served model name are not.
 */
const ALWAYS_OPERATIONAL = [
  'output',
  'parallel_units',
  'breaker.**',
  'lease.**',
  'decode_concurrency',
  'read_concurrency',
  '**.kserve',
  '**.timeout_ms',
  '**.retries',
  '**.replicas',
  '**.providers',
  '**.intra_op_threads',
];

/** A fixed setting whose value differs from the one the output was made with. */
export interface ChangedSetting {
  key: string;
  before: unknown;
  after: unknown;
}

/** The operational key patterns of a job: the common ones and its own. */
export function operationalPatterns(job: AnyJob): string[] {
  return [...ALWAYS_OPERATIONAL, ...(job.operational ?? [])];
}

/**
 * The fixed settings that differ between the config an output was made with and a new one.
 * Both are compared as `_config.json` holds them (JSON). Objects are compared key by key (arrays
 * of objects element by element, so `models.*.endpoints` can be operational); other arrays and
 * scalars as whole values. A key missing on one side counts as changed unless it is operational.
 */
export function changedSettings(before: unknown, after: unknown, operational: readonly string[]): ChangedSetting[] {
  const out: ChangedSetting[] = [];
  const patterns = operational.map((p) => p.split('.'));
  const walk = (a: unknown, b: unknown, path: string[]): void => {
    if (patterns.some((p) => matches(p, path))) return;
    if (isRecord(a) && isRecord(b)) {
      for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) walk(a[k], b[k], [...path, k]);
      return;
    }
    if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every(isRecord) && b.every(isRecord)) {
      a.forEach((x, i) => walk(x, b[i], [...path, String(i)]));
      return;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ key: path.join('.'), before: a, after: b });
  };
  walk(before, after, []);
  return out;
}

/** One line per change, for the refusal message. */
export function formatChanges(changes: ChangedSetting[]): string {
  const show = (v: unknown) => {
    const t = v === undefined ? '(unset)' : JSON.stringify(v);
    return t.length > 80 ? `${t.slice(0, 77)}…` : t;
  };
  return changes.map((c) => `  ${c.key}: ${show(c.before)} → ${show(c.after)}`).join('\n');
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `*` matches one segment, `**` any number (zero included). */
function matches(pattern: string[], path: string[]): boolean {
  if (pattern.length === 0) return path.length === 0;
  const [head, ...rest] = pattern;
  if (head === '**') {
    for (let i = 0; i <= path.length; i++) if (matches(rest, path.slice(i))) return true;
    return false;
  }
  return path.length > 0 && (head === '*' || head === path[0]) && matches(rest, path.slice(1));
}
