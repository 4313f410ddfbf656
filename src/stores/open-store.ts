import type { Readable } from 'node:stream';
import { FileStore } from './file-store.js';
import { hfHeaders, hfResolveUrl, isHfUrl, parseHfUrl } from './hf-url.js';
import { HttpStore } from './http-store.js';
import { parseS3Url } from './s3-url.js';
import type { ObjectWriter, Store, WrittenObject } from './store.js';

/**
 * Opens `s3://bucket/prefix` as an S3 store, `https://…` (and `http://` with BITPREP_ALLOW_HTTP=1)
 * and `hf://datasets/…` as read-only HTTP stores (inputs), and anything else as a local directory.
 */
export function openStore(url: string): Store {
  if (url.startsWith('s3://')) return new LazyS3Store(url);
  if (url.startsWith('https://') || url.startsWith('http://')) return httpStore(url);
  if (isHfUrl(url)) return httpStore(hfResolveUrl(parseHfUrl(url)), hfHeaders());
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith('file://')) {
    throw new Error(`unsupported store URL ${url}: use a local path, s3://bucket/prefix, https:// or hf://datasets/…`);
  }
  return new FileStore(url.startsWith('file://') ? new URL(url).pathname : url);
}

/** One HTTP store per location and credentials in a process: its units share what it learnt of the server (and a whole copy where ranges are refused). */
const httpStores = new Map<string, HttpStore>();

function httpStore(url: string, headers: Record<string, string> = {}): HttpStore {
  const key = `${url}\u0000${JSON.stringify(headers)}`;
  let s = httpStores.get(key);
  if (!s) httpStores.set(key, (s = new HttpStore(url, { headers })));
  return s;
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
