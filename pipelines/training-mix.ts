import { z } from 'zod';
import { baseJobConfig } from '../src/config/load-config.js';
import type { Job } from '../src/job.js';
import type { Logger } from '../src/log.js';
import { openStore } from '../src/stores/open-store.js';
import type { Store } from '../src/stores/store.js';
import { doneName, readUnitStats, unitId, type Unit, type UnitStats } from '../src/units/unit.js';
import { MAX_DEDUP_THRESHOLD } from '../stages/latent-dedup.js';
import { gatherShard } from '../stages/mix/gather.js';
import { writeMixIndex } from '../stages/mix/mix-index.js';
import { scatterUnit } from '../stages/mix/scatter.js';
import {
  computeSelection,
  datasetIdentity,
  loadCodes,
  openDatasets,
  readSelectionFile,
  saveSelection,
  SELECTION_NAME,
  selectionFingerprint,
  type InputShard,
  type SelectionFile,
  type SelectionSpec,
  type ShardExclusions,
} from '../stages/mix/selection.js';
import { createHash } from 'node:crypto';
import { readPlan } from '../src/executors/local.js';
import { DEDUP_SUMMARY } from '../stages/dedup/dedup-layout.js';
import { mapLimit, messageOf, shown } from './checks.js';
import { stat } from 'node:fs/promises';
import { readLatentManifest } from '../src/formats/latent-shards.js';

export const trainingMixConfig = baseJobConfig.extend({
  job: z.literal('training-mix'),
  /**
   * The weighted sets. Each holds one or more latent datasets (pre-encode outputs: folders or
   * s3:// prefixes with index.json); a set's weight is its share of the mix's samples, by count.
   */
  sets: z.array(z.object({
    name: z.string().min(1),
    paths: z.array(z.string().min(1)).min(1),
    weight: z.number().positive(),
  }).strict()).min(1),
  /**
   * Samples in the mix. Default (null): the largest mix in which no sample repeats, min over sets
   * of rows / share. More repeats a set's rows in whole passes (plus one partial pass by seeded
   * rank); fewer takes each set's lowest-ranked rows. Rounded down to whole global batches.
   */
  total: z.number().int().min(1).nullable().default(null),
  /** Decides which rows a set takes, the captions and the shuffle; same seed and inputs, same mix. */
  seed: z.number().int().min(0).max(0xffffffff).default(0),
  caption: z.object({
    /**
     * Probability that a sample trains on caption_long rather than caption_short (drawn per sample
     * from a seeded hash, so stable across runs). 0.5: the paper captions every image both ways
     * and gives no ratio, so both styles get equal weight.
     */
    long_ratio: z.number().min(0).max(1).default(0.5),
    /**
     * Caption dropout for classifier-free guidance: the probability that a sample's caption is
     * replaced by the empty prompt (caption_text "", caption_kind uncond), drawn per sample and
     * copy from a seeded hash. The reference training (Instella-T2I, train_diff.py) drops captions
     * itself with uncond_prob 0.1: set 0.1 here only for a trainer that does not. Default 0: off.
     */
    uncond_prob: z.number().min(0).max(1).default(0),
  }).strict().prefault({}),
  dedup: z.object({
    /**
     * Also drop latents within this many bits (Hamming) of an earlier one, across all sets; null:
     * off. Holds every distinct latent in memory (1 KiB per row) during planning.
     */
    hamming: z.number().int().min(0).max(MAX_DEDUP_THRESHOLD).nullable().default(null),
    /**
     * `bitprep dedup` folders over the image outputs the latent datasets were encoded from: rows
     * their views drop (exact or near copies of a picture kept elsewhere) are left out, recorded
     * as dropped `dedup_excluded`. Each latent unit is matched to the image unit it encoded through
     * the dataset's `_plan.json`; every one must have a view (checked at plan time).
     */
    exclude: z.array(z.string().min(1)).default([]),
  }).strict().prefault({}),
  /** Trainer ranks (GPUs) the mix is balanced for: each gets exactly total / world_size samples. */
  world_size: z.number().int().min(1).default(8),
  /** Samples per optimizer step over all ranks (the paper: 4096 = 8 GPUs × 512); the total is a multiple of it. */
  global_batch: z.number().int().min(1).default(4096),
  /** Rows per output shard (each rank's last shard holds the rest). */
  shard_size: z.number().int().min(1).default(8192),
  shuffle: z.object({
    /**
     * Input rows per scatter unit. A scatter unit holds its samples in memory (~1.2 KiB each) and
     * writes one shuffle run; every output shard then reads a slice of every run, so fewer, larger
     * units mean fewer reads per output shard.
     */
    scatter_rows: z.number().int().min(1).default(500_000),
    /** Where shuffle runs go (a local disk is fastest); default the output. Needs room for the whole mix. */
    scratch: z.string().min(1).nullable().default(null),
    /** Keep the runs after index.json is written (default: deleted). */
    keep_runs: z.boolean().default(false),
  }).strict().prefault({}),
}).strict().superRefine((c, ctx) => {
  if (c.global_batch % c.world_size !== 0) ctx.addIssue({ code: 'custom', path: ['global_batch'], message: `must be a multiple of world_size (${c.world_size})` });
  const names = c.sets.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) ctx.addIssue({ code: 'custom', path: ['sets'], message: `set name ${JSON.stringify(dup)} is used twice` });
});

