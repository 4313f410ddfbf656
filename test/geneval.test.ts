import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { FromDetections } from '../evaluation/geneval/color.js';
import type { Detection } from '../evaluation/geneval/detections.js';
import { readGenevalLayout } from '../evaluation/geneval-format/layout.js';
import { parseMetadata } from '../evaluation/geneval-format/metadata.js';
import { numpyArgsort } from '../evaluation/geneval/numpy-argsort.js';
import { relativePosition } from '../evaluation/geneval/position.js';
import { OFFICIAL_PROTOCOL } from '../evaluation/geneval/protocol.js';
import { pythonFloatRepr, pythonJsonDumps } from '../evaluation/geneval/python-json.js';
import { decodeRleString, rleToMask } from '../evaluation/geneval/rle.js';
import { evaluateImage } from '../evaluation/geneval/rules.js';
import { computeIou, selectDetections } from '../evaluation/geneval/selection.js';
import { summarizeResults, type ImageResult } from '../evaluation/geneval/summary.js';
import { runCli } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

type Box = [number, number, number, number, number] | { box: [number, number, number, number]; score: number; color?: string; mask?: unknown };
type DetLine = { image: string; detections: Record<string, Box[]> };

// Metadata lines exactly as GenEval's evaluation_metadata.jsonl writes them (Python json.dumps).
const PROMPTS: Record<string, string> = {
  '00000': '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
  '00001': '{"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"}',
  '00002': '{"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}], "prompt": "a photo of a dog and a cat"}',
  '00003': '{"tag": "counting", "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}], "prompt": "a photo of three apples"}',
  '00004': '{"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"}',
  '00005': '{"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}',
  '00006': '{"tag": "color_attr", "include": [{"class": "bus", "count": 1, "color": "green"}, {"class": "microwave", "count": 1, "color": "purple"}], "prompt": "a photo of a green bus and a purple microwave"}',
  '00007': '{"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}',
  '00008': '{"tag": "position", "include": [{"class": "kite", "count": 1}, {"class": "wine glass", "count": 1, "position": ["above", 0]}], "prompt": "a photo of a wine glass above a kite"}',
};

const clocks = Array.from({ length: 20 }, (_, i): Box => [i * 10, 0, i * 10 + 8, 8, 0.99 - i * 0.004]);

