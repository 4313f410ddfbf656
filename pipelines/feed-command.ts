import { Command } from 'commander';
import { integerOption } from '../src/cli/option-parsers.js';
import { openStore } from '../src/stores/open-store.js';
import { readMixIndex } from '../stages/mix/mix-index.js';

/**
 * `bitprep feed <mix-output> --rank r --world-size w`: one rank's samples of a training-mix output,
 * in order, as an Arrow IPC stream on stdout (columns key, latent fixed_size_binary[1024],
 * caption_text, caption_kind, source), for a trainer reading a pipe. `--resume-from N` starts at
 * the rank's sample N: the stream is then exactly the tail of an uninterrupted feed. `--epoch e`
 * shows each sample encoded with views its (e mod views)-th (the same samples, in the same order).
 */
export function feedCommand(): Command {
  return new Command('feed')
    .argument('<mix-output>', 'training-mix output directory or s3://bucket/prefix (with mix.json)')
    .requiredOption('--rank <r>', 'this trainer rank (0-based)', integerOption('--rank'))
    .requiredOption('--world-size <w>', 'number of ranks; must be the mix\'s world_size', integerOption('--world-size', { min: 1 }))
    .option('--resume-from <n>', "skip this rank's first n samples (e.g. steps done × per-rank batch)", integerOption('--resume-from'), 0)
    .option('--epoch <e>', 'the pass over the mix (0-based): samples encoded with several views (pre-encode encoder.views) show another view each epoch', integerOption('--epoch'), 0)
    .option('--batch-rows <b>', "rows per record batch (default: the mix's per-rank batch, global_batch / world_size)", integerOption('--batch-rows', { min: 1 }))
    .action(async (output: string, o: { rank: number; worldSize: number; resumeFrom: number; epoch: number; batchRows?: number }) => {
      const store = openStore(output);
      const mix = await readMixIndex(store);
      if (o.worldSize !== mix.world_size) {
        throw new Error(`${output} was laid out for world_size ${mix.world_size}, not ${o.worldSize}: its ranks' shards and balance are fixed at mix time — remix with world_size: ${o.worldSize}`);
      }
      if (o.rank >= mix.world_size) throw new Error(`--rank ${o.rank} is outside world size ${mix.world_size}`);
      if (o.resumeFrom > mix.rank_samples) throw new Error(`--resume-from ${o.resumeFrom}: rank ${o.rank} has ${mix.rank_samples} samples`);
      // Arrow (apache-arrow) loads when a feed starts, not with the CLI.
      const { feedRank, PipeSink } = await import('../stages/mix/feed.js');
      await feedRank(store, mix, { rank: o.rank, from: o.resumeFrom, epoch: o.epoch, batchRows: o.batchRows ?? mix.rank_batch }, new PipeSink(process.stdout));
    });
}
