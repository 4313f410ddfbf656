import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { appendResults, formatResult, type BenchResult } from './harness.js';

// `npm run bench [name…]`: runs bench/*.bench.ts (or the named ones), prints and records results.
const dir = import.meta.dirname;
const wanted = process.argv.slice(2);
const files = (await readdir(dir)).filter((f) => f.endsWith('.bench.ts') && (wanted.length === 0 || wanted.some((w) => f.startsWith(w)))).sort();
if (files.length === 0) throw new Error(`no benchmark matches ${wanted.join(', ')}`);
for (const f of files) {
  process.stderr.write(`bench: ${f} …\n`);
  const mod = (await import(join(dir, f))) as { default: () => Promise<BenchResult> };
  const result = await mod.default();
  const text = formatResult(result);
  process.stdout.write(text);
  await appendResults(join(dir, 'RESULTS.md'), text);
}
