import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TarWriter } from '../src/formats/tar-write.js';
import { FileStore } from '../src/stores/file-store.js';
import { checkCaption, CAPTION_CHECK_DEFAULTS, cleanCaption, distinctTrigramShare } from '../stages/recaption/caption-check.js';
import { readAllRecords, readAllTarMembers } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { chatCompletion, VllmChatServer, type VllmReply, type VllmRequestInfo } from './helpers/vllm-chat-server.js';

const MODEL = 'Qwen/Qwen2.5-VL-7B-Instruct';
const N = 12;
const rgbOf = (i: number): [number, number, number] => [20 * i + 10, 200 - 10 * i, 80];
const indexOf = (rgb: [number, number, number]) => Math.round((rgb[0] - 10) / 20);
const keyOf = (i: number) => `img${String(i).padStart(3, '0')}`;

const longCaption = (i: number, seed: number) =>
  `A flat swatch of colour number ${i} fills the whole frame under even light. Its surface shows no texture, pattern or object of any kind. ` +
  `The edges are clean and the tone does not change from corner to corner. It looks like a paint sample photographed for a catalogue, drawn with seed ${seed}.`;
const shortCaption = (i: number) => `A flat colour swatch number ${i} on its own.`;

/**
 * The planted behaviour of each image (by its colour), per seed: 6 answers with boilerplate at
 * seed 0, 7 always refuses, 8 is cut off at seed 0, 9 loops, 10 meets an HTTP 500 once, 11
 * never answers JSON. The rest answer well at once.
 */
function plantedReply(): (req: VllmRequestInfo) => VllmReply {
  let served500 = false;
  return (req) => {
    const i = indexOf(req.rgb!);
    const seed = req.seed;
    if (i === 10 && !served500) {
      served500 = true;
      return { status: 500, message: 'CUDA out of memory (injected)' };
    }
    let long = longCaption(i, seed);
    let short = shortCaption(i);
    if (i === 6 && seed === 0) long = `The image shows ${long}`;
    if (i === 7) long = short = "I'm sorry, but I can't describe this image.";
    if (i === 8 && seed === 0) return { text: '{"long_caption": "A flat swatch of colour number 8 fills', finish_reason: 'length' };
    if (i === 9) long = 'a red square and '.repeat(15).trim();
    if (i === 11) return { text: `Long caption: ${long}\nShort caption: ${short}` };
    if (!req.schema) return { text: req.prompt.includes('one sentence') ? short : long };
    return { text: JSON.stringify({ long_caption: long, short_caption: short }) };
  };
}

let dir: string;
let shards: string;
const inputImages = new Map<string, Buffer>();

/** Two image-shard tars as laion-filter writes them (640×480 images, so the request must be resized), a PNG, and a sample without an image. */
async function makeShards(): Promise<void> {
  shards = join(dir, 'shards');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(shards, { recursive: true });
  for (const [t, range] of [[0, [0, 7]], [1, [7, N]]] as const) {
    const out = createWriteStream(join(shards, `0000${t}.tar`));
    const w = new TarWriter({ write: (c) => new Promise<void>((r, j) => out.write(c, (e) => (e ? j(e) : r()))) });
    for (let i: number = range[0]; i < range[1]; i++) {
      const [r, g, b] = rgbOf(i);
      const img = sharp({ create: { width: 640, height: 480, channels: 3, background: { r, g, b } } });
      const ext = i === 3 ? 'png' : 'jpg';
      const bytes = await (ext === 'png' ? img.png() : img.jpeg({ quality: 95 })).toBuffer();
      inputImages.set(keyOf(i), bytes);
      await w.addSample(keyOf(i), { [ext]: bytes, json: JSON.stringify({ key: keyOf(i), caption: `alt text ${i}`, url: `http://example.com/${i}.jpg`, aesthetic_score: 5 + i / 10 }), txt: `alt text ${i}` });
    }
    if (t === 1) await w.addSample('img999', { json: JSON.stringify({ key: 'img999', caption: 'lost image' }), txt: 'lost image' });
    await w.finish();
    await new Promise<void>((r) => out.end(r));
  }
}

