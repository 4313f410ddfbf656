import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

/** Matches the temp names of partialName, so listings never report half-written files. */
export const PARTIAL_NAME = /\.partial-\d+-[0-9a-f]{12}$/;

/**
 * A temp name beside `path` (same directory, so the final rename stays on one file system),
 * unique per process and call: concurrent writers of one path never share a temp file.
 */
export function partialName(path: string): string {
  return `${path}.partial-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Writes a local file so that readers see the old content or the new, never a part. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = partialName(path);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
