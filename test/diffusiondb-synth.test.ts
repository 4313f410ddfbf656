import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load-config.js';
import { readTarEntries } from '../src/formats/tar-read.js';
import { FileStore } from '../src/stores/file-store.js';
import { jobs } from '../pipelines/index.js';
import { normalisePrompt, promptIdentity, PromptSelectionBuilder, type PromptSelectionOptions, type PromptVerdicts } from '../stages/prompt-selection.js';
import { generationSeed, MAX_SEED } from '../stages/synthesize.js';
import { ImageGenServer } from './helpers/image-gen-server.js';
import { runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('prompt selection (in process)', () => {
  const opts = (o: Partial<PromptSelectionOptions> = {}): PromptSelectionOptions => ({ max_prompt_nsfw: 0.5, sample_fraction: 1, sample_seed: 0, ...o });
  const select = (rows: [unknown, unknown][], o?: Partial<PromptSelectionOptions>): PromptVerdicts => {
    const b = new PromptSelectionBuilder(opts(o), 2);
    for (const [p, n] of rows) b.add(p, n);
    return b.finish();
  };
  const kinds = (v: PromptVerdicts) => Array.from({ length: v.rows }, (_, i) => v.verdict(i));

  it('normalises whitespace and Unicode and compares case-insensitively', () => {
    expect(normalisePrompt('  a \t red\n\nfox\u00a0 ')).toBe('a red fox');
    expect(normalisePrompt('cafe\u0301')).toBe('caf\u00e9');
    expect(normalisePrompt(null)).toBe('');
    expect(promptIdentity(normalisePrompt(' A  Red FOX'))).toBe(promptIdentity(normalisePrompt('a red fox ')));
  });

  it('drops empty, NSFW (strictly above the threshold, or unscored) and later duplicates, in that order', () => {
    const v = kinds(select([
      ['a red fox', 0.1],
      ['   ', 0.1],
      ['A  RED fox ', 0.2],
      ['bad prompt', 0.51],
      ['borderline', 0.5],
      ['Bad Prompt', 0.2], // its first variant failed the filter, so this one is the first to pass
      ['bad prompt', 0.3],
      ['unscored', null],
      ['a red fox', 0.1],
    ]));
    expect(v).toEqual([
      { kind: 'kept' },
      { kind: 'empty' },
      { kind: 'duplicate', of: 0 },
      { kind: 'nsfw' },
      { kind: 'kept' },
      { kind: 'kept' },
      { kind: 'duplicate', of: 5 },
      { kind: 'nsfw' },
      { kind: 'duplicate', of: 0 },
    ]);
    expect(select([['x', null]], { max_prompt_nsfw: null }).verdict(0)).toEqual({ kind: 'kept' });
  });

  it('samples deterministically per seed, caps exactly, and picks the same prompts whatever the row order', () => {
    const prompts = Array.from({ length: 400 }, (_, i) => `prompt ${i}`);
    const rows = prompts.map((p): [string, number] => [p, 0]);
    const chosen = (v: PromptVerdicts, ps: string[]) => ps.filter((_, i) => v.verdict(i).kind === 'kept').sort();
    const a = chosen(select(rows, { max_prompts: 50, sample_seed: 7 }), prompts);
    expect(a).toHaveLength(50);
    expect(chosen(select(rows, { max_prompts: 50, sample_seed: 7 }), prompts)).toEqual(a);
    expect(chosen(select(rows, { max_prompts: 50, sample_seed: 8 }), prompts)).not.toEqual(a);
    const reversed = [...prompts].reverse();
    expect(chosen(select(reversed.map((p): [string, number] => [p, 0]), { max_prompts: 50, sample_seed: 7 }), reversed)).toEqual(a);

    const half = select(rows, { sample_fraction: 0.5, sample_seed: 7 });
    expect(half.counts.kept).toBeGreaterThan(150);
    expect(half.counts.kept).toBeLessThan(250);
    expect(half.counts.kept + half.counts.not_sampled).toBe(400);
    // A fraction and a cap together keep the cap's lowest ranks among the fraction.
    const both = chosen(select(rows, { sample_fraction: 0.5, max_prompts: 50, sample_seed: 7 }), prompts);
    expect(both.every((p) => chosen(half, prompts).includes(p))).toBe(true);
    expect(both).toEqual(a);

    // Duplicates are counted before the sample and point at the first occurrence whatever its fate.
    const dupes = select([...rows, ['PROMPT 3', 0]], { max_prompts: 10, sample_seed: 1 });
    expect(dupes.verdict(400)).toEqual({ kind: 'duplicate', of: 3 });
    expect(dupes.counts).toMatchObject({ rows: 401, duplicate: 1, kept: 10, not_sampled: 390 });
  });

  it('derives seeds from (prompt, model) in the range servers accept', () => {
    const s = generationSeed('a red fox', 'flux-schnell');
    expect(s).toBe(generationSeed('a red fox', 'flux-schnell'));
    expect(s).not.toBe(generationSeed('a red fox', 'sd35-large'));
    expect(s).not.toBe(generationSeed('a red fox ', 'flux-schnell'));
    for (let i = 0; i < 200; i++) {
      const x = generationSeed(`p${i}`, 'm');
      expect(Number.isInteger(x) && x >= 0 && x <= MAX_SEED).toBe(true);
    }
  });

  it('seed rule is the README\'s: SHA-256 of name NUL prompt, first 4 bytes big-endian, top bit cleared (Python)', () => {
    const cases: [string, string][] = [['a red fox', 'flux-schnell'], ['Ünïcode prompt, "quoted"', 'sd35-large'], ['', 'pixart-sigma']];
    const py = 'import hashlib,json,sys\nfor p,m in json.load(sys.stdin):\n  print(int.from_bytes(hashlib.sha256((m+"\\0"+p).encode()).digest()[:4],"big") & 0x7fffffff)';
    const got = execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify(cases), encoding: 'utf8' });
    expect(got.trim().split('\n').map(Number)).toEqual(cases.map(([p, m]) => generationSeed(p, m)));
  });
});

