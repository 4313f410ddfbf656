import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { seededRandom } from '../src/seeded-random.js';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';

const WORDS = ['sale', 'open', 'cafe', 'river', 'sunset', 'poster', 'STOP', 'hello', 'market', 'north', '2024', 'logo', 'bitprep', 'latent'];
const SUBJECTS = ['a gradient sky', 'colourful shapes', 'a noisy texture', 'a poster with text', 'a sign with small print', 'abstract circles'];

const hex = (r: () => number) => '#' + Math.floor(r() * 0xffffff).toString(16).padStart(6, '0');

function drawSvg(kind: number, w: number, h: number, r: () => number): { svg: string; caption: string; textBoxes: number } {
  const parts: string[] = [];
  let caption = SUBJECTS[kind % SUBJECTS.length];
  let textBoxes = 0;
  parts.push(`<defs><linearGradient id="g" x1="0" y1="0" x2="${r().toFixed(2)}" y2="1"><stop offset="0" stop-color="${hex(r)}"/><stop offset="1" stop-color="${hex(r)}"/></linearGradient></defs>`);
  parts.push(`<rect width="${w}" height="${h}" fill="url(#g)"/>`);
  if (kind % 6 === 1 || kind % 6 === 5) {
    for (let i = 0; i < 3 + Math.floor(r() * 8); i++) {
      const cx = Math.floor(r() * w), cy = Math.floor(r() * h), rad = 10 + Math.floor(r() * Math.min(w, h) / 4);
      parts.push(i % 2 ? `<circle cx="${cx}" cy="${cy}" r="${rad}" fill="${hex(r)}" opacity="0.8"/>` : `<rect x="${cx}" y="${cy}" width="${rad * 2}" height="${rad}" fill="${hex(r)}"/>`);
    }
  }
  if (kind % 6 === 3 || kind % 6 === 4) {
    // Text of several sizes: large headline words, or many lines of small print.
    const small = kind % 6 === 4;
    const size = small ? Math.max(9, Math.floor(h / 40)) : Math.floor(h / (6 + r() * 6));
    const lines = small ? Math.floor(h / (size * 1.6)) - 2 : 1 + Math.floor(r() * 3);
    for (let i = 0; i < lines; i++) {
      const text = Array.from({ length: small ? 6 : 2 }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
      parts.push(`<text x="${Math.floor(w * 0.05)}" y="${Math.floor(size * 1.5 * (i + 1))}" font-family="DejaVu Sans, sans-serif" font-size="${size}" fill="${hex(r)}">${text}</text>`);
      textBoxes++;
    }
    caption += small ? ' covered in small text' : ` reading "${WORDS[kind % WORDS.length]}"`;
  }
  return { svg: `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${parts.join('')}</svg>`, caption, textBoxes };
}

/** A PNG whose header claims 100,000 × 100,000 pixels in a few bytes: a decompression bomb. */
function bombPng(): Uint8Array {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0))]);
}

export interface DemoData {
  parquet: string;
  imagesDir: string;
  rows: number;
  /** Rows planted to fail or be dropped, by what should happen to them. */
  planted: Record<string, number>;
}

export interface DemoDataOptions {
  /**
   * Refer to the images as `<urlBase>/<file>` (a server over `<dir>/images`, such as
   * startDemoImageServer) instead of by relative path, and plant one image its server opts out
   * of AI use (`optout-*`).
   */
  urlBase?: string;
}

/**
 * Writes `count` images drawn with sharp (gradients, shapes, noise, text of several sizes) and a
 * LAION-COCO-schema parquet that refers to them, plus planted broken rows: a missing file, a
 * truncated JPEG, a zero-byte file, a text file named .jpg, a pixel bomb, and images too small
 * for the minimum edge. LAION's pwatermark is skewed low as in the real data, so a `< 0.8`
 * filter drops a few rows.
 */
