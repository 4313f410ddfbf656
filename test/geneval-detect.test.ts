import { createServer, type Server } from 'node:http';
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectFolder } from '../evaluation/geneval/detect.js';
import { detectCommand } from '../evaluation/geneval/detect-command.js';
import { readDetections } from '../evaluation/geneval/detections.js';
import { EndpointDetector } from '../evaluation/geneval/detector-endpoint.js';
import { GENEVAL_OBJECT_NAMES, TensorDetector, type ClassDetections } from '../evaluation/geneval/detector.js';
import { OFFICIAL_PROTOCOL } from '../evaluation/geneval/protocol.js';
import { decodeRleString, encodeRle, rleCountsToString, rleToMask } from '../evaluation/geneval/rle.js';
import { scoreGeneval } from '../evaluation/geneval/run.js';
import { buildDetectorStandinModel, DETECTOR_STANDIN_NAME, loadDetectorStandin } from '../evaluation/standins/detector-standin.js';
import { OnnxGraphBuilder } from '../src/models/onnx-builder.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { silentLogger } from '../src/log.js';
import { seededRandom } from '../src/seeded-random.js';
import { tempDir } from './helpers/temp-dir.js';

const DOG = GENEVAL_OBJECT_NAMES.indexOf('dog');
const CAT = GENEVAL_OBJECT_NAMES.indexOf('cat');
// Candidates of the test detector: each is output when the image's mean brightness exceeds `needs`.
const CANDIDATES = [
  { label: DOG, box: [10, 10, 30, 30], score: 0.95, needs: 0 },
  { label: CAT, box: [40, 10, 60, 30], score: 0.8, needs: 100 },
  { label: 0, box: [0, 0, 5, 5], score: 0.2, needs: 0 }, // below --min-score: never written
  { label: DOG, box: [0, 40, 10, 50], score: 0.97, needs: 100 },
];

/**
 * A detector with the real contract and dynamic K: constant candidates kept by the image's mean
 * brightness (Compress), FP32 masks = red channel > 128, tiled to one per kept box.
 */
function testDetectorModel(boxesName = 'boxes'): Uint8Array {
  const g = new OnnxGraphBuilder('test-detector');
  const image = g.input('image', 'UINT8', [1, -1, -1, 3]);
  const x = g.cast(image, 'FP32');
  const bright = g.reduceMean(x, [0, 1, 2, 3], false);
  const keep = g.op('Greater', [bright, g.initializer('needs', 'FP32', [4], CANDIDATES.map((c) => c.needs))]);
  const compress = (v: string, out: string) => g.op('Compress', [v, keep], { axis: 0 }, out);
  const boxes = compress(g.initializer('c_boxes', 'FP32', [4, 4], CANDIDATES.flatMap((c) => c.box)), boxesName);
  const scores = compress(g.initializer('c_scores', 'FP32', [4], CANDIDATES.map((c) => c.score)), 'scores');
  const labels = compress(g.initializer('c_labels', 'INT64', [4], CANDIDATES.map((c) => c.label)), 'labels');
  const red = g.op('Gather', [x, g.initializer('r_idx', 'INT64', [], [0])], { axis: 3 });
  const mask = g.cast(g.op('Greater', [red, g.initializer('c128', 'FP32', [], [128])]), 'FP32');
  const repeats = g.op('Concat', [g.op('Shape', [scores]), g.initializer('ones', 'INT64', [2], [1, 1])], { axis: 0 });
  const masks = g.op('Tile', [mask, repeats], {}, 'masks');
  g.output(boxes, 'FP32', [-1, 4]);
  g.output(scores, 'FP32', [-1]);
  g.output(labels, 'INT64', [-1]);
  g.output(masks, 'FP32', [-1, -1, -1]);
  return g.build();
}

const PROMPTS: Record<string, string> = {
  '00000': '{"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}',
  '00001': '{"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}], "prompt": "a photo of a dog and a cat"}',
  '00002': '{"tag": "position", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a cat right of a dog"}',
};
const S = 64;

/** Sample 0000 is dark (mean ≈ 53, red square top left), 0001 bright (mean ≈ 201, a low-red band on top). */
function drawImage(bright: boolean): Uint8Array {
  const px = new Uint8Array(S * S * 3);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const i = (y * S + x) * 3;
      px[i] = px[i + 1] = px[i + 2] = bright ? 210 : 40;
      if (!bright && x < 32 && y < 32) px[i] = 200;
      if (bright && y < 16) px[i] = 100;
    }
  }
  return px;
}
const expectedMask = (px: Uint8Array) => Uint8Array.from({ length: S * S }, (_, i) => (px[i * 3] > 128 ? 1 : 0));

