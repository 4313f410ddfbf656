import { Command, Option } from 'commander';
import { integerOption } from '../../src/cli/option-parsers.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { consoleLogger } from '../../src/log.js';
import { measureSpeed, type BatchMode, type SpeedResult } from './speed.js';
import { collectParams } from '../cli-params.js';

export interface SpeedRunOptions {
  /** Results directory: speed.json goes there. */
  out: string;
  /** A text file, one prompt a line (blank lines skipped); default the built-in prompts. */
  promptFile?: string;
}

/** Reads a prompt file: one prompt a line, blank lines skipped; an empty file is an error naming it. */
export async function readPromptFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`prompt file ${path}: ${(err as Error).message}`);
  }
  const prompts = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (prompts.length === 0) throw new Error(`prompt file ${path}: no prompts (one a line)`);
  return prompts;
}

/** Measures (see measureSpeed) and writes `<out>/speed.json`; returns the result and its path. */
export async function runSpeed(opts: Parameters<typeof measureSpeed>[0] & SpeedRunOptions): Promise<{ result: SpeedResult; path: string }> {
  const prompts = opts.promptFile ? await readPromptFile(opts.promptFile) : opts.prompts;
  const result = await measureSpeed({ ...opts, prompts });
  await mkdir(opts.out, { recursive: true });
  const path = join(opts.out, 'speed.json');
  await writeFile(path, JSON.stringify(result, null, 2) + '\n');
  return { result, path };
}

interface Options {
  endpoint: string;
  model: string;
  steps: number;
  stepsField: string;
  param: Record<string, unknown>;
  batchSize: number;
  batchMode: BatchMode;
  size: string;
  warmup: number;
  runs: number;
  promptFile?: string;
  seed: number;
  timeout: number;
  out: string;
  json?: boolean;
}

/**
 * `bitprep eval speed --endpoint URL --model NAME --steps S`: seconds per image of an
 * OpenAI-compatible image endpoint (Table 3, sec/img). The API key, if the server needs one, is
 * read from OPENAI_API_KEY.
 */
export function speedCommand(): Command {
  return new Command('speed')
    .requiredOption('--endpoint <url>', 'base URL up to and including /v1, e.g. http://host:8000/v1')
    .requiredOption('--model <name>', 'model name the server serves')
    .requiredOption('--steps <n>', 'sampling steps: recorded in speed.json and sent as the --steps-field request field', integerOption('--steps', { min: 1 }))
    .option('--steps-field <name>', "request field carrying the steps ('none': send none, give it with --param)", 'steps')
    .addOption(new Option('--param <key=value>', 'extra request field, repeatable; value parsed as JSON when it parses, else a string (e.g. --param guidance_scale=4.0 --param sampler=dpm); wins over --steps-field').argParser(collectParams).default({}, 'none'))
    .option('--batch-size <n>', 'images per timed run', integerOption('--batch-size', { min: 1 }), 1)
    .addOption(new Option('--batch-mode <mode>', 'n: one request with n = batch size; concurrent: batch-size requests of n = 1 at once').choices(['n', 'concurrent']).default('n'))
    .option('--size <WxH>', 'image size asked for', '1024x1024')
    .option('--warmup <n>', 'untimed runs first', integerOption('--warmup'), 2)
    .option('--runs <n>', 'timed runs', integerOption('--runs', { min: 1 }), 10)
    .option('--prompt-file <file>', 'prompts, one a line, used in turn (default: a few built-in neutral prompts)')
    .option('--seed <n>', 'seed of the first image; later images count up from it', integerOption('--seed'), 0)
    .option('--timeout <s>', 'per-request timeout in seconds', integerOption('--timeout', { min: 1 }), 600)
    .option('--out <dir>', 'results directory for speed.json', '.')
    .option('--json', 'print speed.json instead of a summary line')
    .action(async (o: Options) => {
      const params = o.param;
      const stepsField = o.stepsField === 'none' ? null : o.stepsField;
      if (stepsField && stepsField in params && params[stepsField] !== o.steps) {
        consoleLogger.warn(`--param ${stepsField}=${JSON.stringify(params[stepsField])} is sent, but speed.json records --steps ${o.steps}`);
      }
      const { result, path } = await runSpeed({
        endpoint: o.endpoint,
        model: o.model,
        steps: o.steps,
        stepsField,
        params,
        batchSize: o.batchSize,
        batchMode: o.batchMode,
        size: o.size,
        warmup: o.warmup,
        runs: o.runs,
        promptFile: o.promptFile,
        seed: o.seed,
        apiKey: process.env.OPENAI_API_KEY,
        timeoutMs: o.timeout * 1000,
        out: o.out,
      });
      if (o.json) {
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        return;
      }
      const ci = result.ci95 ? `, mean ${result.mean_sec_per_img.toFixed(3)} s (95% CI ${result.ci95.low.toFixed(3)} – ${result.ci95.high.toFixed(3)})` : '';
      process.stdout.write(
        `${result.sec_per_img.toFixed(3)} s/img (median of ${result.runs} runs at ${result.steps} steps, batch ${result.batch_size} ${result.batch_mode}${ci}, p90 ${result.p90_sec_per_img.toFixed(3)} s)\n` +
          `speed: ${path}\n`,
      );
    });
}
