import { mkdir, rm, writeFile } from 'node:fs/promises';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { duckRows } from './helpers/duckdb.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * `bitprep dedup` over two image outputs that share pictures: the drop lists equal what DuckDB
 * computes from the outputs' records alone (the earliest copy in output, unit, row order kept).
 */
let dir: string;
const outA = () => join(dir, 'out-a');
const outB = () => join(dir, 'out-b');

beforeAll(async () => {
  dir = await tempDir('dedup');
  await generateDemoData(join(dir, 'data'), 30);
  await mkdir(join(dir, 'data', 'parts'));
  const src = `(SELECT URL, TEXT, row_number() OVER () AS n FROM read_parquet('${join(dir, 'data', 'laion')}/*.parquet'))`;
  // a: rows 1–20; b: rows 11–35 and rows 1–3 again (a second table holding the same pictures).
  await duckRows(`COPY (SELECT URL, TEXT FROM ${src} WHERE n <= 20 ORDER BY n) TO '${join(dir, 'data', 'parts', 'a.parquet')}' (FORMAT PARQUET)`);
  await duckRows(`COPY (SELECT URL, TEXT FROM ${src} WHERE n > 10 OR n <= 3 ORDER BY n) TO '${join(dir, 'data', 'parts', 'b.parquet')}' (FORMAT PARQUET)`);
  for (const [out, file] of [[outA(), 'a'], [outB(), 'b']]) {
    const cfg = await writeConfig(dir, `${file}.json`, { job: 'image-shards', output: out, input: { kind: 'parquet', paths: [join(dir, 'data', 'parts', `${file}.parquet`)], unit_rows: 8 }, image: { size: 32, max_pixels: 50_000_000 } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
  }
}, 60_000);

/** The drops DuckDB derives from the records: ok rows ranked by (output, unit file, row) within each digest; all but the first. */
async function expected(): Promise<string[]> {
  const recs = (o: string, i: number) => `SELECT ${i} AS oi, '${o}' AS output, key, original_sha256, filename, file_row_number FROM read_parquet('${o}/[0-9]*.parquet', filename = true, file_row_number = true, union_by_name = true) WHERE status = 'ok'`;
  const rows = await duckRows(`SELECT output, key FROM (SELECT *, row_number() OVER (PARTITION BY original_sha256 ORDER BY oi, filename, file_row_number) AS k FROM (${recs(outA(), 0)} UNION ALL ${recs(outB(), 1)})) WHERE k > 1`);
  return rows.map((r) => `${r.output}|${r.key}`).sort();
}

async function dropsOf(out: string): Promise<{ keys: string[]; rows: Record<string, unknown>[] }> {
  const rows = await duckRows(`SELECT * FROM read_parquet('${out}/drops/*.parquet')`);
  return { keys: rows.map((r) => `${r.output}|${r.key}`).sort(), rows };
}

describe('bitprep dedup', () => {
  it('drops every later copy across outputs, as the records say, with any number of partitions', async () => {
    const want = await expected();
    // b repeats a's rows 11–20 and 1–3: at least those (fewer when a picture failed to decode).
    expect(want.length).toBeGreaterThan(8);
    expect(want.every((k) => k.startsWith(`${outB()}|`))).toBe(true);
    for (const partitions of ['1', '7']) {
      const out = join(dir, `dedup-${partitions}`);
      const r = await runCli(['dedup', outA(), outB(), '--out', out, '--partitions', partitions, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const s = JSON.parse(r.stdout);
      expect(s.total_duplicates).toBe(want.length);
      const { keys, rows } = await dropsOf(out);
      expect(keys).toEqual(want);
      // Each drop names the copy kept: in a, with the same digest.
      const kept = new Map((await duckRows(`SELECT key, original_sha256 FROM read_parquet('${outA()}/[0-9]*.parquet', union_by_name = true) WHERE status = 'ok'`)).map((x) => [String(x.key), x.original_sha256]));
      for (const d of rows) expect(kept.get(String(d.kept_key))).toBe(d.original_sha256);
    }
  });

  it('in the other order, the copies in the other output are the ones dropped', async () => {
    const out = join(dir, 'dedup-ba');
    const r = await runCli(['dedup', outB(), outA(), '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { keys } = await dropsOf(out);
    expect(keys.every((k) => k.startsWith(`${outA()}|`))).toBe(true);
    expect(keys.length).toBe((await expected()).length);
  });

  it('pre-encode leaves out the rows a dedup drops (input.exclude), recording them as duplicates', async () => {
    const model = join(dir, 'encoder.onnx');
    await writeFile(model, buildBitEncoderStandin(3, 32).onnx);
    const dedupDir = join(dir, 'dedup-1');
    const cfg = await writeConfig(dir, 'pe.json', { job: 'pre-encode', output: join(dir, 'latents-b'), input: { paths: [outB()], exclude: [dedupDir] }, source: 'b', encoder: { model: { onnx: model }, size: 32, crop: 'centre' } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    const dropped = new Set((await dropsOf(dedupDir)).rows.map((x) => String(x.key)));
    const okB = (await duckRows(`SELECT key FROM read_parquet('${outB()}/[0-9]*.parquet', union_by_name = true) WHERE status = 'ok'`)).map((x) => String(x.key));
    const latents = (await duckRows(`SELECT key FROM read_parquet('${join(dir, 'latents-b')}/*.latents.parquet')`)).map((x) => String(x.key)).sort();
    expect(latents).toEqual(okB.filter((k) => !dropped.has(k)).sort());
    const records = await duckRows(`SELECT key, status, dropped_by, dropped_value FROM read_parquet('${join(dir, 'latents-b')}/[0-9]*.parquet', union_by_name = true) WHERE status = 'dropped'`);
    expect(records.map((x) => String(x.key)).sort()).toEqual([...dropped].sort());
    for (const x of records) expect(x.dropped_by).toBe('duplicate');
    expect(String(records[0].dropped_value)).toContain(outA());
  });

  it('refuses an output named twice, and an --out that is a bitprep output', async () => {
    const twice = await runCli(['dedup', outA(), `${outA()}/`, '--out', join(dir, 'dedup-twice')]);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toContain(`${outA()} is named twice`);
    const into = await runCli(['dedup', outA(), '--out', outB()]);
    expect(into.code).not.toBe(0);
    expect(into.stderr).toContain(`--out ${outB()} is a bitprep output`);
  });

  it('refuses an output with a unit not done', async () => {
    await rm(join(outB(), '00001.done.json'));
    const r = await runCli(['dedup', outA(), outB(), '--out', join(dir, 'dedup-x')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/1 unit\(s\) not done \(e\.g\. 00001\); finish the run first/);
  });
});