// Per image: its detections and the verdict the official rules give, with why.
const CASES: { image: string; detections: Record<string, Box[]>; correct: boolean; reason: string }[] = [
  // single_object: one bench above 0.3 → correct.
  { image: '00000/samples/0000.png', detections: { bench: [[10, 10, 100, 100, 0.95]] }, correct: true, reason: '' },
  // A score of exactly 0.3 is not kept (score > 0.3).
  { image: '00000/samples/0001.png', detections: { bench: [[10, 10, 100, 100, 0.3]] }, correct: false, reason: 'expected bench>=1, found 0' },
  // float32(0.3) = 0.30000001192092896 as a float32 detector writes it: numpy compares in float32, where it equals 0.3 → not kept.
  { image: '00000/samples/0002.png', detections: { bench: [[10, 10, 100, 100, 0.30000001192092896]] }, correct: false, reason: 'expected bench>=1, found 0' },
  // Just above 0.3, and other classes do not matter for single_object.
  { image: '00000/samples/0003.png', detections: { bench: [[10, 10, 100, 100, 0.31]], cow: [[0, 0, 5, 5, 0.99]] }, correct: true, reason: '' },
  // No detections at all.
  { image: '00001/samples/0000.png', detections: {}, correct: false, reason: 'expected cow>=1, found 0' },
  // Below the 0.3 threshold (prompt 00001 has no correct image: "% correct prompts" counts it as wrong).
  { image: '00001/samples/0001.png', detections: { cow: [[0, 0, 50, 50, 0.25]] }, correct: false, reason: 'expected cow>=1, found 0' },
  // two_object: both present.
  { image: '00002/samples/0000.png', detections: { dog: [[0, 0, 50, 50, 0.9]], cat: [[60, 0, 110, 50, 0.8]] }, correct: true, reason: '' },
  // The cat is missing.
  { image: '00002/samples/0001.png', detections: { dog: [[0, 0, 50, 50, 0.9]] }, correct: false, reason: 'expected cat>=1, found 0' },
  // Both missing: one reason per clause, newline-joined.
  { image: '00002/samples/0002.png', detections: {}, correct: false, reason: 'expected dog>=1, found 0\nexpected cat>=1, found 0' },
  // counting: 0.85 ≤ 0.9, the counting threshold → only two apples kept.
  { image: '00003/samples/0000.png', detections: { apple: [[0, 0, 9, 9, 0.95], [20, 0, 29, 9, 0.92], [40, 0, 49, 9, 0.85]] }, correct: false, reason: 'expected apple>=3, found 2' },
  // Three above 0.9 and fewer than four (exclude) → correct.
  { image: '00003/samples/0001.png', detections: { apple: [[0, 0, 9, 9, 0.95], [20, 0, 29, 9, 0.93], [40, 0, 49, 9, 0.91]] }, correct: true, reason: '' },
  // Four apples above 0.9: the include holds but the exclude clause (apple<4) is triggered.
  { image: '00003/samples/0002.png', detections: { apple: [[0, 0, 9, 9, 0.99], [20, 0, 29, 9, 0.98], [40, 0, 49, 9, 0.97], [60, 0, 69, 9, 0.96]] }, correct: false, reason: 'expected apple<4, found 4' },
  // A fourth apple at exactly 0.9 is not kept (> 0.9), so the exclude does not fire.
  { image: '00003/samples/0003.png', detections: { apple: [[0, 0, 9, 9, 0.95], [20, 0, 29, 9, 0.94], [40, 0, 49, 9, 0.93], [60, 0, 69, 9, 0.9]] }, correct: true, reason: '' },
  // 20 clocks above 0.9: at most 16 are kept per class, so the exclude reports 16, not 20.
  { image: '00004/samples/0000.png', detections: { clock: clocks }, correct: false, reason: 'expected clock<3, found 16' },
  { image: '00004/samples/0001.png', detections: { clock: [[0, 0, 9, 9, 0.97], [20, 0, 29, 9, 0.95]] }, correct: true, reason: '' },
  // colors: a red car.
  { image: '00005/samples/0000.png', detections: { car: [{ box: [0, 0, 50, 50], score: 0.9, color: 'red' }] }, correct: true, reason: '' },
  // A blue car: wrong color, with the official tally of the colors found.
  { image: '00005/samples/0001.png', detections: { car: [{ box: [0, 0, 50, 50], score: 0.9, color: 'blue' }] }, correct: false, reason: 'expected red car>=1, found 0 red; and 1 blue' },
  // Only the top `count` (1) car is color-checked: the red one has the lower score.
  { image: '00005/samples/0002.png', detections: { car: [{ box: [60, 0, 110, 50], score: 0.8, color: 'red' }, { box: [0, 0, 50, 50], score: 0.9, color: 'blue' }] }, correct: false, reason: 'expected red car>=1, found 0 red; and 1 blue' },
  // A dropped (score 0.2) car needs no color label.
  { image: '00005/samples/0003.png', detections: { car: [{ box: [0, 0, 50, 50], score: 0.35, color: 'red' }, [60, 0, 110, 50, 0.2]] }, correct: true, reason: '' },
  // color_attr: both colors right.
  { image: '00006/samples/0000.png', detections: { bus: [{ box: [0, 0, 50, 50], score: 0.9, color: 'green' }], microwave: [{ box: [60, 0, 110, 50], score: 0.9, color: 'purple' }] }, correct: true, reason: '' },
  // The microwave is white.
  { image: '00006/samples/0001.png', detections: { bus: [{ box: [0, 0, 50, 50], score: 0.9, color: 'green' }], microwave: [{ box: [60, 0, 110, 50], score: 0.9, color: 'white' }] }, correct: false, reason: 'expected purple microwave>=1, found 0 purple; and 1 white' },
  // A yellow bus and no microwave: both clauses fail.
  { image: '00006/samples/0002.png', detections: { bus: [{ box: [0, 0, 50, 50], score: 0.9, color: 'yellow' }] }, correct: false, reason: 'expected green bus>=1, found 0 green; and 1 yellow\nexpected microwave>=1, found 0' },
  // position: dog centre 200 px right of the bear's, margin 0.1·(100 + 100) = 20 → dx = 180/200 = 0.9 > 0.5 → right of.
  { image: '00007/samples/0000.png', detections: { 'teddy bear': [[0, 0, 100, 100, 0.9]], dog: [[200, 0, 300, 100, 0.9]] }, correct: true, reason: '' },
  // The target (teddy bear) is missing: its clause fails, and the dog's position has no target.
  { image: '00007/samples/0001.png', detections: { dog: [[200, 0, 300, 100, 0.9]] }, correct: false, reason: 'expected teddy bear>=1, found 0\nno target for dog to be right of' },
  // Offset 15 px is within the 20 px margin and dy = 0 → no relation at all ("found  target", two spaces, as officially).
  { image: '00007/samples/0002.png', detections: { 'teddy bear': [[0, 0, 100, 100, 0.9]], dog: [[15, 0, 115, 100, 0.9]] }, correct: false, reason: 'expected dog right of target, found  target' },
  // The dog is left of the bear.
  { image: '00007/samples/0003.png', detections: { 'teddy bear': [[200, 0, 300, 100, 0.9]], dog: [[0, 0, 100, 100, 0.9]] }, correct: false, reason: 'expected dog right of target, found left of target' },
  // Diagonal: revised (280, 280) / ‖(300, 300)‖ = 0.66 on both axes → right of and below; right of is what is asked.
  { image: '00007/samples/0004.png', detections: { 'teddy bear': [[0, 0, 100, 100, 0.9]], dog: [[300, 300, 400, 400, 0.9]] }, correct: true, reason: '' },
  // y grows downward: the glass (y 0–100) is above the kite (y 300–400).
  { image: '00008/samples/0000.png', detections: { kite: [[0, 300, 100, 400, 0.9]], 'wine glass': [[0, 0, 100, 100, 0.9]] }, correct: true, reason: '' },
  { image: '00008/samples/0001.png', detections: { kite: [[0, 0, 100, 100, 0.9]], 'wine glass': [[0, 300, 100, 400, 0.9]] }, correct: false, reason: 'expected wine glass above target, found below target' },
];