function config(name: string, server: VllmChatServer, extra: Record<string, unknown> = {}) {
  return { job: 'recaption', output: join(dir, name), input: { paths: [shards] }, server: { base_url: server.baseUrl, model: MODEL }, cache: join(dir, `cache-${name}`), ...extra };
}

const byKey = (rows: Record<string, unknown>[]) => new Map(rows.map((r) => [String(r.key), r]));

describe('caption checks', () => {
  const o = CAPTION_CHECK_DEFAULTS;
  it('accepts a plain caption and refuses each planted problem with its reason', () => {
    expect(checkCaption(longCaption(1, 0), 'long', o)).toMatchObject({ ok: true });
    expect(checkCaption('', 'short', o)).toMatchObject({ ok: false, problem: 'empty' });
    expect(checkCaption('A cat.', 'long', o)).toMatchObject({ ok: false, problem: 'too_short' });
    expect(checkCaption('word '.repeat(50), 'short', o)).toMatchObject({ ok: false, problem: 'too_long' });
    expect(checkCaption("I’m sorry, I can't help with that request today.", 'short', o)).toMatchObject({ ok: false, problem: 'refusal' });
    expect(checkCaption('The image shows a red bicycle leaning on a wall.', 'short', o)).toMatchObject({ ok: false, problem: 'boilerplate' });
    expect(checkCaption('Surely a red bicycle leans on a wall.', 'short', o)).toMatchObject({ ok: true });
    expect(checkCaption('a red square and '.repeat(15), 'long', o)).toMatchObject({ ok: false, problem: 'repetition' });
    expect(distinctTrigramShare(longCaption(1, 0))).toBeGreaterThan(0.9);
  });
  it('cleans whitespace and quotes, and strips boilerplate only when asked', () => {
    expect(cleanCaption('  "A red\n\n bicycle."  ', o)).toBe('A red bicycle.');
    expect(cleanCaption('The image shows a red bicycle.', { ...o, strip_boilerplate: true })).toBe('A red bicycle.');
    expect(checkCaption('This image depicts: two dogs running on a beach.', 'short', { ...o, strip_boilerplate: true })).toEqual({ ok: true, text: 'Two dogs running on a beach.' });
  });
});

