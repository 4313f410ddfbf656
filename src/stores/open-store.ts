import { FileStore } from './file-store.js';
import { S3Store } from './s3-store.js';
import type { Store } from './store.js';

/** Opens `s3://bucket/prefix` as an S3 store and anything else as a local directory. */
export function openStore(url: string): Store {
  if (url.startsWith('s3://')) return S3Store.fromUrl(url);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith('file://')) {
    throw new Error(`unsupported store URL ${url}: use a local path or s3://bucket/prefix`);
  }
  return new FileStore(url.startsWith('file://') ? new URL(url).pathname : url);
}
