import { compileExpression } from 'filtrex';
import { z } from 'zod';
import { didYouMean } from '../src/config/preflight.js';
import { drop, fail, SampleError, type Sample } from '../src/sample.js';
import { syncSampleStage, type Stage } from '../src/stage.js';

/**
 * One named filter over metadata columns. `keep` is a filtrex expression that must be true for
 * the row to stay, e.g. `pwatermark < 0.8`, `WIDTH >= 256 and HEIGHT >= 256`,
 * `not (TEXT ~= "(?i)stock photo")`. Filtrex syntax that trips people up:
 * - strings are double-quoted; single quotes name a column (`'my-col' > 1`);
 * - `and`, `or`, `not`, `x in ("a", "b")`, `x not in (...)`, `if c then a else b`, `x mod 10`;
 * - `~=` is a JavaScript regex match (unanchored); a leading `(?i)`/`(?s)`/`(?m)` sets flags;
 *   inside a filtrex string only `\\` and `\"` are escapes, so the regex `\d` is written `"\\d"`;
 * - `true`/`false` are constants here (plain filtrex has none); types never coerce: comparing
 *   text with a number is an error, not false;
 * - functions are filtrex's own (FILTER_FUNCTIONS); any other name before `(` is refused at start-up.
 * In laion-filter the input's url and caption columns reach the filters as `url` and `caption`
 * (so `not (caption ~= "(?i)stock photo")`); `bitprep plan` names a filter that uses the original
 * name, or any column missing from an input file (checkColumnFilters, pipelines/checks.ts).
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
    const c = compileKeep(f.keep, customProp, operators);
    if ('problem' in c) throw new Error(`column-filters: filter ${JSON.stringify(f.name)}: ${c.problem}`);
    const fn = c.fn;
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

  return syncSampleStage(STAGE, (s, stats) => apply(s, stats.counts), {
    // Every filter appears in the stats even when it never drops, so the funnel lists them all.
    init: (stats) => {
      for (const f of compiled) {
        stats.counts[f.droppedUnit] ??= 0;
        stats.counts[f.missingUnit] ??= 0;
      }
    },
  });
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

/** The constants every filter expression knows (plain filtrex has none). */
const CONSTANTS = { true: true, false: false };

/** Filtrex's built-in functions: the only names a filter may call. */
export const FILTER_FUNCTIONS = ['abs', 'ceil', 'floor', 'log', 'log2', 'log10', 'max', 'min', 'round', 'sqrt', 'exists', 'empty'] as const;

type CustomProp = (name: string, get: (n: string) => unknown, obj: unknown) => unknown;

/**
 * Compiles one `keep` expression as the stage runs it, and checks what filtrex leaves to the first
 * row: every regex literal after `~=` and every function name (an unknown one would fail each row).
 */
