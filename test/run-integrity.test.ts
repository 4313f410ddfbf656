import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { startKServeServer, type KServeServer } from '../src/models/kserve-server.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { seededRandom } from '../src/seeded-random.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { runCli, startCli, writeConfig } from './helpers/run-cli.js';
import { ImageHosts } from './helpers/image-hosts.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * The run contract (README: Runs and failures), driven through the CLI against real servers that
 * go down and come back: an outage stops the run with exit 1 naming what is down, leaves its units
 * undone with no rows recorded as failed, and a plain rerun after the fix ends byte-identical to a
 * run that never broke.
 */

const listen = (server: Server, port = 0) => new Promise<number>((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
const closeServer = (server: Server) => new Promise<void>((r) => {
  server.close(() => r());
  server.closeAllConnections();
});

/** The bytes of every output file whose name matches, by name: what "byte-identical" compares. */
async function outputBytes(dir: string, re: RegExp): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const n of (await readdir(dir)).filter((x) => re.test(x)).sort()) out.set(n, (await readFile(join(dir, n))).toString('base64'));
  return out;
}

const doneUnits = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.done.json')).sort();
const summaryOf = async (dir: string) => JSON.parse(await readFile(join(dir, 'run-summary.json'), 'utf8'));

/**
 * A KServe endpoint that can go down and come back on the same port: a plain HTTP proxy in front
 * of a real KServe server. `downAfter` = n: the (n+1)-th infer request has its connection cut and
 * the port closes (connections are then refused) until `up()`.
 */
class FlakyEndpoint {
  infers = 0;
  downAfter = Infinity;
  private server: Server;
  private constructor(private readonly target: string, readonly port: number, server: Server) {
    this.server = server;
  }

