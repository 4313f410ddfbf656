import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pack, type Header } from 'tar-stream';

type Headers = Partial<Header> & { name: string };
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarArchiveError, TarEntryError, readTarEntries, readWebDataset, type WebDatasetSample } from '../src/formats/tar-read.js';
import { TarWriter } from '../src/formats/tar-write.js';

const MiB = 1024 * 1024;

let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'bitprep-tar-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

class MemorySink {
  chunks: Uint8Array[] = [];
  async write(chunk: Uint8Array): Promise<void> { this.chunks.push(chunk); }
  bytes(): Buffer { return Buffer.concat(this.chunks); }
}

/** Deterministic pseudo-random bytes, so failures reproduce. */
function bytesFor(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function makeSamples(n: number): { key: string; files: Record<string, Uint8Array | string> }[] {
  // Sizes around block boundaries and empty members exercise tar padding.
  const sizes = [0, 1, 511, 512, 513, 1024, 70_000];
  return Array.from({ length: n }, (_, i) => ({
    key: String(i).padStart(6, '0'),
    files: {
      jpg: bytesFor(i, sizes[i % sizes.length]),
      json: JSON.stringify({ i, caption: `a photo of ${i} 猫` }),
      txt: `caption ${i} — ünïcode`,
    },
  }));
}

async function writeTar(samples: { key: string; files: Record<string, Uint8Array | string> }[], opts?: { mtime?: Date }): Promise<Buffer> {
  const sink = new MemorySink();
  const w = new TarWriter(sink, opts);
  for (const s of samples) await w.addSample(s.key, s.files);
  const result = await w.finish();
  const out = sink.bytes();
  expect(result).toEqual({ samples: samples.length, bytes: out.byteLength });
  return out;
}

/** Feeds bytes in odd-sized chunks so no header or member lines up with a chunk boundary. */
async function* chunked(buf: Uint8Array, size = 777): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < buf.byteLength; at += size) yield buf.subarray(at, Math.min(at + size, buf.byteLength));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function asBytes(v: Uint8Array | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
}