let root: string;
let imagesDir: string;
let modelPath: string;
const pixels = new Map<string, Uint8Array>();

beforeAll(async () => {
  root = await tempDir('geneval-detect');
  imagesDir = join(root, 'images');
  for (const [folder, meta] of Object.entries(PROMPTS)) {
    await mkdir(join(imagesDir, folder, 'samples'), { recursive: true });
    await writeFile(join(imagesDir, folder, 'metadata.jsonl'), `${meta}\n`);
    for (const [n, bright] of [['0000', false], ['0001', true]] as const) {
      const px = drawImage(bright);
      pixels.set(`${folder}/samples/${n}.png`, px);
      await sharp(Buffer.from(px), { raw: { width: S, height: S, channels: 3 } }).png().toFile(join(imagesDir, folder, 'samples', `${n}.png`));
    }
  }
  modelPath = join(root, 'detector.onnx');
  await writeFile(modelPath, testDetectorModel());
});

async function tensorDetector(): Promise<TensorDetector> {
  return TensorDetector.create([{ name: 'r0', client: await OnnxTensorModel.load(modelPath) }]);
}

async function runTensor(out: string, opts: { concurrency?: number; signal?: AbortSignal; onImage?: (rel: string, done: number) => void } = {}) {
  const detector = await tensorDetector();
  try {
    return await detectFolder({ imagesDir, out, detector, ...opts });
  } finally {
    await detector.close();
  }
}

describe('COCO RLE encoding', () => {
  it('round-trips masks through rle.ts, including empty, full and pixel-0-set masks', () => {
    const rand = seededRandom(3);
    const cases: [number, number, (i: number) => number][] = [
      [1, 1, () => 1], [5, 7, () => 0], [5, 7, () => 1], [9, 4, (i) => (i === 0 ? 1 : 0)], [33, 17, () => (rand() < 0.3 ? 1 : 0)], [40, 64, (i) => (i % 64 > 20 && i % 64 < 50 ? 1 : 0)],
    ];
    for (const [h, w, f] of cases) {
      const mask = Uint8Array.from({ length: h * w }, (_, i) => f(i));
      const rle = encodeRle(mask, h, w);
      expect(rle.size).toEqual([h, w]);
      expect(typeof rle.counts).toBe('string');
      expect(rleToMask(rle)).toEqual(mask);
    }
  });

  it('writes the compact string pycocotools decodes: large runs and runs shorter than two back', () => {
    const counts = [0, 3, 1_000_000, 2, 70_000_000_000, 1, 1, 31, 32, 17, 16];
    expect(decodeRleString(rleCountsToString(counts))).toEqual(counts);
    // Known values from maskApi.c: 0 → "0", 3 → "3", a third run of 5 after runs (0, 3) is stored as 5 − 0.
    expect(rleCountsToString([0, 3, 5])).toBe('035');
  });
});

