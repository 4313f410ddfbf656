import { createHash } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeResize, type DecodeResizeOptions } from '../stages/decode-resize.js';
import { silentLogger } from '../src/log.js';
import { newSample, type Sample } from '../src/sample.js';
import { pipe, type StageContext } from '../src/stage.js';
import { countInFunnel, emptyFunnel, funnelBalances, StatsCollector } from '../src/stats.js';

const noise = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: '#000000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } });
const u8 = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/** A PNG whose header declares width×height but which holds almost no data: decoding it would fail. */
function pngHeaderOnly(width: number, height: number): Uint8Array {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return u8(Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1000))), chunk('IEND', Buffer.alloc(0))]));
}

const fx = {} as Record<'landscape' | 'portrait' | 'small' | 'rotated' | 'jpegBig' | 'rgba' | 'grey' | 'pngBig' | 'gif' | 'svg', Uint8Array>;

beforeAll(async () => {
  fx.landscape = u8(await noise(800, 600).jpeg({ quality: 90 }).toBuffer());
  fx.portrait = u8(await noise(300, 900).png().toBuffer());
  fx.small = u8(await noise(100, 80).webp().toBuffer());
  fx.rotated = u8(
    await noise(800, 600)
      .jpeg()
      .withExif({ IFD0: { Make: 'Canon', Model: 'EOS 5D', Software: 'bitprep-test' }, IFD2: { DateTimeOriginal: '2020:01:02 03:04:05' } })
      .withMetadata({ orientation: 6 })
      .toBuffer(),
  );
  fx.jpegBig = u8(await noise(1200, 900).jpeg({ quality: 90 }).toBuffer());
  // Left half opaque blue, right half fully transparent.
  fx.rgba = u8(
    await sharp({ create: { width: 200, height: 100, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .composite([{ input: { create: { width: 100, height: 100, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 1 } } }, left: 0, top: 0 }])
      .png()
      .toBuffer(),
  );
  fx.grey = u8(await noise(120, 90).toColourspace('b-w').png().toBuffer());
  fx.pngBig = u8(await noise(300, 300).png().toBuffer());
  fx.gif = u8(await noise(120, 120).gif().toBuffer());
  fx.svg = u8(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="80"><rect width="100" height="80" fill="red"/></svg>'));
});

function ctx(): StageContext {
  return { unitId: 'u0', stats: new StatsCollector(), log: silentLogger };
}

function sample(key: string, image?: Uint8Array): Sample {
  const s = newSample(key, { caption: key });
  s.image = image;
  return s;
}

async function run(opts: DecodeResizeOptions, samples: Sample[], c = ctx()): Promise<Sample[]> {
  const out: Sample[] = [];
  async function* source() {
    yield* samples;
  }
  for await (const s of pipe(source(), [decodeResize(opts)], c)) out.push(s);
  return out;
}

async function one(opts: DecodeResizeOptions, image: Uint8Array): Promise<Sample> {
  const [s] = await run(opts, [sample('k', image)]);
  return s;
}

async function pixel(img: Uint8Array, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(img).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return [...data.subarray(i, i + info.channels)];
}

const near = (a: number[], b: number[], tol = 10) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol);

describe('decode-resize: modes', () => {
  const cases: [keyof typeof fx, number, number][] = [
    ['landscape', 800, 600],
    ['portrait', 300, 900],
    ['small', 100, 80],
  ];

  it.each(cases)('centre_crop gives exactly size×size (%s)', async (name) => {
    const s = await one({ size: 256, mode: 'centre_crop' }, fx[name]);
    expect(s.status).toEqual({ kind: 'ok' });
    expect([s.fields.width, s.fields.height]).toEqual([256, 256]);
    const m = await sharp(s.image!).metadata();
    expect([m.format, m.width, m.height, m.channels]).toEqual(['jpeg', 256, 256, 3]);
    expect(s.imageExt).toBe('jpg');
  });

  it.each(cases)('keep_ratio puts the longer side at size and keeps the aspect (%s)', async (name, w, h) => {
    const s = await one({ size: 256, mode: 'keep_ratio' }, fx[name]);
    const ow = s.fields.width as number;
    const oh = s.fields.height as number;
    expect(Math.max(ow, oh)).toBe(256);
    expect(Math.abs(ow - (w * 256) / Math.max(w, h))).toBeLessThanOrEqual(1);
    expect(Math.abs(oh - (h * 256) / Math.max(w, h))).toBeLessThanOrEqual(1);
    const m = await sharp(s.image!).metadata();
    expect([m.width, m.height]).toEqual([ow, oh]);
  });

  it('border pads to size×size with the border colour', async () => {
    const s = await one({ size: 256, mode: 'border', border_color: '#ff0000', format: 'png' }, fx.landscape);
    expect([s.fields.width, s.fields.height]).toEqual([256, 256]);
    // 800×600 fits as 256×192: 32 rows of padding above and below.
    for (const [x, y] of [[0, 0], [255, 0], [0, 255], [255, 255]]) expect(await pixel(s.image!, x, y)).toEqual([255, 0, 0]);
    expect(await pixel(s.image!, 128, 128)).not.toEqual([255, 0, 0]);
    // The portrait image pads left and right instead.
    const p = await one({ size: 256, mode: 'border', format: 'png' }, fx.portrait);
    expect(await pixel(p.image!, 0, 128)).toEqual([0, 0, 0]);
    expect(await pixel(p.image!, 128, 128)).not.toEqual([0, 0, 0]);
  });

  it('none keeps the original size', async () => {
    for (const [name, w, h] of cases) {
      const s = await one({ size: 256, mode: 'none' }, fx[name]);
      expect([s.fields.width, s.fields.height]).toEqual([w, h]);
    }
  });

  it('upscales by default and not with upscale: false', async () => {
    expect((await one({ size: 256, mode: 'centre_crop' }, fx.small)).fields.width).toBe(256);
    const cc = await one({ size: 256, mode: 'centre_crop', upscale: false }, fx.small);
    expect([cc.fields.width, cc.fields.height]).toEqual([100, 80]);
    const cc2 = await one({ size: 256, mode: 'centre_crop', upscale: false }, fx.portrait);
    expect([cc2.fields.width, cc2.fields.height]).toEqual([256, 256]);
    const kr = await one({ size: 256, mode: 'keep_ratio', upscale: false }, fx.small);
    expect([kr.fields.width, kr.fields.height]).toEqual([100, 80]);
    const b = await one({ size: 256, mode: 'border', upscale: false, format: 'png' }, fx.small);
    expect([b.fields.width, b.fields.height]).toEqual([256, 256]);
    expect(await pixel(b.image!, 0, 0)).toEqual([0, 0, 0]);
  });

  it('encodes webp and png with the right extension', async () => {
    const w = await one({ size: 128, mode: 'centre_crop', format: 'webp' }, fx.landscape);
    expect(w.imageExt).toBe('webp');
    expect((await sharp(w.image!).metadata()).format).toBe('webp');
    const p = await one({ size: 128, mode: 'centre_crop', format: 'png' }, fx.landscape);
    expect(p.imageExt).toBe('png');
    expect((await sharp(p.image!).metadata()).format).toBe('png');
  });
});

describe('decode-resize: pixels and metadata', () => {
  it('applies EXIF orientation before measuring and records EXIF fields', async () => {
    const s = await one({ size: 256, mode: 'none' }, fx.rotated);
    expect(s.status.kind).toBe('ok');
    expect(s.fields).toMatchObject({
      original_width: 600,
      original_height: 800,
      width: 600,
      height: 800,
      exif_orientation: 6,
      original_format: 'jpeg',
      exif: { Make: 'Canon', Model: 'EOS 5D', Software: 'bitprep-test', DateTimeOriginal: '2020:01:02 03:04:05' },
    });
    const m = await sharp(s.image!).metadata();
    expect([m.width, m.height, m.orientation, m.exif, m.hasProfile]).toEqual([600, 800, undefined, undefined, false]);
    const r = await one({ size: 256, mode: 'keep_ratio' }, fx.rotated);
    expect([r.fields.width, r.fields.height]).toEqual([192, 256]);
  });

  it('records the original hash, format, size and null EXIF', async () => {
    const s = await one({ size: 64, mode: 'centre_crop' }, fx.portrait);
    expect(s.fields).toMatchObject({
      original_sha256: createHash('sha256').update(fx.portrait).digest('hex'),
      original_format: 'png',
      original_width: 300,
      original_height: 900,
      exif_orientation: null,
      exif: null,
    });
  });

  it('flattens alpha onto white and keeps the border colour for padding', async () => {
    const s = await one({ size: 200, mode: 'border', border_color: '#ff0000', format: 'png' }, fx.rgba);
    expect(await pixel(s.image!, 0, 0)).toEqual([255, 0, 0]); // padding
    expect(await pixel(s.image!, 50, 100)).toEqual([0, 0, 255]); // opaque half
    expect(await pixel(s.image!, 150, 100)).toEqual([255, 255, 255]); // transparent half
    expect((await sharp(s.image!).metadata()).channels).toBe(3);
  });

  it('converts greyscale to 3-channel sRGB', async () => {
    const s = await one({ size: 64, mode: 'centre_crop', format: 'png' }, fx.grey);
    const m = await sharp(s.image!).metadata();
    expect([m.channels, m.space, m.hasAlpha]).toEqual([3, 'srgb', false]);
  });

  it('decodes the first frame of a GIF', async () => {
    const s = await one({ size: 64, mode: 'centre_crop' }, fx.gif);
    expect(s.status.kind).toBe('ok');
    expect(s.fields.original_format).toBe('gif');
  });

  it('is deterministic: same input, same bytes', async () => {
    for (const format of ['jpeg', 'webp', 'png'] as const) {
      const opts: DecodeResizeOptions = { size: 256, mode: 'centre_crop', format, concurrency: 4 };
      const inputs = () => [fx.landscape, fx.portrait, fx.small, fx.rotated, fx.rgba].map((b, i) => sample(`s${i}`, b));
      const a = await run(opts, inputs());
      const b = await run(opts, inputs());
      // Compared by hash: deep equality of large typed arrays is slow in vitest.
      const digest = (xs: Sample[]) => xs.map((s) => createHash('sha256').update(s.image!).digest('hex'));
      expect(digest(a)).toEqual(digest(b));
    }
  });
});

describe('decode-resize: drops and failures', () => {
  it('drops by min_edge and max_aspect_ratio with their values', async () => {
    const opts: DecodeResizeOptions = { size: 64, mode: 'centre_crop', min_edge: 90, max_aspect_ratio: 2.5 };
    const [small, portrait, ok] = await run(opts, [sample('a', fx.small), sample('b', fx.portrait), sample('c', fx.landscape)]);
    expect(small.status).toEqual({ kind: 'dropped', by: 'min_edge', value: 80 });
    expect(small.image).toBeUndefined();
    expect(small.fields.original_width).toBe(100);
    expect(portrait.status).toEqual({ kind: 'dropped', by: 'max_aspect_ratio', value: 3 });
    expect(ok.status.kind).toBe('ok');
  });

  it('refuses images over max_pixels from the header alone', async () => {
    // The header claims 50000×50000 but there is no pixel data: decoding would report truncation.
    const big = await one({ size: 64, mode: 'centre_crop', max_pixels: 100_000_000 }, pngHeaderOnly(50_000, 50_000));
    expect(big.status).toMatchObject({ kind: 'failed', stage: 'decode-resize', code: 'pixel_limit' });
    expect((big.status as { error: string }).error).toMatch(/50000×50000 = 2500000000 pixels, over max_pixels 100000000/);
    const low = await one({ size: 64, mode: 'centre_crop', max_pixels: 100_000 }, fx.landscape);
    expect(low.status).toMatchObject({ kind: 'failed', code: 'pixel_limit' });
  });

  it('classifies truncated JPEG, PNG and GIF as truncated', async () => {
    for (const img of [fx.jpegBig, fx.pngBig, fx.gif]) {
      const s = await one({ size: 64, mode: 'centre_crop' }, img.subarray(0, img.length >> 1));
      expect(s.status).toMatchObject({ kind: 'failed', code: 'truncated' });
      expect((s.status as { error: string }).error).toMatch(/^truncated image data \(/);
    }
    const j = await one({ size: 64, mode: 'centre_crop' }, fx.jpegBig.subarray(0, fx.jpegBig.length >> 1));
    expect((j.status as { error: string }).error).toMatch(/jpeg: .*premature end/i);
    const w = u8(await noise(300, 300).webp().toBuffer());
    const ws = await one({ size: 64, mode: 'centre_crop' }, w.subarray(0, w.length - 10));
    expect(ws.status).toMatchObject({ kind: 'failed', code: 'truncated' });
  });

  it('refuses SVG by default', async () => {
    const s = await one({ size: 64, mode: 'centre_crop' }, fx.svg);
    expect(s.status).toMatchObject({ kind: 'failed', code: 'unsupported_format' });
    const ok = await one({ size: 64, mode: 'centre_crop', formats: ['svg'] }, fx.svg);
    expect(ok.status.kind).toBe('ok');
  });

  it('fails each bad sample with its code while the good ones around it succeed, in order', async () => {
    const c = ctx();
    const text = u8(Buffer.from('<!doctype html><html><body>404 Not Found</body></html>'));
    const inputs: [string, Uint8Array | undefined, string][] = [
      ['good1', fx.jpegBig, 'ok'],
      ['empty', new Uint8Array(0), 'empty'],
      ['good2', fx.portrait, 'ok'],
      ['trunc', fx.jpegBig.subarray(0, fx.jpegBig.length >> 1), 'truncated'],
      ['text', text, 'unsupported_format'],
      ['good3', fx.grey, 'ok'],
      ['bomb', pngHeaderOnly(50_000, 50_000), 'pixel_limit'],
      ['noimg', undefined, 'no_image'],
      ['tiny', fx.small, 'min_edge'],
      ['good4', fx.rgba, 'ok'],
      ['good5', fx.rotated, 'ok'],
    ];
    const out = await run({ size: 128, mode: 'centre_crop', min_edge: 85, concurrency: 4 }, inputs.map(([k, b]) => sample(k, b)), c);
    expect(out.map((s) => s.key)).toEqual(inputs.map(([k]) => k));
    for (const [i, s] of out.entries()) {
      const want = inputs[i][2];
      const got = s.status.kind === 'ok' ? 'ok' : s.status.kind === 'dropped' ? s.status.by : s.status.code;
      expect(got, s.key).toBe(want);
    }
    expect((out[4].status as { error: string }).error).toContain('"<!doctype html><"');

    const st = c.stats.all().find((x) => x.name === 'decode-resize')!;
    const ok = out.filter((s) => s.status.kind === 'ok');
    expect([st.in, st.ok, st.dropped, st.failed]).toEqual([11, 5, 1, 5]);
    expect(st.counts.images).toBe(ok.length);
    expect(st.counts.bytes_in).toBe(inputs.reduce((n, [, b]) => n + (b?.length ?? 0), 0));
    expect(st.counts.bytes_out).toBe(ok.reduce((n, s) => n + s.image!.length, 0));
    expect(st.counts.pixels_out).toBe(5 * 128 * 128);

    const funnel = emptyFunnel();
    for (const s of out) countInFunnel(funnel, s);
    expect(funnelBalances(funnel)).toBe(true);
    expect(funnel.failed).toEqual({
      'decode-resize:empty': 1,
      'decode-resize:truncated': 1,
      'decode-resize:unsupported_format': 1,
      'decode-resize:pixel_limit': 1,
      'decode-resize:no_image': 1,
    });
  });

  it('rejects bad options at construction', () => {
    expect(() => decodeResize({ size: 0, mode: 'centre_crop' })).toThrow(/size/);
    expect(() => decodeResize({ size: 256, mode: 'stretch' as never })).toThrow(/mode/);
    expect(() => decodeResize({ size: 256, mode: 'border', border_color: 'notacolour' })).toThrow(/colou?r/i);
    expect(() => decodeResize({ size: 256, mode: 'none', quality: 0 })).toThrow(/quality/);
  });
});

describe('decode-resize under concurrency', () => {
  // libvips shares its error buffer between threads: many bad images at once must still get
  // their own reasons, not "Unknown error" or another image's message.
  it('classifies every bad image correctly when many decode at once', async () => {
    const trunc = fx.jpegBig.subarray(0, fx.jpegBig.length >> 1);
    const text = u8(Buffer.from('plain text, not an image at all\n'));
    const samples: Sample[] = [];
    for (let i = 0; i < 40; i++) {
      samples.push(sample(`t${i}`, trunc));
      samples.push(sample(`x${i}`, text));
      samples.push(sample(`g${i}`, fx.landscape));
    }
    const out = await run({ size: 128, mode: 'centre_crop', concurrency: 12 }, samples);
    const codes = out.map((s) => (s.status.kind === 'failed' ? s.status.code : s.status.kind));
    expect(codes).toEqual(samples.map((s) => (s.key.startsWith('t') ? 'truncated' : s.key.startsWith('x') ? 'unsupported_format' : 'ok')));
  });
});
