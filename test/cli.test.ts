import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { FileStore } from '../src/stores/file-store.js';
import { readAllRecords } from './helpers/read-output.js';
import { duckRows } from './helpers/duckdb.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

describe('bitprep CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('cli');
  });

  it('demo generates data, serves it locally, runs laion-filter offline and prints a balanced funnel', async () => {
    const r = await runCli(['demo', '--out', dir, '--images', '40', '--progress', 'plain']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/rows in\s+46/);
    expect(r.stdout).toMatch(/dropped by robots\s+1 /);
    expect(r.stdout).toMatch(/failed at fetch:http_404\s+1 /);
    expect(r.stdout).toContain('(rows in = written + dropped + failed: yes)');
    const out = await readdir(join(dir, 'demo-out'));
    for (const f of ['00000.tar', '00000.parquet', '00000.thumbs', '00000.done.json', '00000.stats.json', 'run-summary.json', '_plan.json', 'report.html']) expect(out).toContain(f);
    const summary = JSON.parse(await readFile(join(dir, 'demo-out', 'run-summary.json'), 'utf8'));
    expect(summary.funnel.rows_in).toBe(46);
    expect(summary.funnel_balances).toBe(true);
    // Balanced: most rows are written, and each filter has drawn posters and small print to drop.
    expect(summary.funnel.written).toBeGreaterThan(23);
    expect(summary.funnel.dropped.text_height + (summary.funnel.dropped.text_density ?? 0)).toBeGreaterThan(0);
    // Plain progress lines go to stderr when it is not a terminal.
    expect(r.stderr).toMatch(/laion-filter .*units/);
    // Then recaption, dalle-ingest and diffusiondb-synth against the labelled stand-in server.
    expect(r.stdout).toContain('STAND-IN server');
    const written = summary.funnel.written;
    const recaption = JSON.parse(await readFile(join(dir, 'demo-recaption', 'run-summary.json'), 'utf8'));
    expect(recaption.funnel).toMatchObject({ rows_in: written, written });
    const dalle = JSON.parse(await readFile(join(dir, 'demo-dalle', 'run-summary.json'), 'utf8'));
    expect(dalle.funnel).toMatchObject({ rows_in: 24, written: 22, failed: { 'source:no_image': 1, 'decode-resize:truncated': 1 } });
    const synth = JSON.parse(await readFile(join(dir, 'demo-synth', 'run-summary.json'), 'utf8'));
    expect(synth.funnel_balances).toBe(true);
    expect(synth.funnel.rows_in).toBe(120);
    expect(synth.funnel.dropped.prompt_nsfw).toBeGreaterThan(0);
    expect(synth.funnel.dropped.duplicate_prompt).toBeGreaterThan(0);
    // Then pre-encode of each set with the stand-in encoder, and their latent stats.
    for (const [set, rows] of [['laion', written], ['dalle3', 22], ['diffusiondb-synth', synth.funnel.written]] as const) {
      const index = JSON.parse(await readFile(join(dir, 'demo-latents', set, 'index.json'), 'utf8'));
      expect(index.rows, set).toBe(rows);
    }
    expect(r.stdout).toContain('STAND-IN encoder');
    // And a training mix of them (3 : 1, 2 ranks), whose shards come from shards typed differently by their own values.
    const mixIndex = JSON.parse(await readFile(join(dir, 'demo-mix', 'index.json'), 'utf8'));
    expect(mixIndex.rows).toBeGreaterThan(0);
    // bitprep dedup over the three image sets, whose views the mix takes as a filter: every row it drops is left out.
    const dedup = JSON.parse(await readFile(join(dir, 'demo-dedup', 'summary.json'), 'utf8'));
    expect(dedup.total_rows).toBe(written + 22 + synth.funnel.written);
    const excluded = await duckRows(`SELECT count(*) AS n FROM read_parquet('${join(dir, 'demo-mix')}/scatter-*.parquet', union_by_name = true) WHERE dropped_by = 'dedup_excluded'`);
    expect(Number(excluded[0].n)).toBe(dedup.total_duplicates + dedup.total_near_duplicates);
    expect(r.stdout).toMatch(/bitprep dedup over the three image sets \(--phash 6\)/);
    expect(mixIndex.rows % 8).toBe(0);
    expect(r.stdout).toMatch(/latents: \d+\s+distinct/);
    // And last, the evaluation suite with stand-in models, its result files and the paper's tables.
    const results = join(dir, 'demo-eval', 'results');
    const read = async (f: string) => JSON.parse(await readFile(join(results, f), 'utf8'));
    const geneval = await read('geneval/summary.json');
    expect(geneval.total_images).toBe(24);
    expect(Object.keys(geneval.tasks)).toEqual(['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr']);
    expect(geneval.color_source).toContain('STAND-IN');
    const clip = await read('clip-score.json');
    expect(clip).toMatchObject({ n: 12, protocol: 'gigagan' });
    expect(clip.ci95.low).toBeLessThanOrEqual(clip.clip_score);
    expect(clip.ci95.high).toBeGreaterThanOrEqual(clip.clip_score);
    const ir = await read('imagereward.json');
    expect(ir).toMatchObject({ n_images: 12, n_prompts: 6 });
    const rec = await read('reconstruction.json');
    expect(rec.imagenet.n).toBe(16);
    expect(rec.imagenet.psnr).toBeGreaterThan(20);
    expect(rec.imagenet.rfid).toBeGreaterThanOrEqual(0);
    expect((await read('fid.json')).n).toBe(12);
    expect((await read('speed.json')).steps).toBe(20);
    expect(r.stdout).toMatch(/^\| demo \(STAND-IN\) \| — \| 256 \|/m);
    expect(r.stdout).toContain('| Δ demo (STAND-IN) vs Instella Diff |');
    expect(r.stdout).toContain('| Δ demo (STAND-IN) vs BIT |');
    expect(r.stdout).toContain('FID over 12 generated images, not 30,000');
    expect(r.stdout).toContain('come from STAND-IN models');
    // The tables command reads the same directory.
    const t = await runCli(['tables', results, '--table', '3', '--format', 'csv', '--name', 'mine']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/^Diffusion BIT,1B,20,16\.33,0\.38,/m);
    expect(t.stdout).toMatch(/^mine,,20,\d/m);
  });

  it('lists every evaluation command under bitprep eval', async () => {
    const r = await runCli(['eval', '--help']);
    expect(r.code, r.stderr).toBe(0);
    for (const c of ['generate', 'detect', 'geneval', 'clip-score', 'fid-stats', 'fid', 'imagereward', 'reconstruction', 'speed']) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });

  it('records annotations for dropped rows too, and refilter re-decides them without the image tars', async () => {
    const outDir = join(dir, 'demo-out');
    const records = await readAllRecords(new FileStore(outDir));
    const annotated = records.filter((r) => typeof r.aesthetic_score === 'number');
    expect(annotated.some((r) => r.status === 'dropped' && r.dropped_by === 'aesthetic')).toBe(true);
    expect(annotated.some((r) => r.status === 'dropped' && String(r.dropped_by).startsWith('text_') && typeof r.ocr_density === 'number')).toBe(true);
    expect(records.filter((r) => r.status === 'ok').every((r) => typeof r.aesthetic_score === 'number' && typeof r.ocr_density === 'number')).toBe(true);

    // Hide the shards: refilter must not need them.
    const tars = (await readdir(outDir)).filter((n) => n.endsWith('.tar'));
    for (const t of tars) await rename(join(outDir, t), join(dir, `hidden-${t}`));
    try {
      const minScore = 5.4;
      const maxDensity = 0.05;
      const r = await runCli(['refilter', outDir, '--set', `aesthetic.min_score=${minScore}`, '--set', `ocr.max_density=${maxDensity}`, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const got = JSON.parse(r.stdout);

      // The expected funnel, computed here from the records with the new thresholds.
      const num = (v: unknown) => Number(v);
      const expected = { written: 0, aesthetic: 0, text_density: 0, text_height: 0 };
      for (const rec of records) {
        const decidable = rec.status === 'ok' || ['aesthetic', 'text_density', 'text_height'].includes(String(rec.dropped_by));
        if (!decidable) continue;
        if (num(rec.aesthetic_score) < minScore) expected.aesthetic++;
        else if (rec.ocr_density === null || rec.ocr_density === undefined) throw new Error(`row ${rec.key} passed the aesthetic filter but has no OCR fields`);
        else if (num(rec.ocr_density) > maxDensity) expected.text_density++;
        else if (num(rec.ocr_words) > 0 && num(rec.ocr_median_height) < 0.03) expected.text_height++;
        else expected.written++;
      }
      expect(expected.aesthetic).toBeGreaterThan(0);
      expect(got.funnel.written).toBe(expected.written);
      expect(got.funnel.dropped.aesthetic ?? 0).toBe(expected.aesthetic);
      expect(got.funnel.dropped.text_density ?? 0).toBe(expected.text_density);
      expect(got.funnel.dropped.text_height ?? 0).toBe(expected.text_height);
      expect(got.funnel.rows_in).toBe(records.length);
      expect(got.funnel_balances).toBe(true);
      // Tighter thresholds keep a subset of what the shards hold.
      expect(got.kept_not_in_shards).toBe(0);
      expect(got.kept_in_shards).toBe(expected.written);
      const per = await readdir(join(outDir, 'refilter', 'latest'));
      expect(per).toContain('00000.parquet');
      expect(per).toContain('summary.json');

      // Loosening the text filters brings back rows whose images were never stored, and says so.
      const byText = records.filter((x) => String(x.dropped_by).startsWith('text_')).length;
      const byAesthetic = records.filter((x) => x.dropped_by === 'aesthetic').length;
      const loose = await runCli(['refilter', outDir, '--set', 'aesthetic.min_score=0', '--set', 'ocr.max_density=1', '--set', 'ocr.min_text_height=0', '--name', 'loose', '--json']);
      expect(loose.code, loose.stderr).toBe(0);
      const l = JSON.parse(loose.stdout);
      expect(l.kept_not_in_shards).toBe(byText);
      // Rows dropped by the aesthetic filter never reached OCR, so their text cannot be judged.
      expect(l.funnel.dropped['unannotated:ocr_density']).toBe(byAesthetic);
    } finally {
      for (const t of tars) await rename(join(dir, `hidden-${t}`), join(outDir, t));
    }
  });

  it('summary rebuilds the run summary from done markers', async () => {
    const r = await runCli(['summary', join(dir, 'demo-out'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ job: 'laion-filter', funnel: { rows_in: 46 }, units: { done: 1, planned: 1 } });
  });

  it('plan lists units without running them', async () => {
    const cfg = await writeConfig(dir, 'plan.json', { job: 'image-shards', output: join(dir, 'never'), input: { kind: 'parquet', paths: [join(dir, 'demo-data', 'laion')], unit_rows: 10 } });
    const r = await runCli(['plan', cfg, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const units = JSON.parse(r.stdout);
    expect(units.map((u: { id: string }) => u.id)).toEqual(['00000', '00001', '00002', '00003', '00004']);
    expect(units[4].inputs[0]).toMatchObject({ rowStart: 40, rowEnd: 46 });
    await expect(readdir(join(dir, 'never'))).rejects.toThrow();
  });

  it('array tasks 0..2 together produce the outputs of one local run', async () => {
    // Local paths: the demo's URLs pointed at a server that is gone.
    await generateDemoData(join(dir, 'array-data'), 40);
    const base = { job: 'image-shards', input: { kind: 'parquet', paths: [join(dir, 'array-data', 'laion')], unit_rows: 8 }, image: { size: 64 } };
    const cfg = await writeConfig(dir, 'array.json', { ...base, output: join(dir, 'local') });
    expect((await runCli(['run', cfg, '--progress', 'off'])).code).toBe(0);
    const results = await Promise.all([0, 1, 2].map((i) => runCli(['run', cfg, '-o', join(dir, 'array'), '--progress', 'off'], { env: { JOB_COMPLETION_INDEX: String(i), BITPREP_SHARD_COUNT: '3' } })));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(results[1].stderr).toMatch(/shard 1\/3 \(from JOB_COMPLETION_INDEX\): 2 of 6 units/);
    const names = (await readdir(join(dir, 'local'))).filter((n) => /\.(tar|parquet)$/.test(n)).sort();
    expect((await readdir(join(dir, 'array'))).filter((n) => /\.(tar|parquet)$/.test(n)).sort()).toEqual(names);
    for (const n of names.filter((x) => x.endsWith('.tar'))) expect((await readFile(join(dir, 'array', n))).equals(await readFile(join(dir, 'local', n)))).toBe(true);
    const total = await runCli(['summary', join(dir, 'array'), '--json']);
    expect(JSON.parse(total.stdout).funnel.rows_in).toBe(45);
  });

  it('a config error names the file and key and exits 2 without a stack trace', async () => {
    const p = join(dir, 'bad.yaml');
    await writeFile(p, 'job: image-shards\noutput: x\ninput: { kind: folder, path: y }\nimage: { size: -3, mode: stretch }\n');
    const r = await runCli(['run', p]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(p);
    expect(r.stderr).toMatch(/image\.size: .*>=8/);
    expect(r.stderr).toMatch(/image\.mode: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--set overrides config values and a missing input is a clear error', async () => {
    const cfg = await writeConfig(dir, 'missing.json', { job: 'image-shards', output: join(dir, 'o2'), input: { kind: 'parquet', paths: [join(dir, 'demo-data', 'laion')] } });
    const r = await runCli(['run', cfg, '--set', `input.paths=[${join(dir, 'nope')}]`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`input.paths[0]: ${join(dir, 'nope')} does not exist`);
  });
});