describe('detectFolder with a tensor-model detector', () => {
  let file: string;
  let text: string;
  beforeAll(async () => {
    file = join(root, 'tensor.jsonl');
    const summary = await runTensor(file);
    expect(summary).toMatchObject({ images: 6, detected: 6, resumed: 0, detections: 3 * 1 + 3 * 3, foreign_lines: 0 });
    text = await readFile(file, 'utf8');
  });

  it('writes lines detections.ts parses, keyed by rel in folder order, classes and scores ordered', async () => {
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { image: string; detections: ClassDetections });
    expect(lines.map((l) => l.image)).toEqual(['00000/samples/0000.png', '00000/samples/0001.png', '00001/samples/0000.png', '00001/samples/0001.png', '00002/samples/0000.png', '00002/samples/0001.png']);
    const bright = lines[1].detections;
    // Detector order of classes (cat 15 before dog 16), dog by score descending, the 0.2 person dropped.
    expect(Object.keys(bright)).toEqual(['cat', 'dog']);
    expect(bright.dog.map((d) => (Array.isArray(d) ? d[4] : d.score))).toEqual([Math.fround(0.97), Math.fround(0.95)]);
    expect(Object.keys(lines[0].detections)).toEqual(['dog']);
    const parsed = await readDetections(file);
    expect(parsed.size).toBe(6);
    const dog = parsed.get('00000/samples/0001.png')!.byClass.get('dog')!;
    expect(dog[1].box).toEqual([10, 10, 30, 30]);
    expect(dog[1].score).toBe(Math.fround(0.95));
  });

  it('encodes each mask as COCO RLE equal to the mask the model computed from the image', async () => {
    const parsed = await readDetections(file);
    for (const [rel, d] of parsed) {
      for (const list of d.byClass.values()) {
        for (const det of list) {
          expect(det.mask?.size).toEqual([S, S]);
          expect(rleToMask(det.mask!)).toEqual(expectedMask(pixels.get(rel)!));
        }
      }
    }
  });

  it("gives GenEval's scorer the correctness those boxes imply", async () => {
    const { resultsPath } = await scoreGeneval({ imagesDir, detections: file, out: join(root, 'scored'), protocol: { ...OFFICIAL_PROTOCOL }, bootstrap: { resamples: 10, seed: 0 }, log: silentLogger, objectNames: [...GENEVAL_OBJECT_NAMES] });
    const results = (await readFile(resultsPath, 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { filename: string; correct: boolean; reason: string });
    const verdict = Object.fromEntries(results.map((r) => [r.filename.slice(imagesDir.length + 1), r.correct]));
    expect(verdict).toEqual({
      '00000/samples/0000.png': true, '00000/samples/0001.png': true,
      '00001/samples/0000.png': false, '00001/samples/0001.png': true,
      '00002/samples/0000.png': false, '00002/samples/0001.png': true,
    });
  });

  it('resumes after an abort and a torn last line to the same bytes as an uninterrupted run', async () => {
    const out = join(root, 'resumed.jsonl');
    const controller = new AbortController();
    await expect(runTensor(out, { concurrency: 1, signal: controller.signal, onImage: (_rel, done) => { if (done === 2) controller.abort(); } })).rejects.toThrow(/aborted after 2 of 6/);
    const partial = await readFile(out, 'utf8');
    expect(partial.trimEnd().split('\n')).toHaveLength(2);
    await appendFile(out, '{"image": "00001/samples/0000.png", "detections": {"do');
    const summary = await runTensor(out, { concurrency: 3 });
    expect(summary).toMatchObject({ resumed: 2, detected: 4 });
    expect(await readFile(out, 'utf8')).toBe(text);
  });

  it('is what `bitprep eval detect --detector model.onnx` writes', async () => {
    const out = join(root, 'cli.jsonl');
    const write = process.stdout.write;
    let printed = '';
    process.stdout.write = ((s: string) => { printed += s; return true; }) as typeof process.stdout.write;
    try {
      await detectCommand().parseAsync([imagesDir, '--detector', modelPath, '--out', out, '--json'], { from: 'user' });
    } finally {
      process.stdout.write = write;
    }
    expect(await readFile(out, 'utf8')).toBe(text);
    expect(JSON.parse(printed)).toMatchObject({ images: 6, detected: 6, detector: modelPath });
    await expect(detectCommand().parseAsync([imagesDir, '--detector', modelPath, '--detector-url', 'http://127.0.0.1:1/', '--out', out], { from: 'user' })).rejects.toThrow(/exactly one of/);
  });

  it('refuses a model that breaks the contract, naming the tensor', async () => {
    const bad = await OnnxTensorModel.load(testDetectorModel('bbox'), { name: 'bad-detector' });
    try {
      expect(() => TensorDetector.create([{ name: 'r0', client: bad }])).toThrow(/bad-detector: no output tensor "boxes" \(outputs: .*bbox/);
      // Renaming the tensor makes the same model acceptable.
      expect(TensorDetector.create([{ name: 'r0', client: bad }], { tensorNames: { boxes: 'bbox' } }).name).toBe('bad-detector');
    } finally {
      await bad.close();
    }
  });
});

describe('detectFolder with an HTTP endpoint detector', () => {
  let server: Server;
  let url: string;
  let backing: TensorDetector;
  const attempts = new Map<string, number>();
  // Answers still being made after their client gave up (the timed-out one): awaited before the backing detector closes.
  const answering = new Set<Promise<void>>();
  beforeAll(async () => {
    backing = await tensorDetector();
    const scratch = await tempDir('detect-endpoint');
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const p = answer().catch((err) => void res.writeHead(500).end(String(err))).finally(() => answering.delete(p));
        answering.add(p);
      });
      const answer = async () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { image: string; filename: string };
        const n = (attempts.get(body.filename) ?? 0) + 1;
        attempts.set(body.filename, n);
        if (body.filename === '00001/samples/0001.png' && n === 1) {
          res.writeHead(500).end('injected failure');
          return;
        }
        // The first answer for this image is slower than the client's timeout; later ones are slow but in time.
        if (body.filename === '00002/samples/0000.png') await new Promise((r) => setTimeout(r, n === 1 ? 1500 : 150));
        // Detect on the bytes that travelled, and answer in scrambled order: the client must reorder.
        const path = join(scratch, `${body.filename.replaceAll('/', '_')}-${n}`);
        await writeFile(path, Buffer.from(body.image, 'base64'));
        const d = await backing.detect({ rel: body.filename, path });
        const scrambled = Object.fromEntries(Object.entries(d).reverse().map(([k, v]) => [k, [...v].reverse()]));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ detections: scrambled }));
      };
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/detect`;
  });
  afterAll(async () => {
    await Promise.all(answering);
    await new Promise((r) => server.close(r));
    await backing.close();
  });

  it('retries a 500 and a timed-out answer and writes the same file as the tensor-model path', async () => {
    const tensorFile = join(root, 'for-endpoint.jsonl');
    await runTensor(tensorFile);
    const out = join(root, 'endpoint.jsonl');
    const detector = new EndpointDetector({ url, concurrency: 3, timeoutMs: 700, retry: { retries: 3, minDelayMs: 10, maxDelayMs: 50 } });
    try {
      const summary = await detectFolder({ imagesDir, out, detector, concurrency: 3 });
      expect(summary.detected).toBe(6);
      expect(detector.stats.retries).toBe(2);
    } finally {
      await detector.close();
    }
    expect(attempts.get('00001/samples/0001.png')).toBe(2);
    expect(attempts.get('00002/samples/0000.png')).toBe(2);
    expect(await readFile(out, 'utf8')).toBe(await readFile(tensorFile, 'utf8'));
  });

  it('fails on an answer with an unknown class, naming the image', async () => {
    const bad = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"detections": {"unicorn": [[0, 0, 1, 1, 0.9]]}}'));
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
    const detector = new EndpointDetector({ url: `http://127.0.0.1:${(bad.address() as AddressInfo).port}/`, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 1 } });
    try {
      await expect(detectFolder({ imagesDir, out: join(root, 'unicorn.jsonl'), detector, concurrency: 1 })).rejects.toThrow(/00000\/samples\/0000\.png.*class "unicorn"/);
    } finally {
      await detector.close();
      await new Promise((r) => bad.close(r));
    }
  });
});