export type TrainingMixConfig = z.infer<typeof trainingMixConfig>;

const JOB = 'training-mix';
const SCATTER = 'scatter-';
/** Where the scratch settings are kept for finalize, which gets no config. */
const SCRATCH_NAME = '_mix/scratch.json';
/** Runs are kept per mix (fingerprint), so mixes sharing a scratch location never read each other's. */
const runsPrefix = (fingerprint: string) => `_mix/runs/${fingerprint.slice(0, 16)}/`;
const runName = (fingerprint: string, scatterId: string) => `${runsPrefix(fingerprint)}${scatterId}.run`;

function specOf(cfg: TrainingMixConfig): SelectionSpec {
  return {
    sets: cfg.sets,
    seed: cfg.seed,
    total: cfg.total,
    longRatio: cfg.caption.long_ratio,
    uncondProb: cfg.caption.uncond_prob,
    hamming: cfg.dedup.hamming,
    worldSize: cfg.world_size,
    globalBatch: cfg.global_batch,
    shardSize: cfg.shard_size,
  };
}

/** Input shards cut into scatter units of at most `scatterRows` rows (a larger shard is a unit alone). */
export function scatterParts(inputs: InputShard[], scatterRows: number): number[][] {
  const parts: number[][] = [];
  let cur: number[] = [];
  let rows = 0;
  inputs.forEach((inp, k) => {
    if (cur.length > 0 && rows + inp.rows > scatterRows) {
      parts.push(cur);
      cur = [];
      rows = 0;
    }
    cur.push(k);
    rows += inp.rows;
  });
  if (cur.length > 0) parts.push(cur);
  return parts;
}

const scatterIds = (parts: number[][]) => parts.map((_, u) => SCATTER + unitId(u, parts.length));

/**
 * What a training-mix session keeps between its units: pass 1's result per output and
 * fingerprint, its per-row codes (loaded by scatter units only), scatter units running or finished
 * (so a gather unit waits for one instead of redoing it), and runs seen complete.
 */
interface MixCaches {
  selections: Map<string, Promise<SelectionFile>>;
  codeSets: Map<string, Promise<Uint8Array[]>>;
  scatters: Map<string, Promise<UnitStats>>;
  runsSeen: Set<string>;
}

const newCaches = (): MixCaches => ({ selections: new Map(), codeSets: new Map(), scatters: new Map(), runsSeen: new Set() });

function memo<T>(map: Map<string, Promise<T>>, k: string, make: () => Promise<T>): Promise<T> {
  let p = map.get(k);
  if (!p) {
    p = make();
    // A failed read is not kept: the next unit tries again and reports it.
    p.catch(() => map.delete(k));
    map.set(k, p);
  }
  return p;
}

function selectionFor(c: MixCaches, output: Store, fingerprint: string): Promise<SelectionFile> {
  return memo(c.selections, `${output.url}\u0000${fingerprint}`, async () => {
    const sel = await readSelectionFile(output);
    if (!sel) throw new Error(`${output.url}: no ${SELECTION_NAME}; plan the training mix first (bitprep plan or bitprep run)`);
    if (sel.fingerprint !== fingerprint) throw new Error(`${output.url}: ${SELECTION_NAME} belongs to another plan (${sel.fingerprint.slice(0, 12)}, units expect ${fingerprint.slice(0, 12)})`);
    return sel;
  });
}

