import { rmSync } from 'node:fs';
import { mkdtemp, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { DEFAULT_RETRY, parseRetryAfter, TransientError, withRetry } from '../retry.js';
import { ObjectNotFoundError, type ObjectWriter, type Store, type WrittenObject } from './store.js';

/**
 * A read-only store over HTTP(S): remote inputs (`https://…/part-0.parquet`, the Hub's resolve
 * URLs) read like local files. Parquet is read by range requests — footer, then only the row
 * groups a unit needs — and text tables and tars are streamed. A server that ignores `Range`
 * (answers 200 with the whole object) is read once into a temporary file, with a warning, and
 * ranges come from there. 429 and 5xx are retried with backoff; other failures name the URL.
 * Plain `http://` is refused unless BITPREP_ALLOW_HTTP=1 (a trusted local server, the tests and
 * the demo): inputs decide what a model is trained on.
 */
export class HttpStore implements Store {
  private readonly downloads = new Map<string, Promise<string>>();
  private scratch: Promise<string> | undefined;
  private readonly warned = new Set<string>();

  constructor(
    readonly url: string,
    private readonly opts: { headers?: Record<string, string>; warn?: (message: string) => void } = {},
  ) {
    this.url = url.replace(/\/+$/, '');
    checkScheme(this.url);
  }

  private objectUrl(name: string): string {
    return name === '' ? this.url : `${this.url}/${name.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async request(name: string, init: { method?: string; range?: string }): Promise<Response> {
    const url = this.objectUrl(name);
    return withRetry(async () => {
      const res = await fetch(url, { method: init.method ?? 'GET', headers: { ...this.opts.headers, ...(init.range ? { range: init.range } : {}) }, redirect: 'follow', signal: AbortSignal.timeout(120_000) });
      if (res.status === 429 || res.status >= 500) {
        await res.body?.cancel();
        throw new TransientError(`${url}: HTTP ${res.status}`, parseRetryAfter(res.headers.get('retry-after')));
      }
      return res;
    }, DEFAULT_RETRY);
  }

  private fail(name: string, res: Response, what: string): never {
    void res.body?.cancel();
    const url = this.objectUrl(name);
    if (res.status === 404) throw new ObjectNotFoundError(url);
    const hint = res.status === 401 || res.status === 403 ? ' (needs credentials: HF_TOKEN for the Hub)' : '';
    throw new Error(`${url}: ${what} answered HTTP ${res.status}${hint}`);
  }

  async size(name: string): Promise<number | undefined> {
    const res = await this.request(name, { method: 'HEAD' });
    if (res.status === 404) return undefined;
    if (!res.ok) this.fail(name, res, 'HEAD');
    const n = Number(res.headers.get('content-length'));
    if (Number.isFinite(n) && n >= 0 && res.headers.get('content-length') !== null) return n;
    // No length on HEAD (some servers): a one-byte range tells it, or the whole body does.
    const probe = await this.request(name, { range: 'bytes=0-0' });
    const total = /\/(\d+)$/.exec(probe.headers.get('content-range') ?? '')?.[1];
    if (probe.status === 206 && total) {
      await probe.body?.cancel();
      return Number(total);
    }
    if (!probe.ok) this.fail(name, probe, 'GET');
    return (await probe.arrayBuffer()).byteLength;
  }

  async exists(name: string): Promise<boolean> {
    return (await this.size(name)) !== undefined;
  }

  async get(name: string): Promise<Uint8Array> {
    const res = await this.request(name, {});
    if (!res.ok) this.fail(name, res, 'GET');
    return new Uint8Array(await res.arrayBuffer());
  }

  async getStream(name: string, start = 0): Promise<Readable> {
    const res = await this.request(name, start > 0 ? { range: `bytes=${start}-` } : {});
    if (!res.ok) this.fail(name, res, 'GET');
    const body = Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
    if (start > 0 && res.status !== 206) {
      this.warnOnce(name, `${this.objectUrl(name)}: the server ignores range requests; reading from the start and skipping ${start} bytes`);
      return skipBytes(body, start);
    }
    return body;
  }

  async getRange(name: string, start: number, end: number): Promise<Uint8Array> {
    if (end <= start) return new Uint8Array(0);
    const local = this.downloads.get(name);
    if (local) return readFileRange(await local, start, end);
    const res = await this.request(name, { range: `bytes=${start}-${end - 1}` });
    if (res.status === 206) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.byteLength !== end - start) throw new Error(`${this.objectUrl(name)}: asked for bytes ${start}–${end - 1}, got ${bytes.byteLength}`);
      return bytes;
    }
    if (!res.ok) this.fail(name, res, 'GET (range)');
    // 200: the whole object. Keep it (on disk) and serve this and later ranges from it.
    this.warnOnce(name, `${this.objectUrl(name)}: the server ignores range requests; downloading it whole (streamed to a temporary file) and reading from there`);
    let p = this.downloads.get(name);
    if (!p) {
      p = this.saveBody(res);
      this.downloads.set(name, p);
      p.catch(() => this.downloads.delete(name));
    } else await res.body?.cancel();
    return readFileRange(await p, start, end);
  }

  private async saveBody(res: Response): Promise<string> {
    const dir = await (this.scratch ??= mkdtemp(join(tmpdir(), 'bitprep-http-')).then((d) => {
      // The copies live as long as the process.
      process.once('exit', () => rmSync(d, { recursive: true, force: true }));
      return d;
    }));
    const path = join(dir, String(this.downloads.size));
    const fh = await open(path, 'w');
    try {
      for await (const chunk of Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>)) await fh.write(chunk as Uint8Array);
    } finally {
      await fh.close();
    }
    return path;
  }

  private warnOnce(name: string, message: string): void {
    if (this.warned.has(name)) return;
    this.warned.add(name);
    (this.opts.warn ?? ((m: string) => process.emitWarning(m)))(message);
  }

  async list(): Promise<string[]> {
    throw new Error(`${this.url}: an http(s) location cannot be listed; name its files (or use hf:// for a Hub dataset's folders)`);
  }

  private readOnly(): never {
    throw new Error(`${this.url}: http(s) inputs are read-only`);
  }

  async put(): Promise<WrittenObject> {
    this.readOnly();
  }
  async putStream(): Promise<ObjectWriter> {
    this.readOnly();
  }
  async delete(): Promise<void> {
    this.readOnly();
  }
}

/** Refuses plain http unless BITPREP_ALLOW_HTTP=1. */
export function checkScheme(url: string, env: NodeJS.ProcessEnv = process.env): void {
  if (url.startsWith('https://')) return;
  if (url.startsWith('http://')) {
    if (env.BITPREP_ALLOW_HTTP === '1') return;
    throw new Error(`${url}: plain http:// inputs are refused (unencrypted); use https://, or set BITPREP_ALLOW_HTTP=1 for a trusted local server`);
  }
  throw new Error(`${url}: not an http(s) URL`);
}

async function readFileRange(path: string, start: number, end: number): Promise<Uint8Array> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
      if (bytesRead === 0) throw new Error(`${path}: range ${start}–${end} past the end`);
      got += bytesRead;
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } finally {
    await fh.close();
  }
}

async function* dropFirst(body: Readable, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

const skipBytes = (body: Readable, n: number): Readable => Readable.from(dropFirst(body, n));
