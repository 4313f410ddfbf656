import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { parseS3Url } from './s3-url.js';
import { assertSafeName, ObjectNotFoundError } from './store.js';
import type { ObjectWriter, Store, WrittenObject } from './store.js';

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB; // S3's floor for every part but the last

export interface S3StoreOptions {
  client?: S3Client;
  /** Multipart part size in bytes (default 8 MiB, at least 5 MiB). */
  partSize?: number;
  /** Parts uploaded concurrently per streaming writer (default 4). */
  queueSize?: number;
}

function flag(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  return undefined;
}

/**
 * An S3 client configured from the standard AWS environment variables; credentials not given there
 * come from the SDK's default chain (profiles, SSO, instance roles).
 */
export function s3ClientFromEnv(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  const config: S3ClientConfig = {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    endpoint,
    // MinIO, Ceph and s3rver rarely resolve virtual-host bucket names, so a custom endpoint implies path style.
    forcePathStyle:
      flag(env.BITPREP_S3_FORCE_PATH_STYLE) ?? flag(env.AWS_S3_FORCE_PATH_STYLE) ?? endpoint !== undefined,
  };
  // The SDK's default chain reads process.env itself; an explicit `env` (tests, children) must win.
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    config.credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    };
  }
  if (endpoint !== undefined) {
    // SDKs since early 2025 add CRC32 checksums to every upload by default (as aws-chunked trailers
    // for streamed bodies), which several S3-compatible servers (older MinIO and Ceph RGW, R2) reject;
    // s3rver ignores them for the buffered parts sent here. The AWS_*_CHECKSUM_* variables still win.
    if (!env.AWS_REQUEST_CHECKSUM_CALCULATION) config.requestChecksumCalculation = 'WHEN_REQUIRED';
    if (!env.AWS_RESPONSE_CHECKSUM_VALIDATION) config.responseChecksumValidation = 'WHEN_REQUIRED';
  }
  return new S3Client(config);
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  // Not a bare 404: NoSuchBucket is a 404 too, and must not read as a missing object.
  const name = (err as { name?: string } | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound';
}

/** Wraps SDK errors so the message names the object; SDK messages never carry credentials. */
function describe(op: string, url: string, err: unknown): Error {
  const e = err as { name?: string; message?: string; $response?: unknown; $metadata?: unknown } | undefined;
  // Service errors carry the raw HTTP exchange, signed headers and access key id included; keep only the gist.
  const cause = e?.$response ? Object.assign(new Error(e.message), { name: e.name, $metadata: e.$metadata }) : err;
  if (isNotFound(err)) return new ObjectNotFoundError(url, { cause });
  const status = statusOf(err);
  const reason = `${e?.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${e?.message ?? String(err)}`;
  return new Error(`${op} ${url} failed: ${reason}`, { cause });
}

