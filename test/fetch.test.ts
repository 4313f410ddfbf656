import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.js';
import { addressKind, checkAddress, isPublicAddress } from '../src/net/address-policy.js';
import { DnsCache, guardedLookup } from '../src/net/dns-cache.js';
import { agentToken, robotsOptOut } from '../src/net/robots-tag.js';
import { newSample, type Sample } from '../src/sample.js';
import type { StageContext } from '../src/stage.js';
import { countInFunnel, emptyFunnel, funnelBalances, StatsCollector } from '../src/stats.js';
import { sniffImage } from '../src/images/sniff-image.js';
import { fetchStage, TRANSIENT_FETCH_CODES, type FetchOptions } from '../stages/fetch.js';

describe('address policy', () => {
  it('classifies v4, v6 and mapped addresses', () => {
    for (const ip of ['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:82b::200e', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
      expect([ip, isPublicAddress(ip)]).toEqual([ip, true]);
    }
    const blocked: Record<string, string> = {
      '10.1.2.3': 'private', '172.16.0.1': 'private', '172.31.255.255': 'private', '192.168.1.1': 'private', 'fd12:3456::1': 'private', 'fc00::1': 'private',
      '127.0.0.1': 'loopback', '127.255.0.9': 'loopback', '::1': 'loopback', '0:0:0:0:0:0:0:1': 'loopback',
      '169.254.1.1': 'link-local', 'fe80::1': 'link-local', 'fe80::1%eth0': 'link-local', 'febf::1': 'link-local',
      '169.254.169.254': 'cloud metadata', 'fd00:ec2::254': 'cloud metadata', '::ffff:169.254.169.254': 'cloud metadata',
      '0.0.0.0': 'unspecified', '::': 'unspecified', '224.0.0.1': 'multicast', 'ff02::1': 'multicast',
      '100.64.0.1': 'carrier-grade NAT', '100.127.255.255': 'carrier-grade NAT', '198.18.0.1': 'benchmarking', '198.19.255.255': 'benchmarking',
      '192.0.2.1': 'documentation', '198.51.100.7': 'documentation', '203.0.113.9': 'documentation', '2001:db8::1': 'documentation',
      '::ffff:127.0.0.1': 'loopback', '::ffff:7f00:1': 'loopback', '::ffff:10.0.0.1': 'private', '64:ff9b::a00:1': 'private', '2002:a00:1::': 'private',
      '255.255.255.255': 'reserved', 'not-an-ip': 'invalid', '1.2.3': 'invalid', '1.2.3.256': 'invalid', '1::2::3': 'invalid',
    };
    for (const [ip, kind] of Object.entries(blocked)) {
      expect([ip, addressKind(ip)]).toEqual([ip, kind]);
      expect(isPublicAddress(ip)).toBe(false);
    }
    expect(isPublicAddress('100.63.255.255')).toBe(true);
    expect(isPublicAddress('172.32.0.1')).toBe(true);
    expect(isPublicAddress('198.20.0.1')).toBe(true);
  });

  it('checkAddress honours the allow list and throws blocked_address', () => {
    expect(() => checkAddress('8.8.8.8', [])).not.toThrow();
    expect(() => checkAddress('127.0.0.1', [])).toThrow(expect.objectContaining({ code: 'blocked_address' }));
    expect(() => checkAddress('127.0.0.1', ['127.0.0.1/32'])).not.toThrow();
    expect(() => checkAddress('::ffff:127.0.0.1', ['127.0.0.1'])).not.toThrow();
    expect(() => checkAddress('127.0.0.2', ['127.0.0.1/32'])).toThrow(/loopback/);
    expect(() => checkAddress('10.9.8.7', ['10.0.0.0/8'])).not.toThrow();
    expect(() => checkAddress('::1', ['::1/128'])).not.toThrow();
    expect(() => checkAddress('fd00:ec2::254', ['10.0.0.0/8'])).toThrow(/cloud metadata/);
    expect(() => checkAddress('127.0.0.1', ['127.0.0.1/33'])).toThrow(/invalid address or CIDR/);
  });
});

describe('guarded lookup', () => {
  const lookupOnce = (fn: ReturnType<typeof guardedLookup>, host: string, all: boolean) =>
    new Promise<{ err: (Error & { code?: string }) | null; result: unknown }>((resolve) =>
      (fn as unknown as (h: string, o: object, cb: (err: Error | null, a: unknown) => void) => void)(host, { all }, (err, a) => resolve({ err, result: a })),
    );

  it('refuses private answers, keeps public ones, caches and shares lookups', async () => {
    let calls = 0;
    const answers: Record<string, { address: string; family: number }[]> = {
      'evil.test': [{ address: '10.0.0.1', family: 4 }],
      'meta.test': [{ address: '169.254.169.254', family: 4 }],
      'mixed.test': [{ address: '127.0.0.1', family: 4 }, { address: '93.184.216.34', family: 4 }],
      'good.test': [{ address: '2606:4700::1', family: 6 }],
    };
    const cache = new DnsCache({ resolver: async (h) => (calls++, answers[h]) });
    const lookup = guardedLookup({ allow: [], cache });
    expect((await lookupOnce(lookup, 'evil.test', false)).err).toMatchObject({ code: 'blocked_address', message: expect.stringContaining('evil.test resolves to') });
    expect((await lookupOnce(lookup, 'meta.test', true)).err?.code).toBe('blocked_address');
    expect((await lookupOnce(lookup, 'mixed.test', true)).result).toEqual([{ address: '93.184.216.34', family: 4 }]);
    expect(await lookupOnce(lookup, 'good.test', false)).toEqual({ err: null, result: '2606:4700::1' });
    const before = calls;
    await Promise.all([lookupOnce(lookup, 'good.test', false), lookupOnce(lookup, 'GOOD.test', true)]);
    expect(calls).toBe(before);
    const allowed = guardedLookup({ allow: ['10.0.0.0/8'], cache });
    expect(await lookupOnce(allowed, 'evil.test', false)).toEqual({ err: null, result: '10.0.0.1' });
  });

  it('does not cache failures', async () => {
    let calls = 0;
    const cache = new DnsCache({ resolver: async () => { calls++; throw Object.assign(new Error('try again'), { code: 'EAI_AGAIN' }); } });
    await expect(cache.resolve('x.test')).rejects.toMatchObject({ code: 'EAI_AGAIN' });
    await expect(cache.resolve('x.test')).rejects.toMatchObject({ code: 'EAI_AGAIN' });
    expect(calls).toBe(2);
  });
});

describe('X-Robots-Tag', () => {
  const ua = 'bitprep/0.1 (+https://github.com/bitprep)';
  it('finds opt-outs for everyone and for our agent only', () => {
    expect(agentToken(ua)).toBe('bitprep');
    expect(robotsOptOut(['noai'], ua)).toBe('noai');
    expect(robotsOptOut(['noindex, nofollow'], ua)).toBe('noindex');
    expect(robotsOptOut(['NoImageAI'], ua)).toBe('noimageai');
    expect(robotsOptOut(['bitprep: noimageai'], ua)).toBe('noimageai');
    expect(robotsOptOut(['BitPrep: nofollow, noai'], ua)).toBe('noai');
    expect(robotsOptOut(['*: noai'], ua)).toBe('noai');
    expect(robotsOptOut(['otherbot: noai'], ua)).toBeUndefined();
    expect(robotsOptOut(['googlebot: noindex, nofollow', 'nofollow'], ua)).toBeUndefined();
    expect(robotsOptOut(['googlebot: noindex', 'bitprep: noai'], ua)).toBe('noai');
    expect(robotsOptOut(['none'], ua)).toBe('noindex');
    expect(robotsOptOut(['none'], ua, ['noai'])).toBeUndefined();
    expect(robotsOptOut(['noindex'], ua, ['noai', 'noimageai'])).toBeUndefined();
    expect(robotsOptOut(['unavailable_after: Wednesday, 25 Jun 2099 15:00:00 PST, noimageai'], ua)).toBe('noimageai');
    expect(robotsOptOut(['max-image-preview: large, nofollow'], ua)).toBeUndefined();
    expect(robotsOptOut([], ua)).toBeUndefined();
  });
});

describe('sniffImage', () => {
  it('knows the formats by their magic bytes', async () => {
    const img = sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } });
    expect(sniffImage(await img.clone().jpeg().toBuffer())).toBe('jpg');
    expect(sniffImage(await img.clone().png().toBuffer())).toBe('png');
    expect(sniffImage(await img.clone().webp().toBuffer())).toBe('webp');
    expect(sniffImage(await img.clone().gif().toBuffer())).toBe('gif');
    expect(sniffImage(await img.clone().tiff().toBuffer())).toBe('tiff');
    expect(sniffImage(await img.clone().avif().toBuffer())).toBe('avif');
    expect(sniffImage(Buffer.from('<!DOCTYPE html><html>'))).toBeUndefined();
    expect(sniffImage(Buffer.from('BM is not a bitmap'))).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Stage tests against a local server. Every URL is 127.0.0.1; "blocked" targets never get a socket.

let server: Server;
let base: string;
let png: Buffer;
let jpeg: Buffer;
/** Requests per path, as the server saw them. */
const hits = new Map<string, number>();
/** Paths whose response the client closed before the server wrote any body. */
const closedBeforeBody = new Set<string>();
const bodySent = new Set<string>();
let active = 0;
let maxActive = 0;
const activeByHost = new Map<string, number>();
const maxActiveByHost = new Map<string, number>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  const n = (hits.get(path) ?? 0) + 1;
  hits.set(path, n);
  res.on('error', () => undefined);
  const image = (body: Buffer, type = 'image/png', extra: Record<string, string> = {}) => {
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, ...extra });
    res.end(body);
  };
  const robots = async (tag: string) => {
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length, 'X-Robots-Tag': tag });
    res.flushHeaders();
    const closed = new Promise<boolean>((r) => res.once('close', () => r(true)));
    // The client decides on the headers alone; if it reads on instead of closing, the body follows.
    if (await Promise.race([closed, sleep(5000).then(() => false)])) closedBeforeBody.add(path);
    else {
      bodySent.add(path);
      res.end(png);
    }
  };
  switch (true) {
    case path === '/ok.png': return image(png);
    case path === '/ok.jpg': return image(jpeg, 'image/jpeg');
    case path === '/404': res.writeHead(404, { 'Content-Type': 'text/html' }); return void res.end('<h1>not found</h1>');
    case path === '/501': res.writeHead(501); return void res.end();
    case path === '/flaky500': if (n === 1) { res.writeHead(500); return void res.end('oops'); } return image(png);
    case path === '/429': if (n === 1) { res.writeHead(429, { 'Retry-After': '0' }); return void res.end(); } return image(png);
    case path === '/always503': res.writeHead(503, { 'Retry-After': '0' }); return void res.end();
    case path === '/slow':
      res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length });
      res.write(png.subarray(0, 100));
      return; // never finishes: the client's read timeout must end it
    case path === '/truncated':
      res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length + 500 });
      res.write(png, () => res.socket?.end());
      return;
    case path === '/wrong-type.png': return image(png, 'text/plain');
    case path === '/html-as-jpeg': return image(Buffer.from('<!DOCTYPE html><html><body>hello</body></html>'), 'image/jpeg');
    case path === '/loop-a': res.writeHead(302, { Location: '/loop-b' }); return void res.end();
    case path === '/loop-b': res.writeHead(301, { Location: `${base}/loop-a` }); return void res.end();
    case path.startsWith('/chain/'): res.writeHead(307, { Location: `/chain/${Number(path.slice(7)) + 1}` }); return void res.end();
    case path === '/redirect-ok': res.writeHead(302, { Location: '/ok.jpg' }); return void res.end();
    case path === '/to-metadata': res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/iam/' }); return void res.end();
    case path === '/to-private': res.writeHead(302, { Location: 'http://10.0.0.1/admin' }); return void res.end();
    case path === '/to-v6-mapped': res.writeHead(302, { Location: 'http://[::ffff:a9fe:a9fe]/' }); return void res.end();
    case path === '/to-file': res.writeHead(302, { Location: 'file:///etc/passwd' }); return void res.end();
    case path === '/big': {
      const body = Buffer.concat([png, Buffer.alloc(300_000)]);
      return image(body);
    }
    case path === '/big-chunked': {
      // No Content-Length: only counting while streaming can stop it.
      res.writeHead(200, { 'Content-Type': 'image/png' });
      let sent = 0;
      const more = () => {
        while (sent < 4_000_000 && !res.destroyed) {
          sent += 64 * 1024;
          if (!res.write(sent === 64 * 1024 ? Buffer.concat([png.subarray(0, 16), Buffer.alloc(64 * 1024 - 16)]) : Buffer.alloc(64 * 1024))) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    case path === '/chunked-ok':
      res.writeHead(200, { 'Content-Type': 'image/png' });
      res.write(png.subarray(0, 5));
      res.write(png.subarray(5, 1000));
      return void res.end(png.subarray(1000));
    case path === '/robots-noai': return void robots('noai');
    case path === '/robots-ours': return void robots('bitprep: noimageai');
    case path === '/robots-other': return image(png, 'image/png', { 'X-Robots-Tag': 'otherbot: noai' });
    case path.startsWith('/held/'):
      {
        const host = req.headers.host ?? '';
        active++;
        activeByHost.set(host, (activeByHost.get(host) ?? 0) + 1);
        maxActive = Math.max(maxActive, active);
        maxActiveByHost.set(host, Math.max(maxActiveByHost.get(host) ?? 0, activeByHost.get(host)!));
        res.on('close', () => {
          active--;
          activeByHost.set(host, activeByHost.get(host)! - 1);
        });
      }
      setTimeout(() => image(png), 150);
      return;
    default: res.writeHead(500); res.end('unknown route');
  }
}

beforeAll(async () => {
  const noise = sharp({ create: { width: 64, height: 48, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 50 } } });
  png = await noise.clone().png().toBuffer();
  jpeg = await noise.clone().jpeg().toBuffer();
  server = createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function ctx(): StageContext {
  return { unitId: 'u', stats: new StatsCollector(), log: silentLogger };
}

async function run(urls: string[], opts: FetchOptions, c = ctx()): Promise<Sample[]> {
  const input = (async function* () {
    for (const [i, url] of urls.entries()) yield newSample(`s${i}`, { url });
  })();
  const out: Sample[] = [];
  for await (const s of fetchStage(opts)(input, c)) out.push(s);
  return out;
}

const LOCAL: FetchOptions = { allow_addresses: ['127.0.0.1/32'], retries: 1, retry_delay_ms: 20, read_timeout_ms: 1000, max_bytes: 200_000, concurrency: 16 };

describe('fetch stage', () => {
  it('downloads, fails, retries and drops every sample as it should, in order', async () => {
    const cases: [string, 'ok' | 'dropped' | 'failed', string?][] = [
      ['/ok.png', 'ok'],
      ['/404', 'failed', 'http_404'],
      ['/501', 'failed', 'http_501'],
      ['/flaky500', 'ok'],
      ['/429', 'ok'],
      ['/always503', 'failed', 'http_503'],
      ['/slow', 'failed', 'timeout'],
      ['/truncated', 'failed', 'truncated'],
      ['/wrong-type.png', 'ok'],
      ['/html-as-jpeg', 'failed', 'not_an_image'],
      ['/loop-a', 'failed', 'redirect_loop'],
      ['/chain/0', 'failed', 'too_many_redirects'],
      ['/redirect-ok', 'ok'],
      ['/to-metadata', 'failed', 'blocked_address'],
      ['/to-private', 'failed', 'blocked_address'],
      ['/to-v6-mapped', 'failed', 'blocked_address'],
      ['/to-file', 'failed', 'unsupported_scheme'],
      ['/big', 'failed', 'too_large'],
      ['/big-chunked', 'failed', 'too_large'],
      ['/chunked-ok', 'ok'],
      ['/robots-noai', 'dropped', 'noai'],
      ['/robots-ours', 'dropped', 'noimageai'],
      ['/robots-other', 'ok'],
      ['ftp://127.0.0.1/x.png', 'failed', 'unsupported_scheme'],
      ['http://169.254.169.254/latest/meta-data/', 'failed', 'blocked_address'],
      ['http://[fd00:ec2::254]/', 'failed', 'blocked_address'],
      ['not a url', 'failed', 'invalid_url'],
    ];
    const c = ctx();
    const out = await run(cases.map(([p]) => (p.startsWith('/') ? base + p : p)), LOCAL, c);
    expect(out.map((s) => s.key)).toEqual(cases.map((_, i) => `s${i}`));
    const got = out.map((s, i) => [cases[i][0], s.status.kind, s.status.kind === 'failed' ? s.status.code : s.status.kind === 'dropped' ? s.status.value : undefined]);
    expect(got).toEqual(cases.map(([p, kind, code]) => [p, kind, code]));
    for (const s of out) {
      if (s.status.kind === 'failed') expect(s.status.stage).toBe('fetch');
      if (s.status.kind === 'dropped') expect(s.status.by).toBe('robots');
    }

    const byPath = new Map(out.map((s, i) => [cases[i][0], s]));
    const ok = byPath.get('/ok.png')!;
    expect(Buffer.from(ok.image!).equals(png)).toBe(true);
    expect(ok.imageExt).toBe('png');
    expect(ok.fields).toMatchObject({ http_status: 200, content_type: 'image/png', final_url: `${base}/ok.png`, download_bytes: png.length });
    expect(ok.fields.download_ms).toBeUndefined();
    const redirected = byPath.get('/redirect-ok')!;
    expect(redirected.fields.final_url).toBe(`${base}/ok.jpg`);
    expect(Buffer.from(redirected.image!).equals(jpeg)).toBe(true);
    expect(redirected.imageExt).toBe('jpg');
    expect(Buffer.from(byPath.get('/chunked-ok')!.image!).equals(png)).toBe(true);
    expect(byPath.get('/wrong-type.png')!.fields.content_type).toBe('text/plain');
    expect(byPath.get('/404')!.fields.http_status).toBe(404);
    expect(byPath.get('/404')!.image).toBeUndefined();
    const html = byPath.get('/html-as-jpeg')!.status;
    expect(html.kind === 'failed' && html.error).toContain('image/jpeg');

    // Retries: transient failures are retried (retries: 1), permanent ones are not.
    expect(hits.get('/flaky500')).toBe(2);
    expect(hits.get('/429')).toBe(2);
    expect(hits.get('/always503')).toBe(2);
    expect(hits.get('/slow')).toBe(2);
    expect(hits.get('/truncated')).toBe(2);
    expect(hits.get('/404')).toBe(1);
    expect(hits.get('/501')).toBe(1);
    expect(hits.get('/html-as-jpeg')).toBe(1);
    expect(hits.get('/chain/5')).toBe(1);
    expect(hits.get('/chain/6')).toBeUndefined();

    // Opted-out bodies are never read: the client hung up on the headers.
    expect([...closedBeforeBody].sort()).toEqual(['/robots-noai', '/robots-ours']);
    expect(bodySent.size).toBe(0);
    expect(byPath.get('/robots-noai')!.image).toBeUndefined();

    const st = c.stats.all().find((x) => x.name === 'fetch')!;
    expect(st).toMatchObject({ in: cases.length, ok: 7, dropped: 2, failed: cases.length - 9 });
    expect(st.counts.retries).toBe(5);
    // loop 2, chain 6 (the one over the limit included), redirect-ok 1, blocked and file targets 4.
    expect(st.counts.redirects).toBe(13);
    expect(st.counts.bytes).toBeGreaterThan(5 * png.length);
    // Blocked, unsupported and invalid targets never became requests.
    const served = [...hits.values()].reduce((a, b) => a + b, 0);
    expect(st.counts.requests).toBe(served);

    const funnel = emptyFunnel();
    for (const s of out) countInFunnel(funnel, s);
    expect(funnelBalances(funnel)).toBe(true);
    expect(funnel).toMatchObject({ rows_in: cases.length, written: 7, dropped: { robots: 2 } });
    expect(funnel.failed).toEqual({
      'fetch:http_404': 1, 'fetch:http_501': 1, 'fetch:http_503': 1, 'fetch:timeout': 1, 'fetch:truncated': 1, 'fetch:not_an_image': 1,
      'fetch:redirect_loop': 1, 'fetch:too_many_redirects': 1, 'fetch:blocked_address': 5, 'fetch:unsupported_scheme': 2, 'fetch:too_large': 2, 'fetch:invalid_url': 1,
    });
  });

  it('refuses 127.0.0.1 and localhost unless allow_addresses lists them, without connecting', async () => {
    hits.delete('/ok.png');
    const port = new URL(base).port;
    const out = await run([`${base}/ok.png`, `http://localhost:${port}/ok.png`, `http://[::1]:${port}/ok.png`], { retries: 0 });
    expect(out.map((s) => s.status.kind === 'failed' && s.status.code)).toEqual(['blocked_address', 'blocked_address', 'blocked_address']);
    expect(hits.get('/ok.png')).toBeUndefined();
  });

  it('keeps to per_host for each host name while running many downloads', async () => {
    maxActive = 0;
    maxActiveByHost.clear();
    // Two names for the one local server, so per-host limits are seen apart from the global one.
    const dns_cache = new DnsCache({ resolver: async () => [{ address: '127.0.0.1', family: 4 }] });
    const port = new URL(base).port;
    const urls = Array.from({ length: 12 }, (_, i) => `http://${i % 2 ? 'a' : 'b'}.test:${port}/held/${i}`);
    const out = await run(urls, { ...LOCAL, per_host: 2, concurrency: 12, dns_cache });
    expect(out.map((s) => s.status.kind)).toEqual(urls.map(() => 'ok'));
    expect(Object.fromEntries(maxActiveByHost)).toEqual({ [`a.test:${port}`]: 2, [`b.test:${port}`]: 2 });
    expect(maxActive).toBe(4);
  });

  it('checks addresses after DNS resolution and times out slow connects', async () => {
    const port = new URL(base).port;
    const dns_cache = new DnsCache({
      resolver: async (h) => {
        if (h === 'slow.test') await sleep(4000);
        return [{ address: h === 'rebind.test' ? '10.0.0.1' : h === 'meta.test' ? '169.254.169.254' : '127.0.0.1', family: 4 }];
      },
    });
    const urls = ['rebind.test', 'meta.test', 'slow.test', 'fine.test'].map((h) => `http://${h}:${port}/ok.png`);
    const c = ctx();
    const out = await run(urls, { ...LOCAL, connect_timeout_ms: 1000, retries: 0, dns_cache }, c);
    expect(out.map((s) => (s.status.kind === 'failed' ? s.status.code : s.status.kind))).toEqual(['blocked_address', 'blocked_address', 'connect_timeout', 'ok']);
    expect(out[0].status.kind === 'failed' && out[0].status.error).toMatch(/rebind\.test resolves to.*10\.0\.0\.1.*private/);
  });

  it('exports the transient codes retry-failed reruns', () => {
    for (const c of ['timeout', 'connect_timeout', 'connection_reset', 'dns_error', 'truncated', 'http_429', 'http_500', 'http_503', 'http_599']) expect(TRANSIENT_FETCH_CODES).toContain(c);
    for (const c of ['http_404', 'http_501', 'blocked_address', 'not_an_image', 'too_large', 'redirect_loop']) expect(TRANSIENT_FETCH_CODES).not.toContain(c);
  });

  it('rejects a bad allow list when the stage is built', () => {
    expect(() => fetchStage({ allow_addresses: ['localhost'] })).toThrow(/invalid address/);
  });
});
