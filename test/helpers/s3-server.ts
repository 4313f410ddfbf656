import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

export interface S3Server {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** `METHOD /path?query` of every request the server received, for asserting on the protocol used. */
  requests: string[];
  /** Environment for S3Store.fromUrl or a child process (merge over process.env). */
  env: Record<string, string>;
  close(): Promise<void>;
}

/**
 * Starts a real S3 server (s3rver) on 127.0.0.1 with a free port and an empty temp directory.
 * It serves from this process, so spawn children with the async child_process APIs: execFileSync
 * blocks the event loop and the child's requests then hang.
 * s3rver 3.7.1 quirks: multipart ETags lack the `-N` suffix, AbortMultipartUpload answers 405, and a
 * ListObjectsV2 page that would be truncated (> 1000 keys) fails with 500 on Node >= 17 (DES tokens).
 */
export async function startS3Server(opts: { buckets?: string[] } = {}): Promise<S3Server> {
  const directory = await mkdtemp(join(tmpdir(), 'bitprep-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: (opts.buckets ?? ['bucket']).map((name) => ({ name })),
  });
  let address;
  try {
    address = await server.run();
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const requests: string[] = [];
  server.httpServer?.on('request', (req) => requests.push(`${req.method} ${req.url}`));
  let closing: Promise<void> | undefined;
  return {
    endpoint,
    requests,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      // Set too so an inherited AWS_ENDPOINT_URL_S3 cannot point children elsewhere.
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
      BITPREP_S3_FORCE_PATH_STYLE: '1',
    },
    close() {
      closing ??= (async () => {
        const closed = server.close();
        // SDK clients keep sockets alive; without this, close() waits for them to time out.
        server.httpServer?.closeAllConnections();
        await closed;
        await rm(directory, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
