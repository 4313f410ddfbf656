import { readFile } from 'node:fs/promises';
import YAML from 'yaml';
import { z } from 'zod';
import type { AnyJob } from '../job.js';

/** Options every job accepts; job schemas extend this. */
export const baseJobConfig = z.object({
  job: z.string(),
  /** Local directory or s3://bucket/prefix. */
  output: z.string().min(1),
  /** Units run at once on this machine; each unit is itself parallel inside. */
  parallel_units: z.number().int().min(1).default(1),
});

/** A config error that names the file, the key and the problem. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Sets `a.b.c` in a nested object, creating objects on the way. */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur: Record<string, unknown> = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null || Array.isArray(cur[p])) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
}

/** Parses `key.path=value` overrides; values are read as YAML scalars (numbers, booleans, lists). */
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

export function validateConfig(raw: unknown, source: string, jobs: Record<string, AnyJob>, overrides: [string, unknown][] = []) {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`invalid config ${source}: expected a mapping of keys to values`);
  const obj = structuredClone(raw) as Record<string, unknown>;
  for (const [k, v] of overrides) if (v !== undefined) setPath(obj, k, v);
  const jobName = obj.job;
  if (typeof jobName !== 'string') throw new ConfigError(`invalid config ${source}:\n  job: required; one of ${Object.keys(jobs).join(', ')}`);
  const job = jobs[jobName];
  if (!job) throw new ConfigError(`invalid config ${source}:\n  job: unknown job ${JSON.stringify(jobName)}; one of ${Object.keys(jobs).join(', ')}`);
  const parsed = job.schema.safeParse(obj);
  if (!parsed.success) throw new ConfigError(formatZodError(source, parsed.error));
  return { job, config: parsed.data as Record<string, unknown> & { job: string; output: string; parallel_units: number } };
}