describe('diffusiondb-synth config', () => {
  it('ships a valid config and refuses unsafe model names and clashing extra fields', async () => {
    const { config } = await loadConfig(join(import.meta.dirname, '..', 'configs', 'diffusiondb-synth.yaml'), jobs);
    expect(config.job).toBe('diffusiondb-synth');
    const dir = await tempDir('ddb-cfg');
    const base = { job: 'diffusiondb-synth', output: join(dir, 'o'), input: { paths: [dir] } };
    for (const [name, extra, why] of [
      ['flux.schnell', {}, /models\.0\.name.*key-safe/s],
      ['flux/schnell', {}, /key-safe/],
      ['flux schnell', {}, /key-safe/],
      ['flux', { num_inference_steps: 8 }, /models\.0\.extra\.num_inference_steps.*use steps/s],
      ['flux', { seed: 1 }, /models\.0\.extra\.seed/],
    ] as const) {
      const p = await writeConfig(dir, 'bad.json', { ...base, models: [{ name, preset: 'flux-schnell', endpoints: ['http://gpu-0:8000/v1'], extra }] });
      await expect(loadConfig(p, jobs)).rejects.toThrow(why);
    }
    const custom = await writeConfig(dir, 'custom.json', { ...base, models: [{ name: 'mine', preset: 'custom', endpoints: ['http://gpu-0:8000/v1'] }] });
    await expect(loadConfig(custom, jobs)).rejects.toThrow(/models\.0\.steps: required with preset custom/);
  });
});

// ---- end to end: the CLI against two image servers --------------------------------------------

interface Row {
  prompt: string;
  nsfw: number;
}

const FOX = 'a red fox in the snow';
const SLOW = 'a slow snail on a leaf';

