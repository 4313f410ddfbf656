import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readImageFolder, readRgb } from '../evaluation/images/image-folder.js';
import { fidCommand, runFid, runFidStats } from '../evaluation/metrics/fid-command.js';
import { featureStatistics, frechetDistance } from '../evaluation/metrics/frechet.js';
import { cleanFidInput, cleanFidResize } from '../evaluation/metrics/inception-features.js';
import { buildInceptionStandinModel } from '../evaluation/standins/inception-standin.js';
import { readResults } from '../evaluation/tables/results.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { seededRandom } from '../src/seeded-random.js';
import { tempDir } from './helpers/temp-dir.js';

// Debian's interpreter by path: Pillow 9.4 and numpy 1.24 (a python earlier on PATH may lack them).
const PYTHON = '/usr/bin/python3';
const DIM = 16;

/** A seeded non-square RGB picture: gradients, a disc and noise, so every filter tap matters. */
async function drawImage(path: string, width: number, height: number, seed: number): Promise<void> {
  const rand = seededRandom(seed);
  const data = Buffer.alloc(width * height * 3);
  const cx = width * (0.3 + 0.4 * rand());
  const cy = height * (0.3 + 0.4 * rand());
  const r = Math.min(width, height) * (0.15 + 0.2 * rand());
  const tint = [rand(), rand(), rand()];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      for (let c = 0; c < 3; c++) {
        const base = inside ? 255 * tint[c] : (c === 0 ? (255 * x) / width : c === 1 ? (255 * y) / height : 128 + 100 * Math.sin(x / 7 + seed));
        data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(base + (rand() - 0.5) * 60)));
      }
    }
  }
  await sharp(data, { raw: { width, height, channels: 3 } }).png().toFile(path);
}

async function drawFolder(dir: string, count: number, seed: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const p = join(dir, `${i}.png`);
    // Sizes vary: landscape and portrait, odd excesses, one already square at 256.
    const [w, h] = i === 0 ? [256, 256] : [200 + ((i * 37 + seed * 11) % 150), 180 + ((i * 53 + seed * 7) % 140)];
    await drawImage(p, w, h, seed * 100 + i);
    paths.push(p);
  }
  return paths;
}

/** The reference preprocessing, in Pillow + numpy, as clean-fid + GigaGAN's transform do it. */
const CLEAN_FID_PY = `
import sys, numpy as np
from PIL import Image
path, resize, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
img = Image.open(path).convert('RGB')
if resize > 0:
    w, h = img.size
    s = min(w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    img = img.crop((left, top, left + s, top + s)).resize((resize, resize), Image.LANCZOS)
x = np.array(img)
chans = []
for i in range(3):
    f = Image.fromarray(x[:, :, i].astype(np.float32), mode='F').resize((299, 299), Image.BICUBIC)
    chans.append(np.asarray(f).clip(0, 255).reshape(299, 299, 1))
np.concatenate(chans, axis=2).astype(np.float32).tofile(out)
`;

/** Features of `paths` computed here directly: our preprocessing fed straight to ONNX Runtime, no batching pipeline. */
async function directFeatures(modelPath: string, paths: string[], resize: number): Promise<Float32Array> {
  const m = await OnnxTensorModel.load(modelPath);
  const out = new Float32Array(paths.length * DIM);
  for (let i = 0; i < paths.length; i++) {
    const x = await cleanFidInput(paths[i], { resize });
    const r = await m.infer({ images: { dtype: 'FP32', shape: [1, 3, 299, 299], data: x } });
    out.set(r.features.data as Float32Array, i * DIM);
  }
  await m.close();
  return out;
}

describe('clean-fid preprocessing', () => {
  it('matches Pillow + numpy bit for bit (crop + LANCZOS 256, then F-mode BICUBIC 299, clip)', async () => {
    const dir = await tempDir('fid-pre');
    const cases: [number, number, number][] = [[345, 233, 256], [233, 345, 256], [301, 287, 0], [180, 120, 0]];
    for (const [w, h, resize] of cases) {
      const p = join(dir, `img-${w}x${h}.png`);
      await drawImage(p, w, h, w + h);
      const ref = join(dir, `ref-${w}x${h}-${resize}.f32`);
      execFileSync(PYTHON, ['-c', CLEAN_FID_PY, p, String(resize), ref]);
      const buf = await readFile(ref);
      const expected = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const ours = cleanFidResize(await readRgb(p), { resize });
      expect([ours.width, ours.height, ours.channels]).toEqual([299, 299, 3]);
      expect(ours.data.length).toBe(expected.length);
      let maxDiff = 0;
      let differing = 0;
      let fractional = 0;
      for (let i = 0; i < expected.length; i++) {
        const d = Math.abs(ours.data[i] - expected[i]);
        if (d > 0) differing++;
        maxDiff = Math.max(maxDiff, d);
        if (!Number.isInteger(expected[i])) fractional++;
      }
      expect({ case: `${w}x${h} resize ${resize}`, maxDiff, differing }).toEqual({ case: `${w}x${h} resize ${resize}`, maxDiff: 0, differing: 0 });
      // The values really are unrounded floats, so a rounding step would have been caught.
      expect(fractional).toBeGreaterThan(expected.length / 2);
    }
  });
});

