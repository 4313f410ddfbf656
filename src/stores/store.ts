import type { Readable } from 'node:stream';

/** Size and digest of one object as written; recorded in done markers. */
export interface WrittenObject {
  name: string;
  bytes: number;
  sha256: string;
}

/** A streaming writer; nothing is visible under `name` until `close()` resolves. */
export interface ObjectWriter {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the object visible under its final name and returns its size and SHA-256. */
  close(): Promise<WrittenObject>;
  /** Discards what was written; the final name is left untouched. */
  abort(): Promise<void>;
}

/**
 * A flat namespace of objects under one root (a local directory or `s3://bucket/prefix`).
 * Names are relative, use `/` as separator, and never start with `/` or contain `..`.
 */
export interface Store {
  /** The root this store was opened on, as the user wrote it. */
  readonly url: string;
  get(name: string): Promise<Uint8Array>;
  /** The object's bytes from `start` (default 0) to its end, streamed. */
  getStream(name: string, start?: number): Promise<Readable>;
  /** Bytes [start, end) of an object; used for Parquet footers and row groups. */
  getRange(name: string, start: number, end: number): Promise<Uint8Array>;
  /** Size in bytes, or undefined when the object does not exist. */
  size(name: string): Promise<number | undefined>;
  /** Writes a whole object atomically (temp name + rename, or one PUT). */
  put(name: string, data: Uint8Array | string): Promise<WrittenObject>;
  /** Opens a streaming atomic writer (temp file + rename, or one multipart upload). */
  putStream(name: string): Promise<ObjectWriter>;
  /** Names under `prefix` (recursive), sorted. */
  list(prefix?: string): Promise<string[]>;
  exists(name: string): Promise<boolean>;
  /** Deletes an object; deleting a missing object is not an error. */
  delete(name: string): Promise<void>;
  /**
   * Creates `name` only if no object has that name: true when this call created it, false when
   * one existed (or another writer's create won a race). Leases and other one-writer markers use it.
   * Files: a hard link of a complete temp file (exclusive like O_EXCL, and readers never see it
   * half-written). S3: PutObject with `If-None-Match: *`, plus a read-back where servers ignore it.
   */
  putIfAbsent?(name: string, data: Uint8Array | string): Promise<boolean>;
  /**
   * Removes what writers killed before close() left under names starting with `prefix`; returns
   * how many. Only stores whose temp objects are visible need it (files; an unfinished S3
   * multipart upload is invisible and is reaped by the bucket's lifecycle rule).
   */
  removePartials?(prefix: string): Promise<number>;
}

/** A get of an object that does not exist (both stores throw it, so callers can tell a miss from a failure). */
export class ObjectNotFoundError extends Error {
  readonly code = 'object_not_found';
  constructor(url: string, options?: { cause?: unknown }) {
    super(`object not found: ${url}`, options);
    this.name = 'ObjectNotFoundError';
  }
}

/** Rejects names that could escape the store's root. */
export function assertSafeName(name: string): void {
  if (name === '' || name.startsWith('/') || name.split('/').some((p) => p === '..' || p === '')) {
    throw new Error(`unsafe object name ${JSON.stringify(name)}: names are relative and may not contain '..' or empty segments`);
  }
}