async function writeLayout(dir: string, prompts: Record<string, string>, images: string[]): Promise<void> {
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 90, g: 120, b: 200 } } }).png().toBuffer();
  for (const [folder, line] of Object.entries(prompts)) {
    await mkdir(join(dir, folder, 'samples'), { recursive: true });
    await writeFile(join(dir, folder, 'metadata.jsonl'), `${line}\n`);
  }
  for (const image of images) await writeFile(join(dir, image), png);
}

const jsonl = (lines: unknown[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
const readJsonl = async (path: string) => (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));

describe('bitprep eval geneval', () => {
  let dir: string;
  let images: string;
  let detections: string;
  beforeAll(async () => {
    dir = await tempDir('geneval');
    images = join(dir, 'images');
    await writeLayout(images, PROMPTS, CASES.map((c) => c.image));
    // Not GenEval's layout: a non-digit folder and non-matching files are ignored, as officially.
    await mkdir(join(images, 'notes', 'samples'), { recursive: true });
    await writeFile(join(images, '00000', 'samples', 'grid.png'), 'x');
    await writeFile(join(images, '00000', 'samples', '0009.jpg'), 'x');
    detections = join(dir, 'detections.jsonl');
    await writeFile(detections, jsonl(CASES.map((c): DetLine => ({ image: c.image, detections: c.detections }))));
  });

  it('gives every image the correctness and reason of the official rules, and the summary as GenEval computes it', async () => {
    const out = join(dir, 'out');
    const r = await runCli(['eval', 'geneval', images, '--detections', detections, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const results = await readJsonl(join(out, 'results.jsonl'));
    expect(results.map((x) => x.filename)).toEqual(CASES.map((c) => `${images}/${c.image}`));
    for (const [i, c] of CASES.entries()) {
      expect({ image: c.image, correct: results[i].correct, reason: results[i].reason }).toEqual({ image: c.image, correct: c.correct, reason: c.reason });
      const folder = c.image.slice(0, 5);
      // The official fields: metadata is json.dumps of the prompt's line (byte-identical), tag and prompt from it.
      expect(results[i].metadata).toBe(PROMPTS[folder]);
      expect(results[i].tag).toBe(JSON.parse(PROMPTS[folder]).tag);
      expect(results[i].prompt).toBe(JSON.parse(PROMPTS[folder]).prompt);
      expect(Object.keys(results[i])).toEqual(['filename', 'tag', 'prompt', 'correct', 'reason', 'metadata', 'details']);
    }
    // details: the kept boxes per class as json.dumps writes the float32 values of the detector (0.31 as float32).
    const byImage = new Map(results.map((x) => [x.filename.slice(images.length + 1), x]));
    expect(byImage.get('00000/samples/0003.png').details).toBe('{"bench": [[10.0, 10.0, 100.0, 100.0, 0.3100000023841858]], "cow": [[0.0, 0.0, 5.0, 5.0, 0.9900000095367432]]}');
    expect(byImage.get('00000/samples/0001.png').details).toBe('{}');
    const keptClocks = JSON.parse(byImage.get('00004/samples/0000.png').details).clock as number[][];
    expect(keptClocks).toEqual(clocks.slice(0, 16).map((b) => (b as number[]).map(Math.fround)));

    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    const tags = ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr'];
    const acc = (tag: string) => {
      const mine = CASES.filter((c) => JSON.parse(PROMPTS[c.image.slice(0, 5)]).tag === tag);
      return mine.filter((c) => c.correct).length / mine.length;
    };
    expect(Object.keys(summary.tasks)).toEqual(tags);
    // By hand: single_object 2/6, two_object 1/3, counting 3/6, colors 2/4, position 3/7, color_attr 1/3.
    expect(tags.map(acc)).toEqual([2 / 6, 1 / 3, 3 / 6, 2 / 4, 3 / 7, 1 / 3]);
    for (const t of tags) expect(summary.tasks[t].accuracy, t).toBeCloseTo(acc(t), 12);
    const mean = tags.map(acc).reduce((a, b) => a + b, 0) / 6;
    expect(summary.overall).toBeCloseTo(mean, 12);
    // The overall is the mean of task accuracies, not the image accuracy (12/29).
    expect(summary.correct_images).toBeCloseTo(12 / 29, 12);
    expect(summary.overall).not.toBeCloseTo(12 / 29, 3);
    // Every prompt but 00001 (a cow never found) has a correct image.
    expect(summary.total_prompts).toBe(9);
    expect(summary.correct_prompts).toBeCloseTo(8 / 9, 12);
    expect(summary.total_images).toBe(29);
    expect(summary.missing_tasks).toEqual([]);
    expect(summary.protocol).toEqual(OFFICIAL_PROTOCOL);
    expect(summary.overall_ci95).toMatchObject({ resamples: 1000, seed: 0, unit: 'prompt' });
    expect(summary.overall_ci95.low).toBeLessThanOrEqual(summary.overall);
    expect(summary.overall_ci95.high).toBeGreaterThanOrEqual(summary.overall);
    expect(summary.overall_ci95.high).toBeGreaterThan(summary.overall_ci95.low);
    // The printed summary follows summary_scores.py.
    expect(r.stdout).toContain('% correct prompts: 88.89%');
    expect(r.stdout).toContain(`Overall score (avg. over tasks): ${mean.toFixed(5)}`);
    expect(r.stdout).toMatch(/^position {9}= 42\.86% \(3 \/ 7\)  95% CI \[\d+\.\d\d%, \d+\.\d\d%\]$/m);

    // --json prints the same summary; the bootstrap is seeded, so a rerun gives the same interval.
    const again = await runCli(['eval', 'geneval', images, '--detections', detections, '--out', join(dir, 'out2'), '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).overall_ci95).toEqual(summary.overall_ci95);
  });

  it('refuses images without a detections line, naming them, unless --skip-missing', async () => {
    const partial = join(dir, 'partial.jsonl');
    await writeFile(partial, jsonl(CASES.slice(1).map((c) => ({ image: c.image, detections: c.detections }))));
    const r = await runCli(['eval', 'geneval', images, '--detections', partial, '--out', join(dir, 'out-partial')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('1 of 29 image(s) have no line');
    expect(r.stderr).toContain('00000/samples/0000.png');
    const s = await runCli(['eval', 'geneval', images, '--detections', partial, '--out', join(dir, 'out-partial'), '--skip-missing', '--json']);
    expect(s.code, s.stderr).toBe(0);
    const summary = JSON.parse(s.stdout);
    expect(summary.total_images).toBe(28);
    expect(summary.skipped_images).toEqual(['00000/samples/0000.png']);
  });

  it('names the image and class when a color is asked and the box has no color label', async () => {
    const noColor = join(dir, 'no-color.jsonl');
    const lines = CASES.map((c) => ({ image: c.image, detections: c.image === '00005/samples/0000.png' ? { car: [[0, 0, 50, 50, 0.9]] } : c.detections }));
    await writeFile(noColor, jsonl(lines));
    const r = await runCli(['eval', 'geneval', images, '--detections', noColor, '--out', join(dir, 'out-nocolor')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/00005\/samples\/0000\.png: the prompt asks for the color of "car" but its detection #1 .* has no color label/);
  });

  it('names the file and line of a bad detections line', async () => {
    const bad = join(dir, 'bad.jsonl');
    const lines = [JSON.stringify({ image: CASES[0].image, detections: CASES[0].detections }), JSON.stringify({ image: CASES[1].image, detections: { bench: [[1, 2, 3, 0.9]] } })];
    await writeFile(bad, lines.join('\n') + '\n');
    const r = await runCli(['eval', 'geneval', images, '--detections', bad, '--out', join(dir, 'out-bad')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}:2: not a detections line: detections.bench.0: a detection is [x1, y1, x2, y2, score]`);

    await writeFile(bad, [lines[0], lines[0]].join('\n') + '\n');
    const dup = await runCli(['eval', 'geneval', images, '--detections', bad, '--out', join(dir, 'out-bad')]);
    expect(dup.stderr).toContain(`${bad}:2: a second line for 00000/samples/0000.png (the first is line 1)`);

    const rle = { image: CASES[0].image, detections: { bench: [{ box: [0, 0, 4, 4], score: 0.9, mask: { size: [2, 5], counts: [3, 5] } }] } };
    await writeFile(bad, JSON.stringify(rle) + '\n');
    const badMask = await runCli(['eval', 'geneval', images, '--detections', bad, '--out', join(dir, 'out-bad')]);
    expect(badMask.stderr).toContain(`${bad}:1: not a detections line: detections.bench.0.mask.counts: bad RLE: runs cover 8 pixels, size 2×5 has 10`);
  });

  it('checks class names against object_names.txt when given', async () => {
    const names = join(dir, 'object_names.txt');
    await writeFile(names, ['bench', 'cow', 'dog', 'cat', 'apple', 'clock', 'car', 'bus', 'microwave', 'teddy bear', 'kite'].join('\n') + '\n');
    const r = await runCli(['eval', 'geneval', images, '--detections', detections, '--out', join(dir, 'out-names'), '--object-names', names]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('class "wine glass" is not in the object names');
  });
});

describe('GenEval folder layout and metadata', () => {
  it('counts only all-digit folders and files whose names start like \\d+\\.png (re.match), in numeric order', async () => {
    const dir = await tempDir('geneval-layout');
    const line = '{"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"}';
    await writeLayout(dir, { '00010': line, '00002': line, '0a001': line }, ['00010/samples/0000.png', '00002/samples/0010.png', '00002/samples/0002.png', '00002/samples/0003.png.bak', '00002/samples/x0004.png', '00002/samples/0005.PNG']);
    const prompts = await readGenevalLayout(dir);
    expect(prompts.map((p) => p.folder)).toEqual(['00002', '00010']);
    // `re.match(r"\d+\.png", name)` anchors at the start only, so 0003.png.bak counts officially too.
    expect(prompts[0].images.map((i) => i.rel)).toEqual(['00002/samples/0002.png', '00002/samples/0003.png.bak', '00002/samples/0010.png']);
    expect(prompts[1].images[0].filename).toBe(`${dir}/00010/samples/0000.png`);
  });

  it('rejects metadata a clause of which would be silently ignored or could not be evaluated', () => {
    expect(() => parseMetadata('{"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["left of", 0]}], "prompt": "p"}', 'm.jsonl')).toThrow(
      /m\.jsonl: .*include\.0\.position\.1: position target 0 must be an earlier include clause/,
    );
    expect(() => parseMetadata('{"tag": "colors", "include": [{"class": "car", "count": 1, "colour": "red"}], "prompt": "p"}', 'm.jsonl')).toThrow(/m\.jsonl: .*colour/);
    expect(() => parseMetadata('{"tag": "colors", "include": [{"class": "car", "count": 1, "color": "teal"}], "prompt": "p"}', 'm.jsonl')).toThrow(/include\.0\.color/);
  });
});

describe('relative position (GenEval relative_position)', () => {
  const sq = (x: number, y: number, s = 10) => [x, y, x + s, y + s];
  it('gives left/right/above/below with y growing downward, and two relations on a diagonal', () => {
    expect(relativePosition(sq(0, 0), sq(100, 0))).toEqual(['left of']);
    expect(relativePosition(sq(100, 0), sq(0, 0))).toEqual(['right of']);
    expect(relativePosition(sq(0, 0), sq(0, 100))).toEqual(['above']);
    expect(relativePosition(sq(0, 100), sq(0, 0))).toEqual(['below']);
    expect(relativePosition(sq(0, 0), sq(100, 100))).toEqual(['left of', 'above']);
  });

  it('has no relation for identical boxes or an offset within the 0.1·(dA + dB) margin', () => {
    expect(relativePosition(sq(0, 0), sq(0, 0))).toEqual([]);
    // Offset 2 = margin 0.1·(10 + 10): revised offset 0.
    expect(relativePosition(sq(0, 0), sq(2, 0))).toEqual([]);
    // With no margin the same boxes are related.
    expect(relativePosition(sq(0, 0), sq(2, 0), 0)).toEqual(['left of']);
  });

  it('uses strict ±0.5 thresholds on revised / ‖offset‖', () => {
    // Offset −4, margin 2: dx = −2/4 = −0.5 exactly → not left of.
    expect(relativePosition(sq(0, 0), sq(4, 0))).toEqual([]);
    // Offset −4.5: dx = −2.5/4.5 < −0.5 → left of.
    expect(relativePosition(sq(0, 0), sq(4.5, 0))).toEqual(['left of']);
    // Diagonal offset (−8, −8), margins 2: dx = dy = −6/√128 = −0.53 → both.
    expect(relativePosition(sq(0, 0), sq(8, 8))).toEqual(['left of', 'above']);
    // Mostly vertical: dx = −18/√(20² + 100²) = −0.18 → only above.
    expect(relativePosition(sq(0, 0), sq(20, 100))).toEqual(['above']);
  });

  it('treats both revised components under 1e-3 as no relation (zero-size boxes make the margin 0)', () => {
    expect(relativePosition([0, 0, 0, 0], [0.0005, 0, 0.0005, 0])).toEqual([]);
    expect(relativePosition([0, 0, 0, 0], [0.002, 0, 0.002, 0])).toEqual(['left of']);
  });

  it('rounds as numpy does on float32 boxes where float64 arithmetic would decide otherwise', () => {
    // Case found by comparing with GenEval's relative_position run in numpy 1.23.5 on float32 boxes: it
    // returns {"right of"}; the same formula in float64 gives no relation (dx just under 0.5).
    const a = [267.45361328125, 32.97676467895508, 386.32318115234375, 70.13434600830078];
    const b = [273.75616455078125, -41.863677978515625, 315.6966247558594, 144.97479248046875];
    expect(relativePosition(a, b)).toEqual(['right of']);
  });
});

describe('detection selection', () => {
  const det = (score: number, box: [number, number, number, number] = [0, 0, 10, 10]): Detection => ({ box, score });
  it('keeps score > threshold (float32), highest first, at most max_objects', () => {
    const list = [det(0.5, [1, 0, 2, 2]), det(0.9), det(0.5, [3, 0, 4, 4]), det(0.3), det(0.31)];
    const kept = selectDetections(new Map([['cow', list]]), 'single_object', OFFICIAL_PROTOCOL).get('cow')!;
    expect(kept.map((d) => d.score)).toEqual([0.9, 0.5, 0.5, 0.31]);
    // np.argsort is stable on short arrays, so reversed, the later of two equal scores leads.
    expect(kept[1].box[0]).toBe(3);
    const many = Array.from({ length: 30 }, (_, i) => det(0.95 - i * 0.001));
    expect(selectDetections(new Map([['cow', many]]), 'counting', OFFICIAL_PROTOCOL).get('cow')).toHaveLength(16);
    // Counting uses 0.9; a class with nothing left is absent.
    expect([...selectDetections(new Map([['cow', [det(0.9), det(0.85)]]]), 'counting', OFFICIAL_PROTOCOL).keys()]).toEqual([]);
  });

  it('orders equal scores exactly as np.argsort(scores)[::-1] does (numpy 1.23 introsort)', () => {
    // numpy 1.23.5: np.argsort(np.ones(20, np.float32)) == [0, 17, 16, …, 2, 1, 18, 19].
    expect(numpyArgsort(Array(20).fill(1))).toEqual([0, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 18, 19]);
    const tied = Array.from({ length: 20 }, (_, i) => det(0.95, [i, 0, i + 1, 1]));
    const kept = selectDetections(new Map([['clock', tied]]), 'counting', OFFICIAL_PROTOCOL).get('clock')!;
    expect(kept.map((d) => d.box[0])).toEqual([19, 18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  });

  it('runs same-class NMS only when max_overlap < 1, with the +1-pixel IoU', () => {
    // Touching unit boxes: IoU 0 in continuous coordinates, (1·2)/(4 + 4 − 2) = 1/3 with +1 pixel.
    expect(computeIou([0, 0, 1, 1], [1, 0, 2, 1])).toBeCloseTo(1 / 3, 12);
    const list = [det(0.9, [0, 0, 1, 1]), det(0.8, [1, 0, 2, 1]), det(0.7, [10, 10, 11, 11])];
    expect(selectDetections(new Map([['cow', list]]), 'two_object', OFFICIAL_PROTOCOL).get('cow')).toHaveLength(3);
    const nms = selectDetections(new Map([['cow', list]]), 'two_object', { ...OFFICIAL_PROTOCOL, max_overlap: 0.3 }).get('cow')!;
    expect(nms.map((d) => d.score)).toEqual([0.9, 0.7]);
  });
});

describe('correctness rules', () => {
  const meta = (line: string) => parseMetadata(line, 'test').value;
  it('needs every found object to bear the relation to every object of the target group', async () => {
    const m = meta('{"tag": "position", "include": [{"class": "cat", "count": 2}, {"class": "dog", "count": 2, "position": ["right of", 0]}], "prompt": "p"}');
    const cats: Detection[] = [{ box: [0, 0, 10, 10], score: 0.9 }, { box: [0, 50, 10, 60], score: 0.8 }];
    const farDogs: Detection[] = [{ box: [100, 0, 110, 10], score: 0.9 }, { box: [100, 50, 110, 60], score: 0.8 }];
    expect(await evaluateImage('i.png', new Map([['cat', cats], ['dog', farDogs]]), m, new FromDetections())).toEqual({ correct: true, reason: '' });
    // The second dog is right of the second cat (level with it), but against the first cat its offset is (30, 50):
    // dx = (30 − 2)/√(30² + 50²) = 0.48 → only below, so the clause fails on that pair.
    const nearDogs: Detection[] = [{ box: [100, 0, 110, 10], score: 0.9 }, { box: [30, 50, 40, 60], score: 0.8 }];
    expect(await evaluateImage('i.png', new Map([['cat', cats], ['dog', nearDogs]]), m, new FromDetections())).toEqual({ correct: false, reason: 'expected dog right of target, found below target' });
  });

  it('lists every color found, in GenEval color order, when too few have the asked color', async () => {
    const m = meta('{"tag": "colors", "include": [{"class": "car", "count": 3, "color": "red"}], "prompt": "p"}');
    const cars: Detection[] = [
      { box: [0, 0, 1, 1], score: 0.9, color: 'white' },
      { box: [0, 0, 1, 1], score: 0.8, color: 'red' },
      { box: [0, 0, 1, 1], score: 0.7, color: 'blue' },
    ];
    expect(await evaluateImage('i.png', new Map([['car', cars]]), m, new FromDetections())).toEqual({ correct: false, reason: 'expected red car>=3, found 1 red; and 1 red, 1 blue, 1 white' });
  });
});

describe('summary', () => {
  const res = (tag: string, prompt: string, correct: boolean): ImageResult => ({ filename: 'f', tag, prompt, correct, reason: '', metadata: `{"tag": "${tag}", "prompt": "${prompt}"}`, details: '{}' });
  it('averages tasks without weighting, counts a prompt correct when any image is, and seeds the bootstrap', () => {
    const results = [res('counting', 'a', true), res('counting', 'a', false), res('counting', 'b', false), res('counting', 'b', false), res('colors', 'c', true)];
    const s = summarizeResults(results, { resamples: 200, seed: 7 });
    expect(s.tasks.counting).toEqual({ accuracy: 0.25, correct: 1, images: 4, prompts: 2, ci95: { low: 0, high: 0.5 } });
    // colors has one prompt, always correct: no spread.
    expect(s.tasks.colors.ci95).toEqual({ low: 1, high: 1 });
    expect(s.overall).toBe((0.25 + 1) / 2);
    expect(s.correct_images).toBe(2 / 5);
    expect(s.correct_prompts).toBe(2 / 3);
    expect(s.missing_tasks).toEqual(['single_object', 'two_object', 'position', 'color_attr']);
    // Resampling prompts within tags: counting draws from {a: 1/2, b: 0/2}, colors is always 1.
    expect(s.overall_ci95!.low).toBe(0.5);
    expect(s.overall_ci95!.high).toBe(0.75);
    expect(summarizeResults(results, { resamples: 200, seed: 7 }).overall_ci95).toEqual(s.overall_ci95);
    expect(summarizeResults(results, { resamples: 0, seed: 7 }).overall_ci95).toBeUndefined();
  });
});

describe('formats', () => {
  it('writes JSON as Python json.dumps does', () => {
    expect(pythonJsonDumps({ tag: 'colors', include: [{ class: 'car', count: 1 }], prompt: 'é' })).toBe('{"tag": "colors", "include": [{"class": "car", "count": 1}], "prompt": "\\u00e9"}');
    expect(pythonJsonDumps({ cow: [[1, 2.5, 3, 4, 0.30000001192092896]] }, true)).toBe('{"cow": [[1.0, 2.5, 3.0, 4.0, 0.30000001192092896]]}');
    expect([1e16, 1e-5, 0.0001, 123.0].map(pythonFloatRepr)).toEqual(['1e+16', '1e-05', '0.0001', '123.0']);
  });

  it('decodes pycocotools RLE strings and column-major masks', () => {
    // pycocotools' encode of [[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]]: column-major runs [3, 5, 1, 1]; from the
    // fourth run on a run is stored as the difference to the run two back (1 − 5 = −4 → 28 + 48 = 'L').
    expect(decodeRleString('351L')).toEqual([3, 5, 1, 1]);
    expect([...rleToMask({ size: [2, 5], counts: '351L' })]).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 1, 1]);
    expect([...rleToMask({ size: [2, 5], counts: [3, 5, 1, 1] })]).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 1, 1]);
    // pycocotools' encode of a 40×30 mask: rows 5–34 × columns 3–26 set, plus pixel (1, 1) (multi-character runs).
    const mask = rleToMask({ size: [40, 30], counts: 'Y11c2m0gM000000000000000000000000000000000000000000000c3' });
    const want = Array.from({ length: 40 * 30 }, (_, i) => {
      const [y, x] = [Math.floor(i / 30), i % 30];
      return (y >= 5 && y < 35 && x >= 3 && x < 27) || (y === 1 && x === 1) ? 1 : 0;
    });
    expect([...mask]).toEqual(want);
  });
});