export async function generateDemoData(dir: string, count: number, seed = 42, opts: DemoDataOptions = {}): Promise<DemoData> {
  const r = seededRandom(seed);
  const imagesDir = join(dir, 'images');
  await rm(dir, { recursive: true, force: true });
  await mkdir(imagesDir, { recursive: true });
  const rows: Record<string, unknown>[] = [];
  const planted: Record<string, number> = { too_small: 0, missing: 0, truncated: 0, empty: 0, not_an_image: 0, pixel_bomb: 0, ...(opts.urlBase ? { opted_out: 0 } : {}) };
  const row = (file: string, caption: string, w: number, h: number) => {
    const captions = [caption, `${caption}, photo`, `an image of ${caption}`];
    rows.push({
      URL: opts.urlBase ? `${opts.urlBase}/${encodeURIComponent(file)}` : `../images/${file}`,
      TEXT: `${caption} ${Math.floor(r() * 1000)}`,
      top_caption: caption,
      all_captions: captions,
      all_similarities: captions.map(() => Number((0.2 + r() * 0.2).toFixed(4))),
      WIDTH: w,
      HEIGHT: h,
      similarity: Number((0.25 + r() * 0.15).toFixed(4)),
      hash: BigInt.asIntN(64, BigInt(Math.floor(r() * 2 ** 52)) * 4099n),
      pwatermark: Number((r() ** 3).toFixed(4)),
      punsafe: Number((r() * 0.3).toFixed(4)),
    });
  };
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const tiny = i % 37 === 11;
    const w = tiny ? 64 + Math.floor(r() * 40) : 200 + Math.floor(r() * 700);
    const h = tiny ? 48 + Math.floor(r() * 40) : 200 + Math.floor(r() * 700);
    if (tiny) planted.too_small++;
    const kind = Math.floor(r() * 6);
    const { svg, caption } = drawSvg(kind, w, h, r);
    const fmt = (['jpg', 'png', 'webp'] as const)[i % 3];
    const file = `${String(i).padStart(5, '0')}.${fmt}`;
    let img = sharp(Buffer.from(svg));
    if (kind === 2) {
      // Noise: a random grey field blended over the gradient.
      const noise = Buffer.alloc(w * h);
      for (let p = 0; p < noise.length; p++) noise[p] = Math.floor(r() * 256);
      img = sharp(await img.png().toBuffer()).composite([{ input: await sharp(noise, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer(), blend: 'overlay' }]);
    }
    const out = fmt === 'jpg' ? img.jpeg({ quality: 88 }) : fmt === 'png' ? img.png() : img.webp({ quality: 85 });
    jobs.push(out.toFile(join(imagesDir, file)).then(() => undefined));
    row(file, caption, w, h);
    if (jobs.length >= 8) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);

  const good = await sharp(Buffer.from(drawSvg(3, 400, 300, r).svg)).jpeg().toBuffer();
  await writeFile(join(imagesDir, 'broken-truncated.jpg'), good.subarray(0, Math.floor(good.length / 2)));
  await writeFile(join(imagesDir, 'broken-empty.jpg'), new Uint8Array(0));
  await writeFile(join(imagesDir, 'broken-text.jpg'), 'this is not an image, just text with a .jpg name\n');
  await writeFile(join(imagesDir, 'broken-bomb.png'), bombPng());
  // Spread the broken rows through the file so several units meet them.
  const broken: [string, string][] = [['does-not-exist.jpg', 'missing'], ['broken-truncated.jpg', 'truncated'], ['broken-empty.jpg', 'empty'], ['broken-text.jpg', 'not_an_image'], ['broken-bomb.png', 'pixel_bomb']];
  if (opts.urlBase) {
    await writeFile(join(imagesDir, 'optout-artwork.jpg'), good);
    broken.push(['optout-artwork.jpg', 'opted_out']);
  }
  broken.forEach(([file, what], j) => {
    const at = Math.floor(((j + 1) * rows.length) / (broken.length + 1));
    row(file, `planted ${what}`, 400, 300);
    rows.splice(at, 0, rows.pop()!);
    planted[what]++;
  });

  const schema: ColumnSpec[] = [
    { name: 'URL', type: 'STRING' },
    { name: 'TEXT', type: 'STRING' },
    { name: 'top_caption', type: 'STRING' },
    { name: 'all_captions', type: 'JSON' },
    { name: 'all_similarities', type: 'JSON' },
    { name: 'WIDTH', type: 'INT64' },
    { name: 'HEIGHT', type: 'INT64' },
    { name: 'similarity', type: 'DOUBLE' },
    { name: 'hash', type: 'INT64' },
    { name: 'pwatermark', type: 'DOUBLE' },
    { name: 'punsafe', type: 'DOUBLE' },
  ];
  const parquet = join(dir, 'laion', 'part-00000.parquet');
  await mkdir(join(dir, 'laion'), { recursive: true });
  await writeFile(parquet, writeParquet(rows, { schema, compression: 'SNAPPY', rowGroupSize: 64 }));
  return { parquet, imagesDir, rows: rows.length, planted };
}
