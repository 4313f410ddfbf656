import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { mapConcurrent } from '../src/concurrency.js';
import { seededRandom } from '../src/seeded-random.js';

/**
 * Photo-like JPEGs (gradient, a disc, gaussian grain; quality 88) of `width`×`height` ranges,
 * written once into `dir` and reused while `count` and the ranges stay the same.
 * Returns the file names in order.
 */
export async function makePhotos(dir: string, count: number, width: [number, number], height: [number, number], seed = 7): Promise<string[]> {
  const tag = `${count} ${width} ${height} ${seed}`;
  const stamp = join(dir, 'done');
  if (existsSync(stamp) && (await readFile(stamp, 'utf8')) === tag) {
    const names = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
    if (names.length === count) return names;
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const r = seededRandom(seed);
  const specs = Array.from({ length: count }, (_, i) => {
    const w = width[0] + Math.floor(r() * (width[1] - width[0]));
    const h = height[0] + Math.floor(r() * (height[1] - height[0]));
    const c = () => Math.floor(r() * 255);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><defs><linearGradient id="g"><stop offset="0" stop-color="rgb(${c()},${c()},${c()})"/><stop offset="1" stop-color="rgb(${c()},${c()},${c()})"/></linearGradient></defs><rect width="${w}" height="${h}" fill="url(#g)"/><circle cx="${w / 2}" cy="${h / 2}" r="${h / 3}" fill="rgb(${c()},${c()},${c()})"/></svg>`;
    return { name: `${String(i).padStart(5, '0')}.jpg`, w, h, svg };
  });
  for await (const _ of mapConcurrent(specs, async ({ name, w, h, svg }) => {
    const grain = await sharp({ create: { width: w, height: h, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 20 } } }).png({ compressionLevel: 0 }).toBuffer();
    await sharp(Buffer.from(svg)).composite([{ input: grain, blend: 'soft-light' }]).jpeg({ quality: 88 }).toFile(join(dir, name));
  }, { concurrency: 4 })) void _;
  await writeFile(stamp, tag);
  return specs.map((s) => s.name);
}
