import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { RecordBatchReader } from 'apache-arrow';
import { beforeAll, describe, expect, it } from 'vitest';
import { trainingMixConfig, trainingMixJob, type TrainingMixConfig } from '../pipelines/training-mix.js';
import { jobs } from '../pipelines/index.js';
import { loadConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import { LATENT_BYTES } from '../src/formats/latent-bits.js';
import { parquetSourceFromStore, readParquetRowGroups } from '../src/formats/parquet-read.js';
import { encodeLatentShard, latentShardName, readLatentManifest, readLatentShard, writeLatentManifest } from '../src/formats/latent-shards.js';
import { silentLogger } from '../src/log.js';
import { seededRandom } from '../src/seeded-random.js';
import { emptyFunnel } from '../src/stats.js';
import { openStore } from '../src/stores/open-store.js';
import { doneName, unitId } from '../src/units/unit.js';
import { UnitOutputs } from '../src/units/unit-outputs.js';
import { FeistelPermutation } from '../stages/mix/feistel.js';
import { readMixIndex, type MixIndex } from '../stages/mix/mix-index.js';
import { locate, planMixture, rankLayout, shardInfo } from '../stages/mix/mixture.js';
import { cliEntry, repoRoot } from './helpers/run-cli.js';
import { startS3Server } from './helpers/s3-server.js';
import { tempDir } from './helpers/temp-dir.js';

type Row = Record<string, unknown>;

interface DatasetSpec {
  source: string;
  rows: number;
  shards: number;
  /** Fields of row i besides key, latent and source. */
  fields(i: number): Row;
  /** Row i's latent; random when undefined. */
  latent?(i: number): Uint8Array | undefined;
  /** Rows per image, as pre-encode's encoder.views writes them (adjacent, `view` 0 … views − 1; random latents). */
  views?: number;
}

/** Every view's latent of each key of the datasets made with `views`. */
const viewLatents = new Map<string, Uint8Array[]>();

function randomLatent(rnd: () => number): Uint8Array {
  const b = new Uint8Array(LATENT_BYTES);
  for (let i = 0; i < LATENT_BYTES; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/**
 * A latent dataset as pre-encode leaves it: `<unit>.latents.parquet` per unit, each committed with
 * a done marker, and index.json from the markers. Keys follow pre-encode's scheme (unit id + row
 * offset), so different datasets share keys, as real ones do.
 */
async function makeDataset(dir: string, spec: DatasetSpec, seed: number): Promise<Map<string, Row>> {
  const store = openStore(dir);
  const rnd = seededRandom(seed);
  const per = Math.ceil(spec.rows / spec.shards);
  const ids: string[] = [];
  const byKey = new Map<string, Row>();
  for (let u = 0; u < spec.shards; u++) {
    const id = unitId(u, spec.shards);
    const rows: Row[] = [];
    for (let i = u * per; i < Math.min(spec.rows, (u + 1) * per); i++) {
      const key = `${id}${String(i - u * per).padStart(4, '0')}`;
      const row = { key, latent: spec.latent?.(i) ?? randomLatent(rnd), source: spec.source, ...spec.fields(i) };
      byKey.set(key, row);
      if (spec.views === undefined) rows.push(row);
      else {
        const all = [row.latent, ...Array.from({ length: spec.views - 1 }, () => randomLatent(rnd))];
        viewLatents.set(`${spec.source}/${key}`, all);
        all.forEach((latent, view) => rows.push({ ...row, latent, view }));
      }
    }
    const out = new UnitOutputs(store, 'pre-encode', id);
    await out.put(latentShardName(id).slice(id.length), encodeLatentShard(rows, { types: { aesthetic_score: 'DOUBLE' } }));
    const now = new Date().toISOString();
    const images = rows.length / (spec.views ?? 1);
    await out.commit({ job: 'pre-encode', unit: id, started_at: now, finished_at: now, seconds: 0, funnel: { ...emptyFunnel(), rows_in: images, written: images }, stages: [], rows_per_second: 0 });
    ids.push(id);
  }
  await writeLatentManifest(store, 'pre-encode', ids, undefined, spec.views === undefined ? undefined : { crop: 'random', views: spec.views });
  return byKey;
}

async function runMix(raw: Record<string, unknown>, selection?: { index: number; count: number }) {
  const cfg: TrainingMixConfig = trainingMixConfig.parse({ job: 'training-mix', ...raw });
  const units = await trainingMixJob.plan(cfg, silentLogger);
  const output = openStore(cfg.output);
  const summary = await executeLocal(trainingMixJob, cfg, units, { output, log: silentLogger, progress: 'off', selection: selection && { ...selection, from: 'flags' } });
  return { cfg, units, summary, output };
}

/** Every rank's rows, read straight from the shards mix.json lists for it. */
async function rankRows(dir: string, mix: MixIndex): Promise<Row[][]> {
  const store = openStore(dir);
  const out: Row[][] = [];
  for (const r of mix.ranks) {
    const rows: Row[] = [];
    for (const sh of r.shards) for await (const g of readLatentShard(store, sh.name)) rows.push(...g);
    out.push(rows);
  }
  return out;
}

/** Latents as text: deep equality over thousands of 1 KiB arrays element by element is slow. */
const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

const ident = (r: Row) => `${String(r.source)}/${String(r.key)}`;

/** Runs the CLI from source and captures stdout as bytes. */
function runFeed(args: string[], opts: { stopAfterBytes?: number; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: Uint8Array; stderr: string }> {
  const child = spawn(process.execPath, [cliEntry, 'feed', ...args], { cwd: repoRoot, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let got = 0;
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    chunks.push(d);
    got += d.length;
    // The trainer exits: its end of the pipe closes while the feed still has rows to send.
    if (opts.stopAfterBytes !== undefined && got >= opts.stopAfterBytes) child.stdout.destroy();
  });
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout: new Uint8Array(Buffer.concat(chunks)), stderr })));
}

