import type { Cell, Column, PublishedTable } from './published.js';
import type { UserResults } from './results.js';

export type TableFormat = 'markdown' | 'csv' | 'latex';
export const FORMATS: readonly TableFormat[] = ['markdown', 'csv', 'latex'];

/** A table ready to print: every cell already a string, in sections that LaTeX separates by rules. */
export interface AssembledTable {
  title: string;
  columns: Column[];
  published: string[][];
  user: string[][];
  delta: string[][];
  notes: string[];
}

// Placeholder for an absent value; LaTeX gets its own dash.
const MISSING = '\u2014';

function formatCell(c: Column, v: Cell | undefined): string {
  if (v === null || v === undefined) return MISSING;
  if (typeof v === 'string') return v;
  return c.kind === 'number' ? v.toFixed(c.decimals) : String(v);
}

/** user − published, signed, with the column's decimals; "+0.00" rather than "-0.00" for a difference that rounds to zero. */
export function formatDelta(c: Column, user: Cell | undefined, published: Cell | undefined): string {
  if (typeof user !== 'number' || typeof published !== 'number') return MISSING;
  const d = user - published;
  const s = Math.abs(d).toFixed(c.decimals);
  return Number(s) === 0 || d > 0 ? `+${s}` : `-${s}`;
}

/**
 * The published row that `compare` names. Table 3 lists the paper's model twice (20 and 50 steps):
 * the row with the user's step count is the fair comparison, else the first.
 */
export function findCompareRow(table: PublishedTable, compare: string, userCells: Record<string, Cell>): Cell[] | undefined {
  const matches = table.rows.filter((r) => r[0] === compare);
  const steps = table.columns.findIndex((c) => c.key === 'steps');
  if (steps >= 0 && typeof userCells.steps === 'number') return matches.find((r) => r[steps] === userCells.steps) ?? matches[0];
  return matches[0];
}

/**
 * Published rows, then one row per results directory, then one delta row per directory against
 * the `compare` row (default: the paper's own model). Throws when `compare` is not a row of the table.
 */
export function assembleTable(table: PublishedTable, users: readonly UserResults[], compare: string = table.ownRow): AssembledTable {
  const cols = table.columns;
  const names = [...new Set(table.rows.map((r) => r[0] as string))];
  if (!names.includes(compare)) throw new Error(`Table ${table.id} has no row "${compare}" (rows: ${names.join(', ')})`);
  const published = table.rows.map((r) => r.map((v, i) => formatCell(cols[i], v)));
  const user: string[][] = [];
  const delta: string[][] = [];
  const notes = [...table.notes];
  for (const u of users) {
    const row = u.tables[table.id];
    user.push(cols.map((c) => formatCell(c, row.cells[c.key])));
    const ref = findCompareRow(table, compare, row.cells)!;
    const refLabel = table.rows.filter((r) => r[0] === compare).length > 1 && cols.some((c) => c.key === 'steps') ? `${compare} (${ref[cols.findIndex((c) => c.key === 'steps')]} steps)` : compare;
    delta.push(cols.map((c, i) => (i === 0 ? `\u0394 ${u.name} vs ${refLabel}` : c.metric ? formatDelta(c, row.cells[c.key], ref[i]) : '')));
    notes.push(...row.notes);
  }
  return { title: `Table ${table.id}. ${table.title}`, columns: cols, published, user, delta, notes };
}

const mdEscape = (s: string) => s.replace(/\|/g, '\\|');

function markdown(t: AssembledTable): string {
  const line = (cells: string[]) => `| ${cells.map(mdEscape).join(' | ')} |`;
  const out = [`**${mdEscape(t.title)}**`, '', line(t.columns.map((c) => c.header)), `|${t.columns.map((c) => (c.kind === 'number' ? ' ---: ' : ' --- ')).join('|')}|`];
  for (const r of [...t.published, ...t.user, ...t.delta]) out.push(line(r));
  if (t.notes.length > 0) out.push('', ...t.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

// A missing value is an empty field in CSV, which spreadsheet and dataframe readers take as missing.
const csvField = (s: string) => (s === MISSING ? '' : /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

// Bare rows with a header line, so that spreadsheets and pandas read it; the title and notes do not fit CSV.
function csv(t: AssembledTable): string {
  return [t.columns.map((c) => c.key), ...t.published, ...t.user, ...t.delta].map((r) => r.map(csvField).join(',')).join('\n');
}

const LATEX_SPECIAL: Record<string, string> = { '\\': '\\textbackslash{}', '&': '\\&', '%': '\\%', $: '\\$', '#': '\\#', _: '\\_', '{': '\\{', '}': '\\}', '~': '\\textasciitilde{}', '^': '\\textasciicircum{}' };
const texEscape = (s: string) => s.replace(/[\\&%$#_{}~^]/g, (ch) => LATEX_SPECIAL[ch]).replace(/\u0394/g, '$\\Delta$').replace(/\u2014/g, '--').replace(/\u2212/g, '$-$');

function latex(t: AssembledTable): string {
  const row = (cells: string[]) => `${cells.map(texEscape).join(' & ')} \\\\`;
  const out = ['\\begin{table}[t]', '\\centering', `\\caption{${texEscape(t.title)}}`, `\\begin{tabular}{${t.columns.map((c) => (c.kind === 'number' ? 'r' : 'l')).join('')}}`, '\\toprule', row(t.columns.map((c) => c.header)), '\\midrule'];
  out.push(...t.published.map(row));
  if (t.user.length > 0) out.push('\\midrule', ...t.user.map(row), '\\midrule', ...t.delta.map(row));
  out.push('\\bottomrule', '\\end{tabular}', '\\end{table}');
  if (t.notes.length > 0) out.push(...t.notes.map((n) => `% ${n}`));
  return out.join('\n');
}

/** One assembled table in the given format (LaTeX: a booktabs `table` environment; notes as comments). */
export function renderTable(t: AssembledTable, format: TableFormat): string {
  return format === 'markdown' ? markdown(t) : format === 'csv' ? csv(t) : latex(t);
}
