import { mkdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { mapConcurrent } from '../../src/concurrency.js';
import { ImageClient } from '../../src/models/openai-images.js';
import type { RetryOptions } from '../../src/retry.js';
import { packageVersion } from '../../src/package-root.js';
import { createProgress } from '../../src/progress.js';
import { MANIFEST, naturalCompare, type ManifestEntry } from '../images/image-folder.js';
import { parseCommandTemplate, fillTemplate, runArgv, type CommandTemplate } from './command-template.js';
import { buildPlan, defaultImagesPerPrompt, loadPromptSet, type GenerationPlan, type PlannedImage, type PromptSetName } from './plan.js';

/** An OpenAI-compatible `/v1/images/generations` server (b64_json). */
export interface EndpointBackend {
  kind: 'endpoint';
  /** Up to and including `/v1`. */
  endpoint: string;
  model: string;
  apiKey?: string;
  /** Requests in flight (default 4). */
  concurrency?: number;
  /** The client's retry policy for 429/5xx/timeouts (default: the client's, 5 retries). */
  retry?: RetryOptions;
  /** Per attempt (default 300 s). */
  timeoutMs?: number;
}

/** A command line run once per image, without a shell; see COMMAND_PLACEHOLDERS. */
export interface CommandBackend {
  kind: 'command';
  template: string;
  /** Commands running at once (default 1: such scripts usually load the model onto one GPU each). */
  concurrency?: number;
  /** Kill a command running longer than this (default: no limit). */
  timeoutMs?: number;
}

export type Backend = EndpointBackend | CommandBackend;

/**
 * Placeholders every command template may use, besides one per `--param` key:
 * {prompt} the prompt text; {seed} the image seed; {out} the PNG path to write (a temp file in the
 * output folder, renamed into place on success); {width} {height}; {index} the prompt's index in
 * the set (0-based); {sample} the sample index; {prompt_id} the prompt's id.
 */
export const COMMAND_PLACEHOLDERS = ['prompt', 'seed', 'out', 'width', 'height', 'index', 'sample', 'prompt_id'] as const;

export interface GenerateOptions {
  /** Output folder; created if missing, resumed if it holds a previous run with the same settings. */
  out: string;
  promptSet: PromptSetName;
  promptFile: string;
  /** First N prompts only (smoke runs); not part of the settings a resumed run must match. */
  limit?: number;
  /** COCO: caption sample size and seed (see loadCocoCaptions). */
  sample?: number;
  sampleSeed?: number;
  /** Default: defaultImagesPerPrompt(promptSet). */
  imagesPerPrompt?: number;
  width: number;
  height: number;
  /** Base of every image seed (see imageSeed). */
  seedBase: number;
  /** Sampler settings: request fields for an endpoint, placeholders for a command. */
  params: Record<string, unknown>;
  backend: Backend;
  signal?: AbortSignal;
  /** Periodic progress on stderr (default 'off'). */
  progress?: 'auto' | 'bar' | 'plain' | 'off';
  /** Called after each image is written or has failed (not for images skipped as present). */
  onImage?: (event: ImageEvent) => void;
}

export interface ImageEvent {
  image: PlannedImage;
  error?: string;
}

/** One line of failures.jsonl. */
export interface FailureRecord {
  file: string;
  prompt_index: number;
  prompt_id: string;
  sample_index: number;
  seed: number;
  prompt: string;
  error: string;
}

export interface GenerateSummary {
  out: string;
  layout: GenerationPlan['layout'];
  prompts: number;
  /** Images in the plan. */
  images: number;
  written: number;
  /** Already present and decodable from an earlier run. */
  skipped: number;
  failed: number;
  seconds: number;
  failures: FailureRecord[];
  /** Endpoint backend only: HTTP attempts and retries. */
  requests?: number;
  retries?: number;
}

export const GENERATION_JSON = 'generation.json';
export const FAILURES = 'failures.jsonl';
/** GenEval layout only: the per-image records of manifest.jsonl, under a name that leaves GenEval's layout recognisable. */
export const GENEVAL_SAMPLES = 'samples.jsonl';
export const CAPTIONS = 'captions.txt';
const TMP_DIR = '.generate-tmp';

/** Settings a resumed run must share with the run that started the folder (everything that changes pixels). */
interface Settings {
  prompt_set: PromptSetName;
  prompt_file_sha256: string;
  coco_sample: number | null;
  coco_sample_seed: number | null;
  images_per_prompt: number;
  size: string;
  seed_base: number;
  seed_rule: string;
  params: Record<string, unknown>;
  backend: { kind: 'endpoint'; endpoint: string; model: string } | { kind: 'command'; template: string };
}

const SEED_RULE = 'seed = uint32_be(sha256("<seed_base>:<prompt_id>:<sample_index>")[0:4]) >> 1';

/**
 * Generates the images of a prompt set into `out` (see buildPlan for the layout), resumably:
 * images go to a temp file and are renamed into place, a rerun skips every image that exists and
 * decodes and regenerates the rest, and manifest.jsonl (flat) or samples.jsonl (GenEval), plus
 * captions.txt (COCO) and failures.jsonl (when some failed) are rewritten at the end from the plan,
 * in plan order, for the images present, so an interrupted-then-resumed folder is byte-identical
 * to an uninterrupted one. An aborted `signal` stops the run (rejecting) without writing them.
 */
export async function generateImages(opts: GenerateOptions): Promise<GenerateSummary> {
  const t0 = Date.now();
  const { prompts, sha256 } = await loadPromptSet(opts.promptSet, opts.promptFile, { limit: opts.limit, sample: opts.sample, sampleSeed: opts.sampleSeed });
  const imagesPerPrompt = opts.imagesPerPrompt ?? defaultImagesPerPrompt(opts.promptSet);
  const plan = buildPlan(opts.promptSet, prompts, { imagesPerPrompt, seedBase: opts.seedBase });
  if (!(Number.isInteger(opts.width) && Number.isInteger(opts.height) && opts.width > 0 && opts.height > 0)) throw new Error(`size must be positive integers, got ${opts.width}x${opts.height}`);
  const size = `${opts.width}x${opts.height}`;
  const b = opts.backend;
  let template: CommandTemplate | undefined;
  if (b.kind === 'command') {
    const clash = Object.keys(opts.params).filter((k) => (COMMAND_PLACEHOLDERS as readonly string[]).includes(k));
    if (clash.length > 0) throw new Error(`--param ${clash.join(', ')}: the name is a built-in placeholder of the command template`);
    template = parseCommandTemplate(b.template, [...COMMAND_PLACEHOLDERS, ...Object.keys(opts.params)]);
  }
  const settings: Settings = {
    prompt_set: opts.promptSet,
    prompt_file_sha256: sha256,
    coco_sample: opts.sample ?? null,
    coco_sample_seed: opts.promptSet === 'coco' ? (opts.sampleSeed ?? 0) : null,
    images_per_prompt: imagesPerPrompt,
    size,
    seed_base: opts.seedBase,
    seed_rule: SEED_RULE,
    params: opts.params,
    backend: b.kind === 'endpoint' ? { kind: 'endpoint', endpoint: b.endpoint, model: b.model } : { kind: 'command', template: b.template },
  };

  await mkdir(opts.out, { recursive: true });
  await checkResumable(opts.out, settings);
  const record = { ...settings, prompt_file: opts.promptFile, limit: opts.limit ?? null, prompts: plan.prompts.length, images: plan.images.length, layout: plan.layout, bitprep_version: packageVersion };
  await writeFile(join(opts.out, GENERATION_JSON), JSON.stringify(record, null, 2) + '\n');
  const tmp = join(opts.out, TMP_DIR);
  // Leftovers of a killed run are partial by definition.
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  if (plan.layout === 'geneval') {
    for (const p of plan.prompts) {
      await mkdir(join(opts.out, p.id, 'samples'), { recursive: true });
      // GenEval's evaluator json.load()s this file: one value, no trailing newline, as its generator writes it.
      await writeFile(join(opts.out, p.id, 'metadata.jsonl'), p.metadataLine!);
    }
  } else {
    await mkdir(join(opts.out, 'images'), { recursive: true });
  }

  const present = new Set<string>();
  for await (const [img, ok] of mapConcurrent(plan.images, async (img) => [img, await decodes(join(opts.out, img.file))] as const, { concurrency: 8 })) {
    if (ok) present.add(img.file);
  }
  const todo = plan.images.filter((img) => !present.has(img.file));

  const client = b.kind === 'endpoint' ? new ImageClient({ baseUrl: b.endpoint, model: b.model, apiKey: b.apiKey, maxInFlight: b.concurrency ?? 4, retry: b.retry, timeoutMs: b.timeoutMs }) : undefined;
  const makeImage = async (img: PlannedImage, tmpPath: string): Promise<Buffer> => {
    if (client) {
      const r = await client.generate({ prompt: img.prompt, size, seed: img.seed, extra: opts.params, signal: opts.signal });
      return Buffer.from(r.images[0]);
    }
    const values: Record<string, string> = {
      prompt: img.prompt,
      seed: String(img.seed),
      out: tmpPath,
      width: String(opts.width),
      height: String(opts.height),
      index: String(img.promptIndex),
      sample: String(img.sample),
      prompt_id: img.promptId,
    };
    for (const [k, v] of Object.entries(opts.params)) values[k] = typeof v === 'string' ? v : JSON.stringify(v);
    const cb = b as CommandBackend;
    const r = await runArgv(fillTemplate(template!, values), { signal: opts.signal, timeoutMs: cb.timeoutMs });
    const tail = r.stderrTail ? `; stderr: ${r.stderrTail}` : '';
    if (r.code !== 0) throw new Error(`command ${r.signal ? `killed by ${r.signal}` : `exited with ${r.code}`}${tail}`);
    return readFile(tmpPath).catch(() => {
      throw new Error(`command exited 0 but wrote no file at {out}${tail}`);
    });
  };

  const failures = new Map<string, FailureRecord>();
  const done = new Set<string>();
  let written = 0;
  const progress = createProgress({ label: 'generate', units: todo.length, mode: opts.progress ?? 'off' });
  const concurrency = b.concurrency ?? (b.kind === 'endpoint' ? 4 : 1);
  let n = 0;
  const one = async (img: PlannedImage): Promise<void> => {
    if (opts.signal?.aborted) return;
    const tmpPath = join(tmp, `${n++}-${img.file.replace(/[/]/g, '_')}`);
    try {
      const png = await toPng(await makeImage(img, tmpPath), opts.width, opts.height);
      const final = join(opts.out, img.file);
      await writeFile(tmpPath, png);
      await rename(tmpPath, final);
      written++;
      done.add(img.file);
      progress.rows(1);
      opts.onImage?.({ image: img });
    } catch (err) {
      await unlink(tmpPath).catch(() => undefined);
      if (opts.signal?.aborted) return;
      const error = (err as Error).message;
      failures.set(img.file, { file: img.file, prompt_index: img.promptIndex, prompt_id: img.promptId, sample_index: img.sample, seed: img.seed, prompt: img.prompt, error });
      opts.onImage?.({ image: img, error });
    } finally {
      progress.unitDone();
    }
  };
  try {
    // After an abort the rest of the queue drains at once (`one` returns early), so nothing is
    // still writing when the temp folder is removed.
    for await (const _ of mapConcurrent(todo, one, { concurrency, ordered: false }));
  } finally {
    progress.stop();
    client?.close();
    await rm(tmp, { recursive: true, force: true });
  }
  if (opts.signal?.aborted) throw new Error(`generation into ${opts.out} interrupted after ${written} new image(s); rerun to resume`, { cause: opts.signal.reason });

  const existing = plan.images.filter((img) => present.has(img.file) || done.has(img.file));
  await writeRecords(opts.out, plan, existing, opts.params, size);
  const failed = plan.images.filter((img) => failures.has(img.file)).map((img) => failures.get(img.file)!);
  const failuresPath = join(opts.out, FAILURES);
  if (failed.length > 0) await writeFile(failuresPath, failed.map((f) => JSON.stringify(f) + '\n').join(''));
  else await rm(failuresPath, { force: true });
  return {
    out: opts.out,
    layout: plan.layout,
    prompts: plan.prompts.length,
    images: plan.images.length,
    written,
    skipped: present.size,
    failed: failed.length,
    seconds: (Date.now() - t0) / 1000,
    failures: failed,
    ...(client ? { requests: client.stats.requests, retries: client.stats.retries } : {}),
  };
}

/** Refuses to mix images made with other settings into one folder (a resumed run must make the same pixels). */
async function checkResumable(out: string, settings: Settings): Promise<void> {
  const path = join(out, GENERATION_JSON);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return;
  }
  let previous: Record<string, unknown>;
  try {
    previous = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message}); remove it or use another output folder`);
  }
  const differ = (Object.keys(settings) as (keyof Settings)[]).filter((k) => JSON.stringify(previous[k]) !== JSON.stringify(settings[k]));
  if (differ.length > 0) {
    const what = differ.map((k) => `${k}: was ${JSON.stringify(previous[k])}, now ${JSON.stringify(settings[k])}`).join('; ');
    throw new Error(`${out} holds images generated with other settings (${what}); use another output folder`);
  }
}

/** True when the file exists and decodes completely (a truncated PNG with an intact header does not). */
async function decodes(path: string): Promise<boolean> {
  try {
    await sharp(path, { failOn: 'truncated' }).raw().toBuffer();
    return true;
  } catch {
    return false;
  }
}

/** Checks the bytes decode at the asked size; keeps PNG bytes as sent, re-encodes other formats losslessly to PNG. */
async function toPng(bytes: Buffer, width: number, height: number): Promise<Buffer> {
  let meta;
  try {
    meta = await sharp(bytes).metadata();
    await sharp(bytes, { failOn: 'truncated' }).raw().toBuffer();
  } catch (err) {
    throw new Error(`the image (${bytes.length} bytes) does not decode: ${(err as Error).message}`);
  }
  if (meta.width !== width || meta.height !== height) throw new Error(`the image is ${meta.width}x${meta.height}, asked ${width}x${height}`);
  return meta.format === 'png' ? bytes : sharp(bytes).png().toBuffer();
}

/** manifest.jsonl (flat) or samples.jsonl (GenEval), and captions.txt for COCO, for the images present, in plan order. */
async function writeRecords(out: string, plan: GenerationPlan, images: PlannedImage[], params: Record<string, unknown>, size: string): Promise<void> {
  const lines = images.map((img) => {
    const e: ManifestEntry & Record<string, unknown> = { file: img.file, prompt: img.prompt, prompt_index: img.promptIndex, sample_index: img.sample, seed: img.seed, prompt_id: img.promptId, size, params };
    return JSON.stringify(e) + '\n';
  });
  await writeFile(join(out, plan.layout === 'geneval' ? GENEVAL_SAMPLES : MANIFEST), lines.join(''));
  if (plan.set === 'coco') {
    // GigaGAN pairs captions.txt line i with the i-th image of the folder in natural sort order.
    const sorted = [...images].sort((a, b) => naturalCompare(basename(a.file), basename(b.file)));
    await writeFile(join(out, CAPTIONS), sorted.map((img) => img.prompt + '\n').join(''));
  }
}
