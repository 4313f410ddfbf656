import { createHash } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { assertSafeName, ObjectNotFoundError } from './store.js';
import type { ObjectWriter, Store, WrittenObject } from './store.js';
import { PARTIAL_NAME, partialName, writeFileAtomic } from '../write-file-atomic.js';


function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A store rooted at a local directory; writes go to a temp file that is renamed into place. */
export class FileStore implements Store {
  readonly url: string;
  private readonly root: string;

  constructor(root: string) {
    this.url = root;
    this.root = resolve(root);
  }

  private path(name: string): string {
    assertSafeName(name);
    return join(this.root, name);
  }

  private async openForRead(name: string): Promise<FileHandle> {
    const path = this.path(name);
    try {
      return await open(path, 'r');
    } catch (err) {
      if (isMissing(err)) throw new ObjectNotFoundError(path, { cause: err });
      throw err;
    }
  }

  async get(name: string): Promise<Uint8Array> {
    const fh = await this.openForRead(name);
    try {
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  async getStream(name: string, start = 0): Promise<Readable> {
    // Opening eagerly turns a missing object into a rejected promise rather than a later stream error.
    const fh = await this.openForRead(name);
    return fh.createReadStream({ start });
  }

  async getRange(name: string, start: number, end: number): Promise<Uint8Array> {
    const fh = await this.openForRead(name);
    try {
      const buf = Buffer.alloc(Math.max(0, end - start));
      let filled = 0;
      while (filled < buf.length) {
        const { bytesRead } = await fh.read(buf, filled, buf.length - filled, start + filled);
        if (bytesRead === 0) break; // past the end: return what exists, like an S3 Range GET
        filled += bytesRead;
      }
      return buf.subarray(0, filled);
    } finally {
      await fh.close();
    }
  }

  async size(name: string): Promise<number | undefined> {
    try {
      const st = await stat(this.path(name));
      return st.isFile() ? st.size : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.size(name)) !== undefined;
  }

  async put(name: string, data: Uint8Array | string): Promise<WrittenObject> {
    const path = this.path(name);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, bytes);
    return { name, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  /**
   * Exclusive create. The data goes to a temp file first, which is then hard-linked to the final
   * name: link(2) fails with EEXIST when the name exists, atomically (on NFS too, where O_EXCL was
   * long unreliable), and the object appears complete. Where the file system has no hard links,
   * an open with flag 'wx' (O_CREAT|O_EXCL) does the exclusive create instead.
   */
  async putIfAbsent(name: string, data: Uint8Array | string): Promise<boolean> {
    const path = this.path(name);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    await mkdir(dirname(path), { recursive: true });
    const tmp = partialName(path);
    await writeFile(tmp, bytes, { flag: 'wx' });
    try {
      await link(tmp, path);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    } finally {
      await rm(tmp, { force: true });
    }
    try {
      await writeFile(path, bytes, { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  async putStream(name: string): Promise<ObjectWriter> {
    const path = this.path(name);
    await mkdir(dirname(path), { recursive: true });
    const tmp = partialName(path);
    const fh = await open(tmp, 'wx');
    const hash = createHash('sha256');
    let bytes = 0;
    let state: 'open' | 'closed' | 'aborted' = 'open';

    const finish = async (): Promise<void> => {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
    };

    return {
      async write(chunk) {
        if (state !== 'open') throw new Error(`write to ${state} writer for ${path}`);
        // Positions are claimed synchronously so overlapping writes still land in call order.
        const position = bytes;
        bytes += chunk.byteLength;
        hash.update(chunk);
        let done = 0;
        while (done < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done, position + done);
          done += bytesWritten;
        }
      },
      async close() {
        if (state !== 'open') throw new Error(`close of ${state} writer for ${path}`);
        state = 'closed';
        try {
          await fh.close();
          await rename(tmp, path);
        } catch (err) {
          await finish();
          throw err;
        }
        return { name, bytes, sha256: hash.digest('hex') };
      },
      async abort() {
        if (state !== 'open') return;
        state = 'aborted';
        await finish();
      },
    };
  }

  async list(prefix = ''): Promise<string[]> {
    if (prefix !== '') assertSafeName(prefix.replace(/\/$/, ''));
    // Prefixes match like S3 key prefixes ("a/b" matches "a/bc"), so walk from the last full directory.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
      for (const e of entries) {
        const name = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (`${name}/`.startsWith(prefix)) await walk(name);
        } else if (e.isFile() && !PARTIAL_NAME.test(e.name) && name.startsWith(prefix)) out.push(name);
      }
    };
    await walk(base);
    return out.sort();
  }

  async delete(name: string): Promise<void> {
    await rm(this.path(name), { force: true });
  }

  async removePartials(prefix: string): Promise<number> {
    const dir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const base = prefix.slice(dir.length ? dir.length + 1 : 0);
    const entries = await readdir(join(this.root, dir)).catch((err) => {
      if (isMissing(err)) return [] as string[];
      throw err;
    });
    const stale = entries.filter((n) => n.startsWith(base) && PARTIAL_NAME.test(n));
    await Promise.all(stale.map((n) => rm(join(this.root, dir, n), { force: true })));
    return stale.length;
  }
}
