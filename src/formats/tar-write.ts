import { pack, type Pack } from 'tar-stream';

/** Where the archive bytes go; the store's `ObjectWriter` has this shape. */
export interface TarSink {
  write(chunk: Uint8Array): Promise<void>;
}

export interface TarWriterOptions {
  /** Modification time of every member; fixed by default so equal input gives equal bytes. */
  mtime?: Date;
}

export interface TarWriterResult {
  samples: number;
  /** Bytes handed to the sink, end-of-archive included. */
  bytes: number;
}

/**
 * Small tar chunks (512-byte headers, padding, short .json/.txt members) are gathered into
 * writes of about this size, so a file or S3 sink is not called once per header.
 */
const COALESCE_BYTES = 64 * 1024;

/**
 * Streams a WebDataset tar: each sample becomes members `<key>.<ext>` at the archive root, in
 * the order given. Await every `addSample`: it resolves only once the previous data has been
 * taken by the sink, which is what keeps memory at about one sample however many are added.
 * The writer keeps references to the byte arrays it is given until the sink has taken them, so
 * callers must not modify them after passing them.
 */
export class TarWriter {
  private readonly pack: Pack = pack();
  private readonly mtime: Date;
  private readonly pumped: Promise<void>;
  private failure: unknown;
  private samples = 0;
  private bytes = 0;
  private lastKey: string | undefined;
  private finished: Promise<TarWriterResult> | undefined;

  constructor(private readonly sink: TarSink, opts: TarWriterOptions = {}) {
    this.mtime = opts.mtime ?? new Date(0);
    this.pumped = this.pump();
  }

  async addSample(key: string, files: Record<string, Uint8Array | string>): Promise<void> {
    if (this.finished) throw new Error('TarWriter: addSample after finish');
    this.throwIfFailed();
    assertValidKey(key);
    // Adjacent members with one key are one sample to every WebDataset reader, so a repeat
    // would silently merge two samples; non-adjacent repeats read back as separate samples.
    if (key === this.lastKey) throw new Error(`TarWriter: key ${JSON.stringify(key)} repeats the previous sample's key`);
    const exts = Object.keys(files);
    if (exts.length === 0) throw new Error(`TarWriter: sample ${JSON.stringify(key)} has no files; it would vanish from the archive`);
    for (const ext of exts) {
      assertValidExt(key, ext);
      const content: unknown = files[ext];
      if (typeof content !== 'string' && !(content instanceof Uint8Array)) {
        throw new Error(`TarWriter: ${key}.${ext} is ${content === null ? 'null' : typeof content}, expected a Uint8Array or a string`);
      }
    }

    this.lastKey = key;
    const written = exts.map((ext) => this.addEntry(`${key}.${ext}`, files[ext]));
    try {
      await Promise.all(written);
    } catch (err) {
      // A failed sink write destroys the pack, which fails the pending entries with a generic
      // error; the sink's own error says what actually went wrong.
      throw this.failure ?? err;
    }
    this.throwIfFailed();
    this.samples++;
  }

  /** Writes the end-of-archive marker and resolves once every byte has reached the sink. */
  finish(): Promise<TarWriterResult> {
    this.finished ??= (async () => {
      this.throwIfFailed();
      this.pack.finalize();
      await this.pumped;
      this.throwIfFailed();
      return { samples: this.samples, bytes: this.bytes };
    })();
    return this.finished;
  }

  private addEntry(name: string, content: Uint8Array | string): Promise<void> {
    const buffer = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    return new Promise((resolve, reject) => {
      this.pack.entry(
        { name, size: buffer.byteLength, mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: this.mtime, type: 'file' },
        buffer,
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  /** Moves bytes from the pack to the sink; the pack only produces more once this has taken them. */
  private async pump(): Promise<void> {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const chunk = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await this.write(chunk);
    };
    try {
      for await (const item of this.pack) {
        const chunk = item as Buffer;
        if (chunk.byteLength >= COALESCE_BYTES) {
          await flush();
          await this.write(chunk);
          continue;
        }
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= COALESCE_BYTES) await flush();
      }
      await flush();
    } catch (err) {
      this.failure = err;
      this.pack.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async write(chunk: Uint8Array): Promise<void> {
    await this.sink.write(chunk);
    this.bytes += chunk.byteLength;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

function assertValidKey(key: string): void {
  if (typeof key !== 'string' || key === '' || /[./\\\0]/.test(key)) {
    throw new Error(`TarWriter: invalid key ${JSON.stringify(key)}: a WebDataset key is non-empty and has no '.', '/', '\\' or NUL`);
  }
}

function assertValidExt(key: string, ext: string): void {
  if (ext === '' || ext.startsWith('.') || ext.endsWith('.') || /[/\\\0]/.test(ext)) {
    throw new Error(`TarWriter: invalid extension ${JSON.stringify(ext)} in sample ${JSON.stringify(key)}: use e.g. 'jpg' or 'seg.png', without a leading dot or '/'`);
  }
}
