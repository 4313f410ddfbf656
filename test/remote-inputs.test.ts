import { mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { FileStore } from '../src/stores/file-store.js';
import { duckRows } from './helpers/duckdb.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * A server written here that speaks the Hugging Face Hub's layout — /api/datasets/<repo>/revision/<rev>
 * (the commit a branch stands at), /api/datasets/<repo>/tree/<rev>/<path> (paged with Link headers),
 * /datasets/<repo>/resolve/<rev>/<path> (302 to a CDN path) — and serves the files with or without
 * range support, for a gated dataset only with the bearer token. Every CLI run is its own process
 * with HF_ENDPOINT pointing here (and BITPREP_ALLOW_HTTP=1: plain http, the test switch).
 */
const REPO = 'acme/laion-mini';
const SHA1 = '1'.repeat(40);
const SHA2 = '2'.repeat(40);
const TOKEN = 'hf_test_token';

let dir: string;
let server: http.Server;
let base: string;
/** Which commit `main` stands at, whether ranges are honoured, and what was asked. */
const hub = { main: SHA1, ranges: true, log: [] as string[] };

/** Files of each commit: the data folder with two parquet parts (SHA2 drops the second). */
let files: Record<string, Map<string, Buffer>>;

beforeAll(async () => {
  dir = await tempDir('remote-inputs');
  server = http.createServer(async (req, res) => {
    const u = new URL(req.url!, 'http://x');
    const path = decodeURIComponent(u.pathname);
    const range = req.headers.range;
    hub.log.push(`${req.method} ${path}${range ? ` ${range}` : ''}`);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    if (path.startsWith('/images/')) {
      try {
        const b = await readFile(join(dir, 'data', 'images', path.slice('/images/'.length)));
        return void res.writeHead(200, { 'content-length': b.length }).end(b);
      } catch {
        return void res.writeHead(404).end();
      }
    }
    const gated = path.includes('/gated/');
    if (gated && req.headers.authorization !== `Bearer ${TOKEN}`) return json(401, { error: 'Access to this dataset is restricted' });
    let m = /^\/api\/datasets\/(acme\/[^/]+)\/revision\/([^/]+)$/.exec(path);
    if (m) return json(200, { id: m[1], sha: m[2] === 'main' ? hub.main : m[2] });
    m = /^\/api\/datasets\/acme\/[^/]+\/tree\/([0-9a-f]{40})\/?(.*)$/.exec(path);
    if (m) {
      const names = [...(files[m[1]]?.keys() ?? [])].filter((n) => n.startsWith(m![2]));
      // One entry a page, so paging is followed.
      const page = Number(u.searchParams.get('cursor') ?? 0);
      const next: Record<string, string> = page + 1 < names.length ? { link: `<${base}${u.pathname}?recursive=true&cursor=${page + 1}>; rel="next"` } : {};
      return json(200, names.slice(page, page + 1).map((p) => ({ type: 'file', path: p, size: files[m![1]].get(p)!.length })).concat(page === 0 ? [{ type: 'directory', path: 'data', size: 0 } as never] : []), next);
    }
    m = /^\/datasets\/acme\/[^/]+\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(path);
    if (m) return void res.writeHead(302, { location: `/cdn/${m[1]}/${m[2]}` }).end();
    m = /^\/cdn\/([0-9a-f]{40})\/(.+)$/.exec(path);
    const body = m ? files[m[1]]?.get(m[2]) : undefined;
    if (!body) return void res.writeHead(404).end();
    const r = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    if (r && hub.ranges) {
      const start = Number(r[1]);
      const end = r[2] ? Number(r[2]) + 1 : body.length;
      return void res.writeHead(206, { 'content-range': `bytes ${start}-${end - 1}/${body.length}`, 'content-length': end - start, 'accept-ranges': 'bytes' }).end(req.method === 'HEAD' ? undefined : body.subarray(start, end));
    }
    res.writeHead(200, { 'content-length': body.length, ...(hub.ranges ? { 'accept-ranges': 'bytes' } : {}) }).end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The data: the demo's rows with absolute image URLs on this server, split in two parts by DuckDB, 4 rows a row group.
  await generateDemoData(join(dir, 'data'), 20, 9, { urlBase: `${base}/images` });
  const parts = join(dir, 'parts');
  await mkdir(parts, { recursive: true });
  const src = `read_parquet('${join(dir, 'data', 'laion')}/*.parquet', filename = true, file_row_number = true)`;
  for (const [k, cond] of [[0, 'n < 12'], [1, 'n >= 12']] as const) {
    await duckRows(`COPY (SELECT * EXCLUDE (filename, file_row_number, n) FROM (SELECT *, row_number() OVER (ORDER BY filename, file_row_number) - 1 AS n FROM ${src}) WHERE ${cond} ORDER BY n) TO '${join(parts, `part-${k}.parquet`)}' (FORMAT PARQUET, ROW_GROUP_SIZE 4)`);
  }
  const part = async (k: number) => readFile(join(parts, `part-${k}.parquet`));
  files = {
    [SHA1]: new Map([['data/part-0.parquet', await part(0)], ['data/part-1.parquet', await part(1)], ['README.md', Buffer.from('# mini')]]),
    [SHA2]: new Map([['data/part-0.parquet', await part(0)]]),
  };
}, 60_000);

afterAll(async () => {
  await new Promise((ok) => server?.close(ok));
});

const env = (extra: Record<string, string> = {}) => ({ HF_ENDPOINT: base, BITPREP_ALLOW_HTTP: '1', HF_TOKEN: '', HTTP_PROXY: '', HTTPS_PROXY: '', ...extra });

async function filter(name: string, paths: string[], e: Record<string, string>, expectOk = true) {
  const cfg = await writeConfig(dir, `${name}.json`, {
    job: 'laion-filter',
    output: join(dir, name),
    input: { kind: 'parquet', paths, unit_rows: 4 },
    fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0, respect_robots: false },
    image: { size: 64, min_edge: 32, max_pixels: 50_000_000 },
  });
  const before = hub.log.length;
  const r = await runCli(['run', cfg, '--progress', 'off'], { env: e });
  if (expectOk) expect(r.code, r.stderr).toBe(0);
  const asked = hub.log.slice(before);
  return { r, asked, records: expectOk ? await readAllRecords(new FileStore(join(dir, name))) : [] };
}

const view = (rs: Record<string, unknown>[]) => rs.map((x) => [x.key, x.url, x.caption, x.status, x.error_code ?? null, x.source_row]).sort();

describe('remote inputs: https:// and hf:// through the CLI', () => {
  let local: Record<string, unknown>[];

  beforeAll(async () => {
    local = (await filter('local', [join(dir, 'parts')], env())).records;
  }, 60_000);

  it('hf:// folder: the Hub listing followed page by page, the revision pinned in the plan, row groups fetched by range', async () => {
    const { records, asked } = await filter('hf', [`hf://datasets/${REPO}/data`], env());
    expect(view(records)).toEqual(view(local));
    // Files come from the resolve URLs of the commit main stood at, never of "main".
    expect(records.every((x) => String(x.source_file).startsWith(`hf://datasets/${REPO}@${SHA1}/data/part-`))).toBe(true);
    const plan = JSON.parse(await readFile(join(dir, 'hf', '_plan.json'), 'utf8'));
    expect(plan.pins).toEqual({ [`${REPO}@main`]: SHA1 });
    expect(asked.filter((a) => a.includes('/tree/')).length).toBeGreaterThanOrEqual(2);
    // Parquet read by ranges: no whole-file GET of a part.
    const parquetGets = asked.filter((a) => a.startsWith('GET /cdn/') && a.includes('.parquet'));
    expect(parquetGets.length).toBeGreaterThan(0);
    expect(parquetGets.every((a) => / bytes=\d+-\d+$/.test(a))).toBe(true);
  }, 60_000);

  it('a rerun after the dataset moved on reads the pinned commit', async () => {
    hub.main = SHA2;
    try {
      const cfg = join(dir, 'hf.json');
      const r = await runCli(['run', cfg, '--progress', 'off'], { env: env() });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/done|already/i);
      const records = await readAllRecords(new FileStore(join(dir, 'hf')));
      expect(view(records)).toEqual(view(local));
    } finally {
      hub.main = SHA1;
    }
  }, 60_000);

  it('https:// file on a server that refuses ranges: read whole once, with one warning, same rows', async () => {
    hub.ranges = false;
    try {
      const url = `${base}/cdn/${SHA1}/data/part-0.parquet`;
      const { records, r } = await filter('https-no-range', [url], env());
      expect(view(records)).toEqual(view(local.filter((x) => String(x.source_file).endsWith('part-0.parquet'))).map((v) => v));
      expect(r.stderr).toMatch(/ignores range requests; downloading it whole/);
      expect(r.stderr.match(/ignores range requests/g)).toHaveLength(1);
    } finally {
      hub.ranges = true;
    }
  }, 60_000);

  it('plain http without the switch, a gated dataset without HF_TOKEN, and with it', async () => {
    let x = await filter('no-switch', [`${base}/cdn/${SHA1}/data/part-0.parquet`], env({ BITPREP_ALLOW_HTTP: '' }), false);
    expect(x.r.code).not.toBe(0);
    expect(x.r.stderr).toMatch(/plain http:\/\/ inputs are refused.*BITPREP_ALLOW_HTTP=1/);
    files[SHA1].set('gated/part-0.parquet', files[SHA1].get('data/part-0.parquet')!);
    x = await filter('gated-no-token', ['hf://datasets/acme/gated/gated/part-0.parquet'], env(), false);
    expect(x.r.code).not.toBe(0);
    expect(x.r.stderr).toMatch(/401.*set HF_TOKEN/);
    x = await filter('gated', ['hf://datasets/acme/gated/gated/part-0.parquet'], env({ HF_TOKEN: TOKEN }));
    expect(x.records).toHaveLength(12);
  }, 60_000);
});