function readArrow(bytes: Uint8Array): { rows: Row[]; batchSizes: number[]; meta: Map<string, string> } {
  const reader = RecordBatchReader.from(bytes);
  const rows: Row[] = [];
  const batchSizes: number[] = [];
  let meta = new Map<string, string>();
  for (const batch of reader) {
    meta = batch.schema.metadata;
    batchSizes.push(batch.numRows);
    const cols = ['key', 'latent', 'caption_text', 'caption_kind', 'source'].map((c) => batch.getChild(c)!);
    for (let i = 0; i < batch.numRows; i++) {
      const [key, latent, caption_text, caption_kind, source] = cols.map((c) => c.get(i));
      rows.push({ key, latent: b64(latent as Uint8Array), caption_text, caption_kind, source });
    }
  }
  return { rows, batchSizes, meta };
}

const W = 4;
const BATCH = 64;
const SHARD = 200;

let root: string;
let laion: Map<string, Row>;
let flux: Map<string, Row>;
let dalle: Map<string, Row>;
let sets: Record<string, unknown>[];
let base: Record<string, unknown>;
let outA: string;
let mixA: MixIndex;
let rowsA: Row[][];

beforeAll(async () => {
  root = await tempDir('training-mix');
  laion = await makeDataset(join(root, 'laion'), {
    source: 'laion',
    rows: 3000,
    shards: 3,
    fields: (i) => ({ caption: `alt ${i}`, caption_long: `a long description of laion image ${i}`, caption_short: `laion ${i}`, aesthetic_score: 5 + (i % 4) }),
  }, 1);
  flux = await makeDataset(join(root, 'flux'), {
    source: 'flux-schnell',
    rows: 800,
    shards: 2,
    // Every 10th image lost its long caption: a sample drawn `long` falls back to the short one.
    fields: (i) => ({ caption: `prompt ${i}`, caption_long: i % 10 === 0 ? null : `a long description of flux image ${i}`, caption_short: `flux ${i}` }),
  }, 2);
  dalle = await makeDataset(join(root, 'dalle3'), {
    source: 'dalle3',
    rows: 700,
    shards: 1,
    // Every 7th has only the dataset's own caption.
    fields: (i) => (i % 7 === 0 ? { caption: `dalle caption ${i}`, caption_long: null, caption_short: '' } : { caption: `dalle caption ${i}`, caption_long: `a long description of dalle image ${i}`, caption_short: `dalle ${i}` }),
  }, 3);
  sets = [
    { name: 'laion', paths: [join(root, 'laion')], weight: 3 },
    { name: 'synthetic', paths: [join(root, 'flux'), join(root, 'dalle3')], weight: 1 },
  ];
  base = { sets, seed: 1, world_size: W, global_batch: BATCH, shard_size: SHARD, caption: { long_ratio: 0.7 }, shuffle: { scatter_rows: 1500 } };
  outA = join(root, 'mix-a');
  await runMix({ ...base, output: outA });
  mixA = await readMixIndex(openStore(outA));
  rowsA = await rankRows(outA, mixA);
});

