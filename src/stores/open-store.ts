import type { Readable } from 'node:stream';
import { FileStore } from './file-store.js';
import { parseS3Url } from './s3-url.js';
import type { ObjectWriter, Store, WrittenObject } from './store.js';

/** Opens `s3://bucket/prefix` as an S3 store and anything else as a local directory. */
export function openStore(url: string): Store {
  if (url.startsWith('s3://')) return new LazyS3Store(url);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith('file://')) {
    throw new Error(`unsupported store URL ${url}: use a local path or s3://bucket/prefix`);
  }
  return new FileStore(url.startsWith('file://') ? new URL(url).pathname : url);
}

/**
 * An S3 store whose SDK (@aws-sdk/*, a few hundred modules) loads on its first request, so a
 * command that never touches S3 never pays for it, while `openStore` stays synchronous.
 */
class LazyS3Store implements Store {
  readonly url: string;
  private store: Promise<Store> | undefined;

  constructor(url: string) {
    // Parsed now, so a malformed URL fails where it is opened, as before.
    this.url = parseS3Url(url).url;
  }

  private open(): Promise<Store> {
    return (this.store ??= import('./s3-store.js').then((m) => m.S3Store.fromUrl(this.url)));
  }

  async get(name: string): Promise<Uint8Array> {
    return (await this.open()).get(name);
  }
  async getStream(name: string, start?: number): Promise<Readable> {
    return (await this.open()).getStream(name, start);
  }
  async getRange(name: string, start: number, end: number): Promise<Uint8Array> {
    return (await this.open()).getRange(name, start, end);
  }
  async size(name: string): Promise<number | undefined> {
    return (await this.open()).size(name);
  }
  async put(name: string, data: Uint8Array | string): Promise<WrittenObject> {
    return (await this.open()).put(name, data);
  }
  async putIfAbsent(name: string, data: Uint8Array | string): Promise<boolean> {
    const s = await this.open();
    if (!s.putIfAbsent) throw new Error(`${this.url}: this store cannot create objects exclusively`);
    return s.putIfAbsent(name, data);
  }
  async putStream(name: string): Promise<ObjectWriter> {
    return (await this.open()).putStream(name);
  }
  async list(prefix?: string): Promise<string[]> {
    return (await this.open()).list(prefix);
  }
  async exists(name: string): Promise<boolean> {
    return (await this.open()).exists(name);
  }
  async delete(name: string): Promise<void> {
    return (await this.open()).delete(name);
  }
}
