import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeParquet } from '../src/formats/parquet-write.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/** Back-ends a command loads only when it uses them (an s3:// URL, a queue, a model, OCR, feed). */
const BACKENDS = ['@aws-sdk', 'bullmq', 'ioredis', 'apache-arrow', 'onnxruntime-node', 'tesseract.js'];
const hooks = fileURLToPath(new URL('./helpers/module-log.mjs', import.meta.url));

/** The node_modules packages a CLI command resolved, recorded by a module-resolve hook in its process. */
async function packagesLoaded(dir: string, name: string, args: string[]): Promise<Set<string>> {
  const log = join(dir, `${name}.modules.txt`);
  await writeFile(log, '');
  const r = await runCli(args, { nodeArgs: ['--import', hooks], env: { BITPREP_MODULE_LOG: log } });
  expect(r.code, r.stderr).toBe(0);
  const urls = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
  // Proof the hook saw the program: the CLI's own entry was resolved.
  expect(urls.some((u) => u.endsWith('/dist/main.js'))).toBe(true);
  const pkgs = new Set<string>();
  for (const u of urls) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u);
    if (m) pkgs.add(m[1]);
  }
  return pkgs;
}

describe('commands that only print or plan load no back-end', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await tempDir('lazy');
    const input = join(dir, 'in.parquet');
    await writeFile(input, writeParquet([{ URL: 'http://127.0.0.1:9/a.jpg', TEXT: 'a', pwatermark: 0.1 }], { schema: [{ name: 'URL', type: 'STRING' }, { name: 'TEXT', type: 'STRING' }, { name: 'pwatermark', type: 'DOUBLE' }] }));
    config = await writeConfig(dir, 'laion.json', { job: 'laion-filter', output: join(dir, 'out'), input: { kind: 'parquet', paths: [input] }, filters: [{ name: 'watermark', keep: 'pwatermark < 0.8' }] });
  });

  const cases: [string, () => string[]][] = [
    ['version', () => ['--version']],
    ['jobs', () => ['jobs']],
    ['tables-help', () => ['tables', '--help']],
    ['plan', () => ['plan', config]],
  ];
  for (const [name, args] of cases) {
    it(`bitprep ${name}`, async () => {
      const pkgs = await packagesLoaded(dir, name, args());
      for (const b of BACKENDS) expect([...pkgs].filter((p) => p === b || p.startsWith(`${b}/`)), b).toEqual([]);
    });
  }

  it('bitprep --version and --help load no package and no command: only the entry and its shared chunks', async () => {
    // scripts/build-cli.mjs names the chunk of each dynamically imported module (a command, a job)
    // after it, and shared code `chunk-*`.
    const commandChunks = async (args: string[]) => {
      const name = args.join('').replace(/-/g, '');
      expect([...(await packagesLoaded(dir, name, args))], args.join(' ')).toEqual([]);
      const own = (await readFile(join(dir, `${name}.modules.txt`), 'utf8')).split('\n').filter((u) => u.includes('/dist/chunks/'));
      return [...new Set(own.map((u) => u.split('/').pop()!).filter((f) => !f.startsWith('chunk-')).map((f) => f.replace(/-[A-Z0-9]+\.js$/, '')))];
    };
    expect(await commandChunks(['--version'])).toEqual([]);
    expect(await commandChunks(['--help'])).toEqual([]);
    expect(await commandChunks(['eval', '--help'])).toEqual(['eval-command']);
  });

  it('the hook does see a back-end when a command uses one (`serve` loads onnxruntime-node)', async () => {
    const log = join(dir, 'serve.modules.txt');
    await writeFile(log, '');
    // serve refuses a missing model file after loading the runtime, so it exits without serving.
    const r = await runCli(['serve', '--model', `m=${join(dir, 'missing.onnx')}`, '--port', '0'], { nodeArgs: ['--import', hooks], env: { BITPREP_MODULE_LOG: log } });
    expect(r.code).not.toBe(0);
    expect(await readFile(log, 'utf8')).toMatch(/node_modules\/onnxruntime-node\//);
  });
});