describe('mixture arithmetic', () => {
  it('takes the largest total without repetition, in whole global batches, split by largest remainder', () => {
    const m = planMixture([{ name: 'laion', weight: 3, rows: 3000 }, { name: 'synthetic', weight: 1, rows: 1500 }], { unit: 64 });
    expect(m.natural).toBe(4000);
    expect(m.total).toBe(3968);
    expect(m.sets.map((s) => s.take)).toEqual([2976, 992]);
    const odd = planMixture([{ name: 'a', weight: 1, rows: 10 }, { name: 'b', weight: 1, rows: 10 }, { name: 'c', weight: 1, rows: 10 }], { unit: 1, total: 31 });
    expect(odd.sets.map((s) => s.take)).toEqual([11, 10, 10]);
    expect(odd.sets[0]).toMatchObject({ passes: 1, extra: 1 });
  });

  it('lays ranks out so every rank has the same samples and global batches read in order', () => {
    const l = rankLayout(3968, 4, 64, 200);
    expect(l).toMatchObject({ rankRows: 992, shardsPerRank: 5, lastShardRows: 192, shards: 20 });
    const seen = new Set<string>();
    for (let p = 0; p < l.total; p++) {
      const { shard, row } = locate(l, p);
      expect(row).toBeLessThan(shardInfo(l, shard).rows);
      seen.add(`${shard}:${row}`);
    }
    expect(seen.size).toBe(l.total);
    // Global batch 1 is rank r's samples 16..31 for every r.
    expect(locate(l, 64 + 2 * 16 + 5)).toEqual({ shard: 2, row: 16 + 5 });
  });

  it('shuffles with a seeded bijection', () => {
    for (const n of [1, 2, 5, 1000, 4097]) {
      const p = new FeistelPermutation(n, 7);
      const img = new Set(Array.from({ length: n }, (_, i) => p.apply(i)));
      expect(img.size).toBe(n);
      expect(Math.max(...img)).toBe(n - 1);
    }
    const a = new FeistelPermutation(1000, 1);
    const b = new FeistelPermutation(1000, 2);
    expect(Array.from({ length: 50 }, (_, i) => a.apply(i))).not.toEqual(Array.from({ length: 50 }, (_, i) => b.apply(i)));
  });
});

describe('training-mix config', () => {
  it('ships a valid config with the documented defaults', async () => {
    const { config } = await loadConfig(join(repoRoot, 'configs', 'training-mix.yaml'), jobs);
    expect(config).toMatchObject({ job: 'training-mix', total: null, caption: { long_ratio: 0.5 }, world_size: 8, global_batch: 4096 });
    expect((config as unknown as TrainingMixConfig).sets.map((s) => s.weight)).toEqual([3, 1]);
    const bare = trainingMixConfig.parse({ job: 'training-mix', output: 'o', sets: [{ name: 'a', paths: ['x'], weight: 1 }] });
    expect(bare).toMatchObject({ seed: 0, caption: { long_ratio: 0.5 }, dedup: { hamming: null }, shard_size: 8192, shuffle: { scratch: null, keep_runs: false } });
  });

  it('refuses a global batch that ranks cannot split, and a set named twice', () => {
    const sets = [{ name: 'a', paths: ['x'], weight: 1 }];
    expect(() => trainingMixConfig.parse({ job: 'training-mix', output: 'o', sets, world_size: 3, global_batch: 64 })).toThrow(/multiple of world_size/);
    expect(() => trainingMixConfig.parse({ job: 'training-mix', output: 'o', sets: [...sets, ...sets] })).toThrow(/used twice/);
  });
});