/** A store under `s3://bucket/prefix`; streaming writes are multipart uploads completed on close. */
export class S3Store implements Store {
  readonly url: string;

  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    /** Key prefix without leading or trailing `/`, or '' for the bucket root. */
    readonly prefix: string,
    private readonly partSize = 8 * MiB,
    private readonly queueSize = 4,
  ) {
    if (partSize < MIN_PART_SIZE) throw new Error(`S3 part size ${partSize} is below the 5 MiB minimum`);
    this.url = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
  }

  static fromUrl(url: string, opts: S3StoreOptions = {}): S3Store {
    const { bucket, prefix } = parseS3Url(url);
    return new S3Store(opts.client ?? s3ClientFromEnv(), bucket, prefix, opts.partSize, opts.queueSize);
  }

  private key(name: string): string {
    assertSafeName(name);
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  private objectUrl(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  async get(name: string): Promise<Uint8Array> {
    const key = this.key(name);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return await res.Body!.transformToByteArray();
    } catch (err) {
      throw describe('GET', this.objectUrl(key), err);
    }
  }

  async getStream(name: string, start = 0): Promise<Readable> {
    const key = this.key(name);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(start > 0 ? { Range: `bytes=${start}-` } : {}) }));
      return res.Body as Readable;
    } catch (err) {
      throw describe('GET', this.objectUrl(key), err);
    }
  }

  async getRange(name: string, start: number, end: number): Promise<Uint8Array> {
    const key = this.key(name);
    if (end <= start) return new Uint8Array(0);
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }),
      );
      const body = await res.Body!.transformToByteArray();
      // Some servers answer with more than asked (s3rver treats `bytes=0-0` as the whole object) or
      // ignore Range altogether (200 without Content-Range); trim to what was requested.
      const served = /^bytes (\d+)-/.exec(res.ContentRange ?? '');
      const offset = served ? start - Number(served[1]) : start;
      return body.subarray(offset, offset + (end - start));
    } catch (err) {
      throw describe('GET', this.objectUrl(key), err);
    }
  }

  async size(name: string): Promise<number | undefined> {
    const key = this.key(name);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return res.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw describe('HEAD', this.objectUrl(key), err);
    }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.size(name)) !== undefined;
  }

  async put(name: string, data: Uint8Array | string): Promise<WrittenObject> {
    const key = this.key(name);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes }));
    } catch (err) {
      throw describe('PUT', this.objectUrl(key), err);
    }
    return { name, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
  }

  /**
   * Exclusive create: PutObject with `If-None-Match: *`, which AWS S3 (since 2024), recent MinIO
   * and Ceph RGW refuse with 412 when the key exists (409 when a concurrent conditional write is
   * in progress). Some servers ignore the header and overwrite (s3rver 3.7.1, the test server,
   * reads If-None-Match on GET only), so this also checks first (HEAD) and reads the object back
   * after the PUT: a racing writer whose PUT landed in between is seen and this call returns
   * false. On such servers two writers can still both see their own bytes if one PUT lands after
   * the other's read-back; callers that need more (src/units/output-lease.ts) re-check later.
   */
  async putIfAbsent(name: string, data: Uint8Array | string): Promise<boolean> {
    const key = this.key(name);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (await this.exists(name)) return false;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, IfNoneMatch: '*' }));
    } catch (err) {
      const status = statusOf(err);
      if (status === 412 || status === 409) return false;
      throw describe('PUT', this.objectUrl(key), err);
    }
    let back: Uint8Array;
    try {
      back = await this.get(name);
    } catch (err) {
      // Deleted already by whoever won a race and then released: not ours either way.
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
    return Buffer.compare(Buffer.from(back.buffer, back.byteOffset, back.byteLength), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) === 0;
  }

  async putStream(name: string): Promise<ObjectWriter> {
    const key = this.key(name);
    const url = this.objectUrl(key);
    const body = new PassThrough();
    // Upload failures are reported through `done`; this keeps a destroyed body from crashing the process.
    body.on('error', () => {});
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body },
      partSize: this.partSize,
      queueSize: this.queueSize,
    });
    let failure: unknown;
    const done = upload.done().then(
      () => undefined,
      (err: unknown) => {
        failure ??= err;
        body.destroy(err as Error);
      },
    );
    const hash = createHash('sha256');
    let bytes = 0;
    let state: 'open' | 'closing' | 'closed' | 'aborted' = 'open';

    return {
      async write(chunk) {
        if (failure !== undefined) throw describe('upload', url, failure);
        if (state !== 'open') throw new Error(`write to ${state} writer for ${url}`);
        hash.update(chunk);
        bytes += chunk.byteLength;
        // The uploader keeps references to queued chunks until their part is sent; copy so callers may reuse buffers.
        if (!body.write(Buffer.from(chunk))) {
          try {
            await once(body, 'drain');
          } catch {
            await done;
            throw describe('upload', url, failure);
          }
        }
      },
      async close() {
        if (state !== 'open') throw new Error(`close of ${state} writer for ${url}`);
        state = 'closing';
        body.end();
        await done;
        if (failure !== undefined) {
          state = 'aborted';
          throw describe('upload', url, failure);
        }
        state = 'closed';
        return { name, bytes, sha256: hash.digest('hex') };
      },
      async abort() {
        if (state !== 'open') return;
        state = 'aborted';
        failure ??= new Error('aborted');
        // Failing the body (rather than Upload.abort(), which returns before cleanup) makes the
        // uploader stop, send AbortMultipartUpload and only then settle `done`.
        body.destroy(new Error(`upload of ${url} aborted`));
        // Best effort: the object never becomes visible either way, and abort() usually runs on an error
        // path where a second error would hide the first. (s3rver answers AbortMultipartUpload with 405.)
        await done;
      },
    };
  }

  async list(prefix = ''): Promise<string[]> {
    if (prefix !== '') assertSafeName(prefix.replace(/\/$/, ''));
    const base = this.prefix ? `${this.prefix}/` : '';
    const names: string[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + prefix, ContinuationToken: token }),
        );
        for (const o of res.Contents ?? []) {
          // Keys ending in '/' are "folder" markers made by consoles, not objects.
          if (o.Key && !o.Key.endsWith('/')) names.push(o.Key.slice(base.length));
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw describe('LIST', `s3://${this.bucket}/${base}${prefix}`, err);
    }
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    const key = this.key(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw describe('DELETE', this.objectUrl(key), err);
    }
  }
}
