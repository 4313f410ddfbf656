import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { COLORS, type Color } from '../geneval-format/colors.js';
import { rleCounts, type CocoRle } from './rle.js';

/**
 * The detections file: JSON Lines, one line per image, written by whoever runs the detector
 * (GenEval's Mask2Former Swin-S, all detections before any threshold):
 *
 *   {"image": "00012/samples/0003.png",
 *    "detections": {"dog": [[12.5, 40.0, 230.1, 300.7, 0.981]],
 *                   "car": [{"box": [300, 20, 500, 180], "score": 0.93, "color": "red",
 *                            "mask": {"size": [512, 512], "counts": "<pycocotools RLE string>"}}]}}
 *
 * - `image`: the image's path relative to the images root, `/`-separated.
 * - `detections`: per class name (GenEval's object_names.txt, e.g. "wine glass"), the detector's
 *   boxes in pixels, either `[x1, y1, x2, y2, score]` (the mmdet bbox row) or an object with `box`
 *   and `score` and optional `color` (one of the ten GenEval colors: the label a color classifier
 *   gave this box's crop) and `mask` (COCO RLE, see rle.ts; only a CLIP color classifier needs it,
 *   to paste the object on grey as GenEval does, so it can be left out). Classes without
 *   detections may be left out; order within a class does not matter (they are sorted by score).
 */
const coord = z.number();
const rleSchema = z
  .strictObject({
    size: z.tuple([z.number().int().min(1), z.number().int().min(1)]),
    counts: z.union([z.string(), z.array(z.number().int().min(0))]),
  })
  .superRefine((rle, ctx) => {
    try {
      rleCounts(rle as CocoRle);
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['counts'], message: `bad RLE: ${(err as Error).message}` });
    }
  });
const boxRow = z.tuple([coord, coord, coord, coord, coord]);
const boxObject = z.strictObject({
  box: z.tuple([coord, coord, coord, coord]),
  score: z.number(),
  color: z.enum(COLORS).optional(),
  mask: rleSchema.optional(),
});
const boxEntry = z.union([boxRow, boxObject], {
  error: 'a detection is [x1, y1, x2, y2, score] or {"box": [x1, y1, x2, y2], "score": s, "color"?: one of the ten colors, "mask"?: {"size": [h, w], "counts": RLE}}',
});

/** The zod schema of one detections line (exported so other tools can validate or emit the format). */
export const detectionsLineSchema = z.strictObject({
  image: z.string().min(1),
  detections: z.record(z.string().min(1), z.array(boxEntry)),
});

/** One detected object, whatever form the file gave it in. */
export interface Detection {
  box: [number, number, number, number];
  score: number;
  color?: Color;
  mask?: CocoRle;
}

export interface ImageDetections {
  /** 1-based line in the detections file, for messages. */
  line: number;
  /** Per class, the detections in file order (classes in file order). */
  byClass: Map<string, Detection[]>;
}

/** Normalises a relative image path so `./00001/samples/0000.png` and `00001/samples/0000.png` meet. */
export function imageKey(image: string): string | undefined {
  if (image.startsWith('/') || image.includes('\\')) return undefined;
  const n = posix.normalize(image);
  return n === '..' || n.startsWith('../') ? undefined : n;
}

function toDetection(e: z.infer<typeof boxEntry>): Detection {
  if (Array.isArray(e)) return { box: [e[0], e[1], e[2], e[3]], score: e[4] };
  const d: Detection = { box: e.box, score: e.score };
  if (e.color !== undefined) d.color = e.color;
  if (e.mask !== undefined) d.mask = e.mask as CocoRle;
  return d;
}

/** Reads and validates a detections file; errors name the file and line. Keys are normalised relative image paths. */
export async function readDetections(file: string): Promise<Map<string, ImageDetections>> {
  const out = new Map<string, ImageDetections>();
  const input = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', (err) => reject(new Error(`cannot read the detections file ${file}: ${err.message}`)));
  });
  await opened;
  let lineNo = 0;
  for await (const text of createInterface({ input, crlfDelay: Infinity })) {
    lineNo++;
    if (text.trim() === '') continue;
    const where = `${file}:${lineNo}`;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Error(`${where}: not JSON: ${(err as Error).message}`);
    }
    const r = detectionsLineSchema.safeParse(raw);
    if (!r.success) {
      throw new Error(`${where}: not a detections line: ${r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ')}`);
    }
    const key = imageKey(r.data.image);
    if (key === undefined) throw new Error(`${where}: image ${JSON.stringify(r.data.image)} must be a path relative to the images folder, e.g. 00012/samples/0003.png`);
    const before = out.get(key);
    if (before) throw new Error(`${where}: a second line for ${key} (the first is line ${before.line})`);
    const byClass = new Map<string, Detection[]>();
    for (const [cls, list] of Object.entries(r.data.detections)) byClass.set(cls, list.map(toDetection));
    out.set(key, { line: lineNo, byClass });
  }
  return out;
}
