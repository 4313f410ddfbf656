import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/run-cli.js';

/** The layers, lowest first: a file may import its own layer and those below it, never above. */
const LAYERS = ['src', 'stages', 'evaluation', 'pipelines'] as const;

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/**
 * The project files a file loads at run time: static imports and re-exports that are not
 * type-only, side-effect imports and dynamic `import()`s of relative paths.
 */
function runtimeImports(file: string, text: string): string[] {
  const specs: string[] = [];
  // Comments can quote code: drop them first (strings holding `//` do not appear in import lines).
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of code.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?)\s+from\s+['"](\.[^'"]+)['"]/gm)) {
    if (m[2]) continue;
    specs.push(m[4]);
  }
  for (const m of code.matchAll(/^\s*import\s+['"](\.[^'"]+)['"]/gm)) specs.push(m[1]);
  for (const m of code.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) specs.push(m[1]);
  return specs.map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

describe('layering', () => {
  it('no file imports a layer above its own, and no import cycle exists at run time', async () => {
    const files = (await Promise.all(LAYERS.map((l) => tsFiles(join(repoRoot, l))))).flat();
    const graph = new Map<string, string[]>();
    for (const f of files) graph.set(f, runtimeImports(f, await readFile(f, 'utf8')));
    expect(graph.size).toBeGreaterThan(200);
    const layerOf = (f: string) => LAYERS.indexOf(relative(repoRoot, f).split('/')[0] as (typeof LAYERS)[number]);

    const upward: string[] = [];
    for (const [f, deps] of graph) for (const d of deps) if (layerOf(d) > layerOf(f)) upward.push(`${relative(repoRoot, f)} → ${relative(repoRoot, d)}`);
    expect(upward).toEqual([]);

    const missing = [...graph.values()].flat().filter((d) => !graph.has(d) && !d.includes('/node_modules/'));
    expect(missing.map((d) => relative(repoRoot, d))).toEqual([]);

    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 'open') cycles.push(stack.slice(stack.indexOf(d)).concat(d).map((x) => relative(repoRoot, x)).join(' → '));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it('the import reader sees what it must and skips type-only imports', () => {
    const f = join(repoRoot, 'src', 'x.ts');
    const text = [
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      "export { c } from '../stages/c.js';",
      "export type { D } from './d.js';",
      "import './e.js';",
      "import {\n  f,\n  type G,\n} from './f.js';",
      "const h = await import('./h.js');",
      "// import { z } from './commented.js';",
    ].join('\n');
    expect(runtimeImports(f, text).map((p) => relative(repoRoot, p))).toEqual(['src/a.ts', 'stages/c.ts', 'src/f.ts', 'src/e.ts', 'src/h.ts']);
  });
});