describe('training-mix', () => {
  it('mixes laion : synthetic = 3 : 1 and records what it did', async () => {
    const all = rowsA.flat();
    expect(all.length).toBe(3968);
    const laionCount = all.filter((r) => r.mix_set === 'laion').length;
    const synthetic = all.filter((r) => r.mix_set === 'synthetic');
    expect(Math.abs(laionCount / all.length - 0.75)).toBeLessThan(0.005);
    expect(laionCount).toBe(2976);
    expect(synthetic.length).toBe(992);
    // Both synthetic datasets contribute, in proportion to their sizes (992 of 1500, drawn by rank).
    const fromFlux = synthetic.filter((r) => r.source === 'flux-schnell').length;
    expect(Math.abs(fromFlux / 992 - 800 / 1500)).toBeLessThan(0.06);
    // No sample twice: the natural total needs no repetition.
    expect(new Set(all.map(ident)).size).toBe(all.length);
    // Rows arrive intact: latent, captions and annotations are the input's.
    const inputs: Record<string, Map<string, Row>> = { laion, 'flux-schnell': flux, dalle3: dalle };
    for (const r of all) {
      const src = inputs[String(r.source)].get(String(r.key))!;
      expect(Buffer.compare(Buffer.from(r.latent as Uint8Array), Buffer.from(src.latent as Uint8Array))).toBe(0);
      expect(r.caption).toBe(src.caption);
      if (r.source === 'laion') expect(r.aesthetic_score).toBe(src.aesthetic_score);
    }
    expect(mixA.sets.map((s) => [s.name, s.take, s.rows])).toEqual([['laion', 2976, 3000], ['synthetic', 992, 1500]]);
    expect(mixA.sets[0].share_achieved).toBe(0.75);
    const manifest = await readLatentManifest(openStore(outA));
    expect(manifest.rows).toBe(3968);
    expect(manifest.shards.map((s) => s.name)).toEqual(Array.from({ length: 20 }, (_, i) => `${unitId(i, 20)}.latents.parquet`));
  });

  it('gives every rank exactly the same number of samples, in shards i with i mod W = r', () => {
    expect(mixA.total % BATCH).toBe(0);
    expect(rowsA.map((r) => r.length)).toEqual([992, 992, 992, 992]);
    expect(mixA.ranks.map((r) => r.samples)).toEqual([992, 992, 992, 992]);
    for (const r of mixA.ranks) {
      expect(r.shards.map((s) => s.rows)).toEqual([200, 200, 200, 200, 192]);
      r.shards.forEach((s, j) => expect(s.name).toBe(`${unitId(j * W + r.rank, 20)}.latents.parquet`));
    }
  });

  it('shuffles globally: sets and input shards interleave within every global batch', () => {
    for (let step = 0; step < 3; step++) {
      const batch = rowsA.flatMap((r) => r.slice(step * 16, (step + 1) * 16));
      expect(new Set(batch.map((r) => r.mix_set)).size).toBe(2);
      expect(new Set(batch.filter((r) => r.source === 'laion').map((r) => String(r.key).slice(0, 5))).size).toBe(3);
    }
  });

  it('makes the same mix from the same seed, another order from another seed', async () => {
    const outB = join(root, 'mix-b');
    await runMix({ ...base, output: outB });
    const shardsA = (await readLatentManifest(openStore(outA))).shards;
    expect((await readLatentManifest(openStore(outB))).shards).toEqual(shardsA);
    const outC = join(root, 'mix-seed2');
    await runMix({ ...base, seed: 2, output: outC });
    const mixC = await readMixIndex(openStore(outC));
    const rowsC = await rankRows(outC, mixC);
    expect(rowsC.map((r) => r.length)).toEqual([992, 992, 992, 992]);
    const a = rowsA[0].map(ident);
    const c = rowsC[0].map(ident);
    expect(c).not.toEqual(a);
    expect(a.filter((x, i) => c[i] === x).length).toBeLessThan(20);
  });

  it('chooses long captions at long_ratio, falls back when one is missing, and decides per sample', async () => {
    const all = rowsA.flat();
    const full = all.filter((r) => r.source === 'laion');
    const longShare = full.filter((r) => r.caption_kind === 'long').length / full.length;
    expect(Math.abs(longShare - 0.7)).toBeLessThan(0.04);
    for (const r of all) {
      const col = { long: 'caption_long', short: 'caption_short', caption: 'caption' }[String(r.caption_kind)];
      expect(col, `caption_kind ${String(r.caption_kind)}`).toBeDefined();
      expect(r.caption_text).toBe(r[col!]);
    }
    const fluxNoLong = all.filter((r) => r.source === 'flux-schnell' && r.caption_long === null);
    expect(fluxNoLong.length).toBeGreaterThan(0);
    expect(fluxNoLong.every((r) => r.caption_kind === 'short')).toBe(true);
    const dalleOnlyCaption = all.filter((r) => r.source === 'dalle3' && r.caption_long === null);
    expect(dalleOnlyCaption.length).toBeGreaterThan(0);
    expect(dalleOnlyCaption.every((r) => r.caption_kind === 'caption')).toBe(true);
    const achieved = mixA.caption.achieved;
    expect(achieved.long + achieved.short + achieved.caption + achieved.none).toBe(3968);
    expect(achieved.caption).toBe(dalleOnlyCaption.length);
    // Another seed draws again, but the same seed draws the same (checked byte for byte above).
    const outC = join(root, 'mix-seed2');
    const kindsC = new Map((await rankRows(outC, await readMixIndex(openStore(outC)))).flat().map((r) => [ident(r), r.caption_kind]));
    const both = full.filter((r) => kindsC.has(ident(r)));
    expect(both.some((r) => kindsC.get(ident(r)) !== r.caption_kind)).toBe(true);
  });

  it('caption dropout: about uncond_prob of the samples train on the empty prompt, drawn per sample, recorded in mix.json', async () => {
    const out = join(root, 'mix-uncond');
    await runMix({ ...base, caption: { long_ratio: 0.7, uncond_prob: 0.25 }, output: out });
    const mix = await readMixIndex(openStore(out));
    expect(mix.caption.uncond_prob).toBe(0.25);
    const rows = (await rankRows(out, mix)).flat();
    const uncond = rows.filter((r) => r.caption_kind === 'uncond');
    expect(mix.caption.achieved.uncond).toBe(uncond.length);
    // 3968 draws at p = 0.25: the share lies within ±0.03 (4.4 standard deviations).
    expect(Math.abs(uncond.length / rows.length - 0.25)).toBeLessThan(0.03);
    for (const r of uncond) expect(r.caption_text).toBe('');
    // The same samples in the same places as the mix without dropout; the others keep their captions.
    const flatA = rowsA.flat();
    expect(rows.map((r) => ident(r))).toEqual(flatA.map((r) => ident(r)));
    rows.forEach((r, i) => {
      if (r.caption_kind !== 'uncond') expect([r.caption_kind, r.caption_text]).toEqual([flatA[i].caption_kind, flatA[i].caption_text]);
    });
    // Off by default.
    expect(mixA.caption.uncond_prob).toBe(0);
    expect(mixA.caption.achieved.uncond).toBe(0);
  });

  it('drops later duplicates of (source, key): a dataset listed twice changes nothing', async () => {
    const out = join(root, 'mix-dup');
    const { summary } = await runMix({ ...base, sets: [{ ...sets[0], paths: [join(root, 'laion'), join(root, 'laion')] }, sets[1]], output: out });
    const mix = await readMixIndex(openStore(out));
    expect(mix.sets[0]).toMatchObject({ input_rows: 6000, duplicate_key: 3000, rows: 3000, take: 2976 });
    // flux and dalle3 share keys but not sources: none of them is a duplicate.
    expect(mix.sets[1]).toMatchObject({ input_rows: 1500, duplicate_key: 0 });
    expect(summary.funnel.dropped.duplicate_key).toBe(3000);
    expect(summary.funnel.rows_in).toBe(7500);
    expect(summary.funnel_balances).toBe(true);
    // The same rows, positions and captions as the mix without the second listing.
    expect((await readLatentManifest(openStore(out))).shards).toEqual((await readLatentManifest(openStore(outA))).shards);
  });

  it('repeats a short set in whole passes when the total asks for more', async () => {
    const out = join(root, 'mix-repeat');
    await runMix({ ...base, sets: [{ name: 'laion', paths: [join(root, 'laion')], weight: 1 }, { name: 'dalle3', paths: [join(root, 'dalle3')], weight: 1 }], total: 2048, output: out });
    const mix = await readMixIndex(openStore(out));
    expect(mix.natural_total).toBe(1400);
    expect(mix.sets[1]).toMatchObject({ take: 1024, passes: 1, extra: 324 });
    const all = (await rankRows(out, mix)).flat();
    const counts = new Map<string, number>();
    for (const r of all) if (r.mix_set === 'dalle3') counts.set(String(r.key), (counts.get(String(r.key)) ?? 0) + 1);
    expect(counts.size).toBe(700);
    expect([...counts.values()].filter((c) => c === 2).length).toBe(324);
    expect([...counts.values()].every((c) => c === 1 || c === 2)).toBe(true);
    expect(new Set(all.filter((r) => r.mix_set === 'laion').map(ident)).size).toBe(1024);
  });

  it('unifies a column typed by its own values per shard (guidance 0 → INT64 in one shard, 4.5 → DOUBLE in the next)', async () => {
    const dir = join(root, 'typed-per-shard');
    await makeDataset(dir, { source: 'synth', rows: 600, shards: 2, fields: (i) => ({ caption: `c${i}`, gen_guidance: i < 300 ? 0 : 4.5 }) }, 77);
    const out = join(root, 'mix-typed');
    await runMix({ ...base, sets: [{ name: 'synth', paths: [dir], weight: 1 }], output: out });
    const mix = await readMixIndex(openStore(out));
    const all = (await rankRows(out, mix)).flat();
    expect(all.length).toBeGreaterThan(0);
    const g = new Set(all.map((r) => r.gen_guidance));
    expect([...g].sort()).toEqual([0, 4.5]);
  });

  it('drops near-duplicate latents within dedup.hamming bits of an earlier one', async () => {
    const laionRows = [...laion.values()];
    const planted = 60;
    const flip = (src: Uint8Array, bits: number) => {
      const b = new Uint8Array(src);
      for (let k = 0; k < bits; k++) b[(k * 97) % LATENT_BYTES] ^= 1 << (k % 8);
      return b;
    };
    await makeDataset(join(root, 'near'), {
      source: 'near',
      rows: 300,
      shards: 1,
      fields: (i) => ({ caption_short: `near ${i}` }),
      latent: (i) => (i < planted ? flip(laionRows[i * 11].latent as Uint8Array, i % 6) : undefined),
    }, 4);
    const out = join(root, 'mix-near');
    await runMix({ ...base, sets: [{ name: 'laion', paths: [join(root, 'laion')], weight: 1 }, { name: 'near', paths: [join(root, 'near')], weight: 1 }], dedup: { hamming: 5 }, output: out });
    const mix = await readMixIndex(openStore(out));
    expect(mix.sets[0].near_duplicate).toBe(0);
    expect(mix.sets[1]).toMatchObject({ near_duplicate: planted, rows: 300 - planted });
  });

  it('resumes: a run stopped part-way and rerun equals an unbroken one', async () => {
    const out = join(root, 'mix-resume');
    // A third of the units (array task 0 of 3): its output shards need runs of scatter units it
    // does not own, so it writes those itself.
    const first = await runMix({ ...base, output: out }, { index: 0, count: 3 });
    expect(first.summary.units.done).toBeLessThan(first.units.length);
    // A unit killed after writing its shard but before its done marker is redone.
    await openStore(out).delete(doneName(unitId(3, 20)));
    const second = await runMix({ ...base, output: out });
    expect(second.summary.units.done).toBe(second.units.length);
    expect(second.summary.this_run!.units_already_done).toBeGreaterThan(0);
    expect((await readLatentManifest(openStore(out))).shards).toEqual((await readLatentManifest(openStore(outA))).shards);
    expect(await openStore(out).list('_mix/runs/')).toEqual([]);
  });

  it('refuses to resume into an output planned with other settings', async () => {
    await expect(runMix({ ...base, seed: 9, output: outA })).rejects.toThrow(/other inputs or settings/);
  });
});

