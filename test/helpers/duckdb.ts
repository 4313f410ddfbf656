import { DuckDBInstance } from '@duckdb/node-api';

/** Rows of a query run by DuckDB in a fresh in-memory database: an independent Parquet reader for tests. */
export async function duckRows(sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create();
  const conn = await db.connect();
  try {
    return (await conn.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    conn.closeSync();
  }
}
