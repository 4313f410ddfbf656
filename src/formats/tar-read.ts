import { extract, type Extract, type Header } from 'tar-stream';

export type TarSource = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

export interface ReadTarOptions {
  /** Names the archive in errors, e.g. the shard's object name. */
  name?: string;
  /** Larger entries are refused before any of their bytes are buffered (default 256 MiB). */
  maxEntryBytes?: number;
}

export interface ReadWebDatasetOptions extends ReadTarOptions {
  /** Told about every regular file that is not part of a sample (see `sampleKey`). */
  onSkip?: (path: string, reason: string) => void;
}

export interface TarEntry {
  /** Normalised: no leading `./`, no empty or `.` segments. */
  path: string;
  data: Uint8Array;
}

export interface WebDatasetSample {
  key: string;
  files: Record<string, Uint8Array>;
}

export const DEFAULT_MAX_ENTRY_BYTES = 256 * 1024 * 1024;

/** An entry that could escape an extraction directory, is not a regular file, or is too large. */
export class TarEntryError extends Error {
  readonly code = 'TAR_UNSAFE_ENTRY';
  constructor(
    readonly archive: string,
    readonly entry: string,
    readonly reason: 'absolute' | 'parent' | 'type' | 'too-large' | 'empty',
    detail: string,
  ) {
    super(`archive ${archive}: entry ${JSON.stringify(entry)} ${detail}`);
    this.name = 'TarEntryError';
  }
}

/** The archive itself is unreadable: corrupt headers, cut short, or its source failed. */
export class TarArchiveError extends Error {
  constructor(
    readonly code: 'TAR_CORRUPT' | 'TAR_TRUNCATED' | 'TAR_READ_FAILED',
    readonly archive: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`archive ${archive}: ${detail}`, options);
    this.name = 'TarArchiveError';
  }
}

/**
 * Yields the regular files of a tar, one entry buffered at a time; input is pulled only as
 * entries are consumed. Directory entries are skipped (WebDataset tars made with `tar -c dir`
 * contain them and they carry no data), but their paths are checked like any other. Symlinks,
 * hard links, devices, fifos and unknown entry types are refused with `TarEntryError`, as are
 * absolute paths and paths with a `..` segment: nothing read here can later be written outside
 * the directory it is extracted to. An archive that does not end with the two zero blocks of
 * the end-of-archive marker is reported as truncated, which catches a shard whose writer died
 * between two members.
 */
export async function* readTarEntries(source: TarSource, opts: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const archive = opts.name ?? '<stream>';
  const maxEntryBytes = opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
  const ex = extract();
  const fed = new Feeder(source, ex);
  const feeding = fed.run();
  let completed = false;
  try {
    for await (const entry of ex) {
      const path = checkEntry(entry.header, archive, maxEntryBytes);
      if (path === undefined) {
        entry.resume();
        continue;
      }
      yield { path, data: await readAll(entry, entry.header.size) };
    }
    await feeding;
    if (!fed.endsWithMarker()) {
      throw new TarArchiveError('TAR_TRUNCATED', archive, 'ends without an end-of-archive marker; it was probably cut short');
    }
    completed = true;
  } catch (err) {
    throw describe(err, archive, fed.sourceError);
  } finally {
    // Stopped early or failed: release the source (an open file or HTTP body) instead of
    // leaving it half read.
    if (!completed) fed.abandon();
  }
}

/**
 * Groups adjacent entries into WebDataset samples. As in the `webdataset` library, a file's key
 * is its path up to the first dot of its basename, directories included (`a/b/000123.seg.png`
 * → key `a/b/000123`, extension `seg.png`). A key that appears again after other keys starts a
 * new sample with the same key: samples are never merged across the archive. Files with no
 * dot in their basename, hidden files (`.DS_Store`, macOS `._*`) and anything under
 * `__MACOSX/` are not samples: they are skipped and reported to `onSkip`.
 */
export async function* readWebDataset(source: TarSource, opts: ReadWebDatasetOptions = {}): AsyncGenerator<WebDatasetSample> {
  const archive = opts.name ?? '<stream>';
  let current: WebDatasetSample | undefined;
  for await (const { path, data } of readTarEntries(source, opts)) {
    const split = sampleKey(path);
    if ('skip' in split) {
      opts.onSkip?.(path, split.skip);
      continue;
    }
    if (current?.key === split.key) {
      if (Object.hasOwn(current.files, split.ext)) {
        throw new TarArchiveError('TAR_CORRUPT', archive, `entry ${JSON.stringify(path)} repeats member "${split.ext}" of sample "${split.key}"`);
      }
    } else {
      if (current) yield current;
      current = { key: split.key, files: {} };
    }
    // defineProperty, because an extension named "__proto__" would otherwise not become a member.
    Object.defineProperty(current.files, split.ext, { value: data, enumerable: true, writable: true, configurable: true });
  }
  if (current) yield current;
}

