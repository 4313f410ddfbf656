import { z } from 'zod';

/** How a value looks in a message: short, and quoted when it is a string. */
function shown(v: unknown): string {
  const s = typeof v === 'number' || typeof v === 'bigint' ? String(v) : (JSON.stringify(v) ?? String(v));
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Messages for options given in code, phrased to follow the key (`batch_size must be a positive
 * integer`). Schema-level messages win over these; configs keep zod's own messages.
 */
function describe(iss: z.core.$ZodRawIssue): string | undefined {
  const int = (iss.schema as { isInt?: boolean } | undefined)?.isInt === true;
  if (iss.code === 'too_small' && iss.origin === 'number') {
    if (int && iss.inclusive && iss.minimum === 1) return 'must be a positive integer';
    if (int && iss.inclusive && iss.minimum === 0) return 'must be a non-negative integer';
    return `must be ${int ? 'an integer ' : ''}${iss.inclusive ? '≥' : '>'} ${iss.minimum}`;
  }
  if (iss.code === 'too_big' && iss.origin === 'number') return `must be ${int ? 'an integer ' : ''}${iss.inclusive ? '≤' : '<'} ${iss.maximum}`;
  if (iss.code === 'too_small' && iss.origin === 'array') return `must have at least ${iss.minimum} item${iss.minimum === 1 ? '' : 's'}`;
  if (iss.code === 'invalid_type') return iss.expected === 'int' ? 'must be an integer' : `must be ${/^[aeiou]/.test(iss.expected) ? 'an' : 'a'} ${iss.expected}`;
  if (iss.code === 'invalid_value') return `must be ${iss.values.length > 1 ? 'one of ' : ''}${iss.values.map((v) => shown(v)).join(', ')}`;
  if (iss.code === 'not_multiple_of') return `must be a multiple of ${iss.divisor}`;
  if (iss.code === 'unrecognized_keys') return `unknown option${iss.keys.length > 1 ? 's' : ''} ${iss.keys.join(', ')}`;
  return undefined;
}

/**
 * A stage's options, parsed by the stage's own schema: defaults filled in, types and ranges
 * checked. A bad value throws one line naming the stage and the key, e.g.
 * `fetch: concurrency must be a positive integer, got 0`.
 */
export function parseStageOptions<S extends z.ZodType>(stage: string, schema: S, options: unknown): z.output<S> {
  const r = schema.safeParse(options, { error: describe, reportInput: true });
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const got = i.code === 'unrecognized_keys' || i.input === undefined ? '' : `, got ${shown(i.input)}`;
    return i.path.length > 0 ? `${i.path.join('.')} ${i.message}${got}` : `${i.message}${got}`;
  });
  throw new Error(`${stage}: ${lines.join('; ')}`);
}
