import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readRgb } from '../evaluation/images/image-folder.js';
import { featureStatistics, frechetDistance } from '../evaluation/metrics/frechet.js';
import { cleanFidInput } from '../evaluation/metrics/inception-features.js';
import { psnr } from '../evaluation/metrics/psnr.js';
import { reconstructionCommand, runReconstruction } from '../evaluation/metrics/reconstruction-command.js';
import { DATASET_RESOLUTION } from '../evaluation/metrics/reconstruction-protocol.js';
import { ssim } from '../evaluation/metrics/ssim.js';
import { buildInceptionStandinModel, INCEPTION_STANDIN_LABEL } from '../evaluation/standins/inception-standin.js';
import { readResults } from '../evaluation/tables/results.js';
import { centreCropSquare, resize } from '../src/images/pil-resize.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { seededRandom } from '../src/seeded-random.js';
import { tempDir } from './helpers/temp-dir.js';

const PYTHON = '/usr/bin/python3';
const silent = { info() {}, warn() {}, error() {} };

/** Seeded RGB pixels with structure (gradients, stripes) and texture. */
function picture(width: number, height: number, seed: number): Buffer {
  const rand = seededRandom(seed);
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = [(255 * x) / width, (255 * y) / height, 128 + 120 * Math.sin((x + 2 * y) / (5 + seed))];
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v[c] + (rand() - 0.5) * 50)));
    }
  }
  return data;
}

const raw = (width: number, height: number) => ({ raw: { width, height, channels: 3 as const } });

/**
 * Originals (PNG, `size` square or `origW`×`origH`) and reconstructions made by code at `size`:
 * JPEG at two qualities, a blur, and seeded noise. Reconstructions' extensions differ from the
 * originals' on purpose: pairing is by stem.
 */
async function makeSet(dir: string, size: number, seed: number, orig?: [number, number]): Promise<void> {
  await mkdir(join(dir, 'orig'), { recursive: true });
  await mkdir(join(dir, 'recon'), { recursive: true });
  const [ow, oh] = orig ?? [size, size];
  for (let i = 0; i < 4; i++) {
    const px = picture(ow, oh, seed + i);
    await sharp(px, raw(ow, oh)).png().toFile(join(dir, 'orig', `img${i}.png`));
    // The tokenizer's input: centre crop + resize (sharp here: only the reconstruction's input, not measured).
    let base = sharp(px, raw(ow, oh));
    if (orig) base = base.resize(size, size, { fit: 'cover' });
    const src = await base.raw().toBuffer();
    const s = () => sharp(src, raw(size, size));
    if (i === 0) await s().jpeg({ quality: 25 }).toFile(join(dir, 'recon', 'img0.jpg'));
    if (i === 1) await s().jpeg({ quality: 75 }).toFile(join(dir, 'recon', 'img1.jpg'));
    if (i === 2) await s().blur(1.2).png().toFile(join(dir, 'recon', 'img2.png'));
    if (i === 3) {
      const rand = seededRandom(99);
      const noisy = Buffer.from(src.map((v) => Math.max(0, Math.min(255, Math.round(v + (rand() - 0.5) * 40)))));
      await sharp(noisy, raw(size, size)).png().toFile(join(dir, 'recon', 'img3.png'));
    }
  }
}

const reconName = (i: number) => (i < 2 ? `img${i}.jpg` : `img${i}.png`);

