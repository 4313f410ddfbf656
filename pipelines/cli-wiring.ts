import type { CliWiring } from '../src/cli/program.js';
import { packageVersion } from '../src/package-root.js';

// The composition root: the CLI (src/) gets the jobs, the demo and the job and evaluation
// commands from here. Each loads only when the command line needs it, so printing commands
// (--version, --help) start in about the time of a bare node.
const jobs = async () => (await import('./index.js')).jobs;

export const cliWiring: CliWiring = {
  version: packageVersion,
  jobs,
  demo: async (o) => (await import('./demo.js')).runDemo(o),
  loadModel: async (path, name) => (await import('../src/models/onnx-model.js')).OnnxTensorModel.load(path, { name }),
  commands: [
    { name: 'recaption', description: 'offline batch captioning through `vllm run-batch` JSONL (for clusters without a long-running server)', load: async () => (await import('./recaption-command.js')).recaptionCommand(jobs) },
    { name: 'latents', description: 'inspect a latent dataset (a folder or s3:// prefix with index.json): bit usage, near duplicates, pictures', load: async () => (await import('./latents-command.js')).latentsCommand() },
    { name: 'report', description: 'write one self-contained HTML report of an output: funnel, histograms, throughput, latent bit usage, kept and dropped thumbnails', load: async () => (await import('./report-command.js')).reportCommand() },
    { name: 'dedup', description: 'exact duplicates across outputs by the original bytes\' SHA-256: drop lists, shards untouched', load: async () => (await import('./dedup-command.js')).dedupCommand() },
    { name: 'feed', description: "stream one rank's samples of a training-mix output as Arrow IPC record batches on stdout", load: async () => (await import('./feed-command.js')).feedCommand() },
    { name: 'eval', description: 'evaluate generated images: benchmarks and metrics', load: async (args) => (await import('../evaluation/eval-command.js')).evalCommand(args) },
    { name: 'tables', description: "print the paper's Tables 1-3 with rows computed from results directories, and deltas against a published row", load: async () => (await import('../evaluation/tables/tables-command.js')).tablesCommand() },
    { name: 'fetch-assets', description: 'download evaluation prompt files (GenEval, ImageReward, MSCOCO captions), verified against pinned SHA-256 and size', load: async () => (await import('../evaluation/prompts/fetch-assets-command.js')).fetchAssetsCommand() },
  ],
};
