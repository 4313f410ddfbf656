import { AsyncByteQueue, Field, FixedSizeBinary, makeData, RecordBatch, RecordBatchStreamWriter, Schema, Struct, Utf8, type Data } from 'apache-arrow';
import { BIT_ORDER, LATENT_BITS_PER_TOKEN, LATENT_BYTES, LATENT_TOKENS } from '../../src/formats/latent-bits.js';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import type { Store } from '../../src/stores/store.js';
import type { MixIndex } from './mix-index.js';
import { VIEWS_COLUMN } from './column-types.js';

/** The columns `bitprep feed` streams, in order. */
export const FEED_COLUMNS = ['key', 'latent', 'caption_text', 'caption_kind', 'source'] as const;

/**
 * One rank's rows in order from rank-stream index `from`, a row group at a time: the shard that
 * holds sample `from` is entered at row from − start (whole row groups before it are not read),
 * every later shard from its first row. Columns a shard lacks (`source` when no input had one)
 * come back absent, i.e. null.
 */
export async function* readRankRows(store: Store, mix: MixIndex, rank: number, from: number): AsyncGenerator<Record<string, unknown>[]> {
  const r = mix.ranks[rank];
  if (!r) throw new Error(`rank ${rank} is outside this mix's world size ${mix.world_size}`);
  if (!Number.isInteger(from) || from < 0 || from > r.samples) throw new Error(`--resume-from ${from}: rank ${rank} has ${r.samples} samples`);
  for (const sh of r.shards) {
    if (from >= sh.start + sh.rows) continue;
    const src = await parquetSourceFromStore(store, sh.name);
    const meta = await readParquetMeta(src);
    if (meta.rows !== sh.rows) throw new Error(`${store.url}/${sh.name}: ${meta.rows} rows, mix.json says ${sh.rows}`);
    const columns = [...FEED_COLUMNS, VIEWS_COLUMN[0]].filter((c) => meta.columns.includes(c));
    for await (const g of readParquetRowGroups(src, { rowStart: Math.max(0, from - sh.start), columns })) yield g.rows;
  }
}

/** The Arrow schema of the feed, with the bit order and latent shape in its metadata. */
export function feedSchema(extra: Record<string, string> = {}): Schema {
  return new Schema(
    [
      new Field('key', new Utf8(), false),
      new Field('latent', new FixedSizeBinary(LATENT_BYTES), false),
      new Field('caption_text', new Utf8(), true),
      new Field('caption_kind', new Utf8(), true),
      new Field('source', new Utf8(), true),
    ],
    new Map(Object.entries({ 'bitprep.bit_order': BIT_ORDER, 'bitprep.latent_shape': `${LATENT_TOKENS},${LATENT_BITS_PER_TOKEN}`, ...extra })),
  );
}

function utf8Data(values: unknown[], nullable: boolean, column: string): Data<Utf8> {
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  const bitmap = new Uint8Array((n + 7) >> 3);
  const strings: (string | null)[] = new Array(n);
  // UTF-8 needs at most 3 bytes per UTF-16 unit: one buffer sized for that, written in place
  // (Buffer.write, native), instead of an array per string and a copy (a fifth of the feed's CPU).
  let cap = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const str = v === null || v === undefined ? null : String(v);
    strings[i] = str;
    if (str !== null) cap += str.length * 3;
  }
  const buf = Buffer.allocUnsafe(cap);
  let nulls = 0;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const str = strings[i];
    if (str === null) {
      if (!nullable) throw new Error(`feed: ${column} is null in row ${i}`);
      nulls++;
    } else {
      bitmap[i >> 3] |= 1 << (i & 7);
      at += buf.write(str, at, 'utf8');
    }
    offsets[i + 1] = at;
  }
  const data = new Uint8Array(buf.buffer, buf.byteOffset, at);
  return makeData({ type: new Utf8(), length: n, nullCount: nulls, nullBitmap: nulls > 0 ? bitmap : undefined, valueOffsets: offsets, data });
}

/**
 * The latent a row shows in `epoch`: of a sample with views (`latent_views`, in the order epochs
 * show them), the (epoch mod views)-th; otherwise its one latent.
 */
export function latentForEpoch(r: Record<string, unknown>, epoch: number): unknown {
  const v = r[VIEWS_COLUMN[0]];
  if (!(v instanceof Uint8Array)) return r.latent;
  const views = v.length / LATENT_BYTES;
  if (!Number.isInteger(views) || views < 1) throw new Error(`feed: row ${String(r.key)} has ${v.length} bytes of views, not a whole number of ${LATENT_BYTES}-byte latents`);
  const k = epoch % views;
  return v.subarray(k * LATENT_BYTES, (k + 1) * LATENT_BYTES);
}

