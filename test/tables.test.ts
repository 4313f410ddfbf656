import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

// One GenEval prompt per task, as evaluation_metadata.jsonl writes them, two images each.
const PROMPTS: Record<string, string> = {
  '00000': '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
  '00001': '{"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}], "prompt": "a photo of a dog and a cat"}',
  '00002': '{"tag": "counting", "include": [{"class": "apple", "count": 2}], "exclude": [{"class": "apple", "count": 3}], "prompt": "a photo of two apples"}',
  '00003': '{"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}',
  '00004': '{"tag": "color_attr", "include": [{"class": "bus", "count": 1, "color": "green"}, {"class": "microwave", "count": 1, "color": "purple"}], "prompt": "a photo of a green bus and a purple microwave"}',
  '00005': '{"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}',
};
const redCar = { car: [{ box: [0, 0, 50, 50], score: 0.9, color: 'red' }] };
// Accuracies per task: single_object 0.5, two_object 1, counting 0.5, colors 1, color_attr 0, position 0.5.
const DETECTIONS: Record<string, unknown> = {
  '00000/samples/0000.png': { bench: [[10, 10, 100, 100, 0.95]] },
  '00000/samples/0001.png': {},
  '00001/samples/0000.png': { dog: [[0, 0, 50, 50, 0.9]], cat: [[60, 0, 110, 50, 0.8]] },
  '00001/samples/0001.png': { dog: [[0, 0, 50, 50, 0.9]], cat: [[60, 0, 110, 50, 0.8]] },
  '00002/samples/0000.png': { apple: [[0, 0, 9, 9, 0.95], [20, 0, 29, 9, 0.93]] },
  '00002/samples/0001.png': {},
  '00003/samples/0000.png': redCar,
  '00003/samples/0001.png': redCar,
  '00004/samples/0000.png': {},
  '00004/samples/0001.png': {},
  '00005/samples/0000.png': { 'teddy bear': [[0, 0, 100, 100, 0.9]], dog: [[200, 0, 300, 100, 0.9]] },
  '00005/samples/0001.png': {},
};

// Published cells, typed in from the paper (Table 1), independently of the product's copy.
const INSTELLA_DIFF = { single_object: 0.99, two_object: 0.78, counting: 0.66, colors: 0.85, color_attr: 0.45, position: 0.12, overall: 0.64, clip: 0.332, image_reward: 0.9 };
const SDXL = { single_object: 0.98, two_object: 0.74, counting: 0.39, colors: 0.85, color_attr: 0.23, position: 0.15, overall: 0.55, clip: 0.335, image_reward: 0.6 };
const METRICS = ['single_object', 'two_object', 'counting', 'colors', 'color_attr', 'position', 'overall', 'clip', 'image_reward'] as const;
const DECIMALS: Record<string, number> = { clip: 3, image_reward: 3 };
const dec = (k: string) => DECIMALS[k] ?? 2;
const signed = (d: number, k: string) => (d >= 0 || Number(Math.abs(d).toFixed(dec(k))) === 0 ? '+' : '-') + Math.abs(d).toFixed(dec(k));

