import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { speedCommand, runSpeed } from '../evaluation/speed/speed-command.js';
import { measureSpeed } from '../evaluation/speed/speed.js';
import { parseParam } from '../evaluation/cli-params.js';
import { readResults } from '../evaluation/tables/results.js';
import { ImageGenServer } from './helpers/image-gen-server.js';
import { tempDir } from './helpers/temp-dir.js';

const LATENCY_MS = 150;
const SIZE = '64x64';

describe('parseParam', () => {
  it('reads JSON values when they parse, else strings', () => {
    expect(parseParam('guidance_scale=4.5')).toEqual(['guidance_scale', 4.5]);
    expect(parseParam('steps=20')).toEqual(['steps', 20]);
    expect(parseParam('flag=true')).toEqual(['flag', true]);
    expect(parseParam('sampler=dpm')).toEqual(['sampler', 'dpm']);
    expect(parseParam('sizes=[1,2]')).toEqual(['sizes', [1, 2]]);
    expect(parseParam('neg=a=b')).toEqual(['neg', 'a=b']);
    expect(() => parseParam('=3')).toThrow(/expected key=value/);
  });
});

describe('eval speed against an image server with fixed latency per request', () => {
  let server: ImageGenServer;

  beforeAll(async () => {
    server = await ImageGenServer.start({ model: 'bit-diffusion', size: SIZE, expect: { steps: 20, guidance_scale: 4, sampler: 'dpm' }, latencyMs: LATENCY_MS });
  });
  afterAll(async () => {
    await server.close();
  });

  const base = () => ({ endpoint: server.url, model: 'bit-diffusion', steps: 20, params: { guidance_scale: 4, sampler: 'dpm' }, size: SIZE, warmup: 1, runs: 3 });

  it('reports about latency / B seconds per image: batch 4 (concurrent) beats batch 1', async () => {
    const before = server.requests.length;
    const one = await measureSpeed({ ...base(), batchSize: 1 });
    const four = await measureSpeed({ ...base(), batchSize: 4, batchMode: 'concurrent' });
    expect(server.violations).toEqual([]);
    // (1 warm-up + 3 timed) runs × B requests, each answered.
    expect(server.requests.slice(before).map((r) => r.status)).toEqual(new Array(4 + 16).fill(200));
    const seeds = server.requests.slice(before).map((r) => r.seed);
    expect(new Set(seeds.slice(4)).size).toBe(16);
    // The server sleeps LATENCY_MS per request, so these lower bounds are firm; upper bounds are generous.
    expect(one.sec_per_img).toBeGreaterThanOrEqual((LATENCY_MS - 5) / 1000);
    expect(one.sec_per_img).toBeLessThan(1.5);
    expect(four.sec_per_img).toBeGreaterThanOrEqual((LATENCY_MS - 5) / 4000);
    expect(four.sec_per_img).toBeLessThan(one.sec_per_img * 0.6);
    expect(one.run_seconds).toHaveLength(3);
    expect(four.run_seconds.map((s) => s / 4).sort()[1]).toBe(four.sec_per_img);
    expect(one.min_sec_per_img).toBeLessThanOrEqual(one.sec_per_img);
    expect(one.p90_sec_per_img).toBeGreaterThanOrEqual(one.sec_per_img);
    expect(one.ci95!.low).toBeLessThanOrEqual(one.mean_sec_per_img);
    expect(four).toMatchObject({ batch_size: 4, batch_mode: 'concurrent', steps: 20, runs: 3, warmup: 1, request_fields: { steps: 20, guidance_scale: 4, sampler: 'dpm' } });
  });

  it('runs as a command: prompt file, --param parsing, steps sent, speed.json read by the tables', async () => {
    const dir = await tempDir('speed');
    const promptFile = join(dir, 'prompts.txt');
    await writeFile(promptFile, 'first prompt\n\nsecond prompt\n');
    const before = server.requests.length;
    const out = join(dir, 'results');
    const write = process.stdout.write;
    let printed = '';
    process.stdout.write = ((s: string) => ((printed += s), true)) as typeof process.stdout.write;
    try {
      await speedCommand().parseAsync(
        ['--endpoint', server.url, '--model', 'bit-diffusion', '--steps', '20', '--param', 'guidance_scale=4', '--param', 'sampler=dpm', '--size', SIZE, '--warmup', '0', '--runs', '3', '--prompt-file', promptFile, '--out', out, '--json'],
        { from: 'user' },
      );
    } finally {
      process.stdout.write = write;
    }
    expect(server.violations).toEqual([]);
    expect(server.promptsSince(before)).toEqual(['first prompt', 'second prompt', 'first prompt']);
    const json = JSON.parse(await readFile(join(out, 'speed.json'), 'utf8'));
    expect(JSON.parse(printed)).toEqual(json);
    expect(json).toMatchObject({ steps: 20, batch_size: 1, batch_mode: 'n', runs: 3, prompts: 2 });
    expect(json.paper_condition).toMatch(/batch 1/);
    const tables = await readResults(out);
    expect(tables.tables['3'].cells.steps).toBe(20);
    expect(tables.tables['3'].cells.sec_per_img).toBe(json.sec_per_img);
  });

  it('fails with an error naming the run, endpoint and the server\'s answer', async () => {
    // The server insists on n = 1, so batch mode n with 4 images is refused (400, not retried).
    await expect(measureSpeed({ ...base(), batchSize: 4, batchMode: 'n' })).rejects.toThrow(/warm-up run 1\/1 against http:\/\/127\.0\.0\.1:\d+\/v1 \(model bit-diffusion, n=4\) failed: .*n 4, expected 1/);
    // Steps missing from the request: the server's expect catches it.
    await expect(measureSpeed({ ...base(), stepsField: 'num_inference_steps', warmup: 0 })).rejects.toThrow(/timed run 1\/3 .*steps undefined, expected 20/);
    const gone = await ImageGenServer.start({ model: 'm', size: SIZE, expect: {} });
    const url = gone.url;
    await gone.close();
    await expect(runSpeed({ endpoint: url, model: 'm', steps: 4, size: SIZE, out: await tempDir('speed-gone') })).rejects.toThrow(/warm-up run 1\/2 against http:\/\/127\.0\.0\.1:\d+\/v1 .*failed/);
    await expect(measureSpeed({ ...base(), steps: 0 })).rejects.toThrow(/steps must be a positive integer/);
  });
});