/** Builds a tar from raw headers with tar-stream, which (unlike GNU tar) writes unsafe names as given. */
async function craftTar(entries: { header: Headers; data?: string }[]): Promise<Buffer> {
  const p = pack();
  const done = collect(p as AsyncIterable<Buffer>);
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      p.entry({ mode: 0o644, mtime: new Date(0), ...e.header }, e.data ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  return Buffer.concat(await done);
}

describe('TarWriter → readWebDataset', () => {
  it('roundtrips many samples, members in the order given', async () => {
    const samples = makeSamples(300);
    const tar = await writeTar(samples);
    const read = await collect(readWebDataset(chunked(tar), { name: 'rt.tar' }));
    expect(read.map((s) => s.key)).toEqual(samples.map((s) => s.key));
    for (let i = 0; i < samples.length; i++) {
      expect(Object.keys(read[i].files)).toEqual(['jpg', 'json', 'txt']);
      for (const [ext, v] of Object.entries(samples[i].files)) {
        expect(Buffer.from(read[i].files[ext]).equals(asBytes(v))).toBe(true);
      }
    }
  });

  it('is read identically by GNU tar', async () => {
    const samples = makeSamples(40);
    const file = join(tmp, 'gnu-check.tar');
    await writeFile(file, await writeTar(samples));

    const listing = execFileSync('tar', ['--numeric-owner', '--utc', '-tvf', file], { encoding: 'utf8' }).trim().split('\n');
    const expectedNames = samples.flatMap((s) => Object.keys(s.files).map((ext) => `${s.key}.${ext}`));
    expect(listing.map((l) => l.split(/\s+/).at(-1))).toEqual(expectedNames);
    for (const line of listing) expect(line).toMatch(/^-rw-r--r-- 0\/0 +\d+ 1970-01-01 00:00 /);

    for (const s of samples.slice(0, 10)) {
      for (const [ext, v] of Object.entries(s.files)) {
        const extracted = execFileSync('tar', ['-xOf', file, `${s.key}.${ext}`], { maxBuffer: 64 * MiB });
        expect(extracted.equals(asBytes(v))).toBe(true);
      }
    }
  });

  it('writes byte-identical archives for identical samples', async () => {
    const a = await writeTar(makeSamples(50));
    const b = await writeTar(makeSamples(50));
    expect(a.equals(b)).toBe(true);
    const c = await writeTar(makeSamples(50), { mtime: new Date('2024-01-01T00:00:00Z') });
    expect(c.equals(a)).toBe(false);
  });

  it('refuses invalid keys, extensions, empty samples and adjacent repeats', async () => {
    const w = new TarWriter(new MemorySink());
    await expect(w.addSample('a.b', { jpg: 'x' })).rejects.toThrow(/invalid key/);
    await expect(w.addSample('a/b', { jpg: 'x' })).rejects.toThrow(/invalid key/);
    await expect(w.addSample('', { jpg: 'x' })).rejects.toThrow(/invalid key/);
    await expect(w.addSample('k', { '': 'x' })).rejects.toThrow(/invalid extension/);
    await expect(w.addSample('k', { 'a/b': 'x' })).rejects.toThrow(/invalid extension/);
    await expect(w.addSample('k', { '.jpg': 'x' })).rejects.toThrow(/invalid extension/);
    await expect(w.addSample('k', {})).rejects.toThrow(/no files/);
    await expect(w.addSample('k', { jpg: undefined as unknown as string })).rejects.toThrow(/expected a Uint8Array/);
    await w.addSample('k', { 'seg.png': 'x', jpg: 'y' });
    await expect(w.addSample('k', { jpg: 'x' })).rejects.toThrow(/repeats/);
    await w.addSample('k2', { jpg: 'z' });
    await w.finish();
    await expect(w.addSample('k3', { jpg: 'x' })).rejects.toThrow(/after finish/);
  });

  it('surfaces a failing sink from addSample and finish', async () => {
    let writes = 0;
    const w = new TarWriter({ write: async () => { if (++writes > 2) throw new Error('disk full'); } });
    await expect((async () => {
      for (let i = 0; i < 100; i++) await w.addSample(`k${i}`, { bin: new Uint8Array(MiB) });
    })()).rejects.toThrow('disk full');
    await expect(w.finish()).rejects.toThrow('disk full');
  });
});

describe('readWebDataset on archives from GNU tar', () => {
  const files: Record<string, string> = {
    '000001.jpg': 'jpeg-1',
    '000001.json': '{"a":1}',
    '000002.jpg': 'jpeg-2',
    'sub/dir/000003.seg.png': 'png-3',
    'sub/dir/000003.txt': 'text-3',
    [`${'d'.repeat(60)}/${'e'.repeat(60)}/000004.jpg`]: 'jpeg-4',
    '.DS_Store': 'junk',
    '__MACOSX/._000001.jpg': 'junk',
    'README': 'no extension',
  };

  for (const format of ['gnu', 'pax', 'ustar']) {
    it(`groups members of a ${format} tar, nested paths included`, async () => {
      const dir = join(tmp, `src-${format}`);
      for (const [path, body] of Object.entries(files)) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        await writeFile(join(dir, path), body);
      }
      const file = join(tmp, `made-by-gnu-${format}.tar`);
      execFileSync('tar', [`--format=${format}`, '--sort=name', '-cf', file, '-C', dir, '.']);

      const skipped: string[] = [];
      const samples = await collect(readWebDataset(createReadStream(file, { highWaterMark: 1000 }), {
        name: 'gnu.tar',
        onSkip: (path) => skipped.push(path),
      }));
      const text = (s: WebDatasetSample) => Object.fromEntries(Object.entries(s.files).map(([k, v]) => [k, Buffer.from(v).toString()]));
      expect(samples.map((s) => [s.key, text(s)])).toEqual([
        ['000001', { jpg: 'jpeg-1', json: '{"a":1}' }],
        ['000002', { jpg: 'jpeg-2' }],
        [`${'d'.repeat(60)}/${'e'.repeat(60)}/000004`, { jpg: 'jpeg-4' }],
        ['sub/dir/000003', { 'seg.png': 'png-3', txt: 'text-3' }],
      ]);
      expect(skipped.sort()).toEqual(['.DS_Store', 'README', '__MACOSX/._000001.jpg']);
    });
  }

  it('yields normalised paths and skips directories', async () => {
    const file = join(tmp, 'made-by-gnu-gnu.tar');
    const paths = (await collect(readTarEntries(createReadStream(file)))).map((e) => e.path);
    expect(paths).toContain('sub/dir/000003.seg.png');
    expect(paths.some((p) => p.startsWith('./') || p.endsWith('/'))).toBe(false);
  });

  it('emits a non-adjacent repeat of a key as its own sample', async () => {
    const tar = await craftTar([
      { header: { name: 'a.jpg' }, data: '1' },
      { header: { name: 'b.jpg' }, data: '2' },
      { header: { name: 'a.txt' }, data: '3' },
    ]);
    const samples = await collect(readWebDataset(chunked(tar)));
    expect(samples.map((s) => [s.key, Object.keys(s.files)])).toEqual([['a', ['jpg']], ['b', ['jpg']], ['a', ['txt']]]);
  });

  it('refuses a member repeated within one sample', async () => {
    const tar = await craftTar([{ header: { name: 'a.jpg' }, data: '1' }, { header: { name: 'a.jpg' }, data: '2' }]);
    await expect(collect(readWebDataset(chunked(tar), { name: 'dup.tar' }))).rejects.toThrow(/archive dup\.tar: entry "a\.jpg" repeats/);
  });
});

