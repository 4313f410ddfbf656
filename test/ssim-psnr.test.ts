import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { meanPsnr, psnr, type MetricImage } from '../evaluation/metrics/psnr.js';
import { meanSsim, ssim, SSIM_CONVENTIONS, type SsimConvention } from '../evaluation/metrics/ssim.js';
import { seededRandom } from '../src/seeded-random.js';
import { tempDir } from './helpers/temp-dir.js';

const run = promisify(execFile);

// Debian's interpreter by path: a pyenv python earlier on PATH has no scikit-image.
const DEBIAN_PYTHON = '/usr/bin/python3';
const SSIM_TOL = 1e-6;
const PSNR_REL_TOL = 1e-6;

interface Case {
  name: string;
  a: MetricImage;
  b: MetricImage;
  dataRange: number;
}

/** Shapes, gradients and hard edges: the structure SSIM's windows respond to. */
async function drawn(width: number, height: number, seed: number, grey = false): Promise<MetricImage> {
  const r = seededRandom(seed);
  const c = () => `rgb(${Math.floor(r() * 256)},${Math.floor(r() * 256)},${Math.floor(r() * 256)})`;
  const shapes: string[] = [];
  for (let i = 0; i < 6; i++) {
    shapes.push(`<circle cx="${r() * width}" cy="${r() * height}" r="${2 + r() * Math.min(width, height) / 3}" fill="${c()}" fill-opacity="${0.4 + r() * 0.6}"/>`);
    shapes.push(`<rect x="${r() * width}" y="${r() * height}" width="${1 + r() * width / 2}" height="${1 + r() * height / 2}" fill="${c()}" transform="rotate(${r() * 60 - 30})"/>`);
    shapes.push(`<line x1="${r() * width}" y1="${r() * height}" x2="${r() * width}" y2="${r() * height}" stroke="${c()}" stroke-width="${0.5 + r() * 3}"/>`);
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${c()}"/><stop offset="1" stop-color="${c()}"/></linearGradient></defs><rect width="${width}" height="${height}" fill="url(#g)"/>${shapes.join('')}</svg>`;
  let img = sharp(Buffer.from(svg)).removeAlpha();
  if (grey) img = img.toColourspace('b-w');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== width || info.height !== height || info.channels !== (grey ? 1 : 3)) throw new Error(`drew ${info.width}×${info.height}×${info.channels}`);
  return { data: new Uint8Array(data), width, height, channels: info.channels };
}

/** Seeded Gaussian noise of `sigma` grey levels, rounded and clamped to 8 bits. */
function noisy(im: MetricImage, sigma: number, seed: number): MetricImage {
  const r = seededRandom(seed);
  const out = new Uint8Array(im.data.length);
  for (let i = 0; i < out.length; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    out[i] = Math.max(0, Math.min(255, Math.round(im.data[i] + sigma * g)));
  }
  return { ...im, data: out };
}

async function viaSharp(im: MetricImage, op: (s: ReturnType<typeof sharp>) => ReturnType<typeof sharp>): Promise<MetricImage> {
  const raw = { width: im.width, height: im.height, channels: im.channels as 1 | 3 };
  const encoded = await op(sharp(Buffer.from(im.data), { raw })).toBuffer();
  let back = sharp(encoded).removeAlpha();
  if (im.channels === 1) back = back.toColourspace('b-w');
  const { data, info } = await back.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== im.channels) throw new Error(`round trip gave ${info.channels} channels`);
  return { ...im, data: new Uint8Array(data) };
}

const toUnit = (im: MetricImage): MetricImage => ({ ...im, data: Float64Array.from(im.data, (v) => v / 255) });

function constant(width: number, height: number, channels: number, value: number): MetricImage {
  return { data: new Uint8Array(width * height * channels).fill(value), width, height, channels };
}

const fitsWang = (im: MetricImage) => Math.min(im.width, im.height) >= SSIM_CONVENTIONS.wang.winSize;

// Reads the pairs bitprep scored, scores them with scikit-image, prints repr() strings so every
// float (and inf) survives the trip exactly.
const SKIMAGE_SCRIPT = `
import json, sys, warnings
import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
warnings.simplefilter('ignore')
cases = json.load(open(sys.argv[1]))
out = {'version': skimage.__version__, 'cases': {}}
for c in cases:
    h, w, ch = c['shape']
    a = np.fromfile(c['a'], dtype=c['dtype']).reshape(h, w, ch)
    b = np.fromfile(c['b'], dtype=c['dtype']).reshape(h, w, ch)
    axis = -1
    if ch == 1:
        a, b, axis = a[..., 0], b[..., 0], None
    R = c['dataRange']
    r = {
        'psnr': peak_signal_noise_ratio(a, b, data_range=R),
        'skimage': structural_similarity(a, b, data_range=R, channel_axis=axis),
    }
    if min(h, w) >= 11:
        r['wang'] = structural_similarity(a, b, data_range=R, channel_axis=axis, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    if ch > 1:
        r['skimagePerChannel'] = [structural_similarity(a[..., k], b[..., k], data_range=R) for k in range(ch)]
    if c['dtype'] == 'f8':
        # No data_range: what 0.19 silently does with float images.
        r['skimageFloatDefault'] = structural_similarity(a, b, channel_axis=axis)
    out['cases'][c['name']] = {k: ([repr(float(x)) for x in v] if isinstance(v, list) else repr(float(v))) for k, v in r.items()}
print(json.dumps(out))
`;

