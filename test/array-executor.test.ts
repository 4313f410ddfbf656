import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { readAllRecords } from './helpers/read-output.js';
import { FileStore } from '../src/stores/file-store.js';
import { startCli, writeConfig, type CliResult } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * Scheduler variables cleared in every child, so that a test runner that itself runs inside an
 * array job (or a CI pod of an Indexed Job) does not shard the reference runs.
 */
const NO_INDEX = { JOB_COMPLETION_INDEX: '', SLURM_ARRAY_TASK_ID: '', SLURM_ARRAY_TASK_MIN: '', SLURM_ARRAY_TASK_COUNT: '', AWS_BATCH_JOB_ARRAY_INDEX: '', BITPREP_SHARD_COUNT: '' };
const start = (args: string[], env: Record<string, string> = {}) => startCli(args, { env: { ...NO_INDEX, ...env } });
const cli = (args: string[], env: Record<string, string> = {}) => start(args, env).done;

/** Files whose content legitimately differs between runs (timestamps, throughput, the output path). */
// _runs/ holds one log per run and _lease/ the live run's lease: both differ by design.
const RUN_SPECIFIC = /(\.done\.json|\.stats\.json|^run-summary\.json|^_config\.json|^_runs|^_lease)$/;

const readJson = async (p: string) => JSON.parse(await readFile(p, 'utf8'));
const doneIds = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.done.json')).map((n) => n.slice(0, -'.done.json'.length)).sort();

/** A sharded run must give what one local run gives: every object byte for byte, markers' funnels and output lists equal. */
async function expectSameOutputs(a: string, b: string): Promise<void> {
  const namesA = (await readdir(a)).sort();
  const namesB = (await readdir(b)).sort();
  expect(namesB).toEqual(namesA);
  expect(namesA.filter((n) => n.endsWith('.done.json')).length).toBeGreaterThan(0);
  for (const n of namesA) {
    if (RUN_SPECIFIC.test(n)) continue;
    const [x, y] = await Promise.all([readFile(join(a, n)), readFile(join(b, n))]);
    expect(Buffer.compare(x, y), `${n} differs`).toBe(0);
  }
  for (const n of namesA.filter((x) => x.endsWith('.done.json'))) {
    const [x, y] = await Promise.all([readJson(join(a, n)), readJson(join(b, n))]);
    // A marker lists the unit's stats.json too, whose timings differ from run to run.
    const lasting = (m: { funnel: unknown; outputs: { name: string }[] }) => ({ funnel: m.funnel, outputs: m.outputs.filter((o) => !RUN_SPECIFIC.test(o.name)) });
    expect(lasting(y), n).toEqual(lasting(x));
  }
  const [sa, sb] = await Promise.all([readJson(join(a, 'run-summary.json')), readJson(join(b, 'run-summary.json'))]);
  expect(sb.funnel).toEqual(sa.funnel);
  expect(sb.units).toEqual(sa.units);
}

/** `units: D/P done; this run C completed, A already done, F failed` from a task's report. */
function thisRun(r: CliResult): { completed: number; alreadyDone: number; failed: number } {
  const m = /this run (\d+) completed, (\d+) already done, (\d+) failed/.exec(r.stdout);
  if (!m) throw new Error(`no run report in stdout:\n${r.stdout}\n${r.stderr}`);
  return { completed: Number(m[1]), alreadyDone: Number(m[2]), failed: Number(m[3]) };
}

