import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { FileStore } from '../src/stores/file-store.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * A forward proxy written here, speaking the protocol as squid does: absolute-form requests for
 * http targets, CONNECT tunnels for https; it logs what it was asked. Every command runs as its
 * own process with the proxy in its environment, as on a cluster node.
 */
const listen = (server: http.Server) => new Promise<number>((ok) => server.listen(0, '127.0.0.1', () => ok((server.address() as net.AddressInfo).port)));

let dir: string;
let origin: http.Server;
let proxy: http.Server;
let originUrl: string;
let proxyUrl: string;
const asked: string[] = [];

beforeAll(async () => {
  dir = await tempDir('proxy');
  // The origin: the demo's images, and a KServe model whose metadata breaks the BIT encoder contract.
  origin = http.createServer(async (req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    if (path === '/v2/health/ready' || path === '/v2/models/bit_encoder/ready') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (path === '/v2/models/bit_encoder') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'bit_encoder', inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 3, 64, 64] }], outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 128, 64] }] }));
    try {
      const body = await readFile(join(dir, 'data', 'images', decodeURIComponent(path.slice(1))));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  originUrl = `http://127.0.0.1:${await listen(origin)}`;
  proxy = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    const up = http.request(new URL(req.url!), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  proxy.on('connect', (req, sock: net.Socket, head) => {
    asked.push(`CONNECT ${req.url}`);
    const [host, port] = req.url!.split(':');
    const up = net.connect(Number(port), host, () => {
      sock.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
  });
  proxyUrl = `http://127.0.0.1:${await listen(proxy)}`;
  await generateDemoData(join(dir, 'data'), 12, 5, { urlBase: originUrl });
}, 60_000);

afterAll(async () => {
  await new Promise((ok) => origin?.close(ok));
  await new Promise((ok) => proxy?.close(ok));
});

async function filterRun(name: string, env: Record<string, string>, allow: string[] = ['127.0.0.1/32']) {
  const cfg = await writeConfig(dir, `${name}.json`, {
    job: 'laion-filter',
    output: join(dir, name),
    input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 8 },
    fetch: { allow_addresses: allow, retries: 0, respect_robots: false },
    image: { size: 64, min_edge: 32, max_pixels: 50_000_000 },
  });
  const before = asked.length;
  const r = await runCli(['run', cfg, '--progress', 'off'], { env: { HTTP_PROXY: '', HTTPS_PROXY: '', NO_PROXY: '', http_proxy: '', https_proxy: '', no_proxy: '', ...env } });
  expect(r.code, r.stderr).toBe(0);
  const records = await readAllRecords(new FileStore(join(dir, name)));
  return { records, asked: asked.slice(before), stderr: r.stderr };
}

describe('outgoing requests through HTTP(S)_PROXY', () => {
  it('image downloads go through the proxy; NO_PROXY sends them direct; the results are the same', async () => {
    const via = await filterRun('via-proxy', { HTTP_PROXY: proxyUrl });
    const ok = via.records.filter((r) => r.status === 'ok');
    expect(ok.length).toBeGreaterThan(5);
    // Every download was asked of the proxy, in absolute form, for the origin.
    for (const r of via.records.filter((x) => x.http_status !== undefined && x.http_status !== null)) expect(via.asked).toContain(`GET ${String(r.url)}`);
    const stats = JSON.parse(await readFile(join(dir, 'via-proxy', '00000.stats.json'), 'utf8'));
    expect(stats.stages.find((s: { name: string }) => s.name === 'fetch').counts.proxied).toBeGreaterThan(0);

    const direct = await filterRun('no-proxy', { HTTP_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' });
    expect(direct.asked).toEqual([]);
    const view = (rs: Record<string, unknown>[]) => rs.map((r) => [r.key, r.status, r.error_code ?? null, r.sha256 ?? null]).sort();
    expect(view(direct.records)).toEqual(view(via.records));
  }, 60_000);

  it('the address guard holds through the proxy: a refused address is never asked of it', async () => {
    const blocked = await filterRun('blocked', { HTTP_PROXY: proxyUrl }, []);
    expect(blocked.asked).toEqual([]);
    const failed = blocked.records.filter((r) => r.status === 'failed');
    expect(failed.length).toBe(blocked.records.filter((r) => r.status !== 'dropped').length);
    expect(new Set(failed.map((r) => r.error_code))).toEqual(new Set(['blocked_address']));
  }, 60_000);

  it('model clients over fetch (KServe) go through it too', async () => {
    const tar = join(dir, 'one.tar');
    const out = createWriteStream(tar);
    const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
    await w.addSample('k0', { json: '{}', txt: 'x' });
    await w.finish();
    await new Promise<void>((ok) => out.end(ok));
    const cfg = await writeConfig(dir, 'kserve.json', { job: 'pre-encode', output: join(dir, 'kserve'), input: { paths: [tar] }, source: 'x', encoder: { model: { kserve: [originUrl], model: 'bit_encoder' }, size: 64 } });
    const before = asked.length;
    const r = await runCli(['run', cfg, '--progress', 'off'], { env: { HTTP_PROXY: proxyUrl, NO_PROXY: '' } });
    // The model's metadata breaks the contract: the run stops, having asked through the proxy.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/pixels/);
    // undici tunnels every proxied request, http ones included, with CONNECT.
    expect(asked.slice(before)).toContain(`CONNECT ${new URL(originUrl).host}`);
  }, 60_000);
});
