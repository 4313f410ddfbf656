import { createReadStream, existsSync } from 'node:fs';
import { open, rm, mkdir, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

/**
 * Text records spread over `partitions` files on disk, then read back one partition at a time:
 * how the dedup's passes group what belongs together (a hash band, a cluster, a unit) without
 * holding all rows in memory. Memory: a small write buffer per partition plus the one partition
 * being read, so choose partitions from the bytes expected (`partitionsFor`).
 */
export class LinePartitions {
  private readonly files: (FileHandle | undefined)[];
  private readonly buffers: string[][];
  private readonly buffered: number[];
  private pending = 0;

  private constructor(private readonly dir: string, readonly partitions: number) {
    this.files = new Array(partitions).fill(undefined);
    this.buffers = Array.from({ length: partitions }, () => []);
    this.buffered = new Array(partitions).fill(0);
  }

  static async create(dir: string, partitions: number): Promise<LinePartitions> {
    if (!(Number.isInteger(partitions) && partitions >= 1 && partitions <= 65536)) throw new Error(`line partitions: ${partitions} partitions`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    return new LinePartitions(dir, partitions);
  }

  /** Adds one record (no newline in it) to partition `p`. */
  async add(p: number, line: string): Promise<void> {
    this.buffers[p].push(line);
    this.buffered[p] += line.length + 1;
    this.pending += line.length + 1;
    if (this.buffered[p] >= 64 * 1024) await this.flush(p);
    // Many partitions each under their own limit can still add up: flush them all past 8 MiB.
    else if (this.pending >= 8 * 2 ** 20) for (let q = 0; q < this.partitions; q++) await this.flush(q);
  }

  private async flush(p: number): Promise<void> {
    if (this.buffers[p].length === 0) return;
    this.files[p] ??= await open(join(this.dir, `p${p}`), 'a');
    await this.files[p]!.write(this.buffers[p].join('\n') + '\n');
    this.pending -= this.buffered[p];
    this.buffers[p] = [];
    this.buffered[p] = 0;
  }

  /** Writes what is buffered and closes the files; then `read` can be called. */
  async finish(): Promise<void> {
    for (let p = 0; p < this.partitions; p++) await this.flush(p);
    await Promise.all(this.files.map((f) => f?.close()));
    this.files.fill(undefined);
  }

  /** Partition p's records, in the order they were added, streamed (a partition may outgrow one string). */
  async *read(p: number): AsyncGenerator<string> {
    const path = join(this.dir, `p${p}`);
    if (!existsSync(path)) return;
    for await (const line of createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })) yield line;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
