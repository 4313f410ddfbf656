import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An image host on 127.0.0.1 with faults chosen by the path's first segment:
 *
 * - `/img/<name>`: the image; `/delay/<ms>/<name>`: the image after a pause;
 * - `/404/<name>`: 404 with an HTML body; `/flaky/<name>`: 500 on the first request, then the image;
 * - `/slow/<name>`: headers and a few bytes, then silence, until `heal('slow')` makes it serve the image;
 * - `/truncated/<name>`: a Content-Length larger than the body, then the socket closes;
 * - `/html/<name>`: an HTML page labelled image/jpeg; `/loop/<name>`: redirects to itself;
 * - `/to-private/<name>`: redirects to 10.0.0.1; `/to-metadata/<name>`: redirects to 169.254.169.254;
 * - `/big/<name>`: the image followed by `bigBytes` of padding; `/optout/<name>`: the image with
 *   `X-Robots-Tag: noai`.
 */
export interface FaultImageServer {
  url: string;
  /** Requests per path. */
  hits: Map<string, number>;
  /** Makes a fault kind answer normally from now on. */
  heal(kind: 'slow' | 'flaky'): void;
  close(): Promise<void>;
}

export async function startFaultImageServer(images: Map<string, Buffer>, opts: { bigBytes?: number } = {}): Promise<FaultImageServer> {
  const hits = new Map<string, number>();
  const healed = new Set<string>();
  const bigBytes = opts.bigBytes ?? 2_000_000;
  let base = '';

  const route = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    res.on('error', () => undefined);
    const parts = path.split('/').filter(Boolean);
    const kind = parts[0];
    const name = decodeURIComponent(parts[parts.length - 1] ?? '');
    const body = images.get(name);
    const type = name.endsWith('.png') ? 'image/png' : name.endsWith('.webp') ? 'image/webp' : 'image/jpeg';
    const serve = (extra: Record<string, string> = {}) => {
      if (!body) return void res.writeHead(404, { 'Content-Type': 'text/html' }).end('<h1>no such image</h1>');
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, ...extra });
      res.end(body);
    };
    switch (kind) {
      case 'img': return serve();
      case 'delay': return void setTimeout(serve, Number(parts[1]));
      case '404': return void res.writeHead(404, { 'Content-Type': 'text/html' }).end('<h1>404 Not Found</h1>');
      case 'flaky':
        if (n === 1 && !healed.has('flaky')) return void res.writeHead(500, { 'Content-Type': 'text/plain' }).end('internal error');
        return serve();
      case 'slow':
        if (healed.has('slow')) return serve();
        res.writeHead(200, { 'Content-Type': type, 'Content-Length': body?.length ?? 1000 });
        res.write(body?.subarray(0, 64) ?? Buffer.alloc(64));
        return; // silence: the client's read timeout ends it
      case 'truncated':
        if (!body) return serve();
        res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length + 4096 });
        res.write(body, () => res.socket?.end());
        return;
      case 'html': return void res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end('<!DOCTYPE html><html><body>Image moved</body></html>');
      case 'loop': return void res.writeHead(302, { Location: path }).end();
      case 'to-private': return void res.writeHead(302, { Location: 'http://10.0.0.1/admin.jpg' }).end();
      case 'to-metadata': return void res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/' }).end();
      case 'big': {
        if (!body) return serve();
        res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length + bigBytes });
        res.write(body);
        return void res.end(Buffer.alloc(bigBytes));
      }
      case 'optout': return serve({ 'X-Robots-Tag': 'noai, noimageai' });
      default: return void res.writeHead(400).end(`unknown fault ${kind} (${base})`);
    }
  };

  const server = createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    hits,
    heal: (kind) => void healed.add(kind),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
