import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { decodeRgbAsPil } from '../src/images/pil-decode.js';
import { hashDistance, perceptualHash } from '../src/images/phash.js';
import { tempDir } from './helpers/temp-dir.js';

/** perceptualHash equals imagehash's phash as Pillow and scipy compute it, bit for bit. */
const MAKE_AND_HASH = String.raw`
import json, sys, numpy as np, scipy.fftpack
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(3)
y, x = np.mgrid[0:97, 0:141]
files = []
for i in range(6):
    a = np.stack([np.sin(x / (5 + i) + c) * 90 + np.cos(y / (7 + 2 * i)) * 60 + 128 for c in range(3)], -1)
    a += rng.normal(0, 8 * i, a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype('uint8'))
    name = f'{d}/p{i}.' + ('jpg' if i % 2 else 'png')
    (im.convert('L') if i == 4 else im).save(name, **({'quality': 80} if i % 2 else {}))
    files.append(name)
out = {}
for f in files:
    g = Image.open(f).convert('L').resize((32, 32), Image.LANCZOS)
    c = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(g), axis=0), axis=1)[:8, :8]
    out[f] = np.packbits((c > np.median(c)).flatten()).tobytes().hex()
print(json.dumps(out))
`;

describe('perceptualHash', () => {
  it('equals imagehash.phash (Pillow L + LANCZOS 32×32, scipy DCT, median of the 8×8) on RGB, grey, PNG and JPEG', async () => {
    const dir = await tempDir('phash');
    const want = JSON.parse(execFileSync('/usr/bin/python3', ['-c', MAKE_AND_HASH, dir], { encoding: 'utf8' })) as Record<string, string>;
    expect(Object.keys(want)).toHaveLength(6);
    const got: Record<string, string> = {};
    for (const f of Object.keys(want)) got[f] = Buffer.from(perceptualHash(await decodeRgbAsPil(f))).toString('hex');
    expect(got).toEqual(want);
    expect(new Set(Object.values(want)).size).toBeGreaterThan(3);
  });

  it('hashDistance counts the differing bits', () => {
    const a = Uint8Array.from([0, 0xff, 0x0f, 1, 2, 3, 4, 5]);
    const b = Uint8Array.from([0x80, 0xff, 0xf0, 1, 2, 3, 4, 4]);
    expect(hashDistance(a, b)).toBe(1 + 8 + 1);
    expect(hashDistance(a, a)).toBe(0);
  });
});
