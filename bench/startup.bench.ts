import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { timeMedian, type BenchResult } from './harness.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'bin', 'bitprep.js');

/** One process from spawn to exit, as a shell would wait for it. */
function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node ${args.join(' ')} exited ${code}`))));
  });
}

/**
 * `bitprep --version` and `bitprep jobs` (the built CLI, as users run it) against a bare
 * `node -e ''` measured side by side, interleaved run by run: start-up cost is what a user pays
 * for every `--help`, and what the test suite pays for every CLI it spawns.
 */
export default async function bench(): Promise<BenchResult> {
  execFileSync(process.execPath, [join(root, 'scripts', 'build-cli.mjs')], { cwd: root, stdio: 'inherit' });
  const RUNS = 15;
  const bare: number[] = [];
  const version: number[] = [];
  const jobs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    bare.push(await timeMedian(() => run(['-e', '']), 1, i === 0 ? 1 : 0));
    version.push(await timeMedian(() => run([cli, '--version']), 1, i === 0 ? 1 : 0));
    jobs.push(await timeMedian(() => run([cli, 'jobs']), 1, i === 0 ? 1 : 0));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const [b, v, j] = [median(bare), median(version), median(jobs)];
  return {
    name: 'startup',
    data: `${RUNS} interleaved runs each of node -e '' and of the built CLI (node bin/bitprep.js)`,
    rows: [
      { label: "node -e ''", value: 1 / b, unit: 'starts/s' },
      { label: 'bitprep --version', value: 1 / v, unit: 'starts/s' },
      { label: 'bitprep jobs', value: 1 / j, unit: 'starts/s' },
    ],
    ratios: [
      { label: "bitprep --version time / node -e '' time", value: v / b, goal: '≤ 2' },
      { label: "bitprep jobs time / node -e '' time", value: j / b },
    ],
    notes: [`median seconds: node ${b.toFixed(3)}, --version ${v.toFixed(3)}, jobs ${j.toFixed(3)}`],
  };
}
