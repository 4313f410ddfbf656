import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';
import { LATENT_BYTES } from '../src/formats/latent-bits.js';
import { encodeLatentShard, writeLatentManifest } from '../src/formats/latent-shards.js';
import { readTarEntries } from '../src/formats/tar-read.js';
import { seededRandom } from '../src/seeded-random.js';
import { emptyFunnel } from '../src/stats.js';
import { S3Store } from '../src/stores/s3-store.js';
import { UnitOutputs } from '../src/units/unit-outputs.js';
import { finishedUnitStats } from '../src/units/unit.js';
import { LatentStats } from '../stages/latent-stats.js';
import { drop, newSample } from '../src/sample.js';
import { FileStore } from '../src/stores/file-store.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { DroppedThumbnails } from '../stages/sinks/dropped-thumbnails.js';
import { planWebDatasetUnits } from '../stages/sources/webdataset-source.js';
import { startFaultImageServer, type FaultImageServer } from './helpers/fault-image-server.js';
import { startS3Server } from './helpers/s3-server.js';
import { readAllRecords, readJson } from './helpers/read-output.js';
import { repoRoot, runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { makeTextImages } from './helpers/text-images.js';

const LAION_SCHEMA: ColumnSpec[] = [
  { name: 'URL', type: 'STRING' },
  { name: 'TEXT', type: 'STRING' },
  { name: 'punsafe', type: 'DOUBLE' },
  // A caption's metadata, not a caption: the report must not draw its "length".
  { name: 'caption_model', type: 'STRING' },
];

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function tarMembers(path: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of readTarEntries((await import('node:fs')).createReadStream(path), { name: path })) out.set(e.path, e.data);
  return out;
}

describe('DroppedThumbnails', () => {
  const jpeg = (seed: number) => sharp({ create: { width: 200 + seed, height: 120, channels: 3, background: { r: seed * 20, g: 90, b: 40 } } }).jpeg().toBuffer();

  it('keeps the smallest keys per reason, round-robin over reasons, whatever the order they arrive in', async () => {
    const specs: [string, string][] = [['k05', 'aesthetic'], ['k01', 'aesthetic'], ['k03', 'aesthetic'], ['k02', 'text_density'], ['k09', 'text_density'], ['k04', 'min_edge'], ['k07', 'aesthetic']];
    const chosenFor = async (order: [string, string][]) => {
      const t = new DroppedThumbnails(4);
      const samples = await Promise.all(order.map(async ([key], i) => {
        const s = newSample(key, {});
        s.image = new Uint8Array(await jpeg(i));
        return s;
      }));
      // remember() sees them ok with their image; drop() then releases it as a filter would.
      const seen = [];
      for await (const s of t.remember()((async function* () { yield* samples; })(), undefined as never)) seen.push(s);
      for (const [i, s] of seen.entries()) {
        drop(s, order[i][1], i);
        expect(s.image).toBeUndefined();
        await t.offer(s);
      }
      return t.chosen().map((c) => c.key);
    };
    const a = await chosenFor(specs);
    // aesthetic k01, min_edge k04, text_density k02, then aesthetic k03: sorted by key.
    expect(a).toEqual(['k01', 'k02', 'k03', 'k04']);
    expect(await chosenFor([...specs].reverse())).toEqual(a);
  });

  it('ignores ok, failed and never-remembered samples', async () => {
    const t = new DroppedThumbnails(3);
    const ok = newSample('a', {});
    ok.image = new Uint8Array(await jpeg(1));
    await t.offer(ok);
    await t.offer(drop(newSample('b', {}), 'nsfw'));
    expect(t.chosen()).toEqual([]);
  });
});

