import { compileExpression } from 'filtrex';
import { z } from 'zod';
import { drop, fail, SampleError, type Sample } from '../src/sample.js';
import type { Stage } from '../src/stage.js';

/**
 * One named filter over metadata columns. `keep` is a filtrex expression that must be true for
 * the row to stay, e.g. `pwatermark < 0.8`, `WIDTH >= 256 and HEIGHT >= 256`,
 * `not (TEXT ~= "(?i)stock photo")`. Filtrex syntax that trips people up:
 * - strings are double-quoted; single quotes name a column (`'my-col' > 1`);
 * - `and`, `or`, `not`, `x in ("a", "b")`, `x not in (...)`, `if c then a else b`, `x mod 10`;
 * - `~=` is a JavaScript regex match (unanchored); a leading `(?i)`/`(?s)`/`(?m)` sets flags;
 *   inside a filtrex string only `\\` and `\"` are escapes, so the regex `\d` is written `"\\d"`;
 * - `true`/`false` are constants here (plain filtrex has none); types never coerce: comparing
 *   text with a number is an error, not false.
 */
export const columnFilterItemSchema = z
  .object({
    name: z.string().min(1),
    keep: z.string().min(1),
    /**
     * A row lacking (null or absent) a column that the expression reads: drop it under this
     * filter's name (default), keep it (this filter passes), or fail it (code missing_column).
     */
    on_missing: z.enum(['drop', 'keep', 'fail']).default('drop'),
  })
  .strict();

