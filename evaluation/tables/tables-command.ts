import { Command, Option } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { integerOption } from '../../src/cli/option-parsers.js';
import { assembleTable, FORMATS, renderTable, type TableFormat } from './format.js';
import { TABLES, type TableId } from './published.js';
import { readResults, RESULT_FILES } from './results.js';

interface Options {
  table: TableId | 'all';
  format: TableFormat;
  compare?: string;
  name: string[];
  size?: string;
  resolution?: number;
  out?: string;
}

/** `bitprep tables <results-dir...>`: the paper's Tables 1–3 with the user's rows and deltas against a published row. */
export function tablesCommand(): Command {
  return new Command('tables')
    .argument('<results-dir...>', `one row each; files read: ${RESULT_FILES.join(', ')} (all optional; missing metrics print as "\u2014")`)
    .addOption(new Option('--table <n>', 'which table').choices(['1', '2', '3', 'all']).default('1'))
    .addOption(new Option('--format <f>', 'output format').choices([...FORMATS]).default('markdown'))
    .option('--compare <name>', 'published row the delta rows compare with (default: the paper\'s own model: "Instella Diff", "BIT", "Diffusion BIT")')
    .option('--name <label>', 'row label, once per results dir in order (default: the directory name)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--size <size>', 'model size for Tables 1 and 3, e.g. 1.2B')
    .option('--resolution <px>', 'image resolution for Table 1', integerOption('--resolution', { min: 1 }))
    .option('--out <file>', 'write here instead of stdout')
    .action(async (dirs: string[], o: Options) => {
      if (o.name.length > 0 && o.name.length !== dirs.length) throw new Error(`--name given ${o.name.length} times for ${dirs.length} results directories`);
      const users = await Promise.all(dirs.map((d, i) => readResults(d, { name: o.name[i], size: o.size, resolution: o.resolution })));
      const ids: TableId[] = o.table === 'all' ? ['1', '2', '3'] : [o.table];
      const hasRow = (id: TableId) => o.compare === undefined || TABLES[id].rows.some((r) => r[0] === o.compare);
      // With every table selected a model name can only exist in some of them; the others keep their default.
      if (o.table === 'all' && !ids.some(hasRow)) throw new Error(`no table has a row "${o.compare}"`);
      const parts = ids.map((id) => {
        const t = assembleTable(TABLES[id], users, o.table === 'all' && !hasRow(id) ? undefined : o.compare);
        if (o.compare !== undefined && !hasRow(id)) t.notes.push(`no row "${o.compare}" in this table: deltas are against ${TABLES[id].ownRow}`);
        return renderTable(t, o.format);
      });
      const text = parts.join('\n\n') + '\n';
      if (o.out) {
        await mkdir(dirname(o.out), { recursive: true });
        await writeFile(o.out, text);
      } else process.stdout.write(text);
    });
}
