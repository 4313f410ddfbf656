import { basename, dirname, resolve } from 'node:path';
import { openStore } from './open-store.js';
import type { Store } from './store.js';

/** Opens the store holding one input file, for a local path or an s3:// URL. */
export function openInputFile(uri: string): { store: Store; name: string } {
  if (uri.startsWith('s3://')) {
    const slash = uri.lastIndexOf('/');
    if (slash <= 's3://'.length) throw new Error(`input ${uri}: expected s3://bucket/path/to/file`);
    return { store: openStore(uri.slice(0, slash)), name: uri.slice(slash + 1) };
  }
  const abs = resolve(uri);
  return { store: openStore(dirname(abs)), name: basename(abs) };
}
