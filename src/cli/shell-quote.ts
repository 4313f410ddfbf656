/**
 * One argument as a POSIX shell reads it back unchanged: bare when it holds only characters no
 * shell treats specially, else in single quotes (a quote inside becomes '\''). For printing
 * commands a user pastes.
 */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A command line of arguments, each quoted as needed. */
export const shellLine = (args: readonly string[]): string => args.map(shellQuote).join(' ');
