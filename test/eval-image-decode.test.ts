import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { readRgb } from '../evaluation/images/image-folder.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * Writes one file per Pillow mode (and RGB with an embedded Adobe-RGB-like ICC profile, built
 * byte by byte: Debian ships no .icc file) with Debian's python3-pil, and what
 * `Image.open(f).convert('RGB')` gives for each, as raw bytes beside it.
 */
const MAKE = String.raw`
import json, struct, sys
import numpy as np
from PIL import Image

def s15(v): return struct.pack('>i', int(round(v * 65536)))
def xyz(x, y, z): return b'XYZ ' + b'\0' * 4 + s15(x) + s15(y) + s15(z)
def curv(g): return b'curv' + b'\0' * 4 + struct.pack('>I', 1) + struct.pack('>H', int(round(g * 256))) + b'\0\0'
def pad(d): return d + b'\0' * ((4 - len(d) % 4) % 4)
def desc(t):
    a = t.encode('ascii') + b'\0'
    return pad(b'desc' + b'\0' * 4 + struct.pack('>I', len(a)) + a + b'\0' * 8 + b'\0' * 2 + b'\0' + b'\0' * 67)
def adobe_like():
    tags = [(b'desc', desc('Adobe RGB (1998) compatible, test')), (b'cprt', pad(b'text' + b'\0' * 4 + b'test data\0')),
            (b'wtpt', xyz(0.9642, 1.0, 0.8249)), (b'rXYZ', xyz(0.6097, 0.3111, 0.0195)), (b'gXYZ', xyz(0.2053, 0.6257, 0.0609)),
            (b'bXYZ', xyz(0.1492, 0.0632, 0.7446)), (b'rTRC', curv(2.2)), (b'gTRC', curv(2.2)), (b'bTRC', curv(2.2))]
    off = 128 + 4 + 12 * len(tags)
    table, data = b'', b''
    for sig, body in tags:
        table += sig + struct.pack('>II', off + len(data), len(body))
        data += body
    head = (struct.pack('>I', off + len(data)) + b'none' + bytes([2, 0x10, 0, 0]) + b'mntr' + b'RGB ' + b'XYZ ' + b'\0' * 12 + b'acsp'
            + b'APPL' + b'\0' * 24 + s15(0.9642) + s15(1.0) + s15(0.8249) + b'none' + b'\0' * 44)
    assert len(head) == 128
    return head + struct.pack('>I', len(tags)) + table + data

out = sys.argv[1]
rng = np.random.default_rng(7)
h, w = 20, 28
rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
made = {}
def save(name, im, **kw):
    im.save(f'{out}/{name}', **kw)
save('rgb-icc.png', Image.fromarray(rgb), icc_profile=adobe_like())
save('rgb-icc.jpg', Image.fromarray(rgb), icc_profile=adobe_like(), quality=95)
save('p.png', Image.fromarray(rgb).quantize(64))
save('p-transparent.png', Image.fromarray(rgb).quantize(32), transparency=3)
save('l.png', Image.fromarray(rgb[:, :, 0], 'L'))
save('la.png', Image.merge('LA', [Image.fromarray(rgb[:, :, 0], 'L'), Image.fromarray(rgb[:, :, 1], 'L')]))
save('rgba.png', Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), 'RGBA'))
save('one.png', Image.fromarray(rgb[:, :, 0] > 127).convert('1'))
save('i16.png', Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16), 'I;16'))
save('cmyk.jpg', Image.fromarray(np.dstack([rgb, rgb[:, :, :1]]), 'CMYK'), quality=95)
save('cmyk.tif', Image.fromarray(np.dstack([rgb, rgb[:, :, 1:2]]), 'CMYK'))
for name in ['rgb-icc.png', 'rgb-icc.jpg', 'p.png', 'p-transparent.png', 'l.png', 'la.png', 'rgba.png', 'one.png', 'i16.png', 'cmyk.jpg', 'cmyk.tif']:
    im = Image.open(f'{out}/{name}')
    made[name] = im.mode
    np.asarray(im.convert('RGB')).tofile(f'{out}/{name}.rgb')
print(json.dumps(made))
`;

describe('evaluation images decode as Pillow reads them (the reference metrics do)', () => {
  let dir: string;
  let modes: Record<string, string>;
  beforeAll(async () => {
    dir = await tempDir('pil-modes');
    modes = JSON.parse(execFileSync('/usr/bin/python3', ['-c', MAKE, dir], { encoding: 'utf8' }));
  });

  it('every mode, ICC-tagged files included, equals Image.open(f).convert("RGB") byte for byte', async () => {
    expect(Object.values(modes).sort()).toEqual(['1', 'CMYK', 'CMYK', 'I', 'L', 'LA', 'P', 'P', 'RGB', 'RGB', 'RGBA']);
    for (const name of Object.keys(modes)) {
      const want = await readFile(join(dir, `${name}.rgb`));
      const got = await readRgb(join(dir, name));
      expect([got.width, got.height, got.channels], name).toEqual([28, 20, 3]);
      let differ = 0;
      for (let i = 0; i < want.length; i++) if (got.data[i] !== want[i]) differ++;
      expect(differ, `${name} (${modes[name]}): values differing from Pillow`).toBe(0);
    }
  });

  it('the ICC files are ones a colour-managed decoder would change (so the check above means something)', async () => {
    for (const name of ['rgb-icc.png', 'rgb-icc.jpg']) {
      expect((await sharp(join(dir, name)).metadata()).icc?.length, name).toBeGreaterThan(0);
      const managed = await sharp(join(dir, name)).removeAlpha().raw().toBuffer();
      const stored = await readFile(join(dir, `${name}.rgb`));
      let maxDiff = 0;
      for (let i = 0; i < stored.length; i++) maxDiff = Math.max(maxDiff, Math.abs(managed[i] - stored[i]));
      expect(maxDiff, name).toBeGreaterThan(20);
    }
  });
});
