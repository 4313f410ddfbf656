import { open, readFile, rm, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Exact duplicates among any number of rows in bounded memory: each row's 32-byte digest, its
 * ordinal (its place in a fixed order: the earliest wins) and a short label (its key) go to one of
 * `partitions` files on disk by the digest's first bytes; then each partition alone is read,
 * sorted by (digest, ordinal) and scanned. Memory: the write buffers plus one partition, so
 * choose partitions ≈ rows × ~60 bytes / the memory to spend (`partitionsFor`).
 *
 * Record: 32 digest bytes | 8-byte ordinal (float64, exact to 2^53) | 2-byte label length | label (UTF-8).
 */
export interface Duplicate {
  ordinal: number;
  label: string;
  /** The earliest row with the same digest. */
  keptOrdinal: number;
  keptLabel: string;
  digest: string;
}

/** Partitions so that one holds about `budgetBytes` (at least 1, at most 4096). */
export const partitionsFor = (rows: number, budgetBytes = 64 * 2 ** 20): number => Math.min(4096, Math.max(1, Math.ceil((rows * 64) / budgetBytes)));

const BUFFER = 64 * 1024;

export class DigestPartitions {
  private readonly files: (FileHandle | undefined)[];
  private readonly buffers: Buffer[];
  private readonly used: number[];
  private rows = 0;

  private constructor(private readonly dir: string, readonly partitions: number) {
    this.files = new Array(partitions).fill(undefined);
    this.buffers = Array.from({ length: partitions }, () => Buffer.allocUnsafe(BUFFER));
    this.used = new Array(partitions).fill(0);
  }

  static async create(dir: string, partitions: number): Promise<DigestPartitions> {
    if (!(Number.isInteger(partitions) && partitions >= 1 && partitions <= 65536)) throw new Error(`digest partitions: ${partitions} partitions`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    return new DigestPartitions(dir, partitions);
  }

  private partitionOf(digest: Buffer): number {
    return ((digest[0] << 8) | digest[1]) % this.partitions;
  }

  /** Adds a row: `digest` 32 bytes (or 64 hex digits), `ordinal` its place in the order, `label` what names it. */
  async add(digest: Buffer | string, ordinal: number, label: string): Promise<void> {
    const d = typeof digest === 'string' ? Buffer.from(digest, 'hex') : digest;
    if (d.length !== 32) throw new Error(`digest partitions: a digest of ${d.length} bytes (expected 32)`);
    const labelBytes = Buffer.byteLength(label);
    if (labelBytes > 0xffff) throw new Error(`digest partitions: label of ${labelBytes} bytes`);
    const size = 42 + labelBytes;
    const p = this.partitionOf(d);
    if (this.used[p] + size > BUFFER) await this.flush(p);
    const b = this.buffers[p];
    let at = this.used[p];
    d.copy(b, at);
    b.writeDoubleLE(ordinal, at + 32);
    b.writeUInt16LE(labelBytes, at + 40);
    b.write(label, at + 42, 'utf8');
    at += size;
    this.used[p] = at;
    this.rows++;
  }

  private async flush(p: number): Promise<void> {
    if (this.used[p] === 0) return;
    this.files[p] ??= await open(join(this.dir, `p${p}`), 'a');
    await this.files[p]!.write(this.buffers[p], 0, this.used[p]);
    this.used[p] = 0;
  }

  /** Writes what is buffered and closes the files; then `duplicates` can read them. */
  async finish(): Promise<number> {
    for (let p = 0; p < this.partitions; p++) await this.flush(p);
    await Promise.all(this.files.map((f) => f?.close()));
    return this.rows;
  }

  /** Every row whose digest an earlier row (lower ordinal) has, partition by partition. */
  async *duplicates(): AsyncGenerator<Duplicate> {
    for (let p = 0; p < this.partitions; p++) {
      const bytes = await readFile(join(this.dir, `p${p}`)).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return Buffer.alloc(0);
        throw e;
      });
      const starts: number[] = [];
      for (let at = 0; at < bytes.length; at += 42 + bytes.readUInt16LE(at + 40)) starts.push(at);
      const ordinal = (at: number) => bytes.readDoubleLE(at + 32);
      // buf.compare(target, tStart, tEnd, sStart, sEnd) orders the source range against the target's.
      starts.sort((a, b) => bytes.compare(bytes, b, b + 32, a, a + 32) || ordinal(a) - ordinal(b));
      const label = (at: number) => bytes.toString('utf8', at + 42, at + 42 + bytes.readUInt16LE(at + 40));
      let first = -1;
      for (const at of starts) {
        if (first >= 0 && bytes.compare(bytes, first, first + 32, at, at + 32) === 0) {
          yield { ordinal: ordinal(at), label: label(at), keptOrdinal: ordinal(first), keptLabel: label(first), digest: bytes.toString('hex', at, at + 32) };
        } else first = at;
      }
    }
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
