import { readFile } from 'node:fs/promises';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readTarEntries } from '../../src/formats/tar-read.js';
import type { Store } from '../../src/stores/store.js';

/** Every sidecar record of an output, read with hyparquet directly (not through bitprep's reader). */
export async function readAllRecords(store: Store): Promise<Record<string, unknown>[]> {
  const names = (await store.list()).filter((n) => /^\d+\.parquet$/.test(n));
  const rows: Record<string, unknown>[] = [];
  for (const n of names) {
    const buf = await store.get(n);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    rows.push(...((await parquetReadObjects({ file: ab, compressors })) as Record<string, unknown>[]));
  }
  return rows;
}

/** Member names and bytes of every shard tar of an output. */
export async function readAllTarMembers(store: Store): Promise<Map<string, Uint8Array>> {
  const members = new Map<string, Uint8Array>();
  for (const n of (await store.list()).filter((x) => /^\d+\.tar$/.test(x))) {
    for await (const e of readTarEntries(await store.getStream(n), { name: n })) {
      if (members.has(e.path)) throw new Error(`member ${e.path} appears twice`);
      members.set(e.path, e.data);
    }
  }
  return members;
}

export const readJson = async (p: string) => JSON.parse(await readFile(p, 'utf8'));
