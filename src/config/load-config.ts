import { readFile } from 'node:fs/promises';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError } from './config-error.js';
import type { AnyJob } from '../job.js';
import { BREAKER_DEFAULTS, breakerConfig } from '../outage.js';
import { leaseConfig } from '../units/output-lease.js';

/** Options every job accepts; job schemas extend this. */
export const baseJobConfig = z.object({
  job: z.string(),
  /** Local directory or s3://bucket/prefix. */
  output: z.string().min(1),
  /** Units run at once on this machine; each unit is itself parallel inside. */
  parallel_units: z.number().int().min(1).default(1),
  /** When repeated failures become an outage that stops the run (src/outage.ts). */
  breaker: breakerConfig.default(BREAKER_DEFAULTS),
  /** The run's lease on its output: one live writer at a time (src/units/output-lease.ts). */
  lease: leaseConfig.default(leaseConfig.parse({})),
});

/**
 * Sets `a.b.c` in a nested object, creating objects on the way. A numeric segment indexes an
 * existing list (`models.0.steps`); any other segment replaces a non-object on the way.
 */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: Record<string, unknown> = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i];
    const next = cur[p];
    const usable = typeof next === 'object' && next !== null && (!Array.isArray(next) || /^\d+$/.test(parts[i + 1]));
    if (!usable) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
}

/** Whether every object above `path` exists, so a null there can mean "remove this key". */
function parentExists(obj: Record<string, unknown>, path: string): boolean {
  let cur: unknown = obj;
  for (const p of path.split('.').slice(0, -1)) {
    if (typeof cur !== 'object' || cur === null) return false;
    cur = (cur as Record<string, unknown>)[p];
  }
  return typeof cur === 'object' && cur !== null;
}

/**
 * Parses `key.path=value` overrides; values are read as YAML scalars (numbers, booleans, lists).
 * `null` (or `~`, or nothing after `=`) unsets the key, as `key: null` in the file does: see
 * validateConfig.
 */
export function parseOverride(arg: string): [string, unknown] {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set ${arg}: expected key.path=value`);
  return [arg.slice(0, eq), YAML.parse(arg.slice(eq + 1))];
}

export function formatZodError(source: string, err: z.ZodError): string {
  const lines = err.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  return `invalid config ${source}:\n${lines.join('\n')}`;
}

/**
 * Reads a YAML or JSON config, applies overrides (later wins), and validates it against the
 * schema of the job it names.
 */
export async function loadConfig(path: string, jobs: Record<string, AnyJob>, overrides: [string, unknown][] = []): Promise<{ job: AnyJob; config: Record<string, unknown> & { job: string; output: string; parallel_units: number } }> {
  let raw: unknown;
  try {
    raw = YAML.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read config ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return validateConfig(raw, path, jobs, overrides);
}

/** The value at `path` in a parsed config, or undefined; `parent` holds it when it is an object key. */
function at(obj: unknown, path: readonly PropertyKey[]): { parent?: Record<string, unknown>; key?: string; value: unknown } {
  let parent: unknown;
  let cur: unknown = obj;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null) return { value: undefined };
    parent = cur;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  const last = path[path.length - 1];
  const isKey = typeof last === 'string' && typeof parent === 'object' && parent !== null && !Array.isArray(parent);
  return isKey ? { parent: parent as Record<string, unknown>, key: last, value: cur } : { value: cur };
}

/**
 * Validates with the job's schema, where a `null` the schema does not take at its key unsets the
 * key: an optional section (`aesthetic: null`) is off, a defaulted key takes its default. Where
 * the schema takes null (`prompts.max_prompt_nsfw: null`, no NSFW filter) null keeps its meaning,
 * and a required key given null is reported as it stands. List items are never removed.
 */
function parseUnsettingNulls(schema: z.ZodType, obj: Record<string, unknown>) {
  const removed = new Map<string, { parent: Record<string, unknown>; key: string }>();
  const pinned = new Set<string>();
  for (;;) {
    const parsed = schema.safeParse(obj);
    if (parsed.success) return parsed;
    const issueAt = new Set(parsed.error.issues.map((i) => JSON.stringify(i.path)));
    let changed = false;
    // A removed key the schema now calls missing was required: put the null back and say so.
    for (const [id, { parent, key }] of removed) {
      if (!issueAt.has(id)) continue;
      parent[key] = null;
      removed.delete(id);
      pinned.add(id);
      changed = true;
    }
    for (const issue of parsed.error.issues) {
      const id = JSON.stringify(issue.path);
      if (issue.path.length === 0 || pinned.has(id) || removed.has(id)) continue;
      const { parent, key, value } = at(obj, issue.path);
      if (value !== null || !parent || key === undefined) continue;
      delete parent[key];
      removed.set(id, { parent, key });
      changed = true;
    }
    if (!changed) return parsed;
  }
}

export function validateConfig(raw: unknown, source: string, jobs: Record<string, AnyJob>, overrides: [string, unknown][] = []) {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`invalid config ${source}: expected a mapping of keys to values`);
  const obj = structuredClone(raw) as Record<string, unknown>;
  // Null overrides under a section the config does not have, decided once the schema is known.
  let pending: string[] = [];
  for (const [k, v] of overrides) {
    if (v === undefined) continue;
    pending = pending.filter((p) => p !== k && !p.startsWith(`${k}.`));
    if (v === null && !parentExists(obj, k)) pending.push(k);
    else setPath(obj, k, v);
  }
  const jobName = obj.job;
  if (typeof jobName !== 'string') throw new ConfigError(`invalid config ${source}:\n  job: required; one of ${Object.keys(jobs).join(', ')}`);
  const job = jobs[jobName];
  if (!job) throw new ConfigError(`invalid config ${source}:\n  job: unknown job ${JSON.stringify(jobName)}; one of ${Object.keys(jobs).join(', ')}`);
  for (const k of pending) {
    if (parentExists(obj, k)) {
      setPath(obj, k, null);
      continue;
    }
    // `prompts.max_prompt_nsfw=null` with no `prompts` section sets a meaningful null in a section
    // that is otherwise defaulted; `aesthetic.clip=null` with no `aesthetic` unsets what is not
    // there, and must not conjure up a half-empty section: try it, keep it only if the section
    // it creates is valid.
    const parts = k.split('.');
    // The first section on the way that the config lacks, which the trial creates.
    let depth = 0;
    let cur: unknown = obj;
    while (depth < parts.length - 1) {
      const next = (cur as Record<string, unknown>)[parts[depth]];
      if (typeof next !== 'object' || next === null) break;
      cur = next;
      depth++;
    }
    const created = parts.slice(0, depth + 1);
    const trial = structuredClone(obj);
    setPath(trial, k, null);
    const r = parseUnsettingNulls(job.schema, trial);
    if (r.success || !r.error.issues.some((i) => created.every((seg, j) => String(i.path[j]) === seg))) setPath(obj, k, null);
  }
  const parsed = parseUnsettingNulls(job.schema, obj);
  if (!parsed.success) throw new ConfigError(formatZodError(source, parsed.error));
  return { job, config: parsed.data as Record<string, unknown> & { job: string; output: string; parallel_units: number } };
}
