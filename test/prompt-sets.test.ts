import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Asset } from '../evaluation/prompts/assets.js';
import { fetchAssets, fetchAssetsCommand } from '../evaluation/prompts/fetch-assets-command.js';
import { loadCocoCaptions, loadGenevalPrompts, loadImageRewardPrompts } from '../evaluation/prompts/prompt-sets.js';
import { tempDir } from './helpers/temp-dir.js';

// Lines as GenEval's evaluation_metadata.jsonl writes them.
const GENEVAL_LINES = [
  '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
  '{"tag": "counting", "include": [{"class": "apple", "count": 2}], "exclude": [{"class": "apple", "count": 3}], "prompt": "a photo of two apples"}',
  '{"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}',
];

describe('prompt set loaders', () => {
  it('loads GenEval metadata with line-numbered ids and names a bad line', async () => {
    const dir = await tempDir('prompts');
    const good = join(dir, 'evaluation_metadata.jsonl');
    await writeFile(good, GENEVAL_LINES.join('\n') + '\n');
    const ps = await loadGenevalPrompts(good);
    expect(ps.map((p) => [p.id, p.tag, p.prompt])).toEqual([
      ['00000', 'single_object', 'a photo of a bench'],
      ['00001', 'counting', 'a photo of two apples'],
      ['00002', 'position', 'a photo of a dog right of a teddy bear'],
    ]);
    expect(ps[1].metadata.exclude).toEqual([{ class: 'apple', count: 3 }]);
    expect(Object.keys(ps[0].raw)).toEqual(['tag', 'include', 'prompt']);

    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, [GENEVAL_LINES[0], '{"tag": "colors", "include": [{"class": "car", "count": 1, "colour": "red"}], "prompt": "x"}'].join('\n'));
    await expect(loadGenevalPrompts(bad)).rejects.toThrow(`${bad}:2:`);
    await writeFile(bad, [GENEVAL_LINES[0], '', GENEVAL_LINES[1]].join('\n'));
    await expect(loadGenevalPrompts(bad)).rejects.toThrow(`${bad}:2: blank line`);
    await writeFile(bad, 'not json\n');
    await expect(loadGenevalPrompts(bad)).rejects.toThrow(`${bad}:1: not JSON`);
  });

  it('loads ImageReward prompts and names the bad entry', async () => {
    const dir = await tempDir('prompts');
    const f = join(dir, 'benchmark-prompts.json');
    const entries = [{ id: '005695-0057', prompt: 'a concept art of a vehicle, cyberpunk' }, { id: '005784-0093', prompt: 'desolate space' }];
    await writeFile(f, JSON.stringify(entries, null, 4));
    expect(await loadImageRewardPrompts(f)).toEqual(entries);

    await writeFile(f, JSON.stringify([entries[0], { id: 'x1', prompt: 7 }], null, 4));
    await expect(loadImageRewardPrompts(f)).rejects.toThrow(`${f}:7 (entry 1): not an ImageReward prompt: prompt:`);
    await writeFile(f, JSON.stringify([entries[0], entries[0]]));
    await expect(loadImageRewardPrompts(f)).rejects.toThrow(/entry 1\): duplicate id "005695-0057"/);
    await writeFile(f, '{"id": 1}');
    await expect(loadImageRewardPrompts(f)).rejects.toThrow('expected a JSON array');
  });

  it('loads plain caption lists, text and JSON', async () => {
    const dir = await tempDir('prompts');
    const txt = join(dir, 'captions.txt');
    await writeFile(txt, 'A cat on a mat.\r\nTwo dogs running.\nA red bus.\n');
    expect(await loadCocoCaptions(txt)).toEqual([
      { id: '0', prompt: 'A cat on a mat.' },
      { id: '1', prompt: 'Two dogs running.' },
      { id: '2', prompt: 'A red bus.' },
    ]);
    const sample = await loadCocoCaptions(txt, { images: 2, seed: 1 });
    expect(sample).toHaveLength(2);
    expect(await loadCocoCaptions(txt, { images: 2, seed: 1 })).toEqual(sample);

    const json = join(dir, 'captions.json');
    await writeFile(json, JSON.stringify(['A cat.', 'A dog.']));
    expect((await loadCocoCaptions(json)).map((c) => c.prompt)).toEqual(['A cat.', 'A dog.']);
    await writeFile(json, JSON.stringify(['A cat.', 3]));
    await expect(loadCocoCaptions(json)).rejects.toThrow(`${json} (entry 1)`);
    await writeFile(txt, 'A cat.\n\nA dog.\n');
    await expect(loadCocoCaptions(txt)).rejects.toThrow(`${txt}:2: blank caption`);
  });

  it('samples one caption per image from COCO annotations, deterministically by seed', async () => {
    const dir = await tempDir('prompts');
    const f = join(dir, 'captions_val2014.json');
    const annotations = [];
    for (let img = 1; img <= 40; img++) for (let k = 0; k < 5; k++) annotations.push({ image_id: img * 7, id: img * 100 + k, caption: `image ${img * 7} caption ${k} ` });
    await writeFile(f, JSON.stringify({ info: {}, images: [], annotations }));

    const a = await loadCocoCaptions(f, { images: 10, seed: 0 });
    expect(a).toHaveLength(10);
    expect(new Set(a.map((c) => c.imageId)).size).toBe(10);
    for (const c of a) {
      expect(c.id).toBe(String(c.imageId));
      expect(c.prompt).toMatch(new RegExp(`^image ${c.imageId} caption \\d$`));
      expect(annotations.find((x) => x.id === c.annotationId)?.image_id).toBe(c.imageId);
    }
    expect(await loadCocoCaptions(f, { images: 10, seed: 0 })).toEqual(a);
    // Hash ranks make samples nested: the 10-image sample is the start of the 20-image one.
    expect((await loadCocoCaptions(f, { images: 20, seed: 0 })).slice(0, 10)).toEqual(a);
    const b = await loadCocoCaptions(f, { images: 10, seed: 1 });
    expect(b.map((c) => c.imageId)).not.toEqual(a.map((c) => c.imageId));
    // The caption choice also depends on the seed, not only the image choice.
    const all0 = await loadCocoCaptions(f, { seed: 0 });
    const all1 = await loadCocoCaptions(f, { seed: 1 });
    expect(all0).toHaveLength(40);
    const cap = (xs: typeof all0) => new Map(xs.map((c) => [c.imageId, c.annotationId]));
    expect([...cap(all0)].some(([img, ann]) => cap(all1).get(img) !== ann)).toBe(true);
    // File order does not matter.
    await writeFile(f, JSON.stringify({ annotations: [...annotations].reverse() }));
    expect(await loadCocoCaptions(f, { images: 10, seed: 0 })).toEqual(a);

    await expect(loadCocoCaptions(f, { images: 41 })).rejects.toThrow('asked for 41 images but the file has 40');
    await writeFile(f, JSON.stringify({ annotations: [annotations[0], { image_id: 'x', id: 2, caption: 'c' }] }));
    await expect(loadCocoCaptions(f)).rejects.toThrow(`${f} (annotations[1])`);
  });
});

