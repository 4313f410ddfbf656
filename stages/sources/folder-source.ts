import { readdir, readFile } from 'node:fs/promises';
import { extname, join, relative, resolve } from 'node:path';
import { newSample, type Sample } from '../../src/sample.js';
import { unitId, type Unit } from '../../src/units/unit.js';
import { sampleKey } from './sample-key.js';

/** A local folder of images; a caption is read from a sibling `<name>.txt` when present. */
export interface FolderSourceOptions {
  path: string;
  /** Files per unit. */
  unit_rows: number;
  /** Lower-case extensions counted as images. */
  extensions: string[];
}

async function walk(dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/** Lists the folder once, sorted, and names every unit's files in the plan so reruns agree. */
export async function planFolderUnits(opts: FolderSourceOptions): Promise<Unit[]> {
  const root = resolve(opts.path);
  const all: string[] = [];
  await walk(root, all).catch((err) => {
    throw new Error(`input folder ${opts.path}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const exts = new Set(opts.extensions.map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase()));
  const files = all.map((f) => relative(root, f).split('\\').join('/')).filter((f) => exts.has(extname(f).toLowerCase())).sort();
  const count = Math.ceil(files.length / opts.unit_rows);
  return Array.from({ length: count }, (_, i) => ({ id: unitId(i, count), inputs: [{ uri: root, files: files.slice(i * opts.unit_rows, (i + 1) * opts.unit_rows) }] }));
}

export async function* folderSource(unit: Unit, opts: FolderSourceOptions): AsyncGenerator<Sample> {
  let offset = 0;
  for (const inp of unit.inputs) {
    for (const rel of inp.files ?? []) {
      const txt = join(inp.uri, rel.slice(0, rel.length - extname(rel).length) + '.txt');
      const caption = await readFile(txt, 'utf8').then((t) => t.trim(), () => null);
      yield newSample(sampleKey(unit.id, offset++, opts.unit_rows), { url: rel, caption, source_file: inp.uri });
    }
  }
}