/** One Arrow record batch of feed rows for `epoch` (latents copied into one contiguous buffer). */
export function feedBatch(schema: Schema, rows: Record<string, unknown>[], epoch = 0): RecordBatch {
  const n = rows.length;
  const latents = new Uint8Array(n * LATENT_BYTES);
  rows.forEach((r, i) => {
    const l = latentForEpoch(r, epoch);
    if (!(l instanceof Uint8Array) || l.length !== LATENT_BYTES) throw new Error(`feed: row ${String(r.key)} has no ${LATENT_BYTES}-byte latent`);
    latents.set(l, i * LATENT_BYTES);
  });
  const children = [
    utf8Data(rows.map((r) => r.key), false, 'key'),
    makeData({ type: new FixedSizeBinary(LATENT_BYTES), length: n, nullCount: 0, data: latents }),
    utf8Data(rows.map((r) => r.caption_text), true, 'caption_text'),
    utf8Data(rows.map((r) => r.caption_kind), true, 'caption_kind'),
    utf8Data(rows.map((r) => r.source), true, 'source'),
  ];
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children }));
}

/** Catches what apache-arrow's writer emits so each message can be written (and waited on) by us. */
class Collector extends AsyncByteQueue {
  private chunks: Uint8Array[] = [];

  override write(value: Uint8Array): void {
    this.chunks.push(value);
  }

  take(): Uint8Array {
    const out = Buffer.concat(this.chunks);
    this.chunks = [];
    return out;
  }
}

/**
 * Arrow IPC stream framing by apache-arrow's RecordBatchStreamWriter, one message at a time: the
 * writer's own queue would otherwise buffer the whole stream whatever the reader's pace.
 */
export class IpcStreamEncoder {
  private readonly sink = new Collector();
  private readonly writer = new RecordBatchStreamWriter();

  constructor(readonly schema: Schema) {}

  /** The schema message. */
  start(): Uint8Array {
    this.writer.reset(this.sink, this.schema);
    return this.sink.take();
  }

  batch(b: RecordBatch): Uint8Array {
    this.writer.write(b);
    return this.sink.take();
  }

  /** The end-of-stream marker. */
  end(): Uint8Array {
    this.writer.finish();
    return this.sink.take();
  }
}

/**
 * Writes to a pipe honouring backpressure (waits for 'drain' whenever write() says the buffer is
 * full, so a slow reader holds memory at one batch) and treating EPIPE — the reader exited — as
 * the end of the stream rather than an error.
 */
export class PipeSink {
  private broken = false;
  private failure: Error | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly out: NodeJS.WritableStream) {
    // Stays attached: an EPIPE can surface after the last write, and an unheard 'error' would crash.
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED' || err.code === 'ECONNRESET') this.broken = true;
      else this.failure = err;
      for (const w of [...this.waiters]) w();
    });
  }

  /** Whether the reader went away. */
  get closed(): boolean {
    return this.broken;
  }

  /** Resolves true once the chunk is accepted, false when the reader is gone. */
  async write(chunk: Uint8Array): Promise<boolean> {
    if (this.failure) throw this.failure;
    if (this.broken) return false;
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.out.removeListener('drain', done);
          this.out.removeListener('close', done);
          this.waiters.delete(done);
          resolve();
        };
        this.out.on('drain', done);
        this.out.on('close', done);
        this.waiters.add(done);
      });
    }
    if (this.failure) throw this.failure;
    return !this.broken;
  }
}

export interface FeedOptions {
  rank: number;
  /** Rank-stream index to start at (0: from the beginning). */
  from: number;
  /** Rows per record batch (the last may be smaller). */
  batchRows: number;
  /** The pass over the mix (0-based): samples with views show their (epoch mod views)-th. */
  epoch?: number;
}

/**
 * Streams one rank's samples from `from` as an Arrow IPC stream: schema, record batches of
 * `batchRows` rows (batches span shard boundaries), end-of-stream. The next row group is read
 * while the current batches are written. Returns how many rows went out and whether the reader
 * left early.
 */
export async function feedRank(store: Store, mix: MixIndex, opts: FeedOptions, sink: PipeSink): Promise<{ rows: number; batches: number; readerLeft: boolean }> {
  const epoch = opts.epoch ?? 0;
  const schema = feedSchema({ 'bitprep.rank': String(opts.rank), 'bitprep.world_size': String(mix.world_size), 'bitprep.mix': mix.fingerprint, 'bitprep.epoch': String(epoch) });
  const enc = new IpcStreamEncoder(schema);
  let rows = 0;
  let batches = 0;
  const left = () => ({ rows, batches, readerLeft: true });
  if (!(await sink.write(enc.start()))) return left();
  const it = readRankRows(store, mix, opts.rank, opts.from)[Symbol.asyncIterator]();
  let pending: Record<string, unknown>[] = [];
  let next = it.next();
  try {
    for (;;) {
      const r = await next;
      if (r.done) break;
      next = it.next();
      pending = pending.length ? pending.concat(r.value) : r.value;
      while (pending.length >= opts.batchRows) {
        const part = pending.slice(0, opts.batchRows);
        pending = pending.slice(opts.batchRows);
        if (!(await sink.write(enc.batch(feedBatch(schema, part, epoch))))) return left();
        rows += part.length;
        batches++;
      }
    }
    if (pending.length > 0) {
      if (!(await sink.write(enc.batch(feedBatch(schema, pending, epoch))))) return left();
      rows += pending.length;
      batches++;
    }
    if (!(await sink.write(enc.end()))) return left();
    return { rows, batches, readerLeft: false };
  } finally {
    next.catch(() => undefined);
  }
}
