import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeRgbAsPil } from '../src/images/pil-decode.js';
import { centreCrop, cropGeometry, cropSides, randomCrop, type CropDraw } from '../src/images/train-crop.js';
import { seededRandom } from '../src/seeded-random.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * The reference, run by Debian's python3-pil: guided-diffusion's random_crop_arr as
 * Instella-T2I's utils/misc.py has it, with the random draws replaced by the given ones, then
 * RandomHorizontalFlip's transpose; and torchvision's Resize(size, BICUBIC) + CenterCrop(size)
 * written out from torchvision's own formulas (_compute_resized_output_size, center_crop).
 */
const REFERENCE = String.raw`
import json, sys
import numpy as np
from PIL import Image
def random_crop_arr(pil_image, image_size, side, crop_y, crop_x):
    while min(*pil_image.size) >= 2 * side:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = side / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]
def centre(img, size):
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return np.array(img.crop((left, top, left + size, top + size)))
jobs = json.load(open(sys.argv[1]))
for j in jobs:
    img = Image.open(j['path']).convert('RGB')
    if j['mode'] == 'random':
        arr = random_crop_arr(img, j['size'], j['side'], j['top'], j['left'])
        if j['flip']:
            arr = np.array(Image.fromarray(arr).transpose(Image.FLIP_LEFT_RIGHT))
    else:
        arr = centre(img, j['size'])
    open(j['out'], 'wb').write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
`;

interface Job {
  path: string;
  mode: 'random' | 'centre';
  size: number;
  side?: number;
  top?: number;
  left?: number;
  flip?: boolean;
  out: string;
}

let dir: string;
const files: { path: string; width: number; height: number }[] = [];

beforeAll(async () => {
  dir = await tempDir('train-crop');
  const r = seededRandom(5);
  // Smaller than the crop (upscaled), about the crop, over twice it (BOX halvings), odd sizes, portrait and landscape; JPEG and PNG.
  const sizes: [number, number, string][] = [[97, 61, 'png'], [300, 451, 'jpg'], [521, 517, 'png'], [1290, 833, 'jpg'], [700, 2100, 'png']];
  for (const [w, h, ext] of sizes) {
    const noise = Buffer.from(Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256)));
    const path = join(dir, `${w}x${h}.${ext}`);
    const img = sharp(noise, { raw: { width: w, height: h, channels: 3 } }).blur(1.5);
    await (ext === 'jpg' ? img.jpeg({ quality: 85 }) : img.png()).toFile(path);
    files.push({ path, width: w, height: h });
  }
});

describe('train-crop against Pillow', () => {
  it('random_crop_arr and the flip are bit-exact for the same draws, and centre crops match torchvision', async () => {
    const r = seededRandom(9);
    const jobs: Job[] = [];
    const draws: { file: (typeof files)[number]; size: number; draw?: CropDraw }[] = [];
    for (const file of files) {
      for (const size of [64, 256]) {
        const [lo, hi] = cropSides(size);
        for (const side of [lo, hi, lo + Math.floor(r() * (hi - lo + 1))]) {
          const g = cropGeometry(file.width, file.height, side);
          const draw = { side, top: Math.floor(r() * (g.height - size + 1)), left: Math.floor(r() * (g.width - size + 1)), flip: r() < 0.5 };
          draws.push({ file, size, draw });
          jobs.push({ path: file.path, mode: 'random', size, ...draw, out: join(dir, `out-${jobs.length}.raw`) });
        }
        draws.push({ file, size });
        jobs.push({ path: file.path, mode: 'centre', size, out: join(dir, `out-${jobs.length}.raw`) });
      }
    }
    await writeFile(join(dir, 'jobs.json'), JSON.stringify(jobs));
    execFileSync('/usr/bin/python3', ['-c', REFERENCE, join(dir, 'jobs.json')]);
    let halved = 0;
    let flipped = 0;
    for (const [i, d] of draws.entries()) {
      const img = await decodeRgbAsPil(d.file.path);
      const got = d.draw ? randomCrop(img, d.size, d.draw) : centreCrop(img, d.size);
      expect([got.width, got.height]).toEqual([d.size, d.size]);
      const want = await readFile(jobs[i].out);
      expect(Buffer.from(got.data).equals(want), `${jobs[i].mode} ${d.file.path} ${JSON.stringify(d.draw ?? {})}`).toBe(true);
      if (d.draw && cropGeometry(d.file.width, d.file.height, d.draw.side).halvings > 0) halved++;
      if (d.draw?.flip) flipped++;
    }
    // The cases that matter were exercised.
    expect(halved).toBeGreaterThan(3);
    expect(flipped).toBeGreaterThan(3);
  });

  it('refuses a crop that does not fit the resized image', async () => {
    const img = await decodeRgbAsPil(files[0].path);
    expect(() => randomCrop(img, 64, { side: 64, left: 40, top: 0, flip: false })).toThrow(/does not fit the 102×64/);
  });
});