const codesFor = (c: MixCaches, output: Store, sel: SelectionFile): Promise<Uint8Array[]> => memo(c.codeSets, `${output.url}\u0000${sel.fingerprint}`, () => loadCodes(output, sel));

/**
 * Pass 1, once per output: reused when `_mix/selection.json` holds the same fingerprint (spec and
 * input digests), refused when it holds another — units already written would belong to a
 * different mix.
 */
async function ensureSelection(cfg: TrainingMixConfig, output: Store, log: Logger): Promise<SelectionFile> {
  const datasets = await openDatasets(cfg.sets);
  const spec = { ...specOf(cfg), ...(cfg.dedup.exclude.length > 0 ? { exclude: await dedupSummaries(cfg.dedup.exclude) } : {}) };
  const fingerprint = selectionFingerprint(spec, datasets);
  const existing = await readSelectionFile(output);
  if (existing) {
    if (existing.fingerprint !== fingerprint) {
      throw new Error(
        `output ${output.url} holds a training mix planned from other inputs or settings (sets, weights, seed, total, caption, dedup, world_size, global_batch or shard_size changed, or an input was rebuilt). ` +
          'Use a new output, or delete it to start over.',
      );
    }
    return selectionFor(newCaches(), output, fingerprint);
  }
  const rows = datasets.reduce((a, d) => a + d.manifest.rows, 0);
  log.info(`training-mix pass 1: ${datasets.length} dataset(s), ${rows} rows; reading keys${cfg.dedup.hamming !== null ? ' and latents' : ''}`);
  const sel = await computeSelection(spec, datasets, fingerprint, log, cfg.dedup.exclude.length > 0 ? await dedupExclusions(cfg.dedup.exclude) : undefined);
  await saveSelection(output, sel);
  const m = sel.mixture;
  for (const s of sel.sets) {
    log.info(`  ${s.name}: ${s.input_rows} rows, ${s.duplicate_key} duplicate keys, ${s.near_duplicate} near duplicates${s.dedup_excluded ? `, ${s.dedup_excluded} excluded by dedup` : ''} → ${s.rows} distinct; takes ${s.take}${s.passes > 0 ? ` (${s.passes} pass(es) + ${s.extra})` : ''}`);
  }
  log.info(`  total ${m.total} (natural ${m.natural}${cfg.total !== null ? `, asked ${cfg.total}` : ''}), ${sel.layout.shards} output shards, ${sel.layout.worldSize} ranks × ${sel.layout.rankRows}`);
  const { codes: _codes, ...file } = sel;
  return file;
}

const scratchOf = (cfg: TrainingMixConfig, output: Store): Store => (cfg.shuffle.scratch ? openStore(cfg.shuffle.scratch) : output);

function runScatter(c: MixCaches, cfg: TrainingMixConfig, sel: SelectionFile, output: Store, id: string, parts: number[][], onRows: (n: number) => void): Promise<UnitStats> {
  return memo(c.scatters, `${output.url}\u0000${id}`, async () => {
    const started = new Date();
    const codes = await codesFor(c, output, sel);
    const u = Number(id.slice(SCATTER.length));
    return scatterUnit({ sel: { ...sel, codes }, inputs: parts[u], output, scratch: scratchOf(cfg, output), runName: runName(sel.fingerprint, id), job: JOB, unitId: id, started, onRows });
  });
}

/**
 * Makes sure every shuffle run exists before a gather unit reads them. Runs are normally all
 * written first (scatter units come first in the plan); one that is missing — an array task
 * reached its gather units before another task finished scattering, or a run was deleted — is
 * written here. Scatter output is deterministic, so a run written twice is the same run.
 */