/** Two files (rows in order; file 2 continues file 1). Comments: the expected verdict. */
const FILE_1: Row[] = [
  { prompt: FOX, nsfw: 0.01 },
  { prompt: 'an astronaut riding a horse', nsfw: 0.02 },
  { prompt: '   ', nsfw: 0 }, // empty
  { prompt: 'explicit prompt one', nsfw: 0.93 }, // nsfw
  { prompt: '  A Red Fox   in the\tSNOW ', nsfw: 0.01 }, // duplicate of row 0
  { prompt: 'lighthouse at dusk, watercolor', nsfw: 0.03 },
  { prompt: SLOW, nsfw: 0.02 },
  { prompt: 'AN ASTRONAUT RIDING A HORSE', nsfw: 0.02 }, // duplicate of row 1
  { prompt: 'explicit prompt two', nsfw: 0.51 }, // nsfw, just above
  { prompt: 'borderline but allowed', nsfw: 0.5 }, // kept: not above 0.5
  ...Array.from({ length: 8 }, (_, i) => ({ prompt: `still life number ${i}, pastel`, nsfw: 0.01 })),
];
const FILE_2: Row[] = [
  { prompt: 'lighthouse  at dusk,  WATERCOLOR', nsfw: 0.03 }, // duplicate of row 5 of file 1
  ...Array.from({ length: 9 }, (_, i) => ({ prompt: `city street ${i} at night`, nsfw: 0.04 })),
  { prompt: 'explicit prompt three', nsfw: 0.99 }, // nsfw
  { prompt: 'still life number 3,   pastel', nsfw: 0.01 }, // duplicate of row 13 of file 1
];
const ALL = [...FILE_1, ...FILE_2];
const NSFW_PROMPTS = ALL.filter((r) => r.nsfw > 0.5).map((r) => normalisePrompt(r.prompt));
/** The first variant of each distinct safe prompt, normalised: what each model must draw exactly once. */
const KEPT = (() => {
  const first = new Map<string, string>();
  for (const r of ALL) {
    const p = normalisePrompt(r.prompt);
    if (p && r.nsfw <= 0.5 && !first.has(promptIdentity(p))) first.set(promptIdentity(p), p);
  }
  return [...first.values()];
})();
const UNIT_ROWS = 4;
const MODELS = ['flux-schnell', 'sd35-large'] as const;

const sqlStr = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** DiffusionDB's 13 columns with their exact types, written by DuckDB. */
async function writeDiffusionDb(path: string, rows: Row[], firstIndex: number): Promise<void> {
  const values = rows.map((r, j) => {
    const i = firstIndex + j;
    return `(${sqlStr(`${i}.webp`)}, ${sqlStr(r.prompt)}, ${1 + (i % 3)}, ${3_000_000_000 + i}, 50, ${7.5}, ${1 + (i % 9)}, 512, 768, ${sqlStr(`user${i % 4}`)}, TIMESTAMPTZ '2022-08-10 12:00:00+00' + INTERVAL ${i} MINUTE, 0.125, ${r.nsfw})`;
  });
  const sql = `COPY (SELECT image_name::VARCHAR AS image_name, prompt::VARCHAR AS prompt, part_id::USMALLINT AS part_id, seed::UINTEGER AS seed,
      step::USMALLINT AS step, cfg::FLOAT AS cfg, sampler::UTINYINT AS sampler, width::USMALLINT AS width, height::USMALLINT AS height,
      user_name::VARCHAR AS user_name, "timestamp"::TIMESTAMPTZ AS "timestamp", image_nsfw::FLOAT AS image_nsfw, prompt_nsfw::FLOAT AS prompt_nsfw
    FROM (VALUES ${values.join(',\n')}) t(image_name, prompt, part_id, seed, step, cfg, sampler, width, height, user_name, "timestamp", image_nsfw, prompt_nsfw))
    TO ${sqlStr(path)} (FORMAT parquet)`;
  const instance = await DuckDBInstance.create();
  const db = await instance.connect();
  try {
    await db.run(sql);
  } finally {
    db.closeSync();
    instance.closeSync();
  }
}

type Rec = Record<string, unknown>;

async function readRecords(dir: string): Promise<Rec[]> {
  const out: Rec[] = [];
  for (const n of (await readdir(dir)).filter((x) => x.endsWith('.parquet')).sort()) {
    const buf = await readFile(join(dir, n));
    out.push(...((await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer, compressors })) as Rec[]));
  }
  return out.sort((a, b) => String(a.key).localeCompare(String(b.key)));
}

async function readMembers(dir: string): Promise<Map<string, Uint8Array>> {
  const members = new Map<string, Uint8Array>();
  const store = new FileStore(dir);
  for (const n of (await readdir(dir)).filter((x) => x.endsWith('.tar')).sort()) {
    for await (const e of readTarEntries(await store.getStream(n), { name: n })) {
      if (members.has(e.path)) throw new Error(`member ${e.path} twice`);
      members.set(e.path, e.data);
    }
  }
  return members;
}