describe('bitprep tables', () => {
  let results: string;
  let user: Record<string, number>;
  beforeAll(async () => {
    const dir = await tempDir('tables');
    const images = join(dir, 'images');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 90, g: 120, b: 200 } } }).png().toBuffer();
    for (const [folder, line] of Object.entries(PROMPTS)) {
      await mkdir(join(images, folder, 'samples'), { recursive: true });
      await writeFile(join(images, folder, 'metadata.jsonl'), `${line}\n`);
    }
    for (const image of Object.keys(DETECTIONS)) await writeFile(join(images, image), png);
    const detections = join(dir, 'detections.jsonl');
    await writeFile(detections, Object.entries(DETECTIONS).map(([image, d]) => JSON.stringify({ image, detections: d })).join('\n') + '\n');
    results = join(dir, 'mine');
    // The summary comes from the real `eval geneval`, so the tables read exactly what it writes.
    const g = await runCli(['eval', 'geneval', images, '--detections', detections, '--out', join(results, 'geneval'), '--bootstrap', '200']);
    expect(g.code, g.stderr).toBe(0);
    await writeFile(join(results, 'clip-score.json'), JSON.stringify({ clip_score: 0.3051, ci95: { low: 0.301, high: 0.309 } }));
    await writeFile(join(results, 'imagereward.json'), JSON.stringify({ image_reward: 0.95 }));
    const summary = JSON.parse(await readFile(join(results, 'geneval', 'summary.json'), 'utf8'));
    user = { overall: summary.overall, clip: 0.3051, image_reward: 0.95 };
    for (const [tag, t] of Object.entries(summary.tasks as Record<string, { accuracy: number }>)) user[tag] = t.accuracy;
    expect(user).toMatchObject({ single_object: 0.5, two_object: 1, counting: 0.5, colors: 1, color_attr: 0, position: 0.5 });
  });

  it('prints Table 1 as Markdown: published rows, the row from the results directory, and deltas against Instella Diff', async () => {
    const r = await runCli(['tables', results, '--size', '1.2B', '--resolution', '512']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    const sdv15 = lines.indexOf('| SDv1.5 | 0.9B | 512 | 0.97 | 0.38 | 0.35 | 0.76 | 0.06 | 0.04 | 0.43 | 0.318 | 0.201 |');
    const diff = lines.indexOf('| Instella Diff | 1.2B | 1024 | 0.99 | 0.78 | 0.66 | 0.85 | 0.45 | 0.12 | 0.64 | 0.332 | 0.900 |');
    expect(lines).toContain('| Chameleon | 7.0B | 512 | \u2014 | \u2014 | \u2014 | \u2014 | \u2014 | \u2014 | 0.39 | \u2014 | \u2014 |');
    expect(lines).toContain('| Emu3 | 8.0B | 1024 | 0.98 | 0.71 | 0.34 | 0.81 | 0.17 | 0.21 | 0.54 | 0.333 | 0.872 |');
    const mine = lines.indexOf(`| mine | 1.2B | 512 | 0.50 | 1.00 | 0.50 | 1.00 | 0.00 | 0.50 | ${user.overall.toFixed(2)} | 0.305 | 0.950 |`);
    const deltaCells = METRICS.map((k) => signed(user[k] - INSTELLA_DIFF[k], k));
    const delta = lines.indexOf(`| \u0394 mine vs Instella Diff |  |  | ${deltaCells.join(' | ')} |`);
    expect([sdv15, diff, mine, delta].every((i) => i >= 0), r.stdout).toBe(true);
    expect(sdv15 < diff && diff < mine && mine < delta).toBe(true);
    // Spot values worked by hand: overall 3.5/6 = 0.5833 − 0.64, CLIP 0.3051 − 0.332, IR 0.95 − 0.900.
    expect(deltaCells.slice(6)).toEqual(['-0.06', '-0.027', '+0.050']);
    expect(r.stdout).toMatch(/mine: GenEval overall 95% CI \[0\.\d{3}, 0\.\d{3}\]/);
    expect(r.stdout).toContain('mine: CLIP score 95% CI [0.3010, 0.3090]');
  });

  it('prints CSV with deltas against a chosen published row', async () => {
    const r = await runCli(['tables', results, '--format', 'csv', '--compare', 'SDXL', '--name', 'Ours']);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.trim().split('\n').map((l) => l.split(','));
    expect(rows[0]).toEqual(['model', 'size', 'resolution', ...METRICS]);
    expect(rows).toContainEqual(['SDXL', '2.6B', '1024', '0.98', '0.74', '0.39', '0.85', '0.23', '0.15', '0.55', '0.335', '0.600']);
    expect(rows).toContainEqual(['SD3-Medium', '8.0B', '1024', '0.97', '0.89', '0.69', '0.82', '0.47', '0.34', '0.69', '0.334', '0.871']);
    expect(rows.length).toBe(1 + 10 + 2);
    expect(rows[11]).toEqual(['Ours', '', '', ...METRICS.map((k) => user[k].toFixed(dec(k)))]);
    expect(rows[12]).toEqual(['\u0394 Ours vs SDXL', '', '', ...METRICS.map((k) => signed(user[k] - SDXL[k], k))]);
  });

  it('prints LaTeX with booktabs rules', async () => {
    const r = await runCli(['tables', results, '--format', 'latex']);
    expect(r.code, r.stderr).toBe(0);
    const tex = r.stdout;
    for (const rule of ['\\toprule', '\\midrule', '\\bottomrule', '\\begin{tabular}{llrrrrrrrrrr}']) expect(tex).toContain(rule);
    expect(tex).toContain('PixArt-alpha & 0.6B & 1024 & 0.98 & 0.50 & 0.44 & 0.80 & 0.07 & 0.08 & 0.48 & 0.321 & 0.871 \\\\');
    expect(tex).toContain('Chameleon & 7.0B & 512 & -- & -- & -- & -- & -- & -- & 0.39 & -- & -- \\\\');
    expect(tex).toContain(`mine & -- & -- & 0.50 & 1.00 & 0.50 & 1.00 & 0.00 & 0.50 & ${user.overall.toFixed(2)} & 0.305 & 0.950 \\\\`);
    expect(tex).toContain(`$\\Delta$ mine vs Instella Diff &  &  & ${METRICS.map((k) => signed(user[k] - INSTELLA_DIFF[k], k)).join(' & ')} \\\\`);
  });

  it('names the file and the field of an invalid results file, and rejects an unknown compare row', async () => {
    const bad = join(await tempDir('tables-bad'), 'run');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'clip-score.json'), JSON.stringify({ clip_score: 'high' }));
    const r = await runCli(['tables', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(bad, 'clip-score.json')}: clip_score:`);
    const c = await runCli(['tables', results, '--compare', 'Instella-T2I']);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain('Table 1 has no row "Instella-T2I"');
  });
});