describe('training-mix and feed over datasets with views', () => {
  it('keeps each image one sample carrying all its views; feed --epoch shows each pass another view', async () => {
    const V = 3;
    const views = await makeDataset(join(root, 'views'), { source: 'crops', rows: 240, shards: 2, views: V, fields: (i) => ({ caption: `crop ${i}`, caption_short: `crop ${i}` }) }, 9);
    const out = join(root, 'mix-views');
    await runMix({ sets: [{ name: 'crops', paths: [join(root, 'views')], weight: 1 }, { name: 'flux', paths: [join(root, 'flux')], weight: 1 }], seed: 4, world_size: 2, global_batch: 32, shard_size: 100, output: out });
    const mix = await readMixIndex(openStore(out));
    const rows = (await rankRows(out, mix)).flat();
    // Images, not rows, are samples: 240 images and 800 flux rows at 1 : 1 → 480 samples.
    expect(mix.total).toBe(480);
    const crops = rows.filter((r) => r.source === 'crops');
    expect(crops).toHaveLength(240);
    expect(new Set(crops.map(ident)).size).toBe(240);
    const starts = new Set<number>();
    for (const r of crops) {
      const all = viewLatents.get(ident(r))!.map(b64);
      const lv = r.latent_views as Uint8Array;
      expect(lv.length).toBe(V * LATENT_BYTES);
      const order = Array.from({ length: V }, (_, k) => b64(lv.subarray(k * LATENT_BYTES, (k + 1) * LATENT_BYTES)));
      // Every view, each once, in a rotation of the encoded order; `latent` is the first shown.
      expect([...order].sort()).toEqual([...all].sort());
      const start = all.indexOf(order[0]);
      expect(order).toEqual([...all.slice(start), ...all.slice(0, start)]);
      expect(b64(r.latent as Uint8Array)).toBe(order[0]);
      starts.add(start);
    }
    // Samples start at different views (a seeded draw per sample), not all at view 0.
    expect(starts.size).toBe(V);
    for (const r of rows.filter((x) => x.source !== 'crops')) expect(r.latent_views ?? null).toBeNull();
    expect(views.size).toBe(240);

    // Records: every input row once; the views of an image share its fate.
    const records: Row[] = [];
    const store = openStore(out);
    for (const name of (await store.list('')).filter((n) => /^scatter-\d+\.parquet$/.test(n))) for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, name))) records.push(...g.rows);
    const cropRecords = records.filter((r) => r.source === 'crops');
    expect(cropRecords).toHaveLength(240 * V);
    expect(cropRecords.every((r) => r.status === 'ok')).toBe(true);
    expect(new Set(cropRecords.map((r) => `${String(r.key)}/${String(r.view)}`)).size).toBe(240 * V);

    // feed: the same samples in the same order every epoch; a sample with views shows view e mod V of its order.
    const epochs: Row[][] = [];
    for (const e of [0, 1, 2, 3]) {
      const f = await runFeed([out, '--rank', '0', '--world-size', '2', '--epoch', String(e)]);
      expect(f.code, f.stderr).toBe(0);
      const got = readArrow(f.stdout);
      expect(got.meta.get('bitprep.epoch')).toBe(String(e));
      epochs.push(got.rows);
    }
    const rank0 = (await rankRows(out, mix))[0];
    for (const [e, got] of epochs.entries()) {
      expect(got.map((r) => r.key)).toEqual(rank0.map((r) => r.key));
      got.forEach((r, i) => {
        const lv = rank0[i].latent_views as Uint8Array | null;
        const k = e % V;
        expect(r.latent).toBe(lv ? b64(lv.subarray(k * LATENT_BYTES, (k + 1) * LATENT_BYTES)) : b64(rank0[i].latent as Uint8Array));
      });
    }
    const withViews = rank0.map((r, i) => (r.latent_views ? i : -1)).filter((i) => i >= 0);
    expect(withViews.length).toBeGreaterThan(50);
    for (const i of withViews) expect(new Set([0, 1, 2].map((e) => epochs[e][i].latent)).size).toBe(V);
    expect(epochs[3]).toEqual(epochs[0]);
  });
});