export const columnFilterSchema = z.array(columnFilterItemSchema).superRefine((filters, ctx) => {
  const seen = new Set<string>();
  filters.forEach((f, i) => {
    // Two filters with one name would merge into one funnel line and hide which one dropped.
    if (seen.has(f.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate filter name ${JSON.stringify(f.name)}` });
    seen.add(f.name);
  });
});

export type ColumnFilter = z.input<typeof columnFilterItemSchema>;

const STAGE = 'column-filters';

/** Thrown from inside an evaluation to stop it at the first missing column. */
class MissingColumn extends Error {
  constructor(readonly column: string) {
    super(`column ${column} is missing`);
  }
}

/** Thrown from inside an evaluation for a value the expression cannot use. */
class BadValue extends Error {}

interface Compiled {
  name: string;
  keep: string;
  onMissing: 'drop' | 'keep' | 'fail';
  fn: (data: unknown) => unknown;
  droppedUnit: string;
  missingUnit: string;
}

/**
 * Named row filters over `sample.fields`, evaluated in order; the first filter whose `keep` is
 * false drops the sample with `drop(s, name, { <column read>: <value>, … })`, so each filter is
 * its own funnel line. Every expression (and every regex literal after `~=`) is compiled here, so
 * a typo fails at start-up, not on every row. A runtime error (e.g. text compared with a number)
 * fails the sample with code `filter_error` naming the filter.
 *
 * Stats (stage `column-filters`): units `dropped:<name>` (present from the start, zero included),
 * `missing:<name>` (rows the filter's on_missing rule decided).
 */
export function columnFilters(filters: ColumnFilter[]): Stage {
  const parsed = columnFilterSchema.safeParse(filters);
  if (!parsed.success) {
    throw new Error(`column-filters: invalid filters: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }

  // Evaluation is synchronous, so one shared record of what the current evaluation read is safe.
  let current: Record<string, unknown> | undefined;
  let read: Record<string, unknown> = {};

  const customProp = (name: string, get: (n: string) => unknown, obj: unknown): unknown => {
    // `x of y` reads a property of a nested object; only top-level names are columns.
    if (obj !== current) return get(name);
    const raw = Object.hasOwn(obj as object, name) ? (obj as Record<string, unknown>)[name] : undefined;
    if (raw === null || raw === undefined) {
      read[name] = null;
      throw new MissingColumn(name);
    }
    let v = raw;
    if (typeof raw === 'bigint') {
      read[name] = raw;
      if (raw > BigInt(Number.MAX_SAFE_INTEGER) || raw < BigInt(Number.MIN_SAFE_INTEGER)) {
        // Rounding would make `hash == …` or `hash mod n` silently wrong for some rows.
        throw new BadValue(`column ${name} = ${raw} is an integer beyond ±2^53, which a filter expression cannot hold exactly`);
      }
      v = Number(raw);
    }
    read[name] = v;
    return v;
  };

  const regexCache = new Map<string, RegExp>();
  const operators = {
    '~=': (a: unknown, b: unknown): boolean => {
      if (typeof a !== 'string' || typeof b !== 'string') throw new BadValue(`~= needs text on both sides, got ${typeName(a)} ~= ${typeName(b)}`);
      let re = regexCache.get(b);
      if (!re) {
        // Patterns normally are literals; a bound keeps a pattern taken from a column from growing it.
        if (regexCache.size >= 256) regexCache.clear();
        re = toRegExp(b);
        regexCache.set(b, re);
      }
      return re.test(a);
    },
    // Filtrex's defaults are strict equality; kept explicit because Operators requires them.
    '==': (a: unknown, b: unknown) => a === b,
    '!=': (a: unknown, b: unknown) => a !== b,
  };

  const compiled: Compiled[] = parsed.data.map((f) => {
    let fn: (data: unknown) => unknown;
    try {
      fn = compileExpression(f.keep, { customProp, operators, constants: { true: true, false: false } });
      for (const pattern of regexLiterals(f.keep)) toRegExp(pattern);
    } catch (err) {
      throw new Error(`column-filters: filter ${JSON.stringify(f.name)}: cannot compile ${JSON.stringify(f.keep)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return { name: f.name, keep: f.keep, onMissing: f.on_missing, fn, droppedUnit: `dropped:${f.name}`, missingUnit: `missing:${f.name}` };
  });

  const apply = (s: Sample, units: Record<string, number>): void => {
    for (const f of compiled) {
      current = s.fields;
      read = {};
      let result: unknown;
      try {
        result = f.fn(s.fields);
      } finally {
        current = undefined;
      }
      if (result instanceof MissingColumn) {
        units[f.missingUnit]++;
        if (f.onMissing === 'keep') continue;
        if (f.onMissing === 'fail') {
          fail(s, STAGE, new SampleError('missing_column', `filter ${JSON.stringify(f.name)} (${f.keep}): column ${result.column} is missing`));
          return;
        }
        drop(s, f.name, read);
        units[f.droppedUnit]++;
        return;
      }
      if (result instanceof Error) {
        fail(s, STAGE, new SampleError('filter_error', `filter ${JSON.stringify(f.name)} (${f.keep}): ${result.message}`));
        return;
      }
      if (result === true) continue;
      if (result === false) {
        drop(s, f.name, read);
        units[f.droppedUnit]++;
        return;
      }
      fail(s, STAGE, new SampleError('filter_error', `filter ${JSON.stringify(f.name)} (${f.keep}): expression gave ${typeName(result)} ${String(result)}, expected true or false`));
      return;
    }
  };

  return async function* (input, ctx) {
    const stats = ctx.stats.stage(STAGE);
    // Every filter appears in the stats even when it never drops, so the funnel lists them all.
    for (const f of compiled) {
      stats.units[f.droppedUnit] ??= 0;
      stats.units[f.missingUnit] ??= 0;
    }
    for await (const s of input) {
      if (s.status.kind !== 'ok') {
        yield s;
        continue;
      }
      stats.in++;
      const t0 = performance.now();
      apply(s, stats.units);
      stats.busySeconds += (performance.now() - t0) / 1000;
      const kind = (s.status as Sample['status']).kind;
      if (kind === 'ok') stats.ok++;
      else if (kind === 'dropped') stats.dropped++;
      else stats.failed++;
      yield s;
    }
  };
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  return typeof v === 'string' ? 'text' : typeof v;
}

/**
 * JavaScript has no inline flags, but configs copied from Python/RE2 use them, so a leading
 * `(?i)`, `(?s)`, `(?m)` (or a combination such as `(?is)`) becomes the RegExp's flags.
 */
export function toRegExp(pattern: string): RegExp {
  const m = /^\(\?([imsu]+)\)/.exec(pattern);
  if (!m) return new RegExp(pattern);
  return new RegExp(pattern.slice(m[0].length), [...new Set(m[1])].join(''));
}

/** String literals right after `~=`, unescaped as filtrex reads them, to validate at start-up. */
function regexLiterals(expr: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/~=\s*"((?:[^"\\]|\\.)*)"/g)) out.push(m[1].replace(/\\(.)/g, '$1'));
  return out;
}
