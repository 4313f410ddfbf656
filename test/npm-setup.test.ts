import { execFileSync, spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/run-cli.js';

describe('npm set-up', () => {
  it('the project .npmrc holds only settings npm knows (no "Unknown project config" on npm ci or npm run)', () => {
    const r = spawnSync('npm', ['config', 'list'], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/Unknown (project|user|env) config/);
  });

  it("its node-options make onnxruntime-node's install script skip its download (npm 10 runs it; npm 11 blocks it)", () => {
    const nodeOptions = execFileSync('npm', ['config', 'get', 'node-options'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const script = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'script', 'install.js');
    // With the skip the script exits at once; without it, on linux/x64 it fetches the CUDA provider (offline: it fails).
    const env = { ...process.env, NODE_OPTIONS: nodeOptions, ONNXRUNTIME_NODE_INSTALL: '', ONNXRUNTIME_NODE_INSTALL_CUDA: '', HTTPS_PROXY: 'http://127.0.0.1:9' };
    delete (env as Record<string, string | undefined>).ONNXRUNTIME_NODE_INSTALL;
    const r = spawnSync(process.execPath, [script], { env, encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/Downloading|cuda/i);
  });

  it('the docs run the checkout as node bin/bitprep.js, never through npx (which installs and rebuilds a copy)', async () => {
    const files = ['README.md', 'deploy/README.md', ...(await readdir(join(repoRoot, 'deploy', 'slurm'))).map((f) => `deploy/slurm/${f}`), 'pipelines/demo.ts'];
    for (const f of files) {
      const text = await readFile(join(repoRoot, f), 'utf8');
      const uses = text.split('\n').filter((l) => /npx bitprep/.test(l) && !/Avoid/.test(l));
      expect(uses, f).toEqual([]);
    }
  });
});