describe('bitprep feed', () => {
  it("streams a rank's rows in order as Arrow IPC, and --resume-from k yields exactly the tail", async () => {
    const full = await runFeed([outA, '--rank', '1', '--world-size', String(W)]);
    expect(full.stderr).toBe('');
    expect(full.code).toBe(0);
    const got = readArrow(full.stdout);
    expect(got.batchSizes).toEqual(Array(62).fill(16));
    expect(got.meta.get('bitprep.latent_shape')).toBe('128,64');
    const want = rowsA[1].map((r) => ({ key: r.key, latent: b64(r.latent as Uint8Array), caption_text: r.caption_text, caption_kind: r.caption_kind, source: r.source }));
    expect(got.rows).toEqual(want);

    const k = 337;
    const tail = await runFeed([outA, '--rank', '1', '--world-size', String(W), '--resume-from', String(k), '--batch-rows', '50']);
    expect(tail.code).toBe(0);
    const t = readArrow(tail.stdout);
    expect(t.rows).toEqual(got.rows.slice(k));
    expect(t.batchSizes[0]).toBe(50);
  });

  it('stops quietly when the trainer closes the pipe, and refuses another world size', async () => {
    const cut = await runFeed([outA, '--rank', '0', '--world-size', String(W), '--batch-rows', '1'], { stopAfterBytes: 1 });
    expect(cut.code).toBe(0);
    expect(cut.stderr).toBe('');
    const wrong = await runFeed([outA, '--rank', '0', '--world-size', '8']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/world_size 4/);
  });
});