describe('batch mode n', () => {
  const bodies: Record<string, unknown>[] = [];
  let url: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();
    // A server that samples a whole batch in one fixed-latency step: n images per request.
    const srv = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      bodies.push(body);
      await new Promise((r) => setTimeout(r, 100));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: Array.from({ length: body.n }, () => ({ b64_json: png.toString('base64') })) }));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`;
    close = () => new Promise((r) => (srv.closeAllConnections(), srv.close(() => r())));
  });
  afterAll(async () => close());

  it('asks for B images in one request and divides its time by B', async () => {
    const r = await measureSpeed({ endpoint: url, model: 'x', steps: 50, stepsField: 'num_inference_steps', batchSize: 4, size: SIZE, warmup: 1, runs: 2 });
    expect(bodies).toHaveLength(3);
    expect(bodies.map((b) => b.n)).toEqual([4, 4, 4]);
    expect(bodies.map((b) => b.seed)).toEqual([0, 4, 8]);
    expect(bodies[0].num_inference_steps).toBe(50);
    expect(bodies[0]).not.toHaveProperty('steps');
    expect(r.sec_per_img).toBeGreaterThanOrEqual(0.095 / 4);
    expect(r.sec_per_img).toBeLessThan(0.095);
    expect(r.request_fields).toEqual({ num_inference_steps: 50 });
  });
});
