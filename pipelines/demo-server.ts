import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';

/**
 * The demo's stand-in for the web: serves the generated images (and the Dalle3-shaped tars, as a
 * dataset host would) on 127.0.0.1 the way hosts answer, including an X-Robots-Tag opt-out for
 * files named `optout-*` and 404 for missing files.
 */
export async function startDemoImageServer(imagesDir: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(async (req, res) => {
    const name = basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const path = join(imagesDir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>404 Not Found</h1>');
      return;
    }
    const type = name.endsWith('.tar') ? 'application/x-tar' : name.endsWith('.png') ? 'image/png' : name.endsWith('.webp') ? 'image/webp' : 'image/jpeg';
    const headers: Record<string, string | number> = { 'content-length': st.size, 'content-type': type };
    if (name.startsWith('optout-')) headers['x-robots-tag'] = 'noai, noimageai';
    res.writeHead(200, headers);
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('demo image server has no address');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
