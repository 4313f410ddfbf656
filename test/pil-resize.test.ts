import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { centreCropOffset, centreCropSquare, resize, resizeRegion, type FloatImage, type ResampleFilter, type ResizeBox } from '../src/images/pil-resize.js';
import type { RawImage } from '../src/sample.js';
import { seededRandom } from '../src/seeded-random.js';
import { clipResizeCrop } from '../stages/clip-preprocess.js';

/*
 * Every expected value here comes from Debian's python3-pil (scripts/test-deps.sh installs it),
 * run by /usr/bin/python3 on the same pixels: PNG files written from the test's own images. The
 * interpreter is named in full because a pyenv or venv python first on PATH may lack PIL.
 */
const PYTHON = '/usr/bin/python3';

const FILTERS: ResampleFilter[] = ['lanczos', 'bicubic', 'bilinear', 'nearest', 'box', 'hamming'];
const MODES = { 1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA' } as const;

// ---- fixture images ----

/** Gradients, antialiased shapes, hard-edged rectangles and hairlines, rendered by librsvg. */
async function drawn(w: number, h: number, channels: 3 | 4 = 3): Promise<RawImage> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
    <defs>
      <linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#ff2000"/><stop offset="0.5" stop-color="#20ff80"/><stop offset="1" stop-color="#1010ff"/></linearGradient>
      <radialGradient id="r"><stop offset="0" stop-color="#ffffff" stop-opacity="${channels === 4 ? 0.9 : 1}"/><stop offset="1" stop-color="#000000" stop-opacity="${channels === 4 ? 0.1 : 1}"/></radialGradient>
    </defs>
    <rect width="${w}" height="${h}" fill="url(#g)"/>
    <circle cx="${w * 0.3}" cy="${h * 0.4}" r="${Math.min(w, h) * 0.22}" fill="url(#r)"/>
    <rect x="${Math.round(w * 0.55)}" y="${Math.round(h * 0.1)}" width="${Math.round(w * 0.3)}" height="${Math.round(h * 0.35)}" fill="#000" shape-rendering="crispEdges"/>
    <rect x="${Math.round(w * 0.6)}" y="${Math.round(h * 0.6)}" width="${Math.round(w * 0.25)}" height="${Math.round(h * 0.25)}" fill="#fff" shape-rendering="crispEdges"/>
    <path d="M0 ${h - 1} L${w} 0" stroke="#ff0" stroke-width="1"/>
    <path d="M${w * 0.1} ${h * 0.9} Q${w * 0.5} ${h * 0.2} ${w * 0.9} ${h * 0.95}" stroke="#f0f" stroke-width="3" fill="none"/>
  </svg>`;
  let pipeline = sharp(Buffer.from(svg));
  pipeline = channels === 4 ? pipeline.ensureAlpha() : pipeline.removeAlpha();
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([w, h, channels]);
  const img: RawImage = { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: w, height: h, channels };
  // A patch of noise and a 1-px checkerboard: the worst cases for ringing and clipping.
  const rand = seededRandom(w * 1000 + h);
  for (let y = Math.floor(h * 0.7); y < h; y++) {
    for (let x = 0; x < Math.floor(w * 0.25); x++) for (let c = 0; c < channels; c++) img.data[(y * w + x) * channels + c] = Math.floor(rand() * 256);
    for (let x = Math.floor(w * 0.3); x < Math.floor(w * 0.45); x++) img.data.fill((x + y) % 2 ? 255 : 0, (y * w + x) * channels, (y * w + x) * channels + 3);
  }
  return img;
}

/** Uniform noise with bands of 8-px stripes: every pixel differs from its neighbours. */
function noise(w: number, h: number, channels: 1 | 2 | 3 | 4, seed: number): RawImage {
  const rand = seededRandom(seed);
  const data = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < channels; c++) {
        // Alpha spans 0 and 255 often, so premultiplication's special cases are exercised.
        const isAlpha = (channels === 2 || channels === 4) && c === channels - 1;
        const v = isAlpha ? [0, 255, Math.floor(rand() * 256)][(x >> 4) % 3] : y % 64 < 32 ? Math.floor(rand() * 256) : ((x >> 3) & 1) * 255;
        data[(y * w + x) * channels + c] = v;
      }
    }
  }
  return { data, width: w, height: h, channels };
}

// ---- the cases PIL computes ----

interface Case8 {
  id: string;
  image: string;
  w: number;
  h: number;
  filter: ResampleFilter;
  box?: ResizeBox;
}

interface CaseF {
  id: string;
  /** Raw little-endian float32 file holding one channel. */
  file: string;
  w0: number;
  h0: number;
  w: number;
  h: number;
  filter: ResampleFilter;
  box?: ResizeBox;
}

const PY_SCRIPT = String.raw`
import hashlib, json, sys
import numpy as np
import PIL
from PIL import Image
d = sys.argv[1]
spec = json.load(open(d + '/spec.json'))
F = {'nearest': Image.NEAREST, 'box': Image.BOX, 'bilinear': Image.BILINEAR,
     'hamming': Image.HAMMING, 'bicubic': Image.BICUBIC, 'lanczos': Image.LANCZOS}
out = {'version': PIL.__version__, 'inputs': {}, 'offsets': []}
imgs = {}
for name, mode in spec['images'].items():
    im = Image.open(d + '/' + name + '.png')
    im.load()
    assert im.mode == mode, (name, im.mode, mode)
    imgs[name] = im
    out['inputs'][name] = hashlib.sha256(im.tobytes()).hexdigest()
for c in spec['cases8']:
    box = tuple(c['box']) if c.get('box') else None
    r = imgs[c['image']].resize((c['w'], c['h']), F[c['filter']], box=box)
    assert r.mode == imgs[c['image']].mode
    open(d + '/' + c['id'] + '.bin', 'wb').write(r.tobytes())
for c in spec['casesF']:
    a = np.fromfile(d + '/' + c['file'], dtype='<f4').reshape(c['h0'], c['w0'])
    box = tuple(c['box']) if c.get('box') else None
    r = Image.fromarray(a, mode='F').resize((c['w'], c['h']), F[c['filter']], box=box)
    np.asarray(r, dtype='<f4').tofile(d + '/' + c['id'] + '.bin')
# torchvision's CenterCrop(min side) (GigaGAN's CenterCropLongEdge), spelled out since
# torchvision is not installed: top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0)).
def centre(im):
    w, h = im.size
    s = min(w, h)
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return im.crop((left, top, left + s, top + s))
for name in spec['crop']:
    open(d + '/crop-' + name + '.bin', 'wb').write(centre(imgs[name]).tobytes())
for size, crop in spec['offsets']:
    out['offsets'].append(int(round((size - crop) / 2.0)))
# clean-fid's "clean" resize after GigaGAN's crop and Lanczos 256: each channel as F, bicubic 299.
for name in spec['cleanfid']:
    u8 = np.asarray(centre(imgs[name]).resize((256, 256), Image.LANCZOS))
    open(d + '/l256-' + name + '.bin', 'wb').write(u8.tobytes())
    chans = [np.asarray(Image.fromarray(u8[:, :, i].astype(np.float32), mode='F').resize((299, 299), Image.BICUBIC)) for i in range(3)]
    np.stack(chans, axis=2).astype('<f4').tofile(d + '/f299-' + name + '.bin')
json.dump(out, open(d + '/out.json', 'w'))
`;

let dir = '';
let pil: { version: string; inputs: Record<string, string>; offsets: number[] };
const images: Record<string, RawImage> = {};
const floats: Record<string, FloatImage> = {};
const cases8: Case8[] = [];
const casesF: CaseF[] = [];
const OFFSET_PAIRS: [number, number][] = [];

const read = (name: string): Buffer => readFileSync(join(dir, name));
const f32 = (buf: Buffer): Float32Array => new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));

/** Differences as a short readable list; empty when the two are identical. */
function diff8(id: string, got: Uint8Array, want: Uint8Array): string[] {
  if (got.length !== want.length) return [`${id}: ${got.length} bytes, PIL ${want.length}`];
  let n = 0;
  let max = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (d) n++;
    if (d > max) max = d;
  }
  return n ? [`${id}: ${n} of ${got.length} bytes differ, max ${max}`] : [];
}

/** Float32 comparison by value (so −0 and +0 are equal, as numpy compares them). */
function diffF(id: string, got: Float32Array, want: Float32Array): string[] {
  if (got.length !== want.length) return [`${id}: ${got.length} values, PIL ${want.length}`];
  let n = 0;
  let max = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (d !== 0 || Number.isNaN(d)) n++;
    if (d > max) max = d;
  }
  return n ? [`${id}: ${n} of ${got.length} floats differ, max ${max}`] : [];
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bitprep-pil-resize-'));
  Object.assign(images, {
    drawn512: await drawn(512, 512),
    noise333x500: noise(333, 500, 3, 7),
    drawn640x427: await drawn(640, 427),
    drawn200x150: await drawn(200, 150),
    rgba300x250: await drawn(300, 250, 4),
    noiseRgba97x131: noise(97, 131, 4, 11),
    grey257x311: noise(257, 311, 1, 13),
    greyAlpha161x97: noise(161, 97, 2, 17),
  });
  for (const [name, img] of Object.entries(images)) {
    // Without 'b-w' sharp would write grey images as RGB PNGs.
    const raw = sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
    const png = await (img.channels <= 2 ? raw.toColourspace('b-w') : raw).png({ compressionLevel: 1 }).toBuffer();
    writeFileSync(join(dir, `${name}.png`), png);
  }

  // The Done-when cases: Lanczos and bicubic to 256 and 299 on RGB, plus the other filters.
  for (const name of ['drawn512', 'noise333x500', 'drawn640x427', 'drawn200x150']) {
    for (const size of [256, 299]) for (const filter of FILTERS) cases8.push({ id: `${name}-${filter}-${size}`, image: name, w: size, h: size, filter });
  }
  // Non-square outputs, enlarging one axis while shrinking the other, one axis unchanged.
  for (const filter of FILTERS) {
    cases8.push({ id: `noise333x500-${filter}-640x90`, image: 'noise333x500', w: 640, h: 90, filter });
    cases8.push({ id: `drawn640x427-${filter}-640x300`, image: 'drawn640x427', w: 640, h: 300, filter });
    cases8.push({ id: `drawn200x150-${filter}-77x150`, image: 'drawn200x150', w: 77, h: 150, filter });
  }
  // Other modes: RGBA and LA go through PIL's premultiplication, L through the 1-band loops.
  for (const name of ['rgba300x250', 'noiseRgba97x131', 'grey257x311', 'greyAlpha161x97']) {
    for (const [w, h] of [[256, 256], [299, 299], [45, 60]]) for (const filter of FILTERS) cases8.push({ id: `${name}-${filter}-${w}x${h}`, image: name, w, h, filter });
  }
  // Boxes: fractional (parsed as float32), integer of the output's size (PIL crops instead),
  // integer but scaled.
  const boxes: [string, string, number, number, ResizeBox][] = [
    ['frac', 'drawn512', 256, 256, [10.5, 20.25, 300.1, 500.7]],
    ['frac-up', 'drawn200x150', 299, 299, [0.3, 1.7, 120.9, 88.2]],
    ['crop', 'drawn640x427', 256, 256, [100, 50, 356, 306]],
    ['crop-rgba', 'rgba300x250', 128, 100, [17, 33, 145, 133]],
    ['int', 'noise333x500', 256, 256, [0, 84, 333, 417]],
    ['int-same-w', 'drawn640x427', 640, 200, [0, 0, 640, 427]],
  ];
  for (const [tag, image, w, h, box] of boxes) for (const filter of FILTERS) cases8.push({ id: `box-${tag}-${filter}`, image, w, h, filter, box });

  // Float images: every channel of an 8-bit image, and values that are not integers at all.
  const rand = seededRandom(99);
  const arbitrary = new Float32Array(210 * 170).map((_, i) => (i % 210 < 100 ? (rand() - 0.3) * 1000 : Math.sin(i / 37) * 3.7e-3));
  floats.arbitrary = { data: arbitrary, width: 210, height: 170, channels: 1 };
  const red = images.drawn512;
  floats.red512 = { data: Float32Array.from({ length: 512 * 512 }, (_, i) => red.data[i * 3]), width: 512, height: 512, channels: 1 };
  for (const [name, img] of Object.entries(floats)) {
    writeFileSync(join(dir, `${name}.f32`), Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength));
    for (const [w, h] of [[299, 299], [256, 256], [97, 400]]) {
      for (const filter of FILTERS) casesF.push({ id: `F-${name}-${filter}-${w}x${h}`, file: `${name}.f32`, w0: img.width, h0: img.height, w, h, filter });
    }
  }
  // Float results show differences far below an 8-bit step: the float32 parsing of a fractional
  // box, and PIL cropping (not resampling) for an integer box of the output's size.
  const fboxes: [string, number, number, ResizeBox][] = [
    ['frac', 256, 256, [10.1, 20.3, 300.7, 500.9]],
    ['crop', 256, 256, [100, 50, 356, 306]],
  ];
  for (const [tag, w, h, box] of fboxes) {
    for (const filter of FILTERS) casesF.push({ id: `F-box-${tag}-${filter}`, file: 'red512.f32', w0: 512, h0: 512, w, h, filter, box });
  }

  for (const size of [256, 257, 299, 333, 427, 500, 501, 640, 1023]) for (const crop of [1, 150, 224, 255, 256, 299]) if (crop <= size) OFFSET_PAIRS.push([size, crop]);

  const spec = {
    images: Object.fromEntries(Object.entries(images).map(([n, i]) => [n, MODES[i.channels]])),
    cases8,
    casesF,
    crop: ['noise333x500', 'drawn640x427', 'drawn200x150', 'greyAlpha161x97', 'drawn512'],
    offsets: OFFSET_PAIRS,
    cleanfid: ['noise333x500', 'drawn640x427', 'drawn200x150', 'drawn512'],
  };
  writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
  execFileSync(PYTHON, ['-c', PY_SCRIPT, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  pil = JSON.parse(read('out.json').toString('utf8'));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('PIL-exact resize against Debian python3-pil', () => {
  it('runs Pillow on exactly the pixels the test resizes', () => {
    expect(pil.version).toMatch(/^\d+\./);
    for (const [name, img] of Object.entries(images)) expect(createHash('sha256').update(img.data).digest('hex'), name).toBe(pil.inputs[name]);
  });

  it('equals PIL bit for bit on RGB images: Lanczos, bicubic, bilinear, nearest, box, Hamming; 256, 299 and non-square', () => {
    const rgb = cases8.filter((c) => images[c.image].channels === 3 && !c.box);
    expect(rgb.length).toBe(4 * 2 * FILTERS.length + 3 * FILTERS.length);
    const failures = rgb.flatMap((c) => diff8(c.id, resize(images[c.image], c.w, c.h, c.filter).data, read(`${c.id}.bin`)));
    expect(failures).toEqual([]);
  });

  it('equals PIL bit for bit on L, LA and RGBA images (premultiplied alpha)', () => {
    const others = cases8.filter((c) => images[c.image].channels !== 3 && !c.box);
    const failures = others.flatMap((c) => {
      const out = resize(images[c.image], c.w, c.h, c.filter);
      expect(out.channels).toBe(images[c.image].channels);
      return diff8(c.id, out.data, read(`${c.id}.bin`));
    });
    expect(failures).toEqual([]);
  });

  it('equals PIL bit for bit with a box: fractional, integer, and the crop PIL takes instead of resampling', () => {
    const boxed = cases8.filter((c) => c.box);
    const failures = boxed.flatMap((c) => diff8(c.id, resize(images[c.image], c.w, c.h, c.filter, c.box).data, read(`${c.id}.bin`)));
    expect(failures).toEqual([]);
  });

  it('computes any region of the output exactly as cropping the full result', () => {
    const img = images.drawn640x427;
    for (const filter of FILTERS) {
      const full = resize(img, 299, 256, filter);
      const r = { left: 37, top: 101, width: 150, height: 77 };
      const part = resizeRegion(img, 299, 256, filter, r);
      const want = new Uint8Array(r.width * r.height * 3);
      for (let y = 0; y < r.height; y++) want.set(full.data.subarray(((r.top + y) * 299 + r.left) * 3, ((r.top + y) * 299 + r.left + r.width) * 3), y * r.width * 3);
      expect(diff8(filter, part.data, want)).toEqual([]);
    }
  });

  it('equals PIL "F" resizes as float32 values, exactly, for every filter, with and without a box', () => {
    const failures = casesF.flatMap((c) => {
      const src = floats[c.file.replace('.f32', '')];
      return diffF(c.id, resize(src, c.w, c.h, c.filter, c.box).data, f32(read(`${c.id}.bin`)));
    });
    expect(failures).toEqual([]);
  });

  it('reproduces the FID preprocessing: centre crop, Lanczos 256 (uint8), each channel bicubic 299 as F', () => {
    for (const name of ['noise333x500', 'drawn640x427', 'drawn200x150', 'drawn512']) {
      const l256 = resize(centreCropSquare(images[name]), 256, 256, 'lanczos');
      expect(diff8(`l256-${name}`, l256.data, read(`l256-${name}.bin`))).toEqual([]);
      // Interleaved channels are resized independently, as clean-fid's one F image per channel.
      const f = resize({ data: Float32Array.from(l256.data), width: 256, height: 256, channels: 3 }, 299, 299, 'bicubic');
      expect(diffF(`f299-${name}`, f.data, f32(read(`f299-${name}.bin`)))).toEqual([]);
    }
  });
});

describe('centre crop', () => {
  it('takes the offsets torchvision CenterCrop takes (Python round, half to even)', () => {
    expect(OFFSET_PAIRS.map(([s, c]) => centreCropOffset(s, c))).toEqual(pil.offsets);
    // Spelled out: excess 167 → 83.5 → 84; 213 → 106.5 → 106; 45 → 22.5 → 22; 51 → 25.5 → 26.
    expect([centreCropOffset(500, 333), centreCropOffset(640, 427), centreCropOffset(269, 224), centreCropOffset(201, 150)]).toEqual([84, 106, 22, 26]);
    expect(() => centreCropOffset(100, 101)).toThrow('pil-resize: cannot centre-crop 101 out of 100');
  });

  it("cuts the same square as PIL's crop at those offsets, on odd sizes", () => {
    for (const name of ['noise333x500', 'drawn640x427', 'drawn200x150', 'greyAlpha161x97', 'drawn512']) {
      const sq = centreCropSquare(images[name]);
      const side = Math.min(images[name].width, images[name].height);
      expect([sq.width, sq.height, sq.channels]).toEqual([side, side, images[name].channels]);
      expect(diff8(`crop-${name}`, sq.data, read(`crop-${name}.bin`))).toEqual([]);
    }
  });
});

describe('resize edge cases', () => {
  it('copies on an identity resize, without the alpha round trip', () => {
    const img = noise(31, 17, 4, 5);
    const out = resize(img, 31, 17, 'lanczos');
    expect(out.data).toEqual(img.data);
    expect(out.data).not.toBe(img.data);
  });

  it('takes Node Buffers and returns plain typed arrays', () => {
    const img = noise(40, 30, 3, 3);
    for (const filter of FILTERS) {
      const out = resize({ ...img, data: Buffer.from(img.data) }, 17, 50, filter);
      expect(out.data.constructor).toBe(Uint8Array);
      expect(out.data).toEqual(resize(img, 17, 50, filter).data);
    }
    expect(centreCropSquare({ ...img, data: Buffer.from(img.data) }).data.constructor).toBe(Uint8Array);
  });

  it('leaves CLIP inputs already at the resized size untouched, alpha included (torchvision skips the resize)', () => {
    const img = noise(224, 300, 4, 9);
    const want = new Uint8Array(224 * 224 * 3);
    for (let i = 0; i < 224 * 224; i++) want.set(img.data.subarray((38 * 224 + i) * 4, (38 * 224 + i) * 4 + 3), i * 3);
    expect(diff8('clip-rgba', clipResizeCrop(img).data, want)).toEqual([]);
  });

  it('refuses what Pillow refuses, with its reasons', () => {
    const img = noise(20, 10, 3, 1);
    expect(() => resize(img, 0, 10, 'bicubic')).toThrow('pil-resize: height and width must be positive integers, got 0×10');
    expect(() => resize(img, 10, 10, 'bicubic', [-1, 0, 10, 10])).toThrow("pil-resize: box offset can't be negative");
    expect(() => resize(img, 10, 10, 'bicubic', [0, 0, 21, 10])).toThrow("pil-resize: box can't exceed original image size");
    expect(() => resize(img, 10, 10, 'bicubic', [5, 0, 4, 10])).toThrow("pil-resize: box can't be empty");
    expect(() => resize(img, 10, 10, 'cubic' as ResampleFilter)).toThrow('pil-resize: unknown filter "cubic"');
    expect(() => resize({ ...img, channels: 4 }, 10, 10, 'bicubic')).toThrow('pil-resize: 20×10×4 image holds 600 values, expected 800');
    expect(() => resizeRegion(img, 10, 10, 'bicubic', { left: 5, top: 0, width: 6, height: 10 })).toThrow('pil-resize: region 6×10 at (5, 0) is not inside the 10×10 output');
  });
});