describe('training-mix on s3:// (s3rver on 127.0.0.1)', () => {
  it('reads a dataset from s3://, shuffles through runs in the bucket, and feeds from it', async () => {
    const s3 = await startS3Server({ buckets: ['mix'] });
    const prev = { ...process.env };
    Object.assign(process.env, s3.env);
    try {
      const local = openStore(join(root, 'dalle3'));
      const remote = openStore('s3://mix/latents/dalle3');
      for (const name of await local.list()) await remote.put(name, await local.get(name));
      const out = 's3://mix/runs/a';
      await runMix({ ...base, sets: [sets[0], { ...sets[1], paths: [join(root, 'flux'), 's3://mix/latents/dalle3'] }], output: out });
      const store = openStore(out);
      // Where each dataset lives changes nothing: the same rows, positions and captions as mix A.
      expect((await readLatentManifest(store)).shards).toEqual((await readLatentManifest(openStore(outA))).shards);
      expect(await store.list('_mix/runs/')).toEqual([]);
      const tail = await runFeed([out, '--rank', '2', '--world-size', String(W), '--resume-from', '900'], { env: s3.env });
      expect(tail.code, tail.stderr).toBe(0);
      expect(readArrow(tail.stdout).rows.map((r) => r.key)).toEqual(rowsA[2].slice(900).map((r) => r.key));
    } finally {
      process.env = prev;
      await s3.close();
    }
  });
});