  static async start(target: string): Promise<FlakyEndpoint> {
    let self: FlakyEndpoint | undefined;
    const server = createServer((req, res) => self!.handle(req, res));
    const port = await listen(server);
    self = new FlakyEndpoint(target, port, server);
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.url?.endsWith('/infer') && ++this.infers > this.downAfter) {
      req.socket.destroy();
      void this.down();
      return;
    }
    const up = request(this.target + req.url, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  async down(): Promise<void> {
    await closeServer(this.server);
  }

  async up(): Promise<void> {
    this.downAfter = Infinity;
    this.server = createServer((req, res) => this.handle(req, res));
    await listen(this.server, this.port);
  }

  close(): Promise<void> {
    return this.server.listening ? closeServer(this.server) : Promise.resolve();
  }
}

describe('pre-encode when the encoder server goes down mid-run and comes back', () => {
  const SIZE = 64;
  let dir: string;
  let shards: string;
  let kserve: KServeServer;
  let endpoint: FlakyEndpoint;

  beforeAll(async () => {
    dir = await tempDir('integrity-encode');
    shards = join(dir, 'shards');
    await mkdir(shards);
    const r = seededRandom(5);
    for (let t = 0; t < 3; t++) {
      const out = createWriteStream(join(shards, `0000${t}.tar`));
      const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
      for (let i = 0; i < 4; i++) {
        const noise = Buffer.from(Uint8Array.from({ length: SIZE * SIZE * 3 }, () => Math.floor(r() * 256)));
        const png = await sharp(noise, { raw: { width: SIZE, height: SIZE, channels: 3 } }).blur(1.5).png().toBuffer();
        const key = `t${t}i${i}`;
        await w.addSample(key, { png, json: JSON.stringify({ key, caption: `image ${t} ${i}` }), txt: `image ${t} ${i}` });
      }
      await w.finish();
      await new Promise<void>((ok) => out.end(ok));
    }
    const standin = buildBitEncoderStandin(7, SIZE);
    const modelPath = join(dir, 'bit_encoder.onnx');
    await writeFile(modelPath, standin.onnx);
    kserve = await startKServeServer({ bit_encoder: await OnnxTensorModel.load(modelPath) }, { port: 0 });
    endpoint = await FlakyEndpoint.start(kserve.url);
  });
  afterAll(async () => {
    await endpoint?.close();
    await kserve?.close();
  });

  const config = (name: string, model = 'bit_encoder') => ({
    job: 'pre-encode',
    output: join(dir, name),
    input: { paths: [shards] },
    source: 'laion',
    // Two batches of 2 per unit, one batch in flight: the third infer request is unit 1's first.
    encoder: { model: { kserve: [endpoint.url], model, retries: 1 }, size: SIZE, batch_size: 2, max_batches_in_flight: 1 },
  });

  it('stops with exit 1 naming the endpoint, keeps no failed rows, and a rerun after it is back equals an unbroken run', async () => {
    const unbroken = await runCli(['run', await writeConfig(dir, 'unbroken.json', config('unbroken')), '--progress', 'off']);
    expect(unbroken.code, unbroken.stderr).toBe(0);

    endpoint.infers = 0;
    endpoint.downAfter = 2;
    const out = join(dir, 'broken');
    const cfg = await writeConfig(dir, 'broken.json', config('broken'));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`run stopped by an outage of ${endpoint.url}`);
    expect(r.stderr).toMatch(/connection refused/);
    // Unit 0 finished before the server went down; the others stay undone, with no records at all.
    expect(await doneUnits(out)).toEqual(['00000.done.json']);
    expect((await readdir(out)).filter((n) => /^0000[12]\./.test(n))).toEqual([]);
    const summary = await summaryOf(out);
    expect(summary.this_run.stopped).toMatchObject({ kind: 'outage', reason: 'connection_refused' });
    expect(summary.units).toMatchObject({ planned: 3, done: 1, pending: ['00001', '00002'] });
    expect(summary.funnel.failed).toEqual({});
    expect(await readdir(out)).not.toContain('index.json');

    await endpoint.up();
    const again = await runCli(['run', cfg, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    expect(await doneUnits(out)).toEqual(['00000.done.json', '00001.done.json', '00002.done.json']);
    const shardsAndRecords = /^\d+\.(latents\.parquet|parquet)$/;
    const want = await outputBytes(join(dir, 'unbroken'), shardsAndRecords);
    expect(want.size).toBe(6);
    expect(await outputBytes(out, shardsAndRecords)).toEqual(want);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.rows).toBe(12);
  });

  it('a model name the server does not serve stops the run before any unit is done', async () => {
    const out = join(dir, 'misnamed');
    const r = await runCli(['run', await writeConfig(dir, 'misnamed.json', config('misnamed', 'bit_encodr')), '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/run stopped by an outage/);
    expect(r.stderr).toContain("bit_encodr");
    expect(r.stderr).toContain('404');
    expect(await doneUnits(out)).toEqual([]);
    expect((await summaryOf(out)).this_run.stopped.reason).toBe('http_404_not_found');
  });
});

const LAION: ColumnSpec[] = [
  { name: 'URL', type: 'STRING' },
  { name: 'TEXT', type: 'STRING' },
  { name: 'pwatermark', type: 'DOUBLE' },
];

describe('laion-filter when every image host stops answering', () => {
  let dir: string;
  let hosts: ImageHosts;
  let input: string;

  beforeAll(async () => {
    dir = await tempDir('integrity-laion');
    const images = new Map<string, Buffer>();
    for (let i = 0; i < 24; i++) {
      images.set(`p${i}.jpg`, await sharp({ create: { width: 96 + i, height: 80, channels: 3, background: { r: (i * 37) % 256, g: (i * 91) % 256, b: 120 } } }).jpeg().toBuffer());
    }
    hosts = await ImageHosts.start(6, images);
    const rows = Array.from({ length: 24 }, (_, i) => ({ URL: hosts.url(i, `p${i}.jpg`), TEXT: `photo ${i}`, pwatermark: 0.1 }));
    input = join(dir, 'laion.parquet');
    await writeFile(input, writeParquet(rows, { schema: LAION }));
  });
  afterAll(async () => hosts?.stop());

  const config = (name: string, extra: Record<string, unknown> = {}) => ({
    job: 'laion-filter',
    output: join(dir, name),
    input: { kind: 'parquet', paths: [input], url_column: 'URL', caption_column: 'TEXT', unit_rows: 8 },
    filters: [{ name: 'watermark', keep: 'pwatermark < 0.8' }],
    fetch: { concurrency: 2, retries: 0, allow_addresses: ['127.0.0.1/32'] },
    image: { size: 64, min_edge: 32 },
    breaker: { network_failures: 6, network_min_hosts: 3 },
    thumbnails: { dropped_per_unit: 0 },
    ...extra,
  });

  it('stops with exit 1 naming the network instead of marking units done with every row failed; the rerun equals an unbroken run', async () => {
    const unbroken = await runCli(['run', await writeConfig(dir, 'unbroken.json', config('unbroken')), '--progress', 'off']);
    expect(unbroken.code, unbroken.stderr).toBe(0);

    await hosts.stop();
    const out = join(dir, 'offline');
    const cfg = await writeConfig(dir, 'offline.json', config('offline'));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/run stopped by an outage of the network/);
    expect(r.stderr).toMatch(/connection_refused/);
    expect(await doneUnits(out)).toEqual([]);
    const summary = await summaryOf(out);
    expect(summary.this_run.stopped).toMatchObject({ kind: 'outage', reason: 'breaker:network' });
    expect(summary.this_run.units_not_started.length).toBeGreaterThan(0);

    await hosts.restart();
    const again = await runCli(['run', cfg, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    const files = /^\d+\.(tar|parquet)$/;
    const want = await outputBytes(join(dir, 'unbroken'), files);
    expect(want.size).toBe(6);
    expect(await outputBytes(out, files)).toEqual(want);
  });

  it('Ctrl-C stops the running unit, exits 130 with a summary, and the rerun equals an unbroken run', async () => {
    const out = join(dir, 'interrupted');
    const cfg = await writeConfig(dir, 'interrupted.json', config('interrupted'));
    hosts.delayMs = 150;
    try {
      const run = startCli(['run', cfg, '--progress', 'off']);
      let stderr = '';
      run.child.stderr!.on('data', (d) => (stderr += d));
      // Wait until the first unit has started writing its rows' images (the first fetch answered).
      const deadline = Date.now() + 30_000;
      while (!(await readdir(out).catch(() => [])).some((n) => n.startsWith('_runs')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 400));
      run.child.kill('SIGINT');
      const r = await run.done;
      expect(r.code, stderr).toBe(130);
      expect(r.stderr).toMatch(/run interrupted/);
      const summary = await summaryOf(out);
      expect(summary.this_run.stopped).toMatchObject({ kind: 'interrupted' });
      expect(summary.units.done).toBeLessThan(3);
      expect((await readdir(out)).filter((n) => n.includes('.partial-'))).toEqual([]);
    } finally {
      hosts.delayMs = 0;
    }
    const again = await runCli(['run', cfg, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    const files = /^\d+\.(tar|parquet)$/;
    expect(await outputBytes(out, files)).toEqual(await outputBytes(join(dir, 'unbroken'), files));
  });

  it('refuses a second run on an output a live run holds, naming the holder; the first run is unharmed', async () => {
    const out = join(dir, 'held');
    const cfg = await writeConfig(dir, 'held.json', config('held'));
    // Its image requests are held, so the first run still holds the output while a second CLI starts.
    const release = hosts.hold();
    try {
      const first = startCli(['run', cfg, '--progress', 'off']);
      const deadline = Date.now() + 30_000;
      while (!(await readdir(join(out, '_lease')).catch(() => [] as string[])).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const second = await runCli(['run', cfg, '--progress', 'off']);
      expect(second.code, second.stderr).toBe(2);
      expect(second.stderr).toContain(`pid ${first.child.pid}`);
      expect(second.stderr).toMatch(/is in use: the whole output is leased to run/);
      release();
      const r = await first.done;
      expect(r.code, r.stderr).toBe(0);
    } finally {
      release();
    }
    const files = /^\d+\.(tar|parquet)$/;
    expect(await outputBytes(out, files)).toEqual(await outputBytes(join(dir, 'unbroken'), files));
    // Released at the end: the next run takes the output at once.
    expect(await readdir(join(out, '_lease'))).toEqual([]);
    const third = await runCli(['run', cfg, '--progress', 'off']);
    expect(third.code, third.stderr).toBe(0);
  });

  it('keeps an output\'s fixed settings: a changed threshold is refused with the keys listed, an operational change runs and is logged', async () => {
    const out = join(dir, 'unbroken');
    const cfgPath = join(dir, 'unbroken.json');
    const before = await readFile(join(out, '_config.json'), 'utf8');
    const refused = await runCli(['run', cfgPath, '--set', 'image.quality=80', '--set', 'filters.0.keep=pwatermark < 0.5', '--progress', 'off']);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/made with other settings/);
    expect(refused.stderr).toContain('image.quality: 95 → 80');
    expect(refused.stderr).toContain('filters');
    expect(await readFile(join(out, '_config.json'), 'utf8')).toBe(before);

    const operational = await runCli(['run', cfgPath, '--set', 'fetch.concurrency=3', '--parallel-units', '2', '--progress', 'off']);
    expect(operational.code, operational.stderr).toBe(0);
    expect(await readFile(join(out, '_config.json'), 'utf8')).toBe(before);
    const runs = (await readdir(join(out, '_runs'))).sort();
    // The first run and this one; the refused run did no work and logged nothing.
    expect(runs.length).toBe(2);
    const last = JSON.parse(await readFile(join(out, '_runs', runs[runs.length - 1]), 'utf8'));
    expect(last.config.fetch.concurrency).toBe(3);
    expect(last.config.parallel_units).toBe(2);
  });
});

describe('a full disk', () => {
  let dir: string;
  let disk: string;
  let mounted = false;
  let input: string;
  let host: ImageHosts;

  beforeAll(async () => {
    dir = await tempDir('integrity-disk');
    disk = join(dir, 'disk');
    await mkdir(disk);
    // A real ENOSPC needs a small file system: a 48 KiB tmpfs (root can mount one; elsewhere the test is skipped).
    mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48k', 'tmpfs', disk]).status === 0;
    const images = new Map<string, Buffer>();
    for (let i = 0; i < 24; i++) images.set(`n${i}.png`, await sharp(Buffer.from(Uint8Array.from({ length: 96 * 96 * 3 }, (_, k) => (k * (i + 7) * 2654435761) >>> 24)), { raw: { width: 96, height: 96, channels: 3 } }).png().toBuffer());
    host = await ImageHosts.start(1, images);
    const rows = Array.from({ length: 24 }, (_, i) => ({ URL: host.url(0, `n${i}.png`), TEXT: `noise ${i}`, pwatermark: 0.1 }));
    input = join(dir, 'laion.parquet');
    await writeFile(input, writeParquet(rows, { schema: LAION }));
  });
  afterAll(async () => {
    await host?.stop();
    if (mounted) spawnSync('umount', [disk]);
  });

  it('stops the run at the first unit that cannot be written, instead of failing every remaining unit', async (ctx) => {
    if (!mounted) ctx.skip();
    const out = join(disk, 'out');
    const cfg = await writeConfig(dir, 'disk.json', {
      job: 'laion-filter',
      output: out,
      input: { kind: 'parquet', paths: [input], url_column: 'URL', caption_column: 'TEXT', unit_rows: 4 },
      fetch: { retries: 0, allow_addresses: ['127.0.0.1/32'] },
      // PNG output of noise does not compress: each unit's shard is ~110 KiB, more than the disk holds.
      image: { size: 96, min_edge: 32, format: 'png' },
      thumbnails: { dropped_per_unit: 0 },
    });
    const r = await runCli(['run', cfg, '--progress', 'off', '--json']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/run stopped by an outage of .*disk full \(ENOSPC\)/);
    const summary = JSON.parse(r.stdout);
    expect(summary.this_run.stopped).toMatchObject({ kind: 'outage', reason: 'ENOSPC' });
    // One unit hit ENOSPC; whatever fit before it is done; nothing after it was tried.
    const t = summary.this_run;
    expect(t.units_failed).toHaveLength(1);
    expect(t.units_completed + 1 + t.units_not_started.length).toBe(6);
    expect(t.units_not_started.length).toBeGreaterThanOrEqual(4);
    expect(await doneUnits(out)).toHaveLength(t.units_completed);
  });
});

describe('exit codes', () => {
  it('usage errors exit 2, like config errors', async () => {
    const missingArg = await runCli(['run']);
    expect(missingArg.code).toBe(2);
    expect(missingArg.stderr).toMatch(/missing required argument/);
    const unknownOption = await runCli(['run', 'x.yaml', '--no-such-option']);
    expect(unknownOption.code).toBe(2);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
  });
});