/** The WebDataset key and extension of a path, or why the file belongs to no sample. */
export function sampleKey(path: string): { key: string; ext: string } | { skip: string } {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  if (path.split('/').includes('__MACOSX')) return { skip: 'macOS metadata (__MACOSX/)' };
  if (base.startsWith('.')) return { skip: 'hidden file' };
  const dot = base.indexOf('.');
  if (dot < 0) return { skip: 'no extension' };
  if (dot === base.length - 1) return { skip: 'empty extension' };
  return { key: dir + base.slice(0, dot), ext: base.slice(dot + 1) };
}

/** The normalised path of a regular file, undefined for a directory; throws for anything unsafe. */
function checkEntry(header: Header, archive: string, maxEntryBytes: number): string | undefined {
  const raw = header.name;
  const refuse = (reason: TarEntryError['reason'], detail: string): never => {
    throw new TarEntryError(archive, raw, reason, detail);
  };
  // Backslashes count as separators here: the archive may be extracted on Windows later.
  if (/^[/\\]/.test(raw) || /^[A-Za-z]:[/\\]/.test(raw)) refuse('absolute', 'has an absolute path');
  const segments = raw.split(/[/\\]/);
  if (segments.includes('..')) refuse('parent', 'escapes the archive directory');
  const path = raw.split('/').filter((s) => s !== '' && s !== '.').join('/');

  // Typed as a known kind, but tar-stream gives null for flags it does not know (GNU sparse,
  // volume labels, ...).
  const type: Header['type'] | null = header.type;
  if (type === 'directory') return undefined;
  if (type !== 'file' && type !== 'contiguous-file') {
    refuse('type', `is a ${type ?? 'entry of unknown type'}, not a regular file`);
  }
  if (path === '') refuse('empty', 'has no file name');
  const size = header.size;
  if (size > maxEntryBytes) refuse('too-large', `is ${size} bytes, over the limit of ${maxEntryBytes}`);
  return path;
}

async function readAll(entry: AsyncIterable<unknown>, size: number): Promise<Uint8Array> {
  const data = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const item of entry) {
    const chunk = item as Buffer;
    // The extractor never yields more than the header's size; the check guards a corrupt size.
    if (at + chunk.byteLength > size) throw new Error('entry data longer than its header says');
    data.set(chunk, at);
    at += chunk.byteLength;
  }
  if (at !== size) throw new Error('Unexpected end of data');
  return data;
}

function describe(err: unknown, archive: string, sourceError: unknown): Error {
  if (err instanceof TarEntryError || err instanceof TarArchiveError) return err;
  if (sourceError !== undefined) {
    return new TarArchiveError('TAR_READ_FAILED', archive, `reading failed: ${message(sourceError)}`, { cause: sourceError });
  }
  const msg = message(err);
  if (msg === 'Unexpected end of data') {
    return new TarArchiveError('TAR_TRUNCATED', archive, 'ends in the middle of an entry; it was probably cut short', { cause: err });
  }
  return new TarArchiveError('TAR_CORRUPT', archive, `is not a valid tar: ${msg}`, { cause: err });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Writes the source into the extractor with backpressure, remembering the archive's last 1 KiB. */
class Feeder {
  sourceError: unknown;
  private tail = Buffer.alloc(0);
  private closed = false;
  private readonly whenClosed: Promise<void>;

  constructor(private readonly source: TarSource, private readonly ex: Extract) {
    this.whenClosed = new Promise((resolve) => ex.once('close', () => { this.closed = true; resolve(); }));
  }

  async run(): Promise<void> {
    try {
      for await (const chunk of this.source as AsyncIterable<Uint8Array | string>) {
        if (this.closed || this.ex.destroyed) return;
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        this.remember(buf);
        if (!this.ex.write(buf)) {
          await Promise.race([new Promise<void>((resolve) => this.ex.once('drain', () => resolve())), this.whenClosed]);
        }
        // Checked before pulling again, so a reader that stopped costs no further source reads.
        if (this.closed) return;
      }
      if (!this.closed) this.ex.end(undefined);
    } catch (err) {
      this.sourceError = err;
      this.ex.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** A tar ends with two 512-byte zero blocks (GNU tar pads further with zeros). */
  endsWithMarker(): boolean {
    return this.tail.byteLength === 1024 && this.tail.every((b) => b === 0);
  }

  abandon(): void {
    const s = this.source as { destroy?: () => void };
    if (typeof s.destroy === 'function') s.destroy();
  }

  private remember(buf: Buffer): void {
    // Copied so a small tail never pins a large source chunk in memory.
    this.tail = buf.byteLength >= 1024
      ? Buffer.from(buf.subarray(buf.byteLength - 1024))
      : Buffer.concat([this.tail, buf]).subarray(-1024);
  }
}
