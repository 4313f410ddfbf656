import { Command } from 'commander';
import { generateCommand } from './generate/generate-command.js';
import { detectCommand } from './geneval/detect-command.js';
import { genevalCommand } from './geneval/geneval-command.js';
import { clipScoreCommand } from './metrics/clip-score-command.js';
import { fidCommand, fidStatsCommand } from './metrics/fid-command.js';
import { imageRewardCommand } from './metrics/imagereward-command.js';
import { reconstructionCommand } from './metrics/reconstruction-command.js';
import { speedCommand } from './speed/speed-command.js';

/**
 * The commands under `bitprep eval`, one factory each, in the order a user runs them: generate,
 * then the benchmarks and metrics; a new metric adds its factory here.
 */
export const evalSubcommands: (() => Command)[] = [generateCommand, detectCommand, genevalCommand, clipScoreCommand, fidStatsCommand, fidCommand, imageRewardCommand, reconstructionCommand, speedCommand];

/** `bitprep eval <benchmark> …`: the parent of every evaluation command. */
export function evalCommand(): Command {
  const cmd = new Command('eval').description('evaluate generated images: benchmarks and metrics');
  for (const make of evalSubcommands) cmd.addCommand(make());
  return cmd;
}