const modelOfKey = (key: unknown) => /^(.+)-\d+$/.exec(String(key))![1];
const dropped = (v: string) => JSON.parse(v);

describe('diffusiondb-synth end to end', () => {
  let dir: string;
  let config: string;
  let flux: ImageGenServer;
  let sd: ImageGenServer;
  let whole: Rec[];

  beforeAll(async () => {
    dir = await tempDir('ddb-synth');
    await mkdir(join(dir, 'in'));
    await writeDiffusionDb(join(dir, 'in', 'part-000001.parquet'), FILE_1, 0);
    await writeDiffusionDb(join(dir, 'in', 'part-000002.parquet'), FILE_2, FILE_1.length);
    flux = await ImageGenServer.start({
      model: 'flux-test',
      size: '64x64',
      expect: { num_inference_steps: 4, guidance_scale: 0 },
      latencyMs: 40,
      faults: { [FOX]: [{ kind: 'status', status: 500 }] },
    });
    sd = await ImageGenServer.start({
      model: 'sd35-test',
      size: '64x64',
      // This server names the fields differently; the config says so.
      expect: { steps: 28, cfg_scale: 3.5, negative_prompt: 'blurry' },
      latencyMs: 40,
      faults: { [SLOW]: [{ kind: 'delay', ms: 2500 }] },
    });
    // An endpoint that refuses connections: the pool must route around it.
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const deadUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/v1`;
    await new Promise((r) => gone.close(r));

    const common = { size: '64x64', timeout_ms: 1000, retries: 2, retry_delay_ms: 10, endpoint_cooldown_ms: 120_000 };
    config = await writeConfig(dir, 'job.json', {
      job: 'diffusiondb-synth',
      output: join(dir, 'unused'),
      parallel_units: 2,
      input: { paths: [join(dir, 'in')], unit_rows: UNIT_ROWS },
      models: [
        { name: 'flux-schnell', preset: 'flux-schnell', served_model: 'flux-test', endpoints: [deadUrl, flux.url], ...common },
        { name: 'sd35-large', preset: 'sd35-large', served_model: 'sd35-test', endpoints: [sd.url], steps_field: 'steps', guidance_field: 'cfg_scale', extra: { negative_prompt: 'blurry' }, ...common },
      ],
      image: { size: 32 },
    });
    const r = await runCli(['run', config, '--output', join(dir, 'whole'), '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    whole = await readRecords(join(dir, 'whole'));
  });

  afterAll(async () => {
    await flux?.close();
    await sd?.close();
  });

  it('records every row once per model, with dedup, NSFW and empty verdicts and the kept row as the duplicate value', () => {
    expect(flux.violations).toEqual([]);
    expect(sd.violations).toEqual([]);
    expect(whole).toHaveLength(ALL.length * MODELS.length);
    expect(new Set(whole.map((r) => r.key)).size).toBe(whole.length);
    for (const m of MODELS) {
      const recs = whole.filter((r) => modelOfKey(r.key) === m);
      expect(recs).toHaveLength(ALL.length);
      const byRow = (file: number, row: number) => recs.find((r) => String(r.source_file).endsWith(`part-00000${file}.parquet`) && r.source_row === BigInt(row))!;
      const reason = (r: Rec) => (r.status === 'ok' ? 'ok' : r.status === 'dropped' ? r.dropped_by : `${r.failed_stage}:${r.error_code}`);
      expect(reason(byRow(1, 2))).toBe('empty_prompt');
      expect(byRow(1, 3)).toMatchObject({ status: 'dropped', dropped_by: 'prompt_nsfw' });
      expect(dropped(String(byRow(1, 3).dropped_value))).toBeCloseTo(0.93, 5);
      expect(reason(byRow(1, 8))).toBe('prompt_nsfw');
      expect(reason(byRow(2, 10))).toBe('prompt_nsfw');
      expect(reason(byRow(1, 9))).toBe('ok');
      for (const [dup, kept] of [[byRow(1, 4), byRow(1, 0)], [byRow(1, 7), byRow(1, 1)], [byRow(2, 0), byRow(1, 5)], [byRow(2, 11), byRow(1, 13)]]) {
        expect(dup).toMatchObject({ status: 'dropped', dropped_by: 'duplicate_prompt' });
        expect(dropped(String(dup.dropped_value))).toBe(kept.key);
        expect(kept.status).toBe('ok');
        expect(String(kept.key).startsWith(`${m}-`)).toBe(true);
      }
      const ok = recs.filter((r) => r.status === 'ok');
      expect(ok.map((r) => r.caption).sort()).toEqual([...KEPT].sort());
      // DiffusionDB's columns travel with every record; its image size is kept apart from the output's.
      expect(byRow(1, 0)).toMatchObject({ caption: FOX, prompt: FOX, image_name: '0.webp', seed: 3_000_000_000n, step: 50n, sampler: 1n, source_width: 512n, source_height: 768n, width: 32n, height: 32n, user_name: 'user0' });
      expect(byRow(1, 0).timestamp).toEqual(new Date('2022-08-10T12:00:00Z'));
      expect(byRow(1, 4).caption).toBe('A Red Fox in the SNOW');
    }
  });

  it('asks each server for each kept prompt with its preset settings and a seed from (prompt, model); NSFW prompts never', async () => {
    const settings = { 'flux-schnell': { gen_served_model: 'flux-test', gen_preset: 'flux-schnell', gen_steps: 4n, gen_guidance: 0 }, 'sd35-large': { gen_served_model: 'sd35-test', gen_preset: 'sd35-large', gen_steps: 28n, gen_guidance: 3.5 } };
    for (const server of [flux, sd]) for (const p of server.requests.map((r) => r.prompt)) expect(NSFW_PROMPTS).not.toContain(p);
    const seeds = new Map<string, Record<string, number>>();
    for (const r of whole.filter((x) => x.status === 'ok')) {
      const m = modelOfKey(r.key) as (typeof MODELS)[number];
      expect(r).toMatchObject({ gen_model: m, gen_size: '64x64', ...settings[m] });
      const seed = Number(r.gen_seed);
      expect(seed).toBe(generationSeed(String(r.caption), m));
      const server = m === 'flux-schnell' ? flux : sd;
      expect(new Set(server.requests.filter((q) => q.prompt === r.caption).map((q) => q.seed))).toEqual(new Set([seed]));
      seeds.set(String(r.caption), { ...seeds.get(String(r.caption)), [m]: seed });
    }
    expect(seeds.size).toBe(KEPT.length);
    for (const [, s] of seeds) expect(s['flux-schnell']).not.toBe(s['sd35-large']);
    expect(JSON.parse(String(whole.find((r) => r.status === 'ok' && modelOfKey(r.key) === 'sd35-large')!.gen_extra))).toEqual({ negative_prompt: 'blurry' });

    // Faults were absorbed: a 500 then ok, a timeout then ok; no row failed.
    expect(flux.requests.filter((q) => q.prompt === FOX).map((q) => q.status)).toEqual([500, 200]);
    expect(sd.requests.filter((q) => q.prompt === SLOW).map((q) => q.status)).toEqual([0, 200]);
    expect(whole.filter((r) => r.status === 'failed')).toEqual([]);

    // One image per kept prompt per model, resized, with the prompt as caption.
    const members = await readMembers(join(dir, 'whole'));
    for (const m of MODELS) {
      const captions = [...members].filter(([n]) => n.startsWith(`${m}-`) && n.endsWith('.txt')).map(([, d]) => new TextDecoder().decode(d));
      expect(captions.sort()).toEqual([...KEPT].sort());
      expect([...members.keys()].filter((n) => n.startsWith(`${m}-`) && n.endsWith('.jpg'))).toHaveLength(KEPT.length);
    }
    const first = [...members].find(([n]) => n.endsWith('.jpg'))!;
    const meta = await sharp(first[1]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 32, 32]);

    const summary = JSON.parse(await readFile(join(dir, 'whole', 'run-summary.json'), 'utf8'));
    expect(summary.funnel_balances).toBe(true);
    expect(summary.funnel).toMatchObject({ rows_in: ALL.length * 2, written: KEPT.length * 2, dropped: { empty_prompt: 2, prompt_nsfw: 6, duplicate_prompt: 8 } });
  });

  it('killed with SIGKILL and rerun, ends with the records and images of an unbroken run, never asking again for committed prompts', async () => {
    const out = join(dir, 'killed');
    const before = { flux: flux.requests.length, sd: sd.requests.length };
    const { child, done } = startCli(['run', config, '--output', out, '--progress', 'off']);
    const doneMarkers = async () => (await readdir(out).catch(() => [] as string[])).filter((n) => n.endsWith('.done.json'));
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline && (await doneMarkers()).length < 3) await sleep(5);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    const committedUnits = (await doneMarkers()).map((n) => n.replace('.done.json', ''));
    const units = Math.ceil(FILE_1.length / UNIT_ROWS) + Math.ceil(FILE_2.length / UNIT_ROWS);
    expect(committedUnits.length).toBeGreaterThanOrEqual(3);
    expect(committedUnits.length).toBeLessThan(units * MODELS.length);

    // The prompts the killed run committed, per model.
    const committed = new Map<string, Set<string>>(MODELS.map((m) => [m, new Set()]));
    for (const u of committedUnits) {
      const buf = await readFile(join(out, `${u}.parquet`));
      for (const r of (await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer, compressors })) as Rec[]) {
        if (r.status === 'ok') committed.get(modelOfKey(r.key))!.add(String(r.caption));
      }
    }
    expect([...committed.values()].reduce((a, s) => a + s.size, 0)).toBeGreaterThan(0);
    await sleep(50); // requests of the killed process that were still arriving
    const mark = { flux: flux.requests.length, sd: sd.requests.length };
    expect(mark.flux + mark.sd).toBeGreaterThan(before.flux + before.sd);

    const rerun = await runCli(['run', config, '--output', out, '--progress', 'off']);
    expect(rerun.code, rerun.stderr).toBe(0);
    const asked = { 'flux-schnell': flux.promptsSince(mark.flux), 'sd35-large': sd.promptsSince(mark.sd) };
    expect(asked['flux-schnell'].length + asked['sd35-large'].length).toBeGreaterThan(0);
    for (const m of MODELS) for (const p of asked[m]) expect(committed.get(m)!.has(p), `${m} asked again for committed ${p}`).toBe(false);

    const again = await readRecords(out);
    expect(again).toEqual(whole);
    // Seeds are the same across the two separate runs.
    expect(again.map((r) => r.gen_seed)).toEqual(whole.map((r) => r.gen_seed));
    const a = await readMembers(join(dir, 'whole'));
    const b = await readMembers(out);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [n, bytes] of a) expect(Buffer.from(b.get(n)!).equals(Buffer.from(bytes)), n).toBe(true);
    for (const m of MODELS) {
      const captions = [...b].filter(([n]) => n.startsWith(`${m}-`) && n.endsWith('.txt')).map(([, d]) => new TextDecoder().decode(d));
      expect(captions.sort()).toEqual([...KEPT].sort());
    }
    expect((await readdir(out)).filter((n) => n.includes('.partial-'))).toEqual([]);
    expect(flux.violations).toEqual([]);
    expect(sd.violations).toEqual([]);
  });

  it('a model whose every endpoint refuses connections stops the run (exit 1) with no unit done; with its endpoint fixed the rerun equals the whole run', async () => {
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const deadUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/v1`;
    await new Promise((r) => gone.close(r));
    const cfg = JSON.parse(await readFile(config, 'utf8'));
    const out = join(dir, 'dead');
    const broken = await writeConfig(dir, 'dead.json', { ...cfg, output: out, models: [{ ...cfg.models[0], endpoints: [deadUrl] }, cfg.models[1]] });
    const r = await runCli(['run', broken, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`run stopped by an outage of ${deadUrl}`);
    expect((await readdir(out)).filter((n) => n.startsWith('flux-schnell') && n.endsWith('.done.json'))).toEqual([]);
    // Endpoints are operational: the same output takes the live one and finishes.
    const fixed = await writeConfig(dir, 'dead-fixed.json', { ...cfg, output: out });
    const again = await runCli(['run', fixed, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    const recs = await readRecords(out);
    expect(recs.map((x) => x.key).sort()).toEqual(whole.map((x) => x.key).sort());
    expect(recs.filter((x) => x.error_code === 'network' || x.error_code === 'no_replica')).toEqual([]);
  });
});