async function ensureRuns(c: MixCaches, cfg: TrainingMixConfig, sel: SelectionFile, output: Store, parts: number[][], log: Logger): Promise<string[]> {
  const scratch = scratchOf(cfg, output);
  const ids = scatterIds(parts);
  for (const id of ids) {
    const k = `${output.url}\u0000${id}`;
    if (c.runsSeen.has(k)) continue;
    const running = c.scatters.get(k);
    if (running) await running;
    else if (!((await output.exists(doneName(id))) && (await scratch.exists(runName(sel.fingerprint, id))))) {
      log.info(`${id}: shuffle run missing, writing it before gathering`);
      await runScatter(c, cfg, sel, output, id, parts, () => {});
    }
    c.runsSeen.add(k);
  }
  return ids.map((id) => runName(sel.fingerprint, id));
}

const fingerprintOf = (unit: Unit): string => {
  const ref = unit.inputs[0]?.uri ?? '';
  if (!ref.startsWith(`${SELECTION_NAME}#`)) throw new Error(`unit ${unit.id}: not a training-mix unit`);
  return ref.slice(SELECTION_NAME.length + 1);
};

/**
 * Latent datasets → weighted, deduplicated, globally shuffled, rank-balanced latent shards and the
 * index a trainer reads (index.json, mix.json).
 *
 *   plan       pass 1: keys (and latents for near-dup) of every input → which rows, how many times
 *   scatter-*  pass 2a: each group of input shards → one shuffle run sorted by output shard
 *   00000…     pass 2b: each output shard ← its slice of every run, in shuffled order
 *   finalize   index.json + mix.json; the runs are deleted
 */
export const trainingMixJob: Job<TrainingMixConfig> = {
  name: JOB,
  description: 'weighted mixture of latent datasets (LAION : synthetic = 3 : 1 by default), dedup, global shuffle, rank-balanced latent shards + index',
  schema: trainingMixConfig,
  // How the run goes, not what it writes: these may change on a rerun of an output.
  operational: ['shuffle.scratch', 'shuffle.keep_runs'],
  /** Plan-time checks (pipelines/checks.ts); bitprep plan and the start of bitprep run list every problem at once. */
  check: checkTrainingMix,
  async plan(cfg, log) {
    const output = openStore(cfg.output);
    const sel = await ensureSelection(cfg, output, log);
    await output.put(SCRATCH_NAME, JSON.stringify({ scratch: cfg.shuffle.scratch, keep_runs: cfg.shuffle.keep_runs }) + '\n');
    const ref = { uri: `${SELECTION_NAME}#${sel.fingerprint}` };
    const parts = scatterParts(sel.inputs, cfg.shuffle.scatter_rows);
    const scatter: Unit[] = scatterIds(parts).map((id, u) => ({
      id,
      inputs: [ref, ...parts[u].map((k) => ({ uri: `${sel.inputs[k].dataset.replace(/\/+$/, '')}/${sel.inputs[k].name}`, rowStart: 0, rowEnd: sel.inputs[k].rows }))],
    }));
    const gather: Unit[] = Array.from({ length: sel.layout.shards }, (_, i) => ({ id: unitId(i, sel.layout.shards), inputs: [ref] }));
    return [...scatter, ...gather];
  },
  open(cfg) {
    const caches = newCaches();
    return {
      async run(unit, ctx) {
        const sel = await selectionFor(caches, ctx.output, fingerprintOf(unit));
        const parts = scatterParts(sel.inputs, cfg.shuffle.scatter_rows);
        if (unit.id.startsWith(SCATTER)) {
          // Another process may have finished it since this run listed what was done.
          if (await ctx.output.exists(doneName(unit.id))) {
            return await readUnitStats(ctx.output, unit.id);
          }
          return runScatter(caches, cfg, sel, ctx.output, unit.id, parts, ctx.onRows);
        }
        const runs = await ensureRuns(caches, cfg, sel, ctx.output, parts, ctx.log);
        return gatherShard({ sel, shard: Number(unit.id), output: ctx.output, scratch: scratchOf(cfg, ctx.output), runs, job: JOB, unitId: unit.id, started: new Date(), onRows: ctx.onRows });
      },
      async close() {},
    };
  },
  async finalize(output, unitIds, log) {
    const gatherIds = unitIds.filter((id) => !id.startsWith(SCATTER));
    await writeMixIndex(output, gatherIds, log);
    const settings = (await output.exists(SCRATCH_NAME)) ? (JSON.parse(new TextDecoder().decode(await output.get(SCRATCH_NAME))) as { scratch: string | null; keep_runs: boolean }) : { scratch: null, keep_runs: false };
    if (settings.keep_runs) return;
    const scratch = settings.scratch ? openStore(settings.scratch) : output;
    const sel = await readSelectionFile(output);
    const runs = sel ? await scratch.list(runsPrefix(sel.fingerprint)) : [];
    for (const name of runs) await scratch.delete(name);
    if (runs.length > 0) log.info(`training-mix: deleted ${runs.length} shuffle run(s) from ${scratch.url}`);
  },
};

