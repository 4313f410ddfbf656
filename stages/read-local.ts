import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SampleError } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';

/** Files read at once: local disks and network file systems both want many reads in flight. */
export const readConcurrency = z.number().int().min(1).default(16);

export interface ReadLocalOptions {
  /** Directory that relative paths in `url` are resolved against, per sample. */
  baseDir: (fields: Record<string, unknown>) => string;
  concurrency?: z.input<typeof readConcurrency>;
}

/** Reads `fields.url` as a local path or file:// URL into `sample.image`. */
export function readLocal(opts: ReadLocalOptions): Stage {
  return sampleStage(
    'read',
    async (s, stats) => {
      const url = s.fields.url;
      if (typeof url !== 'string' || url === '') throw new SampleError('no_url', 'no image path in the url column');
      if (/^https?:\/\//i.test(url)) throw new SampleError('unsupported_scheme', `${url}: this job reads local paths and file:// URLs; HTTP downloads belong to the fetch stage`);
      const path = url.startsWith('file://') ? fileURLToPath(url) : isAbsolute(url) ? url : resolve(opts.baseDir(s.fields), url);
      try {
        s.image = new Uint8Array(await readFile(path));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new SampleError(code === 'ENOENT' ? 'not_found' : 'read_error', `cannot read ${path}: ${code ?? (err as Error).message}`);
      }
      stats.counts.bytes = (stats.counts.bytes ?? 0) + s.image.length;
    },
    { concurrency: readConcurrency.parse(opts.concurrency) },
  );
}