describe('stand-in detector', () => {
  it('is deterministic, labelled STAND-IN, and exercises boxes, scores, labels and masks', async () => {
    expect(buildDetectorStandinModel(7)).toEqual(buildDetectorStandinModel(7));
    expect(buildDetectorStandinModel(7)).not.toEqual(buildDetectorStandinModel(8));
    const detector = await loadDetectorStandin(7);
    const out = join(root, 'standin.jsonl');
    try {
      expect(detector.name).toContain('STAND-IN');
      expect(detector.name).toBe(DETECTOR_STANDIN_NAME);
      await detectFolder({ imagesDir, out, detector });
    } finally {
      await detector.close();
    }
    const parsed = await readDetections(out);
    for (const [rel, d] of parsed) {
      const px = pixels.get(rel)!;
      const mean = (c: number) => px.filter((_, i) => i % 3 === c).reduce((a, b) => a + b, 0) / (S * S);
      const all = [...d.byClass.entries()].flatMap(([cls, list]) => list.map((x) => ({ cls, ...x })));
      expect(all).toHaveLength(2);
      const byScore = (s: number) => all.find((a) => Math.abs(a.score - s) < 1e-5)!;
      const first = byScore(0.5 + (0.5 * mean(1)) / 255);
      const second = byScore(0.95 - (0.6 * mean(0)) / 255);
      expect(first.cls).toBe(GENEVAL_OBJECT_NAMES[Math.floor((mean(0) * 80) / 256)]);
      expect(second.cls).toBe(GENEVAL_OBJECT_NAMES[Math.floor((mean(2) * 80) / 256)]);
      expect(first.box[0]).toBeLessThan(second.box[0]);
      expect(first.box[2]).toBeLessThanOrEqual(S);
      const m1 = rleToMask(first.mask!);
      const m2 = rleToMask(second.mask!);
      expect(m1.every((v, i) => v + m2[i] === 1)).toBe(true);
      expect(m1.some((v) => v === 1)).toBe(true);
    }
  });
});