/** Each dedup folder with the SHA-256 of its summary: part of the mix's fingerprint. */
async function dedupSummaries(dirs: readonly string[]): Promise<{ dir: string; summary: string }[]> {
  return Promise.all(dirs.map(async (dir) => ({ dir: datasetIdentity(dir), summary: createHash('sha256').update(await openStore(dir).get(DEDUP_SUMMARY)).digest('hex') })));
}

/** Latent unit → the image tar it encoded, from a pre-encode output's recorded plan. */
async function encodedTars(store: Store, url: string): Promise<Map<string, string>> {
  const plan = await readPlan(store);
  if (!plan.plan) throw new Error(`${url}/_plan.json records no unit inputs (made by an older bitprep): encode it again to use dedup.exclude`);
  return new Map(plan.plan.map((u) => [u.id, u.inputs[0].uri]));
}

/** The keys of a latent shard a dedup drops: through the image unit it encoded, that unit's view. */
async function dedupExclusions(dirs: readonly string[]): Promise<ShardExclusions> {
  const { DedupViews } = await import('../stages/dedup/dedup-view.js');
  const views = new DedupViews(dirs);
  const tars = new Map<string, Promise<Map<string, string>>>();
  return async (d, shard) => {
    let t = tars.get(d.url);
    if (!t) tars.set(d.url, (t = encodedTars(d.store, d.url)));
    const unit = shard.replace(/\.latents\.parquet$/, '');
    const tar = (await t).get(unit);
    if (!tar) throw new Error(`${d.url}/${shard}: unit ${unit} is not in the dataset's _plan.json`);
    return new Set((await views.dropsOf(tar)).keys());
  };
}

/** training-mix: every set's datasets are finished latent datasets (a readable index.json of this format). */
async function checkTrainingMix(cfg: TrainingMixConfig): Promise<string[]> {
  const refs = cfg.sets.flatMap((s, i) => s.paths.map((url, j) => ({ key: `sets[${i}].paths[${j}]`, url })));
  const found = await mapLimit(refs, 8, async ({ key, url }) => {
    if (!url.startsWith('s3://') && !(await stat(url).catch(() => undefined))) return `${key}: ${shown(url)} does not exist`;
    try {
      await readLatentManifest(openStore(url));
      return undefined;
    } catch (err) {
      return `${key}: ${messageOf(err)}`;
    }
  });
  const problems = found.filter((x): x is string => x !== undefined);
  if (problems.length === 0 && cfg.dedup.exclude.length > 0) problems.push(...(await checkExclusions(cfg, refs)));
  return problems;
}

/** dedup.exclude: finished dedups, and a view for every image unit the latent datasets encoded. */
async function checkExclusions(cfg: TrainingMixConfig, refs: { key: string; url: string }[]): Promise<string[]> {
  const problems: string[] = [];
  for (const [i, dir] of cfg.dedup.exclude.entries()) {
    if (!(await openStore(dir).exists(DEDUP_SUMMARY))) problems.push(`dedup.exclude[${i}]: ${shown(dir)} has no ${DEDUP_SUMMARY} (not a finished bitprep dedup output)`);
  }
  if (problems.length > 0) return problems;
  const { DedupViews } = await import('../stages/dedup/dedup-view.js');
  const views = new DedupViews(cfg.dedup.exclude);
  for (const { key, url } of refs) {
    try {
      const missing = await views.missingViews((await encodedTars(openStore(url), url)).values());
      if (missing.length > 0) problems.push(`${key}: ${missing.length} image unit(s) it encoded have no dedup view (e.g. ${missing[0]}); run bitprep dedup again`);
    } catch (err) {
      problems.push(`${key}: dedup.exclude: ${messageOf(err)}`);
    }
  }
  return problems;
}