describe('unsafe entries', () => {
  const cases: { what: string; header: Headers; reason: string }[] = [
    { what: 'a parent path', header: { name: '../evil.jpg' }, reason: 'parent' },
    { what: 'a nested parent path', header: { name: 'a/../../evil.jpg' }, reason: 'parent' },
    { what: 'an absolute path', header: { name: '/etc/evil.jpg' }, reason: 'absolute' },
    { what: 'a symlink', header: { name: '000001.jpg', type: 'symlink', linkname: '/etc/passwd' }, reason: 'type' },
    { what: 'a hard link', header: { name: '000001.jpg', type: 'link', linkname: 'other.jpg' }, reason: 'type' },
    { what: 'a character device', header: { name: '000001.jpg', type: 'character-device' }, reason: 'type' },
    { what: 'a fifo', header: { name: '000001.jpg', type: 'fifo' }, reason: 'type' },
    { what: 'a directory escaping', header: { name: '../outside/', type: 'directory' }, reason: 'parent' },
  ];

  for (const c of cases) {
    it(`refuses ${c.what}`, async () => {
      const tar = await craftTar([{ header: { name: '000000.jpg' }, data: 'fine' }, { header: c.header }]);
      const seen: string[] = [];
      const err = await (async () => {
        for await (const e of readTarEntries(chunked(tar), { name: 'shard-0001.tar' })) seen.push(e.path);
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TarEntryError);
      expect(err).toMatchObject({ code: 'TAR_UNSAFE_ENTRY', reason: c.reason, archive: 'shard-0001.tar', entry: c.header.name });
      expect((err as Error).message).toContain(`archive shard-0001.tar: entry ${JSON.stringify(c.header.name)}`);
      expect(seen).toEqual(['000000.jpg']);
      await expect(collect(readWebDataset(chunked(tar), { name: 'shard-0001.tar' }))).rejects.toBeInstanceOf(TarEntryError);
    });
  }

  it('names the problem in the message', async () => {
    const tar = await craftTar([{ header: { name: '../evil.jpg' }, data: 'x' }]);
    await expect(collect(readTarEntries(chunked(tar), { name: 'shard-0001.tar' })))
      .rejects.toThrow('archive shard-0001.tar: entry "../evil.jpg" escapes the archive directory');
  });

  it('refuses an entry over maxEntryBytes before buffering it', async () => {
    const tar = await craftTar([{ header: { name: 'big.bin' }, data: 'x'.repeat(2000) }]);
    await expect(collect(readTarEntries(chunked(tar), { name: 'big.tar', maxEntryBytes: 1000 })))
      .rejects.toMatchObject({ code: 'TAR_UNSAFE_ENTRY', reason: 'too-large', message: expect.stringContaining('archive big.tar: entry "big.bin" is 2000 bytes') });
    expect((await collect(readTarEntries(chunked(tar), { maxEntryBytes: 2000 })))[0].data.byteLength).toBe(2000);
  });
});

describe('damaged archives', () => {
  const expectArchiveError = async (source: AsyncIterable<Uint8Array>, code: string) => {
    const err = await collect(readWebDataset(source, { name: 'shard-0007.tar' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TarArchiveError);
    expect(err).toMatchObject({ code, archive: 'shard-0007.tar' });
    expect((err as Error).message).toMatch(/^archive shard-0007\.tar: /);
  };

  it('reports an archive cut inside an entry', async () => {
    const tar = await writeTar(makeSamples(20));
    await expectArchiveError(chunked(tar.subarray(0, Math.floor(tar.byteLength / 2) + 100)), 'TAR_TRUNCATED');
    await expectArchiveError(chunked(tar.subarray(0, 700)), 'TAR_TRUNCATED');
  });

  it('reports an archive cut between two entries', async () => {
    const tar = await writeTar(makeSamples(20));
    await expectArchiveError(chunked(tar.subarray(0, tar.byteLength - 1024)), 'TAR_TRUNCATED');
    await expectArchiveError(chunked(new Uint8Array(0)), 'TAR_TRUNCATED');
  });

  it('reports a corrupt header', async () => {
    const tar = Buffer.from(await writeTar(makeSamples(5)));
    tar[100] ^= 0xff; // mode field of the first header: checksum no longer matches
    await expectArchiveError(chunked(tar), 'TAR_CORRUPT');
  });

  it('reports a failing source', async () => {
    const tar = await writeTar(makeSamples(20));
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield tar.subarray(0, 5000);
      throw new Error('connection reset');
    }
    await expectArchiveError(failing(), 'TAR_READ_FAILED');
  });

  it('reads an empty archive as no samples', async () => {
    expect(await collect(readWebDataset(chunked(await writeTar([]))))).toEqual([]);
  });
});

describe('streaming', () => {
  it('pulls input only as entries are consumed, and releases the source when stopped early', async () => {
    const samples = Array.from({ length: 64 }, (_, i) => ({ key: `s${i}`, files: { bin: new Uint8Array(MiB).fill(i) } }));
    const tar = await writeTar(samples);
    let pulled = 0;
    const source = Readable.from((async function* () {
      for await (const c of chunked(tar, 64 * 1024)) { pulled += c.byteLength; yield c; }
    })(), { objectMode: false, highWaterMark: 64 * 1024 });

    for await (const s of readWebDataset(source)) {
      expect(s.key).toBe('s0');
      expect(s.files.bin.every((b) => b === 0)).toBe(true);
      await sleep(20); // let any eager reader run ahead
      expect(pulled).toBeLessThan(8 * MiB);
      break;
    }
    expect(source.destroyed).toBe(true);
  });

  it('keeps memory bounded when the sink is slow', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const used = () => { const m = process.memoryUsage(); return m.arrayBuffers + m.heapUsed; };

    gc();
    const baseline = used();
    let peak = 0;
    let sunk = 0;
    let added = 0;
    let maxLag = 0;
    let writes = 0;
    const sink = {
      async write(chunk: Uint8Array) {
        await sleep(1);
        sunk += chunk.byteLength;
        // Measured after a collection, so it counts what is retained, not garbage awaiting GC.
        if (++writes % 25 === 0) { gc(); peak = Math.max(peak, used() - baseline); }
      },
    };
    const w = new TarWriter(sink);
    for (let i = 0; i < 200; i++) {
      const bin = new Uint8Array(MiB).fill(i & 0xff);
      await w.addSample(String(i).padStart(6, '0'), { bin, json: `{"i":${i}}` });
      added += bin.byteLength;
      maxLag = Math.max(maxLag, added - sunk);
    }
    const { bytes } = await w.finish();
    expect(sunk).toBe(bytes);
    expect(bytes).toBeGreaterThan(200 * MiB);
    // Without backpressure the writer would hold most of the 200 MiB.
    expect(maxLag).toBeLessThan(8 * MiB);
    expect(peak).toBeLessThan(64 * MiB);
  });
});
