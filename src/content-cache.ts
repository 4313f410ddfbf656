import { createHash } from 'node:crypto';
import { ObjectNotFoundError, type Store } from './stores/store.js';

/**
 * The key of a deterministic result: SHA-256 of its inputs' identity (content hashes, model
 * name, prompt version…). Parts are length-prefixed so ("ab","c") and ("a","bc") differ.
 */
export function contentKey(...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:${p};`);
  return h.digest('hex');
}

/**
 * A content-addressed cache of JSON values in a store (a local directory or S3 prefix), one
 * small object per key under `<key[0:2]>/<key>.json`. Several processes and jobs may share one:
 * a value is written atomically and is the same whoever writes it, so racing writers are
 * harmless. A miss is `undefined`; any other failure to read (permissions, a broken object)
 * throws, so a bad cache is never mistaken for an empty one and paid for again.
 */
export class ContentCache<T> {
  hits = 0;
  misses = 0;
  writes = 0;

  constructor(
    readonly store: Store,
    /** Checks a read value; a value that fails it is treated as a miss and overwritten later. */
    private readonly isValue: (v: unknown) => v is T,
  ) {}

  private name(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`content cache keys are SHA-256 hex digests, got ${JSON.stringify(key)}`);
    return `${key.slice(0, 2)}/${key}.json`;
  }

  async get(key: string): Promise<T | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(this.name(key));
    } catch (err) {
      if (err instanceof ObjectNotFoundError) {
        this.misses++;
        return undefined;
      }
      throw err;
    }
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      v = undefined;
    }
    if (!this.isValue(v)) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return v;
  }

  async put(key: string, value: T): Promise<void> {
    await this.store.put(this.name(key), JSON.stringify(value));
    this.writes++;
  }
}
