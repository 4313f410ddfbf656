import { basename, dirname, resolve } from 'node:path';
import { openStore } from './open-store.js';
import type { Store } from './store.js';

/** Opens the store holding one input file, for a local path or an s3://, https:// or hf:// URL. */
export function openInputFile(uri: string): { store: Store; name: string } {
  if (uri.startsWith('s3://') || uri.startsWith('https://') || uri.startsWith('http://') || uri.startsWith('hf://')) {
    const slash = uri.lastIndexOf('/');
    if (slash <= uri.indexOf('://') + 3) throw new Error(`input ${uri}: expected a path to a file after the ${uri.slice(0, uri.indexOf('://') + 3)} host or bucket`);
    return { store: openStore(uri.slice(0, slash)), name: uri.slice(slash + 1) };
  }
  const abs = resolve(uri);
  return { store: openStore(dirname(abs)), name: basename(abs) };
}
