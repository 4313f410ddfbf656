import { deserialize, serialize } from 'node:v8';
import { LATENT_BYTES } from '../../src/formats/latent-bits.js';
import type { Store } from '../../src/stores/store.js';

/**
 * A shuffle run: what one scatter unit wrote, its samples sorted by output shard and row, with an
 * offset table so a gather unit reads only its shard's segment (two range reads per run).
 *
 *   "BPMXRUN1" | u32 shard count S | u32 0 | f64 offsets[S + 1] (byte offsets from the file start;
 *   shard i's records lie in [offsets[i], offsets[i + 1])) | records
 *   record: u32 row in the output shard | u32 payload length | payload
 *   payload: the 1024-byte latent, then the row's other fields as a v8-serialized object
 *
 * v8 serialization keeps every value type the Parquet reader produces (strings, numbers, bigints,
 * Dates, Uint8Arrays, nested JSON) without a schema of its own.
 */
const MAGIC = 'BPMXRUN1';
const HEADER = 16;

export interface RunRecord {
  shard: number;
  row: number;
  payload: Uint8Array;
}

export function encodePayload(latent: Uint8Array, fields: Record<string, unknown>): Uint8Array {
  if (latent.length !== LATENT_BYTES) throw new Error(`latent of ${latent.length} bytes, expected ${LATENT_BYTES}`);
  const rest = serialize(fields);
  const out = new Uint8Array(LATENT_BYTES + rest.length);
  out.set(latent, 0);
  out.set(rest, LATENT_BYTES);
  return out;
}

export function decodePayload(payload: Uint8Array): { latent: Uint8Array; fields: Record<string, unknown> } {
  return { latent: payload.slice(0, LATENT_BYTES), fields: deserialize(payload.subarray(LATENT_BYTES)) as Record<string, unknown> };
}

/** Writes a run (records in any order; sorted here) with a streaming writer; returns its bytes. */
export async function writeRun(store: Store, name: string, shardCount: number, records: RunRecord[]): Promise<{ bytes: number; sha256: string }> {
  const order = Array.from(records.keys()).sort((a, b) => records[a].shard - records[b].shard || records[a].row - records[b].row);
  const tableAt = HEADER;
  const dataAt = tableAt + 8 * (shardCount + 1);
  const head = new Uint8Array(dataAt);
  const view = new DataView(head.buffer);
  for (let i = 0; i < MAGIC.length; i++) head[i] = MAGIC.charCodeAt(i);
  view.setUint32(8, shardCount, true);
  let pos = dataAt;
  let next = 0;
  for (let s = 0; s <= shardCount; s++) {
    while (next < order.length && records[order[next]].shard < s) pos += 8 + records[order[next++]].payload.length;
    view.setFloat64(tableAt + 8 * s, pos, true);
  }
  const w = await store.putStream(name);
  try {
    await w.write(head);
    const CHUNK = 8 << 20;
    let buf = new Uint8Array(CHUNK);
    let fill = 0;
    for (const k of order) {
      const r = records[k];
      const need = 8 + r.payload.length;
      if (fill + need > buf.length) {
        if (fill > 0) await w.write(buf.subarray(0, fill));
        buf = new Uint8Array(Math.max(CHUNK, need));
        fill = 0;
      }
      const dv = new DataView(buf.buffer, fill, 8);
      dv.setUint32(0, r.row, true);
      dv.setUint32(4, r.payload.length, true);
      buf.set(r.payload, fill + 8);
      fill += need;
    }
    if (fill > 0) await w.write(buf.subarray(0, fill));
    const obj = await w.close();
    return { bytes: obj.bytes, sha256: obj.sha256 };
  } catch (err) {
    await w.abort();
    throw err;
  }
}

/**
 * The records of output shard `shard` in one run (empty when the run holds none): one read of the
 * shard's two table entries, one of its segment. The caller knows the shard count from the layout.
 */
export async function readRunSegment(store: Store, name: string, shard: number, shardCount: number): Promise<{ row: number; payload: Uint8Array }[]> {
  if (shard >= shardCount) throw new Error(`readRunSegment: shard ${shard} of ${shardCount}`);
  const t = await store.getRange(name, HEADER + 8 * shard, HEADER + 8 * (shard + 2));
  if (t.length !== 16) throw new Error(`${store.url}/${name}: truncated (offset table)`);
  const tv = new DataView(t.buffer, t.byteOffset, 16);
  const start = tv.getFloat64(0, true);
  const end = tv.getFloat64(8, true);
  if (!(start >= HEADER + 8 * (shardCount + 1) && end >= start)) throw new Error(`${store.url}/${name}: not a shuffle run of ${shardCount} shards`);
  if (end <= start) return [];
  const seg = await store.getRange(name, start, end);
  if (seg.length !== end - start) throw new Error(`${store.url}/${name}: truncated (segment of shard ${shard})`);
  const dv = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
  const out: { row: number; payload: Uint8Array }[] = [];
  for (let at = 0; at < seg.length; ) {
    const row = dv.getUint32(at, true);
    const len = dv.getUint32(at + 4, true);
    out.push({ row, payload: seg.subarray(at + 8, at + 8 + len) });
    at += 8 + len;
  }
  return out;
}
