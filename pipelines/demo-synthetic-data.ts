import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { writeParquet, type ColumnSpec } from '../src/formats/parquet-write.js';
import { TarWriter } from '../src/formats/tar-write.js';
import { seededRandom } from '../src/seeded-random.js';

const SUBJECTS = ['a lighthouse at dusk', 'a bowl of ramen', 'a fox in the snow', 'an astronaut riding a horse', 'a glass city at night', 'a watercolour of tulips', 'a robot reading a book', 'an old map of an island'];
const STYLES = ['digital art', 'oil painting', 'trending on artstation', 'octane render', 'studio lighting', 'highly detailed'];

/**
 * Dalle3-1M-shaped WebDataset tars (json + jpg/png per sample, the dataset's json fields), two
 * tars, with one sample missing its image and one with a corrupt image, as real shards have.
 */
export async function generateDalleTars(dir: string, count: number, seed: number): Promise<{ dir: string; samples: number }> {
  await mkdir(dir, { recursive: true });
  const r = seededRandom(seed);
  const perTar = Math.ceil(count / 2);
  for (let t = 0; t * perTar < count; t++) {
    const out = createWriteStream(join(dir, `data-${String(t).padStart(6, '0')}.tar`));
    const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
    for (let i = t * perTar; i < Math.min(count, (t + 1) * perTar); i++) {
      const subject = SUBJECTS[Math.floor(r() * SUBJECTS.length)];
      // DALL·E 3's three sizes, scaled down 4× so the demo stays quick.
      const [width, height] = [[256, 256], [448, 256], [256, 448]][i % 3];
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="hsl(${Math.floor(r() * 360)},60%,55%)"/><circle cx="${width / 2}" cy="${height / 2}" r="${Math.min(width, height) / 3}" fill="hsl(${Math.floor(r() * 360)},70%,40%)"/></svg>`;
      const png = i % 4 === 1;
      let image: Buffer | undefined = await (png ? sharp(Buffer.from(svg)).png() : sharp(Buffer.from(svg)).jpeg({ quality: 90 })).toBuffer();
      if (i === 5) image = image.subarray(0, Math.floor(image.length / 3));
      if (i === 9) image = undefined;
      const name = `${String(i).padStart(7, '0')}`;
      const json = {
        image_name: `${name}.${png ? 'png' : 'jpg'}`,
        md5_pil_hash: '', md5_file_hash: '', sha512_hash: '',
        short_caption: `${subject[0].toUpperCase()}${subject.slice(1)}.`,
        long_caption: `${subject[0].toUpperCase()}${subject.slice(1)}, drawn in bold flat colours with a single large circle at the centre of the frame and an even background.`,
        resolution: `${width * 4}x${height * 4}`, url: `https://example.invalid/dalle/${name}`, width: width * 4, height: height * 4,
        source: 'demo', original_prompt: subject,
        short_caption2: [`${subject}.`], long_caption2: [`${subject}, in flat colours.`],
      };
      const files: Record<string, Uint8Array | string> = { json: JSON.stringify(json) };
      if (image) files[png ? 'png' : 'jpg'] = image;
      await w.addSample(name, files);
    }
    await w.finish();
    await new Promise<void>((ok) => out.end(ok));
  }
  return { dir, samples: count };
}

/**
 * A DiffusionDB-shaped metadata parquet (its 13 columns) with repeated prompts (case and
 * whitespace variants) and a few prompts scored NSFW, as the real one has.
 */
export async function generateDiffusionDbParquet(path: string, rows: number, seed: number): Promise<{ path: string; rows: number }> {
  const r = seededRandom(seed);
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < rows; i++) {
    let prompt = `${SUBJECTS[Math.floor(r() * SUBJECTS.length)]}, ${STYLES[Math.floor(r() * STYLES.length)]}`;
    if (i % 7 === 3) prompt = `  ${prompt.toUpperCase()}  `;
    out.push({
      image_name: `${i}.png`, prompt, part_id: 1 + (i % 3), seed: Math.floor(r() * 2 ** 31), step: 50, cfg: 7, sampler: 8,
      width: 512, height: 512, user_name: `user${i % 5}`, timestamp: new Date(Date.UTC(2022, 7, 1 + (i % 20))),
      image_nsfw: Number((r() * 0.2).toFixed(3)), prompt_nsfw: i % 11 === 4 ? 0.93 : Number((r() * 0.2).toFixed(3)),
    });
  }
  const schema: ColumnSpec[] = [
    { name: 'image_name', type: 'STRING' }, { name: 'prompt', type: 'STRING' }, { name: 'part_id', type: 'INT32' }, { name: 'seed', type: 'INT64' },
    { name: 'step', type: 'INT32' }, { name: 'cfg', type: 'FLOAT' }, { name: 'sampler', type: 'INT32' }, { name: 'width', type: 'INT32' },
    { name: 'height', type: 'INT32' }, { name: 'user_name', type: 'STRING' }, { name: 'timestamp', type: 'TIMESTAMP' },
    { name: 'image_nsfw', type: 'FLOAT' }, { name: 'prompt_nsfw', type: 'FLOAT' },
  ];
  for (const row of out) row.seed = BigInt(row.seed as number);
  await writeFile(path, writeParquet(out, { schema, compression: 'SNAPPY' }));
  return { path, rows };
}
