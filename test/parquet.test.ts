import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import {
  parquetSourceFromFile,
  parquetSourceFromStore,
  readParquetMeta,
  readParquetRowGroups,
  type ParquetSource,
} from '../src/formats/parquet-read.js';
import { inferSchema, writeParquet, type ColumnSpec, type Compression } from '../src/formats/parquet-write.js';
import type { Store } from '../src/stores/store.js';

let dir: string;
let instance: DuckDBInstance;
let db: DuckDBConnection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bitprep-parquet-'));
  instance = await DuckDBInstance.create();
  db = await instance.connect();
});

afterAll(() => {
  db?.closeSync();
  instance?.closeSync();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sqlPath = (p: string) => `'${p.replace(/'/g, "''")}'`;

async function duck(sql: string): Promise<Record<string, unknown>[]> {
  return (await db.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

/** One comparable shape for all three readers: safe bigints as numbers, bytes as hex. */
function norm(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') return v >= Number.MIN_SAFE_INTEGER && v <= Number.MAX_SAFE_INTEGER ? Number(v) : v;
  if (v instanceof Uint8Array) return 'hex:' + Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (v instanceof Date) return v;
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}
const normRows = (rows: Record<string, unknown>[]) => rows.map((r) => norm(r) as Record<string, unknown>);

async function readAll(src: ParquetSource, opts?: Parameters<typeof readParquetRowGroups>[1]) {
  const chunks: { rowStart: number; rows: Record<string, unknown>[] }[] = [];
  for await (const c of readParquetRowGroups(src, opts)) chunks.push(c);
  return { chunks, rows: chunks.flatMap((c) => c.rows) };
}

/** Deterministic bytes so failures reproduce. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0), s);
}

function mixedRows(n: number): Record<string, unknown>[] {
  const rnd = prng(42);
  const words = ['naïve café', '東京タワー', 'emoji 🦜🚀', 'plain ascii', 'Ελληνικά', ''];
  return Array.from({ length: n }, (_, i) => {
    const latent = new Uint8Array(1024);
    for (let j = 0; j < 1024; j += 4) new DataView(latent.buffer).setUint32(j, rnd());
    return {
      key: `${String(i).padStart(9, '0')}`,
      caption: i % 11 === 0 ? null : `${words[i % words.length]} #${i}`,
      n64: i % 13 === 0 ? null : 2 ** 40 + i * 3_000_000_007,
      huge: i % 2 ? 2n ** 62n + BigInt(i) : -(2n ** 60n) - BigInt(i),
      score: i % 17 === 0 ? null : (i - 1000) / 7,
      ok: i % 3 === 0,
      meta: i % 5 === 0 ? null : { i, tags: ['a', `t${i % 4}`], nested: { x: i / 2, s: 'ü' } },
      blob: i % 9 === 0 ? null : new Uint8Array([i & 255, (i >> 8) & 255, 0, 255]),
      when: new Date(1_700_000_000_000 + i * 1001),
      latent,
    };
  });
}

function mixedSchema(rows: Record<string, unknown>[]): ColumnSpec[] {
  return inferSchema(rows).map((c) => (c.name === 'latent' ? { ...c, type: { fixedLenByteArray: 1024 } } : c));
}

describe('inferSchema', () => {
  it('maps JS values to column types in first-seen order', () => {
    const rows = [
      { s: 'a', i: 1, f: 1, b: true },
      { s: null, i: 2 ** 40, f: 1.5, b: false, u: new Uint8Array(2), d: new Date(0), j: [1], m: 1 },
      { m: 'x' },
    ];
    expect(inferSchema(rows)).toEqual([
      { name: 's', type: 'STRING', nullable: true },
      { name: 'i', type: 'INT64', nullable: true },
      { name: 'f', type: 'DOUBLE', nullable: true },
      { name: 'b', type: 'BOOLEAN', nullable: true },
      { name: 'u', type: 'BYTE_ARRAY', nullable: true },
      { name: 'd', type: 'TIMESTAMP', nullable: true },
      { name: 'j', type: 'JSON', nullable: true },
      { name: 'm', type: 'JSON', nullable: true },
    ]);
    expect(inferSchema([{ a: 1, b: 2 }], ['b', 'a']).map((c) => c.name)).toEqual(['b', 'a']);
    expect(inferSchema([{ a: 1 }])[0]).toEqual({ name: 'a', type: 'INT64', nullable: false });
  });
});

describe('writeParquet → DuckDB, hyparquet, readParquetRowGroups', () => {
  const n = 2500;
  const rows = mixedRows(n);
  const expected = normRows(rows.map((r) => ({ ...r, meta: r.meta === null ? null : JSON.parse(JSON.stringify(r.meta)) })));
  const codecs: Compression[] = ['SNAPPY', 'UNCOMPRESSED', 'GZIP', 'BROTLI', 'ZSTD'];

  for (const compression of codecs) {
    it(`round-trips mixed columns with ${compression} in 3 row groups`, async () => {
      const path = join(dir, `mixed-${compression}.parquet`);
      writeFileSync(path, writeParquet(rows, { schema: mixedSchema(rows), compression, rowGroupSize: 1000 }));

      const src = await parquetSourceFromFile(path);
      const meta = await readParquetMeta(src);
      expect(meta).toEqual({
        rows: n,
        rowGroups: [
          { rowStart: 0, rows: 1000 },
          { rowStart: 1000, rows: 1000 },
          { rowStart: 2000, rows: 500 },
        ],
        columns: Object.keys(rows[0]),
      });

      const ours = await readAll(src);
      expect(ours.chunks.map((c) => [c.rowStart, c.rows.length])).toEqual([[0, 1000], [1000, 1000], [2000, 500]]);
      expect(typeof ours.rows[1].n64).toBe('number');
      expect(typeof ours.rows[1].huge).toBe('bigint');
      expect(ours.rows[1].when).toBeInstanceOf(Date);
      expect(normRows(ours.rows)).toEqual(expected);

      const direct = await parquetReadObjects({ file: await asyncBufferFromFile(path), compressors, utf8: false });
      expect(normRows(direct)).toEqual(expected);

      const fromDuck = await duck(`select * from read_parquet(${sqlPath(path)})`);
      for (const r of fromDuck) r.meta = r.meta === null ? null : JSON.parse(r.meta as string);
      expect(normRows(fromDuck)).toEqual(expected);

      const [latentCol] = await duck(
        `select type, type_length from parquet_schema(${sqlPath(path)}) where name = 'latent'`,
      );
      expect(latentCol.type).toBe('FIXED_LEN_BYTE_ARRAY');
      expect(Number(latentCol.type_length)).toBe(1024);
      const [{ groups }] = await duck(`select count(distinct row_group_id) as groups from parquet_metadata(${sqlPath(path)})`);
      expect(Number(groups)).toBe(3);
    });
  }

  it('ZSTD frames are standard (the Debian zstd library reads them through DuckDB above) and shrink redundant data', () => {
    const redundant = Array.from({ length: 2000 }, (_, i) => ({ caption: `a photo of a cat number ${i % 10}` }));
    expect(writeParquet(redundant, { compression: 'ZSTD' }).length).toBeLessThan(writeParquet(redundant, { compression: 'UNCOMPRESSED' }).length / 4);
  });

  it('writes a valid 0-row file with the given schema', async () => {
    const path = join(dir, 'empty.parquet');
    const schema: ColumnSpec[] = [
      { name: 'key', type: 'STRING', nullable: false },
      { name: 'latent', type: { fixedLenByteArray: 1024 } },
      { name: 'n', type: 'INT64' },
    ];
    writeFileSync(path, writeParquet([], { schema }));
    const src = await parquetSourceFromFile(path);
    expect(await readParquetMeta(src)).toEqual({ rows: 0, rowGroups: [], columns: ['key', 'latent', 'n'] });
    expect((await readAll(src)).rows).toEqual([]);
    expect(await duck(`select * from read_parquet(${sqlPath(path)})`)).toEqual([]);
    const cols = await duck(`select name, type, type_length from parquet_schema(${sqlPath(path)}) where name <> 'duckdb_schema' offset 1`);
    expect(cols.map((c) => [c.name, c.type, c.type_length === null ? null : Number(c.type_length)])).toEqual([
      ['key', 'BYTE_ARRAY', null],
      ['latent', 'FIXED_LEN_BYTE_ARRAY', 1024],
      ['n', 'INT64', null],
    ]);
  });

  it('stores footer key-value metadata', async () => {
    const path = join(dir, 'kv.parquet');
    writeFileSync(path, writeParquet([{ a: 1 }], { metadata: { 'bitprep.bit_order': 'msb' } }));
    const kv = await duck(`select decode(key) as k, decode(value) as v from parquet_kv_metadata(${sqlPath(path)})`);
    expect(kv).toContainEqual({ k: 'bitprep.bit_order', v: 'msb' });
  });

  it('rejects values that do not fit the schema, naming column and row', () => {
    expect(() => writeParquet([{ a: 'x' }, { a: 2 }], { schema: [{ name: 'a', type: 'STRING' }] })).toThrow(/column "a" row 1: expected string/);
    expect(() => writeParquet([{ l: new Uint8Array(3) }], { schema: [{ name: 'l', type: { fixedLenByteArray: 4 } }] })).toThrow(/column "l" row 0/);
    expect(() => writeParquet([{ a: null }], { schema: [{ name: 'a', type: 'INT64', nullable: false }] })).toThrow(/non-nullable/);
    expect(() => writeParquet([{ a: 1.5 }], { schema: [{ name: 'a', type: 'INT64' }] })).toThrow(/safe integer/);
  });
});

describe('DuckDB-written parquet → readParquetRowGroups', () => {
  const total = 5000;
  const groupSize = 700;

  const laionSql = `
    select
      'https://img.example.com/' || i || '/ph%C3%B6to.jpg' as URL,
      case when i % 9 = 0 then null else 'alt text ' || i || ' — «ünïcødé»' end as TEXT,
      'a photo of thing ' || (i % 37) as top_caption,
      case when i % 10 = 0 then null else ['caption a ' || i, 'caption b ' || (i % 3), 'shared'] end as all_captions,
      case when i % 10 = 0 then null else [i / 1000.0, 0.25, -1.0 / (i + 1)]::double[] end as all_similarities,
      (256 + i % 1024)::bigint as WIDTH,
      case when i % 50 = 0 then null else (200 + i % 999)::bigint end as HEIGHT,
      (i % 997) / 997.0::double as similarity,
      case when i % 2 = 0 then (hash(i) >> 1)::bigint else -((hash(i) >> 2)::bigint) end as hash,
      (i % 100) / 100.0::double as pwatermark,
      case when i % 7 = 0 then null else (i % 13) / 13.0::double end as punsafe
    from range(0, ${total}) t(i)`;

  const mixedSql = `
    select
      i::bigint as id,
      'cat_' || (i % 5) as cat,
      case when i % 7 = 0 then null else 'text ' || i || ' ünï' end as txt,
      i::bigint * 3000000000 as big,
      case when i % 6 = 0 then null else i / 3.0::double end as dbl,
      case when i % 4 = 0 then null when i % 4 = 1 then []::varchar[] else ['a' || i, null, 'b' || (i % 3)] end as tags,
      timestamp '2024-01-01 00:00:00' + to_milliseconds(i * 1001) as ts,
      i % 2 = 0 as even
    from range(0, ${total}) t(i)`;

  const cases: { name: string; sql: string; options: string }[] = [];
  for (const codec of ['zstd', 'gzip', 'brotli', 'lz4_raw', 'snappy', 'uncompressed']) {
    cases.push({ name: `laion-${codec}`, sql: laionSql, options: `COMPRESSION ${codec}, ROW_GROUP_SIZE ${groupSize}` });
    cases.push({ name: `mixed-${codec}`, sql: mixedSql, options: `COMPRESSION ${codec}, ROW_GROUP_SIZE ${groupSize}` });
  }
  for (const codec of ['zstd', 'snappy']) {
    const options = `COMPRESSION ${codec}, ROW_GROUP_SIZE ${groupSize}, PARQUET_VERSION V2`;
    cases.push({ name: `laion-${codec}-v2`, sql: laionSql, options });
    cases.push({ name: `mixed-${codec}-v2`, sql: mixedSql, options });
  }

  for (const c of cases) {
    it(`reads ${c.name} with the values DuckDB returns`, async () => {
      const path = join(dir, `${c.name}.parquet`);
      await db.run(`COPY (${c.sql}) TO ${sqlPath(path)} (FORMAT parquet, ${c.options})`);
      const fromDuck = normRows(await duck(`select * from read_parquet(${sqlPath(path)})`));
      expect(fromDuck).toHaveLength(total);

      const src = await parquetSourceFromFile(path);
      const meta = await readParquetMeta(src);
      expect(meta.rows).toBe(total);
      expect(meta.rowGroups.length).toBeGreaterThan(1);
      const ours = await readAll(src);
      expect(ours.chunks.map((ch) => ({ rowStart: ch.rowStart, rows: ch.rows.length }))).toEqual(meta.rowGroups);
      expect(normRows(ours.rows)).toEqual(fromDuck);

      if (c.name.startsWith('mixed')) {
        const enc = await duck(`select encodings from parquet_metadata(${sqlPath(path)}) where path_in_schema = 'cat' limit 1`);
        expect(String(enc[0].encodings)).toMatch(/DICTIONARY/);
        expect(ours.rows[1].ts).toBeInstanceOf(Date);
        expect(ours.rows[2].tags).toEqual(['a2', null, 'b2']);
      } else {
        expect(Object.keys(ours.rows[0])).toEqual([
          'URL', 'TEXT', 'top_caption', 'all_captions', 'all_similarities', 'WIDTH', 'HEIGHT',
          'similarity', 'hash', 'pwatermark', 'punsafe',
        ]);
        expect(typeof ours.rows[0].WIDTH).toBe('number');
      }
    });
  }

  describe('row-range clipping', () => {
    let src: ParquetSource;
    let all: unknown[];
    let groups: { rowStart: number; rows: number }[];

    beforeAll(async () => {
      const path = join(dir, 'laion-clip.parquet');
      await db.run(`COPY (${laionSql}) TO ${sqlPath(path)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${groupSize})`);
      src = await parquetSourceFromFile(path);
      all = normRows(await duck(`select * from read_parquet(${sqlPath(path)})`));
      groups = (await readParquetMeta(src)).rowGroups;
    });

    const ranges: [number | undefined, number | undefined][] = [
      [undefined, undefined],
      [650, 2150],
      [699, 701],
      [0, 1],
      [total - 1, total],
      [1234, 1234],
      [4000, undefined],
      [undefined, 10],
      [total, total + 10],
      [-5, 3],
      [10, total * 2],
    ];
    for (const [rowStart, rowEnd] of ranges) {
      it(`returns exactly rows [${rowStart}, ${rowEnd}), one row group per chunk`, async () => {
        const { chunks, rows } = await readAll(src, { rowStart, rowEnd });
        const lo = Math.max(0, rowStart ?? 0);
        const hi = Math.min(total, rowEnd ?? total);
        expect(normRows(rows)).toEqual(all.slice(lo, Math.max(lo, hi)));
        let next = lo;
        for (const ch of chunks) {
          expect(ch.rowStart).toBe(next);
          expect(ch.rows.length).toBeGreaterThan(0);
          const g = groups.find((x) => x.rowStart <= ch.rowStart && ch.rowStart < x.rowStart + x.rows)!;
          expect(ch.rowStart + ch.rows.length).toBeLessThanOrEqual(g.rowStart + g.rows);
          next += ch.rows.length;
        }
      });
    }

    it('reads only the requested columns', async () => {
      const { rows } = await readAll(src, { rowStart: 690, rowEnd: 710, columns: ['hash', 'all_captions'] });
      expect(rows.map(norm)).toEqual(
        all.slice(690, 710).map((r) => {
          const { hash, all_captions } = r as Record<string, unknown>;
          return { hash, all_captions };
        }),
      );
      await expect(readAll(src, { columns: ['nope'] })).rejects.toThrow(/laion-clip\.parquet.*nope/);
    });

  });

  it('fetches only the row groups it needs', async () => {
    // Larger than the 512 KiB tail that is fetched whole with the footer.
    const path = join(dir, 'latents-big.parquet');
    const rows = mixedRows(3000);
    writeFileSync(path, writeParquet(rows, { schema: mixedSchema(rows), rowGroupSize: 500 }));
    const src = await parquetSourceFromFile(path);
    expect(src.size).toBeGreaterThan(2_000_000);
    const reads: [number, number][] = [];
    const counting: ParquetSource = { ...src, read: (s, e) => (reads.push([s, e]), src.read(s, e)) };
    const { rows: got } = await readAll(counting, { rowStart: 1200, rowEnd: 1201 });
    expect(normRows(got)[0].key).toBe('000001200');
    const bytes = reads.reduce((n, [s, e]) => n + e - s, 0);
    expect(bytes).toBeLessThan(src.size * 0.5);
  });
});

describe('stores and errors', () => {
  /** Just enough of Store over local files to exercise parquetSourceFromStore. */
  function localStore(root: string): Store {
    const unsupported = () => Promise.reject(new Error('not used'));
    return {
      url: root,
      get: unsupported,
      getStream: unsupported,
      put: unsupported,
      putStream: unsupported,
      list: unsupported,
      exists: unsupported,
      delete: unsupported,
      async size(name) {
        try {
          return statSync(join(root, name)).size;
        } catch {
          return undefined;
        }
      },
      async getRange(name, start, end) {
        const fh = await open(join(root, name), 'r');
        try {
          // A pooled Buffer view, as real stores return, to exercise copying out of it.
          const buf = Buffer.allocUnsafe(end - start);
          await fh.read(buf, 0, end - start, start);
          return buf;
        } finally {
          await fh.close();
        }
      },
    };
  }

  let good: Uint8Array;
  beforeAll(() => {
    const rows = mixedRows(300);
    good = writeParquet(rows, { schema: mixedSchema(rows), rowGroupSize: 100 });
    writeFileSync(join(dir, 'good.parquet'), good);
  });

  it('reads through a Store', async () => {
    const src = await parquetSourceFromStore(localStore(dir), 'good.parquet');
    expect(src.name).toBe('good.parquet');
    const { rows } = await readAll(src, { rowStart: 150, rowEnd: 160 });
    expect(normRows(rows)).toEqual(normRows(mixedRows(300).slice(150, 160)).map((r) => ({ ...r, meta: r.meta === null ? null : JSON.parse(JSON.stringify(r.meta)) })));
    await expect(parquetSourceFromStore(localStore(dir), 'missing.parquet')).rejects.toThrow(/missing\.parquet.*not found/);
  });

  it('names the file for truncated parquet', async () => {
    const path = join(dir, 'truncated.parquet');
    writeFileSync(path, good.subarray(0, Math.floor(good.length / 2)));
    await expect(readParquetMeta(await parquetSourceFromFile(path))).rejects.toThrow(/truncated\.parquet/);
    await expect(readAll(await parquetSourceFromFile(path))).rejects.toThrow(/truncated\.parquet/);
  });

  it('names the file for non-parquet and tiny files', async () => {
    writeFileSync(join(dir, 'text.parquet'), 'hello, this is not parquet at all\n'.repeat(10));
    writeFileSync(join(dir, 'tiny.parquet'), 'PAR1');
    await expect(readAll(await parquetSourceFromFile(join(dir, 'text.parquet')))).rejects.toThrow(/text\.parquet/);
    await expect(readAll(await parquetSourceFromFile(join(dir, 'tiny.parquet')))).rejects.toThrow(/tiny\.parquet/);
  });

  it('names the file and row group for corrupt column data', async () => {
    const bytes = readFileSync(join(dir, 'good.parquet'));
    const meta = await readParquetMeta(await parquetSourceFromFile(join(dir, 'good.parquet')));
    expect(meta.rowGroups).toHaveLength(3);
    // Row group 1's pages start after group 0; stomp on the middle of the file's data section.
    const corrupt = Buffer.from(bytes);
    const groupOffsets = await duck(
      `select row_group_id, min(coalesce(dictionary_page_offset, data_page_offset)) as off from parquet_metadata(${sqlPath(join(dir, 'good.parquet'))}) group by 1 order by 1`,
    );
    const start = Number(groupOffsets[1].off);
    corrupt.fill(0xff, start, start + 64);
    const path = join(dir, 'corrupt.parquet');
    writeFileSync(path, corrupt);
    const seen: number[] = [];
    const run = async () => {
      for await (const c of readParquetRowGroups(await parquetSourceFromFile(path))) seen.push(c.rowStart);
    };
    await expect(run()).rejects.toThrow(/corrupt\.parquet row group 1/);
    expect(seen).toEqual([0]);
  });
});
