import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { FileStore } from '../src/stores/file-store.js';
import { duckRows } from './helpers/duckdb.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/** `bitprep run --extend`: an output made from one table takes a second; its first units stay as they were. */
let dir: string;
let out: string;
const part = (k: string) => join(dir, 'data', 'parts', `part-${k}.parquet`);

beforeAll(async () => {
  dir = await tempDir('extend');
  await generateDemoData(join(dir, 'data'), 24);
  await mkdir(join(dir, 'data', 'parts'));
  // Two tables DuckDB writes from the demo's rows (its images by relative path from the same folder).
  const src = `(SELECT *, row_number() OVER () AS n FROM read_parquet('${join(dir, 'data', 'laion')}/*.parquet'))`;
  await duckRows(`COPY (SELECT URL, TEXT FROM ${src} WHERE n <= 16 ORDER BY n) TO '${part('a')}' (FORMAT PARQUET)`);
  await duckRows(`COPY (SELECT URL, TEXT FROM ${src} WHERE n > 16 ORDER BY n) TO '${part('b')}' (FORMAT PARQUET)`);
  out = join(dir, 'out');
}, 60_000);

const config = (name: string, paths: string[]) => writeConfig(dir, name, { job: 'image-shards', output: out, input: { kind: 'parquet', paths, unit_rows: 8 }, image: { size: 64, max_pixels: 50_000_000 } });

describe('extend mode', () => {
  it('adds the new inputs as new units after the existing ones; existing units, keys and markers untouched', async () => {
    const first = await runCli(['run', await config('a.json', [part('a')]), '--progress', 'off']);
    expect(first.code, first.stderr).toBe(0);
    const before = await readAllRecords(new FileStore(out));
    const markers = await Promise.all(['00000', '00001'].map(async (u) => ({ u, text: await readFile(join(out, `${u}.done.json`), 'utf8'), mtime: (await stat(join(out, `${u}.tar`))).mtimeMs })));

    // More inputs without --extend: refused, naming the way.
    const both = await config('ab.json', [part('b'), part('a')]);
    const refused = await runCli(['run', both, '--progress', 'off']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/different plan[\s\S]*--extend/);

    // With --extend (part-b listed first: the new units still come after the old ones).
    const extended = await runCli(['run', both, '--progress', 'off', '--extend']);
    expect(extended.code, extended.stderr).toBe(0);
    // 13 rows of part-b at 8 a unit: two new units, numbered after the two of part-a.
    expect(extended.stderr).toMatch(/--extend: 2 new unit\(s\) for the new inputs \(ids 00002–00003\); the 2 existing units are untouched/);
    for (const m of markers) {
      expect(await readFile(join(out, `${m.u}.done.json`), 'utf8')).toBe(m.text);
      expect((await stat(join(out, `${m.u}.tar`))).mtimeMs).toBe(m.mtime);
    }
    const after = await readAllRecords(new FileStore(out));
    const rowsB = Number((await duckRows(`SELECT count(*) AS n FROM '${part('b')}'`))[0].n);
    expect(after).toHaveLength(before.length + rowsB);
    expect(new Set(after.map((r) => r.key)).size).toBe(after.length);
    expect(new Set(after.filter((r) => r.source_file === part('b')).map((r) => String(r.key).slice(0, 5)))).toEqual(new Set(['00002', '00003']));
    const summary = JSON.parse(await readFile(join(out, 'run-summary.json'), 'utf8'));
    expect(summary.funnel.rows_in).toBe(after.length);

    // Again: nothing new to add, nothing run; a plain rerun of the extended config is a resume.
    const again = await runCli(['run', both, '--progress', 'off', '--extend']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/0 completed, 4 already done/);
    const plain = await runCli(['run', both, '--progress', 'off']);
    expect(plain.code, plain.stderr).toBe(0);
  });

  it('refuses an extension that drops an input or changes another setting', async () => {
    const dropped = await runCli(['run', await config('b.json', [part('b')]), '--progress', 'off', '--extend']);
    expect(dropped.code).not.toBe(0);
    expect(dropped.stderr).toMatch(/are not in the new plan .*extend mode only adds inputs/);
    const other = await writeConfig(dir, 'ab-other.json', { job: 'image-shards', output: out, input: { kind: 'parquet', paths: [part('a'), part('b')], unit_rows: 8 }, image: { size: 96, max_pixels: 50_000_000 } });
    const changed = await runCli(['run', other, '--progress', 'off', '--extend']);
    expect(changed.code).not.toBe(0);
    expect(changed.stderr).toMatch(/image\.size/);
  });
});