type PyValues = Record<string, string | string[]>;
const num = (s: string): number => (s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s));

async function scoreWithSkimage(cases: Case[]): Promise<{ version: string; cases: Record<string, PyValues> }> {
  const dir = await tempDir('ssim-psnr');
  const manifest = [];
  for (const [i, c] of cases.entries()) {
    const f64 = c.a.data instanceof Float64Array;
    const bytes = (im: MetricImage) => Buffer.from(im.data.buffer, im.data.byteOffset, im.data.byteLength);
    await writeFile(join(dir, `${i}-a.raw`), bytes(c.a));
    await writeFile(join(dir, `${i}-b.raw`), bytes(c.b));
    manifest.push({ name: c.name, dtype: f64 ? 'f8' : 'u1', shape: [c.a.height, c.a.width, c.a.channels], a: join(dir, `${i}-a.raw`), b: join(dir, `${i}-b.raw`), dataRange: c.dataRange });
  }
  await writeFile(join(dir, 'cases.json'), JSON.stringify(manifest));
  const { stdout } = await run(DEBIAN_PYTHON, ['-c', SKIMAGE_SCRIPT, join(dir, 'cases.json')], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as { version: string; cases: Record<string, PyValues> };
}

describe('PSNR and SSIM against scikit-image (Debian python3-skimage, run at test time)', () => {
  const cases: Case[] = [];
  let py: { version: string; cases: Record<string, PyValues> };

  beforeAll(async () => {
    const rgb = await drawn(131, 97, 1);
    const rgb2 = await drawn(96, 128, 2);
    const grey = await drawn(97, 131, 3, true);
    const grey2 = await drawn(64, 64, 4, true);
    const small = await drawn(13, 11, 5);
    const tiny = await drawn(8, 7, 6, true);
    const unit = toUnit(await drawn(80, 64, 7));
    const rUnit = seededRandom(8);
    const unitNoisy = { ...unit, data: Float64Array.from(unit.data, (v) => Math.min(1, Math.max(0, v + 0.08 * (rUnit() - 0.5)))) };
    cases.push(
      { name: 'rgb 97×131, gaussian noise σ 12', a: rgb, b: noisy(rgb, 12, 11), dataRange: 255 },
      { name: 'rgb 128×96, JPEG q 35', a: rgb2, b: await viaSharp(rgb2, (s) => s.jpeg({ quality: 35 })), dataRange: 255 },
      { name: 'grey 131×97, blur σ 1.2', a: grey, b: await viaSharp(grey, (s) => s.blur(1.2).png()), dataRange: 255 },
      { name: 'grey 64×64, gaussian noise σ 40', a: grey2, b: noisy(grey2, 40, 12), dataRange: 255 },
      { name: 'rgb 11×13 (one row of Gaussian windows)', a: small, b: noisy(small, 20, 13), dataRange: 255 },
      { name: 'grey 7×8 (one row of uniform windows)', a: tiny, b: noisy(tiny, 20, 14), dataRange: 255 },
      { name: 'flat grey 20×20, 128 vs 131 (zero variance)', a: constant(20, 20, 1, 128), b: constant(20, 20, 1, 131), dataRange: 255 },
      { name: 'rgb 97×131 identical', a: rgb, b: { ...rgb, data: rgb.data.slice() }, dataRange: 255 },
      { name: 'float [0, 1] rgb 64×80, uniform noise ±0.04', a: unit, b: unitNoisy, dataRange: 1 },
    );
    py = await scoreWithSkimage(cases);
  });

  it('SSIM in both conventions agrees within 1e-6, per image and per channel', () => {
    expect(py.version).toMatch(/^\d+\.\d+/);
    let compared = 0;
    for (const c of cases) {
      const ref = py.cases[c.name];
      for (const convention of ['skimage', 'wang'] as SsimConvention[]) {
        if (convention === 'wang' && !fitsWang(c.a)) continue;
        const r = ssim(c.a, c.b, { convention, dataRange: c.dataRange });
        expect(r.convention).toBe(convention);
        expect(r.dataRange).toBe(c.dataRange);
        expect(Math.abs(r.ssim - num(ref[convention] as string)), `${c.name} ${convention}: ${r.ssim} vs skimage ${ref[convention]}`).toBeLessThan(SSIM_TOL);
        compared++;
      }
      if (ref.skimagePerChannel) {
        const r = ssim(c.a, c.b, { convention: 'skimage', dataRange: c.dataRange });
        (ref.skimagePerChannel as string[]).forEach((v, k) => expect(Math.abs(r.perChannel[k] - num(v)), `${c.name} channel ${k}`).toBeLessThan(SSIM_TOL));
      }
    }
    // Every case in the skimage convention, all but the 7×8 one in Wang's.
    expect(compared).toBe(2 * cases.length - 1);
  });

  it('PSNR agrees within 1e-6 relative, +Infinity on identical images as skimage gives', () => {
    for (const c of cases) {
      const want = num(py.cases[c.name].psnr as string);
      const r = psnr(c.a, c.b, { dataRange: c.dataRange });
      expect(r.convention).toBe('skimage');
      if (want === Infinity) {
        expect(r.psnr).toBe(Infinity);
        expect(r.mse).toBe(0);
      } else {
        expect(Math.abs(r.psnr - want) / Math.abs(want), `${c.name}: ${r.psnr} vs skimage ${want}`).toBeLessThan(PSNR_REL_TOL);
      }
    }
  });

  it('8-bit images default to a data range of 255, the same numbers as stating it', () => {
    const c = cases[0];
    expect(psnr(c.a, c.b).psnr).toBe(psnr(c.a, c.b, { dataRange: 255 }).psnr);
    expect(ssim(c.a, c.b, { convention: 'wang' })).toEqual(ssim(c.a, c.b, { convention: 'wang', dataRange: 255 }));
  });

  it('data_range=2 on [0, 1] images is what skimage 0.19 uses by default for floats, and inflates SSIM', () => {
    const c = cases.find((x) => x.a.data instanceof Float64Array)!;
    const ref = py.cases[c.name];
    const right = ssim(c.a, c.b, { convention: 'skimage', dataRange: 1 });
    const inflated = ssim(c.a, c.b, { convention: 'skimage', dataRange: 2 });
    expect(Math.abs(inflated.ssim - num(ref.skimageFloatDefault as string))).toBeLessThan(SSIM_TOL);
    expect(inflated.ssim).toBeGreaterThan(right.ssim + 0.005);
    expect(() => ssim(c.a, c.b, { convention: 'skimage' })).toThrow(/explicit dataRange/);
    expect(() => psnr(c.a, c.b)).toThrow(/explicit dataRange/);
  });

  it('means over images are means of per-image values; one identical pair makes the PSNR mean +Infinity', () => {
    const eight = cases.filter((c) => c.a.data instanceof Uint8Array && c.a.channels === 3);
    const pairs = eight.map((c) => [c.a, c.b] as const);
    const want = eight.map((c) => num(py.cases[c.name].psnr as string));
    const finite = want.filter(Number.isFinite);
    const p = meanPsnr(pairs);
    expect(p).toMatchObject({ metric: 'psnr', convention: 'skimage', aggregate: 'mean-of-per-image-db', dataRange: 255, count: eight.length, mean: Infinity, identical: 1 });
    expect(Math.abs(p.meanFinite - finite.reduce((s, v) => s + v, 0) / finite.length)).toBeLessThan(1e-9 * p.meanFinite);
    const s = meanSsim(pairs, { convention: 'wang' });
    const wantSsim = eight.map((c) => num(py.cases[c.name].wang as string));
    expect(s).toMatchObject({ metric: 'ssim', convention: 'wang', dataRange: 255, count: eight.length });
    expect(Math.abs(s.mean - wantSsim.reduce((x, v) => x + v, 0) / wantSsim.length)).toBeLessThan(SSIM_TOL);
  });

  it('the two conventions give different numbers on the same pair', () => {
    const c = cases[1];
    expect(Math.abs(ssim(c.a, c.b, { convention: 'skimage' }).ssim - ssim(c.a, c.b, { convention: 'wang' }).ssim)).toBeGreaterThan(1e-3);
  });

  it('refuses images smaller than the window, mismatched shapes and short buffers', () => {
    const tiny = cases.find((c) => c.a.width === 8)!;
    expect(() => ssim(tiny.a, tiny.b, { convention: 'wang' })).toThrow(/smaller than the wang convention's 11×11 window/);
    const six = constant(6, 6, 1, 0);
    expect(() => ssim(six, six, { convention: 'skimage' })).toThrow(/7×7 window/);
    expect(() => ssim(cases[0].a, cases[1].a, { convention: 'skimage' })).toThrow(/differ in shape/);
    expect(() => psnr({ ...six, data: new Uint8Array(35) }, six)).toThrow(/35 samples/);
    expect(() => psnr(six, six, { dataRange: 0 })).toThrow(/positive/);
  });
});
