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

/** Commands that need a process of their own: they serve, hold a queue connection, or stream binary stdout. */
const NEEDS_PROCESS = new Set(['serve', 'worker', 'feed']);

/**
 * Runs a command and waits for it: in this process (the command only reads and writes files
 * and talks to servers) unless it needs an environment, node flags, a directory or a process
 * of its own, when it spawns the built CLI.
 */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; nodeArgs?: string[] } = {}): Promise<CliResult> {
  if (opts.env || opts.cwd || opts.nodeArgs || NEEDS_PROCESS.has(args[0])) return startCli(args, opts).done;
  return runInProcess(args);
}

let running: Promise<unknown> = Promise.resolve();

/**
 * The CLI's own entry (runCli with the composition root's wiring) in this process, with stdout,
 * stderr and the exit code captured. One at a time: the capture replaces the process's streams.
 */
function runInProcess(args: string[]): Promise<CliResult> {
  const next = running.then(async () => {
    const [{ runCli: run }, { cliWiring }] = await Promise.all([import('../../src/cli/program.js'), import('../../pipelines/cli-wiring.js')]);
    const captured = { stdout: '', stderr: '' };
    const capture = (stream: NodeJS.WriteStream, key: 'stdout' | 'stderr') => {
      const write = stream.write;
      stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        captured[key] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
        const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
        if (done) queueMicrotask(done);
        return true;
      }) as typeof stream.write;
      return () => void (stream.write = write);
    };
    const restore = [capture(process.stdout, 'stdout'), capture(process.stderr, 'stderr')];
    const exitCodeBefore = process.exitCode;
    process.exitCode = undefined;
    try {
      await run(cliWiring, [process.execPath, cliEntry, ...args]);
    } finally {
      for (const r of restore) r();
    }
    const code = Number(process.exitCode ?? 0);
    process.exitCode = exitCodeBefore;
    return { code, signal: null, ...captured };
  });
  running = next.catch(() => undefined);
  return next;
}

/** Writes a JSON config file (YAML readers take JSON) and returns its path. */
export async function writeConfig(dir: string, name: string, cfg: unknown): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, JSON.stringify(cfg, null, 2));
  return p;
}