function compileKeep(keep: string, customProp?: CustomProp, operators?: Record<string, (a: unknown, b: unknown) => unknown>): { fn: (data: unknown) => unknown } | { problem: string } {
  let fn: (data: unknown) => unknown;
  try {
    fn = compileExpression(keep, { customProp, operators: operators as never, constants: CONSTANTS });
  } catch (err) {
    return { problem: `cannot compile ${JSON.stringify(keep)}: ${oneLineCompileError(err instanceof Error ? err.message : String(err))}` };
  }
  for (const pattern of regexLiterals(keep)) {
    try {
      toRegExp(pattern);
    } catch (err) {
      return { problem: `cannot compile ${JSON.stringify(keep)}: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
  const unknown = readsOf(keep).functions.filter((f) => !(FILTER_FUNCTIONS as readonly string[]).includes(f));
  if (unknown.length > 0) {
    const f = unknown[0];
    const hint = didYouMean(f, FILTER_FUNCTIONS);
    return { problem: `cannot compile ${JSON.stringify(keep)}: unknown function ${f}()${hint ? ` (did you mean ${hint}?)` : ` (functions: ${FILTER_FUNCTIONS.join(', ')})`}` };
  }
  return { fn };
}

/**
 * Jison's parse errors span three lines (message, the expression, a caret under the position);
 * a config problem is one line, so the caret becomes a character position.
 */
function oneLineCompileError(msg: string): string {
  const lines = msg.split('\n');
  const caret = lines.findIndex((l) => /^-*\^$/.test(l));
  if (caret < 0) return lines.join(' ');
  const at = lines[caret].length;
  // "Parse error on line 1:" / "Lexical error on line 1. Unrecognized text.": an expression is one line.
  const head = lines[0].replace(/ on line \d+/, '').replace(/[:.]$/, '').replace(/\.\s*/, ': ').toLowerCase();
  const tail = lines.slice(caret + 1).join(' ').replace(/^Expecting /, 'expecting ');
  return `${head} at character ${at}${tail ? `: ${tail}` : ''}`;
}

/** One token of filtrex's lexer, in its rule order (the first rule that matches wins, as in jison). */
type Token = { kind: 'symbol'; name: string; quoted: boolean } | { kind: 'keyword' | 'punct'; text: string } | { kind: 'literal' };

const LEXER: [RegExp, (m: string) => Token | null][] = [
  [/\*|\/|-|\+|\^|\(|\)|,|==|!=|~=|>=|<=|<|>/y, (m) => ({ kind: 'punct', text: m })],
  // Keywords take the character after them, as filtrex's lexer does (so `not(x)` loses its bracket).
  [/not\s+in[^\w]/y, () => ({ kind: 'keyword', text: 'notIn' })],
  [/(and|or|not|in|of|if|then|else|mod)[^\w]/y, (m) => ({ kind: 'keyword', text: m.slice(0, -1) })],
  [/\s+/y, () => null],
  [/[0-9]+(?:\.[0-9]+)?(?![0-9.])/y, () => ({ kind: 'literal' })],
  [/[a-zA-Z$_][.a-zA-Z0-9$_]*/y, (m) => ({ kind: 'symbol', name: m, quoted: false })],
  [/'(?:\\'|\\\\|[^'\\])*'/y, (m) => ({ kind: 'symbol', name: m.slice(1, -1).replace(/\\(.)/g, '$1'), quoted: true })],
  [/"(?:\\"|\\\\|[^"\\])*"/y, () => ({ kind: 'literal' })],
  [/%|\?|:/y, (m) => ({ kind: 'punct', text: m })],
];

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  let pos = 0;
  outer: while (pos < expr.length) {
    for (const [re, make] of LEXER) {
      re.lastIndex = pos;
      const m = re.exec(expr);
      if (!m || m[0] === '') continue;
      pos += m[0].length;
      const t = make(m[0]);
      if (t) out.push(t);
      continue outer;
    }
    throw new Error(`unrecognized text at character ${pos + 1}`);
  }
  return out;
}

/**
 * The columns an expression reads and the functions it calls, in order of appearance, without
 * evaluating it (so both branches of `if`, and both sides of `and`/`or`, count). A symbol before
 * `of` names a property of a nested value, not a column; one before `(` is a function; `true`
 * and `false` are constants unless quoted ('true' is a column).
 */
export function readsOf(keep: string): { columns: string[]; functions: string[] } {
  const tokens = tokenize(keep);
  const columns = new Set<string>();
  const functions = new Set<string>();
  tokens.forEach((t, i) => {
    if (t.kind !== 'symbol') return;
    const next = tokens[i + 1];
    if (next?.kind === 'keyword' && next.text === 'of') return;
    if (next?.kind === 'punct' && next.text === '(') functions.add(t.name);
    else if (t.quoted || !Object.hasOwn(CONSTANTS, t.name)) columns.add(t.name);
  });
  return { columns: [...columns], functions: [...functions] };
}

/** What a plan-time check found for one filter: its compile problem, or the columns it reads. */
export interface ColumnFilterCheck {
  /** The filter's config key and name, e.g. `filters[0] "watermark"`. */
  label: string;
  /** One line naming the filter, when it does not compile. */
  problem?: string;
  /** The columns the filter reads (none when it does not compile). */
  columns: string[];
}

/**
 * Compiles every filter (all of them, not stopping at the first bad one) and lists the columns
 * each reads, in filter order, for a plan-time check against the input schemas. `key` is the
 * filters' config key.
 */
export function checkColumnFilters(filters: readonly ColumnFilter[], key = 'filters'): ColumnFilterCheck[] {
  return filters.map((f, i) => {
    const label = `${key}[${i}] ${JSON.stringify(f.name)}`;
    const c = compileKeep(f.keep);
    if ('problem' in c) return { label, problem: `${label}: ${c.problem}`, columns: [] };
    return { label, columns: readsOf(f.keep).columns };
  });
}

/** String literals right after `~=`, unescaped as filtrex reads them, to validate at start-up. */
function regexLiterals(expr: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/~=\s*"((?:[^"\\]|\\.)*)"/g)) out.push(m[1].replace(/\\(.)/g, '$1'));
  return out;
}
