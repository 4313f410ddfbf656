import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';
import { timeMedian, type BenchResult } from './harness.js';

const ROWS = 20_000;

const schema: ColumnSpec[] = [
  { name: 'key', type: 'STRING', nullable: false },
  { name: 'caption', type: 'STRING', nullable: false },
  { name: 'width', type: 'INT64', nullable: false },
  { name: 'height', type: 'INT64', nullable: false },
  { name: 'similarity', type: 'DOUBLE', nullable: false },
  { name: 'punsafe', type: 'DOUBLE', nullable: false },
];

/** Word salad rather than repeated text so neither writer wins on trivially compressible data. */
function makeRows(): Record<string, unknown>[] {
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s / 2 ** 32);
  const words = Array.from({ length: 4000 }, (_, i) => (i * 2654435761).toString(36).slice(0, 3 + (i % 7)));
  return Array.from({ length: ROWS }, (_, i) => {
    let caption = '';
    while (caption.length < 960) caption += words[Math.floor(rnd() * words.length)] + ' ';
    return {
      key: String(i).padStart(9, '0'),
      caption,
      width: 256 + Math.floor(rnd() * 2048),
      height: 256 + Math.floor(rnd() * 2048),
      similarity: rnd(),
      punsafe: rnd(),
    };
  });
}

export default async function bench(): Promise<BenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bitprep-bench-pq-'));
  const rows = makeRows();
  const bytesPerRow = rows.reduce((n, r) => n + (r.caption as string).length + 9 + 32, 0) / ROWS;
  const instance = await DuckDBInstance.create();
  const db = await instance.connect();
  try {
    await db.run(
      'create table t (key varchar not null, caption varchar not null, width bigint not null, height bigint not null, similarity double not null, punsafe double not null)',
    );
    const app = await db.createAppender('t');
    for (const r of rows) {
      app.appendVarchar(r.key as string);
      app.appendVarchar(r.caption as string);
      app.appendBigInt(BigInt(r.width as number));
      app.appendBigInt(BigInt(r.height as number));
      app.appendDouble(r.similarity as number);
      app.appendDouble(r.punsafe as number);
      app.endRow();
    }
    app.closeSync();

    // Both sides end with the file on disk, snappy-compressed.
    const oursPath = join(dir, 'hyparquet-writer.parquet');
    const ours = await timeMedian(() => writeFile(oursPath, writeParquet(rows, { schema, compression: 'SNAPPY' })), 5, 1);
    const brotliPath = join(dir, 'hyparquet-writer-brotli.parquet');
    const oursBrotli = await timeMedian(() => writeFile(brotliPath, writeParquet(rows, { schema, compression: 'BROTLI' })), 5, 1);
    const duckPath = join(dir, 'duckdb.parquet');
    const copy = `COPY t TO '${duckPath}' (FORMAT parquet, COMPRESSION snappy)`;
    const threads = (await db.runAndReadAll("select current_setting('threads') as n")).getRowObjectsJS()[0].n;
    const duck = await timeMedian(() => db.run(copy), 5, 1);
    await db.run('SET threads = 1');
    const duck1 = await timeMedian(() => db.run(copy), 5, 1);

    const mib = (p: string) => (statSync(p).size / 2 ** 20).toFixed(1);
    return {
      name: 'parquet-write',
      data: `${ROWS} rows × ~${Math.round(bytesPerRow)} B (key, ~960-char caption, 2 int64, 2 double), snappy, file on local disk`,
      rows: [
        { label: 'hyparquet-writer (writeParquet)', value: ROWS / ours, unit: 'rows/s' },
        { label: 'hyparquet-writer (writeParquet, BROTLI q1 via node:zlib)', value: ROWS / oursBrotli, unit: 'rows/s' },
        { label: `DuckDB COPY (threads=${threads})`, value: ROWS / duck, unit: 'rows/s' },
        { label: 'DuckDB COPY (threads=1)', value: ROWS / duck1, unit: 'rows/s' },
      ],
      ratios: [
        { label: 'hyparquet-writer / DuckDB', value: duck / ours },
        { label: 'hyparquet-writer / DuckDB (1 thread)', value: duck1 / ours },
      ],
      notes: [
        `file sizes: hyparquet-writer ${mib(oursPath)} MiB (snappy), ${mib(brotliPath)} MiB (brotli), DuckDB ${mib(duckPath)} MiB (snappy)`,
        "snappy via hysnappy (wasm); hyparquet-writer's own JS snappy measured ~2.5x slower",
        'DuckDB table built with an appender beforehand (untimed); only COPY is timed',
        'parquet-wasm is not installed, so it is not measured',
      ],
    };
  } finally {
    db.closeSync();
    instance.closeSync();
    rmSync(dir, { recursive: true, force: true });
  }
}
