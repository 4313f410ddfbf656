import { Command } from 'commander';

/**
 * A command declared by its name and description: the module that defines its arguments,
 * options and action loads only when the command line names it, so `--version`, `--help` and
 * every other command load none of it.
 */
export interface CommandEntry {
  name: string;
  description: string;
  /** The command's definition (its description is the entry's); `args` are the words after its name. */
  load(args: string[]): Promise<Command>;
}

/**
 * Adds every entry to `parent` so help and "unknown command" see them all, but loads and
 * defines only the one `args` (the words after the parent's name) names, or that `help` is
 * asked for.
 */
export async function addCommands(parent: Command, entries: readonly CommandEntry[], args: string[]): Promise<void> {
  // A parent of commands takes no option with a value, so its first word is the command.
  const words = args.filter((a) => !a.startsWith('-'));
  const named = words[0] === 'help' ? words[1] : words[0];
  const rest = named === undefined ? [] : args.slice(args.indexOf(named) + 1);
  for (const entry of entries) {
    const cmd = entry.name === named ? await entry.load(rest) : new Command(entry.name);
    if (cmd.name() !== entry.name) throw new Error(`command entry ${entry.name} loaded command ${cmd.name()}`);
    parent.addCommand(cmd.description(entry.description));
  }
}