describe('recaption against a vLLM-shaped server', () => {
  let server: VllmChatServer;
  let firstRecords: Map<string, Record<string, unknown>>;

  beforeAll(async () => {
    dir = await tempDir('recaption');
    await makeShards();
    server = await VllmChatServer.start({ model: MODEL, structuredOutput: true, maxImageSide: 448, reply: plantedReply() });
  });
  afterAll(async () => server?.close());

  it('captions every image or fails it with a reason, keeps the original caption and image bytes', async () => {
    const cfg = await writeConfig(dir, 'run1.json', config('run1', server));
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    expect(server.rejected).toEqual([]);
    // Every request had the shape vLLM takes, with the image fitted inside 448 px.
    expect(server.log.every((q) => q.schema && q.width === 448 && q.height === 336 && q.body.model === MODEL)).toBe(true);
    const recs = await readAllRecords(new FileStore(join(dir, 'run1')));
    expect(recs).toHaveLength(N + 1);
    firstRecords = byKey(recs);
    for (const i of [0, 1, 2, 3, 4, 5, 6, 8, 10]) {
      const rec = firstRecords.get(keyOf(i))!;
      expect(rec.status, `${keyOf(i)}: ${rec.error}`).toBe('ok');
      expect(rec.caption).toBe(`alt text ${i}`);
      expect(rec.caption_short).toBe(shortCaption(i));
      expect(rec.caption_model).toBe(MODEL);
    }
    // Retried with the next seed after boilerplate (6) and a cut-off answer (8); 10 recovered from the 500 by the client's retry.
    expect(firstRecords.get(keyOf(6))!.caption_long).toBe(longCaption(6, 1));
    expect(firstRecords.get(keyOf(8))!.caption_long).toBe(longCaption(8, 1));
    expect(firstRecords.get(keyOf(10))!.caption_long).toBe(longCaption(10, 0));
    const failed = (i: number | string) => firstRecords.get(typeof i === 'number' ? keyOf(i) : i)!;
    expect(failed(7)).toMatchObject({ status: 'failed', failed_stage: 'recaption', error_code: 'refusal' });
    expect(failed(9)).toMatchObject({ status: 'failed', error_code: 'repetition' });
    expect(failed(11)).toMatchObject({ status: 'failed', error_code: 'bad_json' });
    expect(String(failed(7).error)).toContain('attempt 3 of 3');
    expect(failed('img999')).toMatchObject({ status: 'failed', failed_stage: 'source', error_code: 'no_image' });
    const perImage = (i: number) => server.log.filter((q) => indexOf(q.rgb!) === i).length;
    expect([0, 6, 7, 8, 9, 10, 11].map(perImage)).toEqual([1, 2, 3, 2, 3, 2, 3]);

    const members = await readAllTarMembers(new FileStore(join(dir, 'run1')));
    expect(Buffer.compare(Buffer.from(members.get(`${keyOf(3)}.png`)!), inputImages.get(keyOf(3))!)).toBe(0);
    expect(JSON.parse(Buffer.from(members.get(`${keyOf(0)}.json`)!).toString()).caption_long).toBe(longCaption(0, 0));
    expect(members.has(`${keyOf(7)}.jpg`)).toBe(false);
    expect(r.stdout).toMatch(/recaption: .*captions 9/);
    expect(r.stdout).toMatch(/prompt_tokens \d+/);
  });

  it('a rerun (new output, same cache) makes zero requests for images already captioned', async () => {
    const before = server.log.length;
    const cfg = await writeConfig(dir, 'run2.json', { ...config('run2', server), cache: join(dir, 'cache-run1') });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    const asked = new Set(server.log.slice(before).map((q) => indexOf(q.rgb!)));
    expect([...asked].sort((a, b) => a - b)).toEqual([7, 9, 11]);
    const recs = byKey(await readAllRecords(new FileStore(join(dir, 'run2'))));
    for (const [k, rec] of firstRecords) expect(recs.get(k)!.caption_long, k).toEqual(rec.caption_long);
  });

  it('a server that is down is an outage: exit 1 naming its URL, no unit done, no row recorded as failed', async () => {
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const baseUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}/v1`;
    await new Promise((r) => gone.close(r));
    const out = join(dir, 'down');
    const cfg = await writeConfig(dir, 'down.json', { ...config('down', server), server: { base_url: baseUrl, model: MODEL, retries: 1 } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`run stopped by an outage of ${baseUrl}`);
    expect(r.stderr).toMatch(/connection refused/);
    expect((await readdir(out)).filter((n) => n.endsWith('.done.json') || /^\d+\.parquet$/.test(n))).toEqual([]);
  });

  it('a wrong model name is an outage: the run stops naming the endpoint, no unit is done, a rerun with the name fixed completes', async () => {
    const out = join(dir, 'wrong');
    const cfg = await writeConfig(dir, 'wrong.json', { ...config('wrong', server), server: { base_url: server.baseUrl, model: 'qwen-typo' } });
    const r = await runCli(['run', cfg, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(server.baseUrl);
    expect(r.stderr).toContain('does not exist');
    expect(r.stderr).toMatch(/run stopped by an outage/);
    const names = await readdir(out);
    expect(names.filter((n) => n.endsWith('.done.json'))).toEqual([]);
    expect(names.filter((n) => /^\d+\.(parquet|tar)$/.test(n))).toEqual([]);
    const summary = JSON.parse(await readFile(join(out, 'run-summary.json'), 'utf8'));
    expect(summary.this_run.stopped).toMatchObject({ kind: 'outage', reason: 'http_404_not_found' });
    expect(summary.units.done).toBe(0);

    const fixed = await writeConfig(dir, 'wrong-fixed.json', config('wrong', server));
    const again = await runCli(['run', fixed, '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    const recs = await readAllRecords(new FileStore(out));
    expect(recs).toHaveLength(N + 1);
    expect(recs.filter((x) => x.error_code === 'http_status')).toEqual([]);
    expect(recs.filter((x) => x.status === 'ok').length).toBeGreaterThan(0);
  });
});

describe('recaption in two-request mode, for servers without structured output', () => {
  it('asks for each caption in plain text and never sends response_format', async () => {
    const server = await VllmChatServer.start({ model: MODEL, structuredOutput: false, maxImageSide: 448, reply: (q) => ({ text: q.prompt.includes('one sentence') ? shortCaption(indexOf(q.rgb!)) : longCaption(indexOf(q.rgb!), q.seed) }) });
    try {
      const cfg = await writeConfig(dir, 'two.json', config('two', server, { mode: 'two_requests' }));
      const r = await runCli(['run', cfg, '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
      expect(server.rejected).toEqual([]);
      expect(server.log).toHaveLength(2 * N);
      const recs = byKey(await readAllRecords(new FileStore(join(dir, 'two'))));
      for (let i = 0; i < N; i++) expect(recs.get(keyOf(i))).toMatchObject({ status: 'ok', caption_long: longCaption(i, 0), caption_short: shortCaption(i) });
    } finally {
      await server.close();
    }
  });
});

describe('recaption export / import through vllm run-batch JSONL', () => {
  let server: VllmChatServer;
  beforeAll(async () => {
    server = await VllmChatServer.start({ model: MODEL, structuredOutput: true, maxImageSide: 448, reply: () => ({ status: 500 }) });
  });
  afterAll(async () => server?.close());

  /** What `vllm run-batch` does with an input file: each body through the model, answers in its output format, order not kept. */
  async function runBatch(input: string, output: string, reply: (q: VllmRequestInfo) => VllmReply, failIndex?: number): Promise<number> {
    const lines = (await readFile(input, 'utf8')).split('\n').filter(Boolean);
    const out: string[] = [];
    for (const [n, line] of lines.entries()) {
      const req = JSON.parse(line);
      expect(Object.keys(req).sort()).toEqual(['body', 'custom_id', 'method', 'url']);
      expect(req).toMatchObject({ method: 'POST', url: '/v1/chat/completions' });
      const info = await server.validate(req.body, n);
      const rep = reply(info);
      if (indexOf(info.rgb!) === failIndex || 'status' in rep) {
        out.push(JSON.stringify({ id: `batch-${n}`, custom_id: req.custom_id, response: { status_code: 500, request_id: `r${n}`, body: null }, error: 'engine died' }));
      } else if (!('malformed' in rep)) {
        out.push(JSON.stringify({ id: `batch-${n}`, custom_id: req.custom_id, response: { status_code: 200, request_id: `r${n}`, body: chatCompletion(MODEL, n, rep) }, error: null }));
      }
    }
    out.reverse();
    await writeFile(output, out.join('\n') + '\n');
    return lines.length;
  }

  it('export prints the run-batch and import commands with its own --set overrides and -o, quoted for a shell', async () => {
    const cfg = await writeConfig(dir, 'printed.json', config('printed-config-output', server));
    const out = join(dir, "it's here");
    const input = join(dir, 'printed.jsonl');
    const e = await runCli(['recaption', 'export', cfg, '--out', input, '--set', 'parallel_units=2', '-o', out]);
    expect(e.code, e.stderr).toBe(0);
    const argv = (prefix: string) => {
      const line = e.stdout.split('\n').find((l) => l.startsWith(prefix))!.slice(prefix.length);
      return execFileSync('bash', ['-c', `printf '%s\\n' ${line}`], { encoding: 'utf8' }).trimEnd().split('\n');
    };
    const results = join(dir, 'printed.results.jsonl');
    expect(argv('next: ')).toEqual(['vllm', 'run-batch', '-i', input, '-o', results, '--model', MODEL]);
    const then = argv('then: ');
    expect(then).toEqual(['bitprep', 'recaption', 'import', cfg, results, '--set', 'parallel_units=2', '-o', out]);
    // What the printed commands do: run-batch, then the import as printed, into the -o output.
    await runBatch(input, results, plantedReply());
    const i = await runCli([...then.slice(1), '--progress', 'off']);
    expect(i.code, i.stderr).toBe(0);
    expect((await readAllRecords(new FileStore(out))).length).toBe(N + 1);
    await expect(readdir(join(dir, 'printed-config-output'))).rejects.toThrow(/ENOENT/);
  });

  it('round-trips: export, run-batch, import gives the online job\'s captions; a second round fixes what the first refused', async () => {
    const cfg = await writeConfig(dir, 'batch.json', config('batch', server));
    const e1 = await runCli(['recaption', 'export', cfg, '--out', join(dir, 'batch-in-0.jsonl')]);
    expect(e1.code, e1.stderr).toBe(0);
    expect(e1.stdout).toContain(`${N} request(s) for ${N} image(s)`);
    expect(e1.stdout).toContain('1 sample(s) without a usable image');
    const reply = plantedReply();
    reply({ rgb: rgbOf(10) } as VllmRequestInfo); // spends the planted 500: in a batch, 10 fails by the batch's own error line below
    expect(await runBatch(join(dir, 'batch-in-0.jsonl'), join(dir, 'batch-out-0.jsonl'), reply, 10)).toBe(N);

    const i1 = await runCli(['recaption', 'import', cfg, join(dir, 'batch-out-0.jsonl'), '--progress', 'off']);
    expect(i1.code, i1.stderr).toBe(0);
    expect(i1.stdout).toContain(`${N} answer(s): 6 accepted`);
    expect(server.requests).toBe(0);
    let recs = byKey(await readAllRecords(new FileStore(join(dir, 'batch'))));
    for (const i of [0, 1, 2, 3, 4, 5]) expect(recs.get(keyOf(i)), keyOf(i)).toMatchObject({ status: 'ok', caption_long: longCaption(i, 0), caption_short: shortCaption(i) });
    const codes = (i: number) => recs.get(keyOf(i))!.error_code;
    expect([6, 7, 8, 9, 10, 11].map(codes)).toEqual(['boilerplate', 'refusal', 'truncated', 'repetition', 'batch_error', 'bad_json']);

    // Round two: only the refused images are exported again, with the next seed.
    const e2 = await runCli(['recaption', 'export', cfg, '--out', join(dir, 'batch-in-1.jsonl'), '--attempt', '1']);
    expect(e2.code, e2.stderr).toBe(0);
    expect(e2.stdout).toContain(`6 request(s) for ${N} image(s)`);
    expect(await runBatch(join(dir, 'batch-in-1.jsonl'), join(dir, 'batch-out-1.jsonl'), reply)).toBe(6);
    const i2 = await runCli(['recaption', 'import', cfg, join(dir, 'batch-out-1.jsonl'), '--progress', 'off']);
    expect(i2.code, i2.stderr).toBe(0);
    expect(i2.stdout).toContain('re-decided 6 failed row(s) of 2 unit(s) finished earlier: 3 now captioned');
    recs = byKey(await readAllRecords(new FileStore(join(dir, 'batch'))));
    for (const i of [6, 8, 10]) expect(recs.get(keyOf(i)), keyOf(i)).toMatchObject({ status: 'ok', caption_long: longCaption(i, 1) });
    expect([7, 9, 11].map(codes)).toEqual(['refusal', 'repetition', 'bad_json']);
    const members = await readAllTarMembers(new FileStore(join(dir, 'batch')));
    expect([...members.keys()].filter((k) => k.endsWith('.json')).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 10].map((i) => `${keyOf(i)}.json`));
  });
});
