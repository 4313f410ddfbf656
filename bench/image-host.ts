import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Starts bench/serve-dir.ts over `dir` in a child process; `close()` ends it. */
export async function startImageHost(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./serve-dir.ts', import.meta.url).pathname, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`image host exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', resolve);
  });
  return {
    url,
    close: () => new Promise<void>((r) => { child.once('exit', () => r()); child.stdin!.end(); }),
  };
}