describe('array executor: 3 tasks into one output equal one local run', () => {
  let dir: string;
  let imageConfig: string;
  let unitIds: string[];
  const local = () => join(dir, 'local');
  const array = () => join(dir, 'array');

  beforeAll(async () => {
    dir = await tempDir('array');
    await generateDemoData(join(dir, 'data'), 60);
    imageConfig = await writeConfig(dir, 'image-shards.json', {
      job: 'image-shards',
      output: join(dir, 'unused'),
      input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 7 },
      image: { size: 96, min_edge: 48, max_pixels: 50_000_000 },
      decode_concurrency: 1,
    });
  });

  it('image-shards: indices from flags, Kubernetes and Slurm env give the local run\'s tars, records and funnel', async () => {
    const ref = await cli(['run', imageConfig, '--output', local(), '--progress', 'off']);
    expect(ref.code, ref.stderr).toBe(0);
    unitIds = (await readJson(join(local(), '_plan.json'))).unit_ids;
    expect(unitIds.length).toBeGreaterThanOrEqual(9);

    // Started together: they race on _plan.json and the shared folder as real array tasks do.
    const args = ['run', imageConfig, '--output', array(), '--progress', 'off'];
    const tasks = [
      start([...args, '--shard-index', '0', '--shard-count', '3']),
      start(args, { JOB_COMPLETION_INDEX: '1', BITPREP_SHARD_COUNT: '3' }),
      // Slurm numbers `--array=5-7` tasks 5, 6, 7: index 2 is 7 − 5.
      start(args, { SLURM_ARRAY_TASK_ID: '7', SLURM_ARRAY_TASK_MIN: '5', SLURM_ARRAY_TASK_COUNT: '3' }),
    ];
    const results = await Promise.all(tasks.map((t) => t.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);

    const sources = ['--shard-index', 'JOB_COMPLETION_INDEX', 'SLURM_ARRAY_TASK_ID'];
    results.forEach((r, i) => {
      const mine = unitIds.filter((_, u) => u % 3 === i).length;
      expect(r.stderr).toContain(`shard ${i}/3 (from ${sources[i]}): ${mine} of ${unitIds.length} units`);
      // Each ran exactly its own share and met no unit already done: with every unit done at the
      // end (below) and the shares adding up to the whole, the three sets are disjoint and cover all.
      expect(thisRun(r)).toEqual({ completed: mine, alreadyDone: 0, failed: 0 });
    });
    expect(results.map((r) => thisRun(r).completed).reduce((a, b) => a + b)).toBe(unitIds.length);
    expect(await doneIds(array())).toEqual([...unitIds].sort());

    const sum = await cli(['summary', array(), '--json']);
    expect(sum.code, sum.stderr).toBe(0);
    expect(JSON.parse(sum.stdout).units).toMatchObject({ planned: unitIds.length, done: unitIds.length });
    await expectSameOutputs(local(), array());
    // Every input row exactly once (demo data: 60 images plus planted broken rows).
    const records = await readAllRecords(new FileStore(array()));
    expect(records.length).toBeGreaterThan(60);
    expect(new Set(records.map((r) => r.key)).size).toBe(records.length);
  });

  it('pre-encode: index.json only once every unit is done, then equal to the local run\'s', async () => {
    // Its input: the shard tars just written, one pre-encode unit each (named, not the folder:
    // the folder also holds <unit>.thumbs.tar).
    const model = join(dir, 'bit_encoder.onnx');
    await writeFile(model, buildBitEncoderStandin(5, 96).onnx);
    const cfg = await writeConfig(dir, 'pre-encode.json', {
      job: 'pre-encode',
      output: join(dir, 'unused-latents'),
      input: { paths: unitIds.map((id) => join(local(), `${id}.tar`)) },
      source: 'laion',
      encoder: { model: { onnx: model }, size: 96, batch_size: 4 },
    });
    const latLocal = join(dir, 'latents-local');
    const latArray = join(dir, 'latents-array');
    const args = ['run', cfg, '--output', latArray, '--progress', 'off', '--shard-count', '3'];
    // The reference run goes alongside the first two tasks: different outputs, less wall time.
    const [ref, ...first] = await Promise.all([
      start(['run', cfg, '--output', latLocal, '--progress', 'off']).done,
      start([...args, '--shard-index', '0']).done,
      start([...args, '--shard-index', '1']).done,
    ]);
    expect(ref.code, ref.stderr).toBe(0);
    for (const r of first) expect(r.code, r.stderr).toBe(0);
    const ids: string[] = (await readJson(join(latLocal, '_plan.json'))).unit_ids;
    expect(ids.length).toBeGreaterThanOrEqual(9);
    const indexLocal = await readFile(join(latLocal, 'index.json'), 'utf8');
    expect(JSON.parse(indexLocal).shards).toHaveLength(ids.length);
    expect(await doneIds(latArray)).toEqual(ids.filter((_, u) => u % 3 !== 2).sort());
    expect((await readdir(latArray)).includes('index.json')).toBe(false);
    // A summary of an unfinished output totals it but writes no manifest either.
    const early = await cli(['summary', latArray]);
    expect(early.code, early.stderr).toBe(0);
    expect((await readdir(latArray)).includes('index.json')).toBe(false);

    // The last task, with the index as AWS Batch gives it, finishes the set and writes index.json.
    const last = await cli(['run', cfg, '--output', latArray, '--progress', 'off'], { AWS_BATCH_JOB_ARRAY_INDEX: '2', BITPREP_SHARD_COUNT: '3' });
    expect(last.code, last.stderr).toBe(0);
    expect(last.stderr).toContain(`shard 2/3 (from AWS_BATCH_JOB_ARRAY_INDEX): ${ids.filter((_, u) => u % 3 === 2).length} of ${ids.length} units`);
    expect(await readFile(join(latArray, 'index.json'), 'utf8')).toBe(indexLocal);

    // `bitprep summary` writes it too (the way to finish when tasks ended in any order).
    await rm(join(latArray, 'index.json'));
    const sum = await cli(['summary', latArray]);
    expect(sum.code, sum.stderr).toBe(0);
    expect(await readFile(join(latArray, 'index.json'), 'utf8')).toBe(indexLocal);
    await expectSameOutputs(latLocal, latArray);
  });
});
