import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { readTextRecords, scanTextTable, tableFormatOf } from '../src/formats/text-table.js';
import { FileStore } from '../src/stores/file-store.js';
import { generateDemoData } from '../pipelines/demo-data.js';
import { duckRows } from './helpers/duckdb.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * URL/caption tables as CSV, TSV and JSON Lines, plain and gzip, written by independent writers
 * (DuckDB's COPY, Python's gzip) from one Parquet table DuckDB wrote, each run through the CLI:
 * every format gives the Parquet run's samples, keys and row numbers, over units that start
 * mid-file.
 */
let dir: string;
let tables: string;
/** Rows of the Parquet table: the demo data's 30 images and its planted broken ones. */
let ROWS: number;

const gzip = (src: string, dst: string) => execFileSync('/usr/bin/python3', ['-c', 'import gzip, shutil, sys\nwith open(sys.argv[1], "rb") as i, gzip.open(sys.argv[2], "wb") as o: shutil.copyfileobj(i, o)', src, dst]);

beforeAll(async () => {
  dir = await tempDir('table-inputs');
  await generateDemoData(join(dir, 'data'), 30);
  tables = join(dir, 'data', 'tables');
  await mkdir(tables, { recursive: true });
  const base = join(tables, 'rows.parquet');
  // Captions with what CSV must quote: commas, quotes, a newline; one empty; the demo's images by relative path.
  await duckRows(`COPY (SELECT URL, CASE WHEN n % 7 = 3 THEN NULL WHEN n % 5 = 1 THEN TEXT || ', "quoted", and' || chr(10) || 'a second line' ELSE TEXT END AS TEXT, similarity, WIDTH, HEIGHT
    FROM (SELECT *, row_number() OVER (ORDER BY filename, file_row_number) - 1 AS n FROM read_parquet('${join(dir, 'data', 'laion')}/*.parquet', filename = true, file_row_number = true)) ORDER BY n)
    TO '${base}' (FORMAT PARQUET)`);
  ROWS = Number((await duckRows(`SELECT count(*) AS n FROM '${base}'`))[0].n);
  await duckRows(`COPY (SELECT * FROM '${base}') TO '${join(tables, 'rows.csv')}' (HEADER, DELIMITER ',')`);
  // CC3M's layout: caption TAB url, no header line.
  await duckRows(`COPY (SELECT TEXT, URL FROM '${base}') TO '${join(tables, 'cc3m.tsv')}' (HEADER false, DELIMITER '\t')`);
  await duckRows(`COPY (SELECT * FROM '${base}') TO '${join(tables, 'rows.jsonl')}' (FORMAT JSON)`);
  gzip(join(tables, 'rows.csv'), join(tables, 'rows.csv.gz'));
  gzip(join(tables, 'rows.jsonl'), join(tables, 'rows.jsonl.gz'));
}, 60_000);

async function run(name: string, input: Record<string, unknown>) {
  const cfg = await writeConfig(dir, `${name}.json`, { job: 'image-shards', output: join(dir, name), input: { kind: 'parquet', unit_rows: 7, ...input }, image: { size: 64, min_edge: 32, max_pixels: 50_000_000 } });
  const r = await runCli(['run', cfg, '--progress', 'off']);
  expect(r.code, r.stderr).toBe(0);
  return (await readAllRecords(new FileStore(join(dir, name)))).sort((a, b) => String(a.key).localeCompare(String(b.key)));
}

const view = (rows: Record<string, unknown>[]) => rows.map((r) => ({ key: r.key, url: r.url, caption: r.caption ?? null, status: r.status, row: Number(r.source_row) }));

