import { Command } from 'commander';
import { addCommands, type CommandEntry } from '../src/cli/command-entry.js';

/**
 * The commands under `bitprep eval`, in the order a user runs them: generate, then the
 * benchmarks and metrics; a new metric adds its entry here. Each loads when named.
 */
export const evalSubcommands: CommandEntry[] = [
  { name: 'generate', description: 'generate the images of an evaluation prompt set with an OpenAI-compatible image server or a command, resumably', load: async () => (await import('./generate/generate-command.js')).generateCommand() },
  { name: 'detect', description: "run a detector (GenEval's is Mask2Former Swin-S) over a GenEval image folder and write the detections file for `eval geneval --detections`; resumable", load: async () => (await import('./geneval/detect-command.js')).detectCommand() },
  { name: 'geneval', description: "score a folder of GenEval images from a detections file with GenEval's official selection and correctness rules", load: async () => (await import('./geneval/geneval-command.js')).genevalCommand() },
  { name: 'clip-score', description: "CLIP score of generated images against their prompts as GigaGAN's evaluation computes it (open_clip ViT-g-14, \"A photo depicts \" prefix, mean raw cosine)", load: async () => (await import('./metrics/clip-score-command.js')).clipScoreCommand() },
  { name: 'fid-stats', description: 'Inception statistics of a reference image folder (e.g. MSCOCO val2014) for FID, as .npz with mu, sigma (float64) and n', load: async () => (await import('./metrics/fid-command.js')).fidStatsCommand() },
  { name: 'fid', description: 'FID of generated images (clean-fid clean mode after centre crop + LANCZOS 256, as GigaGAN evaluates) against reference statistics or images', load: async () => (await import('./metrics/fid-command.js')).fidCommand() },
  { name: 'imagereward', description: 'ImageReward benchmark score of a folder of generated images: mean over prompts of the mean normalised reward of each prompt\'s images', load: async () => (await import('./metrics/imagereward-command.js')).imageRewardCommand() },
  { name: 'reconstruction', description: 'tokenizer reconstruction quality: PSNR, SSIM (named convention) with bootstrap 95% intervals, and rFID with --inception', load: async () => (await import('./metrics/reconstruction-command.js')).reconstructionCommand() },
  { name: 'speed', description: 'seconds per image of an OpenAI-compatible image endpoint at a stated batch size and number of steps (median over timed runs)', load: async () => (await import('./speed/speed-command.js')).speedCommand() },
];

/** `bitprep eval <benchmark> …`: the parent of every evaluation command; `args` follow `eval`. */
export async function evalCommand(args: string[]): Promise<Command> {
  const cmd = new Command('eval');
  await addCommands(cmd, evalSubcommands, args);
  return cmd;
}
