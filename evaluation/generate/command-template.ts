import { spawn } from 'node:child_process';

/**
 * Splits a command line into argv the way a POSIX shell would for plain words and quotes, without
 * running a shell: whitespace separates words; '…' is literal; "…" is literal except for \" \\ \$ \`
 * and backslash-newline; a backslash outside quotes escapes the next character. Nothing else is
 * special (no variables, globs, pipes or `$(…)`). No npm tokenizer is installed, and this subset is
 * all a template needs.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`command template: unterminated ' at character ${i + 1}`);
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error('command template: unterminated "');
        const d = line[i];
        if (d === '"') break;
        if (d === '\\' && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1])) {
          if (line[i + 1] !== '\n') word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new Error('command template: a trailing \\ escapes nothing');
      if (line[i + 1] !== '\n') {
        word += line[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(word);
  if (words.length === 0) throw new Error('command template is empty');
  return words;
}

const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * A parsed command template: argv words holding `{name}` placeholders. `{{` and `}}` stand for
 * literal braces; any other brace is literal too, so JSON arguments need no escaping.
 */
export interface CommandTemplate {
  template: string;
  argv: string[];
}

/** Parses a template and checks that it only uses the given placeholder names (errors list them). */
export function parseCommandTemplate(template: string, allowed: readonly string[]): CommandTemplate {
  const argv = splitCommandLine(template);
  const unknown = new Set<string>();
  for (const word of argv) for (const m of word.matchAll(PLACEHOLDER)) if (m[1] !== undefined && !allowed.includes(m[1])) unknown.add(m[1]);
  if (unknown.size > 0) {
    throw new Error(`command template uses unknown placeholder(s) ${[...unknown].map((u) => `{${u}}`).join(', ')}; known: ${allowed.map((a) => `{${a}}`).join(' ')}`);
  }
  return { template, argv };
}

/** Fills every placeholder word by word, so a value with spaces, quotes or `$(…)` stays one argument, verbatim. */
export function fillTemplate(t: CommandTemplate, values: Record<string, string>): string[] {
  return t.argv.map((word) =>
    word.replace(PLACEHOLDER, (all, name: string | undefined) => {
      if (name === undefined) return all[0];
      const v = values[name];
      if (v === undefined) throw new Error(`command template: no value for {${name}}`);
      return v;
    }),
  );
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last few lines of what the command wrote to stderr. */
  stderrTail: string;
}

const TAIL_BYTES = 2000;

/** Runs argv without a shell, stdout discarded, stderr's tail kept; `signal` kills it. Never rejects for a nonzero exit. */
export function runArgv(argv: string[], opts: { signal?: AbortSignal; timeoutMs?: number; cwd?: string } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], signal: opts.signal, timeout: opts.timeoutMs, cwd: opts.cwd });
    let tail = Buffer.alloc(0);
    child.stderr!.on('data', (d: Buffer) => {
      tail = Buffer.concat([tail, d]);
      if (tail.length > 4 * TAIL_BYTES) tail = tail.subarray(tail.length - TAIL_BYTES);
    });
    child.on('error', (err) => {
      if ((err as { code?: string }).code === 'ENOENT') reject(new Error(`cannot run ${JSON.stringify(argv[0])}: not found`));
      else reject(err);
    });
    child.on('close', (code, signal) => {
      const text = tail.subarray(Math.max(0, tail.length - TAIL_BYTES)).toString('utf8').trimEnd();
      resolve({ code, signal, stderrTail: text });
    });
  });
}