describe('fetch-assets', () => {
  const body = Buffer.from('{"tag": "single_object", "prompt": "a photo of a bench"}\n');
  const sha = createHash('sha256').update(body).digest('hex');
  let server: Server;
  let base: string;
  const requests: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/file.jsonl') res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const entry = (over: Partial<Asset> = {}): Asset => ({ name: 'meta.jsonl', url: `${base}/file.jsonl`, sha256: sha, size: body.length, description: 'test', ...over });

  it('writes a file with the right hash, then skips it without a request', async () => {
    const dir = await tempDir('assets');
    requests.length = 0;
    const lines: string[] = [];
    const r1 = await fetchAssets({ dir, registry: [entry()], log: (l) => lines.push(l) });
    expect(r1).toMatchObject([{ name: 'meta.jsonl', action: 'downloaded', sha256: sha, size: body.length }]);
    expect(await readFile(join(dir, 'meta.jsonl'))).toEqual(body);
    expect(await readdir(dir)).toEqual(['meta.jsonl']);
    expect(lines[0]).toMatch(/^downloaded meta.jsonl/);
    expect(requests).toEqual(['/file.jsonl']);

    const r2 = await fetchAssets({ dir, registry: [entry()] });
    expect(r2).toMatchObject([{ action: 'skipped' }]);
    expect(requests).toHaveLength(1);
  });

  it('refuses a wrong hash or size and leaves nothing in DIR', async () => {
    const dir = await tempDir('assets');
    const wrong = '0'.repeat(64);
    await expect(fetchAssets({ dir, registry: [entry({ sha256: wrong })] })).rejects.toThrow(`expected sha256 ${wrong} (${body.length} bytes), got ${sha}`);
    expect(await readdir(dir)).toEqual([]);
    await expect(fetchAssets({ dir, registry: [entry({ size: 5 })] })).rejects.toThrow('larger than the expected 5 bytes');
    expect(await readdir(dir)).toEqual([]);
    await expect(fetchAssets({ dir, registry: [entry({ url: `${base}/missing` })] })).rejects.toThrow('HTTP 404');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a present file with another hash, and unpinned assets unless allowed', async () => {
    const dir = await tempDir('assets');
    await writeFile(join(dir, 'meta.jsonl'), 'mine');
    await expect(fetchAssets({ dir, registry: [entry()] })).rejects.toThrow(/exists but does not match the registry.*remove it/);
    expect(await readFile(join(dir, 'meta.jsonl'), 'utf8')).toBe('mine');

    const dir2 = await tempDir('assets');
    const unpinned = entry({ name: 'big.zip', sha256: null, size: null });
    requests.length = 0;
    await expect(fetchAssets({ dir: dir2, names: ['big.zip'], registry: [unpinned] })).rejects.toThrow('--allow-unpinned');
    // With no names only pinned assets are fetched.
    expect(await fetchAssets({ dir: dir2, registry: [unpinned] })).toEqual([]);
    expect(requests).toEqual([]);
    const r = await fetchAssets({ dir: dir2, names: ['big.zip'], registry: [unpinned], allowUnpinned: true });
    expect(r).toMatchObject([{ action: 'downloaded', sha256: sha }]);
    await expect(fetchAssets({ dir: dir2, names: ['nope'], registry: [unpinned] })).rejects.toThrow('unknown asset "nope"; known: big.zip');
  });

  it('runs as the fetch-assets command', async () => {
    const dir = await tempDir('assets');
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    try {
      await fetchAssetsCommand([entry()]).parseAsync(['--list'], { from: 'user' });
      await fetchAssetsCommand([entry()]).parseAsync(['meta.jsonl', '--dir', dir], { from: 'user' });
    } finally {
      process.stdout.write = write;
    }
    const text = out.join('');
    expect(text).toContain(`sha256: ${sha}`);
    expect(text).toContain('1 downloaded, 0 already present');
    expect(await readFile(join(dir, 'meta.jsonl'))).toEqual(body);
  });
});