describe('bitprep eval reconstruction', () => {
  it('PSNR and SSIM equal the metrics on the same pixels and skimage, with CIs; tables parse the file', async () => {
    const dir = await tempDir('recon');
    await makeSet(dir, 48, 1);
    const out = join(dir, 'results');
    const r = await runReconstruction(join(dir, 'orig'), join(dir, 'recon'), { dataset: 'imagenet', resolution: 48, out, log: silent });
    expect(r.n).toBe(4);
    expect(r.originals_resized).toBe(0);

    const per = { psnr: [] as number[], skimage: [] as number[], wang: [] as number[] };
    for (let i = 0; i < 4; i++) {
      const a = await readRgb(join(dir, 'orig', `img${i}.png`));
      const b = await readRgb(join(dir, 'recon', reconName(i)));
      per.psnr.push(psnr(a, b).psnr);
      per.skimage.push(ssim(a, b, { convention: 'skimage' }).ssim);
      per.wang.push(ssim(a, b, { convention: 'wang' }).ssim);
      // skimage on exactly these decoded pixels.
      const pa = join(dir, `a${i}.u8`);
      const pb = join(dir, `b${i}.u8`);
      await writeFile(pa, a.data);
      await writeFile(pb, b.data);
      const py = `
import sys, json, numpy as np
from skimage.metrics import peak_signal_noise_ratio as P, structural_similarity as S
a = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(48, 48, 3); b = np.fromfile(sys.argv[2], dtype=np.uint8).reshape(48, 48, 3)
print(json.dumps([P(a, b, data_range=255), S(a, b, channel_axis=2, data_range=255),
  S(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)]))
`;
      const [sp, ss, sw] = JSON.parse(execFileSync(PYTHON, ['-c', py, pa, pb], { encoding: 'utf8' })) as number[];
      expect(Math.abs(per.psnr[i] - sp)).toBeLessThan(1e-6);
      expect(Math.abs(per.skimage[i] - ss)).toBeLessThan(1e-6);
      expect(Math.abs(per.wang[i] - sw)).toBeLessThan(1e-6);
    }
    const avg = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
    expect(r.psnr).toBeCloseTo(avg(per.psnr), 12);
    expect(r.ssim).toBeCloseTo(avg(per.skimage), 12);
    expect(r.ssim_by_convention.wang!.ssim).toBeCloseTo(avg(per.wang), 12);
    expect(r.ssim_convention).toMatch(/^skimage/);
    // The four reconstructions differ clearly, so the intervals have width.
    expect(Math.max(...per.psnr) - Math.min(...per.psnr)).toBeGreaterThan(1);
    expect(r.psnr_ci95!.low).toBeLessThan(r.psnr);
    expect(r.psnr_ci95!.high).toBeGreaterThan(r.psnr);
    expect(r.ssim_ci95!.low).toBeLessThan(r.ssim_ci95!.high);
    expect(r.rfid).toBeUndefined();
    const tables = await readResults(out);
    expect(tables.tables['2'].cells).toMatchObject({ imagenet_psnr: r.psnr, imagenet_ssim: r.ssim, imagenet_rfid: null });
    // Scored at 48×48, not Table 2's 512×512: the row says so, in its label and a note.
    expect(r.evaluated_at).toBe('48×48');
    expect(tables.tables['2'].cells.tokenizer).toBe('results (imagenet 48×48)');
    expect(tables.tables['2'].notes.join('\n')).toMatch(/imagenet scored at 48×48, not the 512×512 of Table 2: not comparable/);
  });

  it('defaults both Table 2 benchmarks to 512×512, and a row scored there is not flagged', async () => {
    expect(DATASET_RESOLUTION).toEqual({ imagenet: 512, coco: 512 });
    const out = await tempDir('recon-512');
    await writeFile(join(out, 'reconstruction.json'), JSON.stringify({ imagenet: { psnr: 22.1, ssim: 0.7, evaluated_at: '512×512' }, coco: { psnr: 21.5, ssim: 0.69, evaluated_at: '512×512' } }));
    const ok = await readResults(out, { name: 'bit' });
    expect(ok.tables['2'].cells.tokenizer).toBe('bit');
    expect(ok.tables['2'].notes).toEqual([]);
    // A file from before evaluated_at was recorded cannot vouch for its size.
    await writeFile(join(out, 'reconstruction.json'), JSON.stringify({ coco: { psnr: 21.5 } }));
    const old = await readResults(out, { name: 'bit' });
    expect(old.tables['2'].cells.tokenizer).toBe('bit (coco ?)');
    expect(old.tables['2'].notes.join('\n')).toMatch(/coco scored at a size reconstruction.json does not record/);
  });

  it('crops and resizes larger originals, merges datasets, computes rFID, and names unmatched files', async () => {
    const dir = await tempDir('recon2');
    await makeSet(join(dir, 'in'), 48, 10);
    await makeSet(join(dir, 'co'), 40, 20, [61, 50]);
    const modelPath = join(dir, 'inception-standin.onnx');
    await writeFile(modelPath, buildInceptionStandinModel(5, 8));
    const out = join(dir, 'results');

    // COCO first, from the command line, with rFID and only the wang convention.
    await reconstructionCommand().parseAsync([join(dir, 'co', 'orig'), join(dir, 'co', 'recon'), '--dataset', 'coco', '--resolution', '40',
      '--inception', modelPath, '--ssim-convention', 'wang', '--batch-size', '3', '--out', out, '--model-label', INCEPTION_STANDIN_LABEL], { from: 'user' });
    const afterCoco = JSON.parse(await readFile(join(out, 'reconstruction.json'), 'utf8'));
    const coco = afterCoco.coco;
    expect(coco.originals_resized).toBe(4);
    expect(coco.ssim_convention).toMatch(/^wang/);
    expect(Object.keys(coco.ssim_by_convention)).toEqual(['wang']);
    const a0 = resize(centreCropSquare(await readRgb(join(dir, 'co', 'orig', 'img0.png'))), 40, 40, 'bicubic');
    const b0 = await readRgb(join(dir, 'co', 'recon', 'img0.jpg'));
    const psnrs: number[] = [];
    const origInputs: Float32Array[] = [];
    const reconInputs: Float32Array[] = [];
    for (let i = 0; i < 4; i++) {
      const a = resize(centreCropSquare(await readRgb(join(dir, 'co', 'orig', `img${i}.png`))), 40, 40, 'bicubic');
      const b = await readRgb(join(dir, 'co', 'recon', reconName(i)));
      psnrs.push(psnr(a, b).psnr);
      const pa = join(dir, `a${i}.png`);
      await sharp(Buffer.from(a.data), raw(40, 40)).png().toFile(pa);
      origInputs.push(await cleanFidInput(pa, { resize: 0 }));
      reconInputs.push(await cleanFidInput(join(dir, 'co', 'recon', reconName(i)), { resize: 0 }));
    }
    expect(coco.psnr).toBeCloseTo(psnrs.reduce((s, x) => s + x, 0) / 4, 12);
    expect(psnr(a0, b0).psnr).toBe(psnrs[0]);
    // rFID against statistics of features computed here, straight through ONNX Runtime.
    const m = await OnnxTensorModel.load(modelPath);
    const feats = async (xs: Float32Array[]) => {
      const f = new Float32Array(xs.length * 8);
      for (let i = 0; i < xs.length; i++) f.set((await m.infer({ images: { dtype: 'FP32', shape: [1, 3, 299, 299], data: xs[i] } })).features.data as Float32Array, i * 8);
      return featureStatistics(f, 8);
    };
    const expectedRfid = frechetDistance(await feats(reconInputs), await feats(origInputs));
    await m.close();
    expect(expectedRfid).toBeGreaterThan(1e-5);
    expect(Math.abs(coco.rfid - expectedRfid) / expectedRfid).toBeLessThan(1e-9);
    expect(coco.rfid_protocol).toMatch(/^clean-fid clean,/);
    expect(coco.rfid_model).toBe(INCEPTION_STANDIN_LABEL);

    // ImageNet next: the COCO entry is kept as it was.
    const inet = await runReconstruction(join(dir, 'in', 'orig'), join(dir, 'in', 'recon'), { dataset: 'imagenet', resolution: 48, out, log: silent });
    const merged = JSON.parse(await readFile(join(out, 'reconstruction.json'), 'utf8'));
    expect(merged.coco).toEqual(coco);
    expect(merged.imagenet.psnr).toBe(inet.psnr);
    const tables = await readResults(out);
    expect(tables.tables['2'].cells).toMatchObject({ coco_rfid: coco.rfid, coco_psnr: coco.psnr, imagenet_psnr: inet.psnr });

    // Unmatched names are listed, on both sides.
    await copyFile(join(dir, 'in', 'orig', 'img1.png'), join(dir, 'in', 'orig', 'extra-original.png'));
    await copyFile(join(dir, 'in', 'recon', 'img2.png'), join(dir, 'in', 'recon', 'stray-recon.png'));
    await expect(runReconstruction(join(dir, 'in', 'orig'), join(dir, 'in', 'recon'), { dataset: 'imagenet', log: silent }))
      .rejects.toThrow(/extra-original\.png.*stray-recon\.png/);
  }, 30_000);
});
