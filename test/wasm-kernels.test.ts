import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assemble, generatedPath, KERNELS } from '../scripts/build-wasm.mjs';
import { repoRoot } from './helpers/run-cli.js';

/**
 * The WebAssembly kernels run from generated modules (base64 bytes); their source is the .wat text.
 * This holds the two together: the committed bytes are exactly what wabt assembles from the text,
 * so a reviewer reads the .wat and the runtime runs it.
 */
describe('WebAssembly kernels', () => {
  for (const k of KERNELS) {
    it(`${k.wat}: the generated module holds the text's bytes, and they compile with the exports the code calls`, async () => {
      const text = await readFile(join(repoRoot, k.wat), 'utf8');
      const built = await assemble(k.wat, text);
      const mod = (await import(join(repoRoot, generatedPath(k.wat)))) as Record<string, string>;
      const shipped = new Uint8Array(Buffer.from(mod[k.constant], 'base64'));
      expect(shipped.length).toBeGreaterThan(100);
      expect(Buffer.compare(Buffer.from(shipped), Buffer.from(built)), `${generatedPath(k.wat)} is stale: run npm run build:wasm`).toBe(0);
      const exported = WebAssembly.Module.exports(new WebAssembly.Module(shipped)).map((e) => e.name);
      const declared = [...text.matchAll(/\(export "([^"]+)"/g)].map((m) => m[1]);
      expect(exported).toEqual(declared);
      expect(WebAssembly.Module.imports(new WebAssembly.Module(shipped))).toEqual([{ module: 'e', name: 'm', kind: 'memory' }]);
    });
  }
});