describe('bitprep eval fid / fid-stats', () => {
  it('computes FID equal to independently computed statistics, writes stats numpy reads, and fid.json the tables parse', async () => {
    const dir = await tempDir('fid');
    const modelPath = join(dir, 'inception-standin.onnx');
    await writeFile(modelPath, buildInceptionStandinModel(7, DIM));
    const gen = await drawFolder(join(dir, 'gen'), 9, 1);
    const ref = await drawFolder(join(dir, 'ref'), 10, 2);
    const silent = { info() {}, warn() {}, error() {} };

    // A folder against itself.
    const self = await runFid(join(dir, 'gen'), { ref: join(dir, 'gen'), inception: modelPath, batchSize: 4, log: silent });
    expect(Math.abs(self.fid_30k)).toBeLessThan(1e-6);
    expect(self.n).toBe(9);

    // Reference statistics file.
    const npz = join(dir, 'ref.npz');
    const st = await runFidStats(join(dir, 'ref'), npz, { inception: modelPath, batchSize: 3, log: silent });
    expect(st).toMatchObject({ n: 10, dim: DIM });
    const featsRef = await directFeatures(modelPath, ref, 256);
    const featsGen = await directFeatures(modelPath, gen, 256);
    const featPath = join(dir, 'ref-features.f32');
    await writeFile(featPath, featsRef);
    const py = `
import sys, json, numpy as np
z = np.load(sys.argv[1])
f = np.fromfile(sys.argv[2], dtype=np.float32).reshape(-1, ${DIM}).astype(np.float64)
mu, sigma = np.mean(f, axis=0), np.cov(f, rowvar=False)
print(json.dumps({'files': sorted(z.files), 'mu_shape': list(z['mu'].shape), 'sigma_shape': list(z['sigma'].shape),
  'dtypes': [str(z['mu'].dtype), str(z['sigma'].dtype)], 'n': float(z['n']),
  'mu_err': float(np.abs(z['mu'] - mu).max() / np.abs(mu).max()), 'sigma_err': float(np.abs(z['sigma'] - sigma).max() / np.abs(sigma).max())}))
`;
    const check = JSON.parse(execFileSync(PYTHON, ['-c', py, npz, featPath], { encoding: 'utf8' }));
    expect(check).toMatchObject({ files: ['mu', 'n', 'sigma'], mu_shape: [DIM], sigma_shape: [DIM, DIM], dtypes: ['float64', 'float64'], n: 10 });
    expect(check.mu_err).toBeLessThan(1e-12);
    expect(check.sigma_err).toBeLessThan(1e-12);

    // FID against the stats file equals the Fréchet distance of independently computed statistics.
    const out = join(dir, 'results');
    const r = await runFid(join(dir, 'gen'), { ref: npz, inception: modelPath, out, batchSize: 4, log: silent, saveStats: join(dir, 'gen.npz') });
    const expected = frechetDistance(featureStatistics(featsGen, DIM), featureStatistics(featsRef, DIM));
    expect(expected).toBeGreaterThan(0.01);
    expect(Math.abs(r.fid_30k - expected) / expected).toBeLessThan(1e-9);
    expect(r).toMatchObject({ n: 9, ref_n: 10, protocol: 'clean-fid clean, lanczos 256', feature_dim: DIM, ci95: null });
    expect(r.ci95_note).toMatch(/bias/);
    const written = JSON.parse(await readFile(join(out, 'fid.json'), 'utf8'));
    expect(written.fid_30k).toBe(r.fid_30k);
    const tables = await readResults(out);
    expect(tables.tables['3'].cells.fid_30k).toBe(r.fid_30k);

    // Against the reference folder itself: the same number as against its stats.
    const viaDir = await runFid(join(dir, 'gen'), { ref: join(dir, 'ref'), inception: modelPath, batchSize: 5, log: silent });
    expect(Math.abs(viaDir.fid_30k - r.fid_30k) / r.fid_30k).toBeLessThan(1e-9);
  }, 30_000);

  it('runs from the command line with --limit and --resize none, and checks the model contract', async () => {
    const dir = await tempDir('fid-cli');
    const modelPath = join(dir, 'inception-standin.onnx');
    await writeFile(modelPath, buildInceptionStandinModel(3, DIM));
    const gen = await drawFolder(join(dir, 'gen'), 6, 3);
    const ref = await drawFolder(join(dir, 'ref'), 5, 4);
    const out = join(dir, 'results');
    const stdout = process.stdout.write;
    const printed: string[] = [];
    process.stdout.write = ((s: string) => { printed.push(s); return true; }) as typeof process.stdout.write;
    try {
      await fidCommand().parseAsync([join(dir, 'gen'), '--ref', join(dir, 'ref'), '--inception', modelPath, '--limit', '4', '--resize', 'none', '--out', out, '--model-label', 'STAND-IN inception', '--json'], { from: 'user' });
    } finally {
      process.stdout.write = stdout;
    }
    const fid = JSON.parse(await readFile(join(out, 'fid.json'), 'utf8'));
    expect(JSON.parse(printed.join(''))).toEqual(fid);
    expect(fid).toMatchObject({ n: 4, ref_n: 5, protocol: 'clean-fid clean', model: 'STAND-IN inception' });
    const expected = frechetDistance(
      featureStatistics(await directFeatures(modelPath, gen.slice(0, 4), 0), DIM),
      featureStatistics(await directFeatures(modelPath, ref, 0), DIM),
    );
    expect(Math.abs(fid.fid_30k - expected) / expected).toBeLessThan(1e-9);
    expect((await readImageFolder(join(dir, 'gen'))).images).toHaveLength(6);

    await expect(runFid(join(dir, 'gen'), { ref: join(dir, 'ref'), inception: modelPath, contract: { input: 'pixels' } }))
      .rejects.toThrow(/no input "pixels" \(inputs: images\)/);
    await expect(runFid(join(dir, 'gen'), { ref: join(dir, 'missing.npz'), inception: modelPath })).rejects.toThrow(/missing\.npz/);
  }, 30_000);
});
