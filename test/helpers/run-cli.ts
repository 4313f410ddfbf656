import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
/** The built CLI, as users run it; test/global-setup.ts rebuilds dist/ before the suite. */
export const cliEntry = join(repoRoot, 'bin', 'bitprep.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the real CLI (built) in a child process, as a user would run it. */
export function startCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; nodeArgs?: string[] } = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), cliEntry, ...args], {
    cwd: opts.cwd ?? repoRoot,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; nodeArgs?: string[] } = {}): Promise<CliResult> {
  return startCli(args, opts).done;
}

/** Writes a JSON config file (YAML readers take JSON) and returns its path. */
export async function writeConfig(dir: string, name: string, cfg: unknown): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, JSON.stringify(cfg, null, 2));
  return p;
}
