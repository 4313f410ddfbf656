import { Command, Option } from 'commander';
import { integerOption, sizeOption } from '../../src/cli/option-parsers.js';
import { COMMAND_PLACEHOLDERS, generateImages, type Backend, type GenerateSummary } from './generate.js';
import { PROMPT_SETS, type PromptSetName } from './plan.js';
import { collectParams } from '../cli-params.js';

interface Options {
  prompts: PromptSetName;
  promptFile: string;
  out: string;
  endpoint?: string;
  model?: string;
  command?: string;
  param: Record<string, unknown>;
  size: { width: number; height: number };
  seed: number;
  imagesPerPrompt?: number;
  limit?: number;
  sample?: number;
  sampleSeed: number;
  concurrency?: number;
  retries: number;
  timeout?: number;
  apiKeyEnv: string;
  progress: 'auto' | 'plain' | 'off';
  json?: boolean;
}

/** The one-line summary the command prints. */
export function formatGenerateSummary(s: GenerateSummary): string {
  return `${s.written} image(s) written, ${s.skipped} already present, ${s.failed} failed of ${s.images} (${s.prompts} prompts) in ${s.seconds.toFixed(1)} s → ${s.out}`;
}

/**
 * `bitprep eval generate`: generates the images of an evaluation prompt set (GenEval, ImageReward,
 * MSCOCO captions, or a plain list) with a served model or a command, resumably. Exits 1 when some
 * images failed (listed in failures.jsonl; a rerun retries just those).
 */
export function generateCommand(): Command {
  return new Command('generate')
    .addOption(new Option('--prompts <set>', 'geneval (evaluation_metadata.jsonl), imagereward (benchmark-prompts.json), coco (caption list or captions_val2014.json), lines (one prompt per line)').choices(PROMPT_SETS).makeOptionMandatory())
    .requiredOption('--prompt-file <file>', 'the local prompt file (never downloaded; see `bitprep fetch-assets`)')
    .requiredOption('--out <dir>', 'output folder: GenEval layout <00000>/samples/0000.png for geneval, else images/<prompt id>_<0000>.png + manifest.jsonl; rerun to resume')
    .option('--endpoint <url>', 'OpenAI-compatible server up to /v1 (POST /images/generations, b64_json)')
    .option('--model <name>', 'the served model name (with --endpoint)')
    .option('--command <template>', `run this per image instead of a server, without a shell; placeholders ${COMMAND_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')} and {<key>} of every --param; it must write a PNG to {out}`)
    .addOption(new Option('--param <key=value>', 'sampler setting, repeatable: a request field for --endpoint, a {key} placeholder for --command; the value is JSON when it parses, else a string').argParser(collectParams).default({}, 'none'))
    .addOption(new Option('--size <WxH>', 'image size').argParser(sizeOption('--size')).default({ width: 1024, height: 1024 }, '1024x1024'))
    .option('--seed <n>', 'seed base; image seed = uint32(sha256("<seed>:<prompt id>:<sample>")[0:4]) >> 1, so seeds never shift when prompts are added', integerOption('--seed'), 0)
    .option('--images-per-prompt <n>', 'images per prompt (default: 4 for geneval, 1 otherwise; ImageReward\'s paper used 10)', integerOption('--images-per-prompt', { min: 1 }))
    .option('--limit <n>', 'only the first N prompts (smoke runs)', integerOption('--limit', { min: 1 }))
    .option('--sample <n>', 'coco only: a seeded sample of N captions (e.g. 30000 of captions_val2014.json; default: all)', integerOption('--sample', { min: 1 }))
    .option('--sample-seed <n>', 'coco only: the seed of that sample', integerOption('--sample-seed'), 0)
    .option('--concurrency <n>', 'images in flight (default: 4 for --endpoint, 1 for --command)', integerOption('--concurrency', { min: 1 }))
    .option('--retries <n>', '--endpoint: retries per image on 429, 5xx and timeouts', integerOption('--retries'), 5)
    .option('--timeout <seconds>', 'per request (--endpoint, default 300) or per command run (--command, default none)', integerOption('--timeout', { min: 1 }))
    .option('--api-key-env <name>', '--endpoint: environment variable holding the API key, when set', 'OPENAI_API_KEY')
    .addOption(new Option('--progress <mode>', 'progress on stderr').choices(['auto', 'plain', 'off']).default('auto'))
    .option('--json', 'print the summary as JSON')
    .action(async (o: Options) => {
      let backend: Backend;
      if (o.command !== undefined) {
        if (o.endpoint !== undefined || o.model !== undefined) throw new Error('give either --command or --endpoint/--model, not both');
        backend = { kind: 'command', template: o.command, concurrency: o.concurrency, timeoutMs: o.timeout === undefined ? undefined : o.timeout * 1000 };
      } else {
        if (o.endpoint === undefined || o.model === undefined) throw new Error('give --endpoint and --model (or --command)');
        backend = {
          kind: 'endpoint',
          endpoint: o.endpoint,
          model: o.model,
          apiKey: process.env[o.apiKeyEnv] || undefined,
          concurrency: o.concurrency,
          retry: { retries: o.retries, minDelayMs: 250, maxDelayMs: 20_000 },
          timeoutMs: o.timeout === undefined ? undefined : o.timeout * 1000,
        };
      }
      const summary = await generateImages({
        out: o.out,
        promptSet: o.prompts,
        promptFile: o.promptFile,
        limit: o.limit,
        sample: o.sample,
        sampleSeed: o.sampleSeed,
        imagesPerPrompt: o.imagesPerPrompt,
        width: o.size.width,
        height: o.size.height,
        seedBase: o.seed,
        params: o.param,
        backend,
        progress: o.progress,
      });
      if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else {
        process.stdout.write(formatGenerateSummary(summary) + '\n');
        if (summary.failed > 0) process.stdout.write(`failures: ${summary.out}/failures.jsonl (first: ${summary.failures[0].file}: ${summary.failures[0].error}); rerun to retry them\n`);
      }
      if (summary.failed > 0) process.exitCode = 1;
    });
}