describe('table inputs through the CLI', () => {
  let parquet: Record<string, unknown>[];

  beforeAll(async () => {
    parquet = await run('parquet', { paths: [join(tables, 'rows.parquet')] });
  }, 60_000);

  it('the Parquet baseline holds every row, the tricky captions among them', () => {
    expect(parquet).toHaveLength(ROWS);
    expect(parquet.filter((r) => String(r.caption ?? '').includes('\n'))).not.toHaveLength(0);
    expect(parquet.filter((r) => r.caption === null || r.caption === undefined)).not.toHaveLength(0);
    expect(parquet.filter((r) => r.status === 'ok').length).toBeGreaterThan(ROWS / 2);
  });

  for (const [name, file, extra] of [
    ['csv', 'rows.csv', {}],
    ['csv.gz', 'rows.csv.gz', {}],
    ['jsonl', 'rows.jsonl', {}],
    ['jsonl.gz', 'rows.jsonl.gz', {}],
    ['headerless tsv (CC3M)', 'cc3m.tsv', { columns: ['caption', 'url'], url_column: 'url', caption_column: 'caption' }],
  ] as const) {
    it(`${name}: the same samples, keys, captions, fates and row numbers as the Parquet run`, async () => {
      const got = await run(name.replace(/[^a-z0-9]+/g, '-'), { paths: [join(tables, file)], ...extra });
      expect(view(got).map((r) => ({ ...r, url: r.url }))).toEqual(view(parquet));
      expect(new Set(got.map((r) => r.source_file))).toEqual(new Set([join(tables, file)]));
      if (name.startsWith('jsonl')) {
        // JSON keeps its types; CSV cells are strings.
        expect(typeof got.find((r) => r.similarity !== null)!.similarity).toBe('number');
      } else if (name.startsWith('csv')) expect(typeof got.find((r) => r.similarity !== null)!.similarity).toBe('string');
    }, 60_000);
  }

  it('plans plain files into units that start at their first row’s byte offset, gzip ones from the start', async () => {
    const plan = async (file: string) => {
      const cfg = await writeConfig(dir, `plan-${file}.json`, { job: 'image-shards', output: join(dir, `plan-${file}`), input: { kind: 'parquet', paths: [join(tables, file)], unit_rows: 7 } });
      const r = await runCli(['plan', cfg, '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { inputs: { rowStart: number; rowEnd: number; byteStart?: number }[] }[];
    };
    const csv = await plan('rows.csv');
    expect(csv.map((u) => u.inputs[0].rowStart)).toEqual([0, 7, 14, 21, 28]);
    const bytes = await readFile(join(tables, 'rows.csv'));
    // Each later unit starts right after a record's line end: the byte before it is a newline.
    for (const u of csv.slice(1)) expect(bytes[u.inputs[0].byteStart! - 1]).toBe(10);
    expect((await plan('rows.csv.gz')).every((u) => u.inputs[0].byteStart === undefined)).toBe(true);
  });
});

describe('table inputs: problems named at plan time', () => {
  const planOf = async (name: string, body: string | Buffer, input: Record<string, unknown> = {}) => {
    const file = join(dir, name);
    await writeFile(file, body);
    const cfg = await writeConfig(dir, `bad-${name}.json`, { job: 'image-shards', output: join(dir, `bad-${name}`), input: { kind: 'parquet', paths: [file], ...input } });
    return runCli(['plan', cfg]);
  };

  it('a CSV record with too many fields: the file and its line', async () => {
    const r = await planOf('extra.csv', 'URL,TEXT\na.jpg,one\nb.jpg,two,three\n');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/extra\.csv line 3/);
  });

  it('a JSON Lines line that is not JSON, or not an object', async () => {
    let r = await planOf('broken.jsonl', '{"URL":"a.jpg","TEXT":"x"}\n{"URL": "b.jpg", TEXT}\n');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/broken\.jsonl line 2: not valid JSON/);
    r = await planOf('array.jsonl', '{"URL":"a.jpg","TEXT":"x"}\n\n[1, 2]\n');
    expect(r.stderr).toMatch(/array\.jsonl line 3: a JSON Lines record must be an object, found an array/);
  });

  it('a truncated gzip file, a headerless file read for a header, a misspelt column', async () => {
    const gz = await readFile(join(tables, 'rows.csv.gz'));
    let r = await planOf('cut.csv.gz', gz.subarray(0, Math.floor(gz.length / 2)));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cut\.csv\.gz: not a complete gzip file/);
    r = await planOf('cc3m-copy.tsv', await readFile(join(tables, 'cc3m.tsv')));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/input\.url_column: column URL is not in .*cc3m-copy\.tsv/);
    r = await planOf('cols.csv', 'url,caption\na.jpg,x\n', { url_column: 'URL', caption_column: 'caption' });
    expect(r.stderr).toMatch(/did you mean url\?/);
    r = await planOf('cols.jsonl', '{"url":"a.jpg","TEXT":"x"}\n', { columns: ['url', 'TEXT'] });
    expect(r.stderr).toMatch(/input\.columns: only CSV and TSV files without a header line take column names/);
  });
});

describe('text-table reader', () => {
  it('knows formats by extension', () => {
    expect(tableFormatOf('a/b/part-0.tsv.gz')).toEqual({ format: 'tsv', gzip: true });
    expect(tableFormatOf('x.JSONL')).toEqual({ format: 'jsonl', gzip: false });
    expect(tableFormatOf('x.parquet.gz')).toBeUndefined();
    expect(tableFormatOf('x.txt')).toBeUndefined();
  });

  it('reads CRLF records, a BOM, blank lines and quoted newlines; offsets let a reader start at any planned row', async () => {
    const text = '\ufeffURL,TEXT\r\na.jpg,"one, ""1""\r\nline"\r\n\r\nb.jpg,two\r\nc.jpg,\r\nd.jpg,four';
    const buf = Buffer.from(text);
    const t = { format: 'csv' as const, gzip: false };
    const scan = await scanTextTable(Readable.from([buf]), t, 'mem.csv', 2);
    expect(scan).toMatchObject({ rows: 4, columns: ['URL', 'TEXT'] });
    const all = [];
    for await (const r of readTextRecords(Readable.from([buf]), t, 'mem.csv')) all.push(r.row);
    expect(all).toEqual([{ URL: 'a.jpg', TEXT: 'one, "1"\r\nline' }, { URL: 'b.jpg', TEXT: 'two' }, { URL: 'c.jpg', TEXT: null }, { URL: 'd.jpg', TEXT: 'four' }]);
    const tail = [];
    for await (const r of readTextRecords(Readable.from([buf.subarray(scan.offsets![1])]), { ...t, columns: scan.columns }, 'mem.csv', { header: false })) tail.push(r.row);
    expect(tail).toEqual(all.slice(2));
  });
});
