import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Tests that need a process run the built CLI (`node bin/bitprep.js`, as users do), so the suite
 * first bundles dist/ from the sources (scripts/build-cli.mjs: about a second).
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['scripts/build-cli.mjs'], { cwd: root, stdio: 'inherit' });
}
