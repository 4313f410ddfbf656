import { rename, rm, writeFile } from 'node:fs/promises';

/**
 * Writes a local file so that readers see the old content or the new, never a part: a temp file
 * beside it (same directory, so the rename stays on one file system), then a rename over it.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