describe('bitprep report on a laion-filter output', () => {
  let dir: string;
  let server: FaultImageServer;
  let browser: Browser | undefined;
  const outA = () => join(dir, 'out-a');
  const outB = () => join(dir, 'out-b');

  beforeAll(async () => {
    dir = await tempDir('report');
    const images = new Map<string, Buffer>();
    const names: string[] = [];
    for (const t of await makeTextImages(12, 11, 320)) {
      images.set(`${t.name}.png`, t.png);
      names.push(`${t.name}.png`);
    }
    images.set('tiny.jpg', await sharp({ create: { width: 90, height: 70, channels: 3, background: '#4477aa' } }).jpeg().toBuffer());
    names.splice(5, 0, 'tiny.jpg');
    server = await startFaultImageServer(images);
    const rows = names.map((n, i) => ({ URL: `${server.url}/img/${n}`, TEXT: `picture number ${i} of a test ${'word '.repeat(i % 5)}`.trim(), punsafe: i === 3 ? 0.9 : 0.01, caption_model: 'Qwen/Qwen2.5-VL-7B-Instruct' }));
    await mkdir(join(dir, 'in'));
    await writeFile(join(dir, 'in', 'part-00000.parquet'), writeParquet(rows, { schema: LAION_SCHEMA, compression: 'SNAPPY' }));
    await mkdir(join(dir, 'models'));
    await writeFile(join(dir, 'models', 'clip.onnx'), buildClipStandinModel(7));
    await writeAestheticHead(join(dir, 'models', 'head.safetensors'), randomAestheticLayers(7));
    const cfg = (output: string) => ({
      job: 'laion-filter',
      output,
      input: { kind: 'parquet', paths: [join(dir, 'in')], unit_rows: 7 },
      filters: [{ name: 'nsfw', keep: 'punsafe < 0.5' }],
      fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0 },
      image: { size: 256, min_edge: 128, quality: 90 },
      decode_concurrency: 2,
      aesthetic: { head: join(dir, 'models', 'head.safetensors'), clip: { model: { onnx: join(dir, 'models', 'clip.onnx'), replicas: 1, providers: ['cpu'] }, batch_size: 8 }, min_score: 5.4 },
      ocr: { backend: 'tesseract', workers: 2, max_density: 0.15, min_text_height: 0.03 },
    });
    for (const out of [outA(), outB()]) {
      const r = await runCli(['run', await writeConfig(dir, `${out.endsWith('a') ? 'a' : 'b'}.json`, cfg(out)), '--progress', 'off']);
      expect(r.code, r.stderr).toBe(0);
    }
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('writes a bounded thumbs sidecar per unit, listed in the done marker, byte-identical across two runs', async () => {
    const store = new FileStore(outA());
    const records = new Map((await readAllRecords(store)).map((r) => [String(r.key), r]));
    const unitIds = (await readJson(join(outA(), '_plan.json'))).unit_ids as string[];
    expect(unitIds.length).toBe(2);
    let thumbs = 0;
    const reasons = new Set<string>();
    for (const id of unitIds) {
      const marker = await readJson(join(outA(), `${id}.done.json`));
      const listed = marker.outputs.find((o: { name: string }) => o.name === `${id}.thumbs`);
      const bytes = await readFile(join(outA(), `${id}.thumbs`));
      expect(listed).toEqual({ name: `${id}.thumbs`, bytes: bytes.length, sha256: sha256(bytes) });
      expect(sha256(await readFile(join(outB(), `${id}.thumbs`)))).toBe(listed.sha256);
      const members = await tarMembers(join(outA(), `${id}.thumbs`));
      const keys = [...members.keys()].filter((k) => k.endsWith('.json')).map((k) => k.slice(0, -5));
      expect(keys.length).toBeLessThanOrEqual(12);
      for (const key of keys) {
        const meta = JSON.parse(new TextDecoder().decode(members.get(`${key}.json`)));
        const rec = records.get(key)!;
        expect([rec.status, rec.dropped_by]).toEqual(['dropped', meta.dropped_by]);
        const img = await sharp(members.get(`${key}.jpg`)!).metadata();
        expect([img.format, Math.max(img.width!, img.height!) <= 160]).toEqual(['jpeg', true]);
        reasons.add(meta.dropped_by);
        thumbs++;
      }
    }
    // Every row dropped after decoding has a thumbnail here (fewer than 12 per unit); the nsfw row, dropped before download, has none.
    const droppedAfterDecode = [...records.values()].filter((r) => r.status === 'dropped' && r.dropped_by !== 'nsfw');
    expect(thumbs).toBe(droppedAfterDecode.length);
    expect(reasons.has('aesthetic')).toBe(true);
    expect(reasons.has('min_edge')).toBe(true);
    expect([...reasons].some((r) => r === 'text_density' || r === 'text_height')).toBe(true);
    expect(reasons.has('nsfw')).toBe(false);

    // A job reading this output as WebDataset shards (recaption, pre-encode) must not take the sidecars for shards.
    const shards = await planWebDatasetUnits({ paths: [outA()], unit_rows: 7 });
    expect(shards.map((u) => u.inputs[0].uri)).toEqual(unitIds.map((id) => join(outA(), `${id}.tar`)));
  });

  it('renders a self-contained report that shows the funnel, histograms, and kept and dropped images', async () => {
    const r = await runCli(['report', outA(), '--thumbnails', '8']);
    expect(r.code, r.stderr).toBe(0);
    const html = join(outA(), 'report.html');
    const size = (await stat(html)).size;
    expect(r.stdout.trim()).toBe(`${html} (${(size / 1024).toFixed(0)} KiB)`);
    const text = await readFile(html, 'utf8');
    expect(text).not.toMatch(/<(script|link)\b|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const attempted: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
      attempted.push(url);
      return route.abort();
    });
    await page.goto(pathToFileURL(html).href, { waitUntil: 'load' });

    const summary = await readJson(join(outA(), 'run-summary.json'));
    const shown = await page.$$eval('#funnel tr[data-row]', (trs) => trs.map((tr) => [tr.getAttribute('data-row'), Number(tr.querySelector('td.count')!.textContent)]));
    const expected: [string, number][] = [['rows_in', summary.funnel.rows_in]];
    for (const [k, v] of Object.entries(summary.funnel.dropped).sort()) expected.push([`dropped:${k}`, v as number]);
    for (const [k, v] of Object.entries(summary.funnel.failed).sort()) expected.push([`failed:${k}`, v as number]);
    expected.push(['written', summary.funnel.written]);
    expect(shown).toEqual(expected);
    expect(summary.funnel.written).toBeGreaterThan(0);
    expect(await page.locator('body').innerText()).toContain(`${summary.units.done} done of ${summary.units.planned} planned`);

    const loaded = (sel: string) => page.$$eval(sel, (imgs) => (imgs as HTMLImageElement[]).filter((i) => i.complete && i.naturalWidth > 0).length);
    expect(await loaded('#kept img')).toBeGreaterThan(0);
    expect(await loaded('#kept img')).toBeLessThanOrEqual(8);
    expect(await loaded('#dropped img')).toBeGreaterThan(0);
    const droppedReasons = await page.$$eval('#dropped h3[data-reason]', (hs) => hs.map((h) => h.getAttribute('data-reason')));
    expect(droppedReasons).toContain('aesthetic');
    expect(await page.getAttribute('#dropped figure img', 'title')).toMatch(/dropped by \w+: /);

    for (const field of ['aesthetic_score', 'ocr_density', 'original_width', 'caption']) {
      expect(await page.locator(`[data-field="${field}"] svg rect.bar`).count(), field).toBeGreaterThan(0);
    }
    expect(await page.locator('[data-field="aesthetic_score"] line.threshold').count()).toBe(1);
    expect(await page.locator('svg.throughput circle.point').count()).toBe(2);
    // image.min_edge acts on the shorter edge: its line is drawn there only.
    expect(await page.locator('[data-field="original_shorter_edge"] line.threshold').count()).toBe(1);
    for (const field of ['original_width', 'original_height']) expect(await page.locator(`[data-field="${field}"] line.threshold`).count(), field).toBe(0);
    expect(await page.locator('[data-field="caption_model"]').count()).toBe(0);

    // Every label lies inside its chart (threshold labels near an end, first and last ticks included).
    const outside = await page.$$eval('svg.chart', (svgs) =>
      svgs.flatMap((svg) => {
        const box = svg.getBoundingClientRect();
        return [...svg.querySelectorAll('text')]
          .map((t) => ({ text: t.textContent, r: t.getBoundingClientRect() }))
          .filter(({ r }) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
          .map(({ text, r }) => `${svg.closest('[data-field]')?.getAttribute('data-field') ?? svg.getAttribute('aria-label')}: "${text}" at ${r.left.toFixed(0)}–${r.right.toFixed(0)} of ${box.left.toFixed(0)}–${box.right.toFixed(0)}`);
      }),
    );
    expect(outside).toEqual([]);
    // Ticks sit on bin edges: each tick value is lo + k × bin width of its histogram (64 bins over 0–4096: multiples of 64).
    const ticks = (await page.$$eval('[data-field="original_shorter_edge"] svg text[y="180"]', (ts) => ts.map((t) => t.textContent ?? ''))).map(Number);
    expect(ticks.length).toBeGreaterThan(2);
    for (const v of ticks) expect(v % 64, String(v)).toBe(0);

    await mkdir(join(repoRoot, 'test', '.artifacts'), { recursive: true });
    await page.screenshot({ path: join(repoRoot, 'test', '.artifacts', 'report.png'), fullPage: true });
    expect(attempted).toEqual([]);
  }, 60_000);

  it('names the units a partial output has not done', async () => {
    const partial = join(dir, 'out-partial');
    await cp(outA(), partial, { recursive: true });
    const [first, second] = (await readJson(join(partial, '_plan.json'))).unit_ids as string[];
    await rm(join(partial, `${second}.done.json`));
    const r = await runCli(['report', partial, '--thumbnails', '1']);
    expect(r.code, r.stderr).toBe(0);
    const html = await readFile(join(partial, 'report.html'), 'utf8');
    expect(html).toContain('1 done of 2 planned');
    expect(html).toMatch(new RegExp(`<tr class="pending"><td>not done</td><td>${second} \\(`));
    expect(html).not.toMatch(new RegExp(`not done</td><td>[^<]*${first}`));
  });

  it('reads an s3:// output and writes report.html next to it', async () => {
    const s3 = await startS3Server({ buckets: ['bitprep-test'] });
    const prev = { ...process.env };
    try {
      Object.assign(process.env, s3.env);
      const store = S3Store.fromUrl('s3://bitprep-test/runs/a');
      const local = new FileStore(outA());
      for (const name of (await local.list()).filter((n) => n !== 'report.html')) await store.put(name, await local.get(name));
      const r = await runCli(['report', 's3://bitprep-test/runs/a', '--thumbnails', '2'], { env: s3.env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^s3:\/\/bitprep-test\/runs\/a\/report\.html \(\d+ KiB\)\n$/);
      const html = new TextDecoder().decode(await store.get('report.html'));
      const summary = await readJson(join(outA(), 'run-summary.json'));
      expect(html).toContain(`<tr class="total" data-row="written"><td>written</td><td class="count">${summary.funnel.written}</td>`);
      expect((html.match(/<figure class="kept">/g) ?? []).length).toBe(2);
    } finally {
      process.env = prev;
      await s3.close();
    }
  }, 60_000);
});

describe('bitprep report on a latent dataset', () => {
  it('shows bit usage and the verdict of stages/latent-stats.ts, and no image grids', async () => {
    const dir = await tempDir('report-latents');
    const store = new FileStore(dir);
    const r = seededRandom(5);
    const rows = Array.from({ length: 150 }, (_, i) => {
      const latent = new Uint8Array(LATENT_BYTES);
      // The first half of the tokens vary, the second half is stuck at 0: a collapsed-looking code.
      for (let b = 0; b < LATENT_BYTES / 2; b++) latent[b] = Math.floor(r() * 256);
      return { key: `k${String(i).padStart(4, '0')}`, latent, caption: `a caption of ${1 + (i % 9)} words` };
    });
    const outputs = new UnitOutputs(store, 'pre-encode', '00000');
    await outputs.put('.latents.parquet', encodeLatentShard(rows));
    const funnel = { ...emptyFunnel(), rows_in: rows.length, written: rows.length };
    await outputs.commit(finishedUnitStats({ job: 'pre-encode', unitId: '00000', started: new Date(), funnel, stages: [] }));
    await writeLatentManifest(store, 'pre-encode', ['00000']);
    const stats = new LatentStats();
    for (const row of rows) stats.add(row.latent);
    const expected = stats.result();
    expect(expected.verdict).not.toBe('healthy');

    const out = join(dir, 'r.html');
    const res = await runCli(['report', dir, '--out', out]);
    expect(res.code, res.stderr).toBe(0);
    const html = await readFile(out, 'utf8');
    expect(html).toContain(`verdict: <span class="verdict">${expected.verdict}</span>`);
    expect((html.match(/<rect class="bar" [^>]*><title>token \d+:/g) ?? []).length).toBe(128);
    const png = html.match(/<img class="heatmap" alt="bit usage" src="data:image\/png;base64,([^"]+)"/);
    const meta = await sharp(Buffer.from(png![1], 'base64')).metadata();
    expect([meta.width, meta.height]).toEqual([64 * 4, 128 * 4]);
    expect(html).not.toContain('id="kept"');
    expect(html).toContain('<td class="count">150</td>');
  }, 60_000);
});
