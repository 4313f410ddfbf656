/**
 * GenEval's CLIP color classifier, as the official evaluate_images.py runs it with open_clip
 * ViT-L-14 (pretrained "openai"):
 *
 * - each object's crop: `image.convert('RGB')`; with a mask, `Image.composite(image, grey, mask)`
 *   on a #999 (153, 153, 153) background (mask true keeps the image pixel); then
 *   `image.crop(box[:4])`, where PIL rounds each float coordinate with Python's round() (half to
 *   even) and fills what lies outside the image with black; then CLIP preprocessing (bicubic
 *   resize of the short side to 224, centre crop, OpenAI mean/std).
 * - per class name, a zero-shot classifier over COLORS with the templates "a photo of a {c} {cls}",
 *   "a photo of a {c}-colored {cls}", "a photo of a {c} object": each text tokenized as
 *   open_clip does (no prefix), embedded and L2-normalised, the three averaged and re-normalised.
 * - the color is the arg-max over colors of the normalised image embedding · class embedding
 *   (ties to the first color, as torch's argmax).
 */
import type { RawImage } from '../../src/sample.js';
import { clipNormalize, clipResizeCrop } from '../../stages/clip-preprocess.js';
import { readRgb } from '../images/image-folder.js';
import type { ClipTokenizer } from '../models/clip-text.js';
import { checkSameDim, type ClipImageTower, type ClipTextTower } from '../models/clip-towers.js';
import type { ColorClassifier } from './color.js';
import { COLORS, type Color } from '../geneval-format/colors.js';
import type { Detection } from './detections.js';
import { rleToMask } from './rle.js';

/** The background an object's mask is pasted on (evaluate_images.py's default `bgcolor` "#999"). */
export const GENEVAL_GREY = 153;

/** GenEval's three color templates for one class; `{c}` is the color. */
export const colorTemplates = (cls: string): string[] => [`a photo of a {c} ${cls}`, `a photo of a {c}-colored ${cls}`, 'a photo of a {c} object'];

/** Python's round() of a float: to the nearest integer, halves to even. */
function pyRound(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** `Image.composite(img, grey, mask)`: mask (row-major, height × width, non-zero = object) keeps the image, the rest becomes grey. */
export function compositeOnGrey(img: RawImage, mask: Uint8Array, grey = GENEVAL_GREY): RawImage {
  if (img.channels !== 3) throw new Error(`compositeOnGrey takes RGB, got ${img.channels} channels`);
  if (mask.length !== img.width * img.height) throw new Error(`mask holds ${mask.length} pixels, the image ${img.width}×${img.height}`);
  const out = new Uint8Array(img.data.length).fill(grey);
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      out[i * 3] = img.data[i * 3];
      out[i * 3 + 1] = img.data[i * 3 + 1];
      out[i * 3 + 2] = img.data[i * 3 + 2];
    }
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

/**
 * PIL's `Image.crop(box)` of an RGB image: coordinates rounded half to even, pixels outside the
 * image black. A box with right < left or bottom < top is refused, as PIL refuses it; one that
 * rounds to nothing is refused here since CLIP's resize cannot take an empty image.
 */
export function pilCrop(img: RawImage, box: readonly [number, number, number, number], what = 'image'): RawImage {
  if (box[2] < box[0] || box[3] < box[1]) throw new Error(`${what}: box [${box.join(', ')}] has right < left or bottom < top`);
  const [x0, y0, x1, y1] = box.map(pyRound);
  const w = x1 - x0;
  const h = y1 - y0;
  if (w <= 0 || h <= 0) throw new Error(`${what}: box [${box.join(', ')}] crops to ${w}×${h} pixels, nothing to classify`);
  const c = img.channels;
  const out = new Uint8Array(w * h * c);
  for (let y = Math.max(0, y0); y < Math.min(img.height, y1); y++) {
    const from = Math.max(0, x0);
    const to = Math.min(img.width, x1);
    if (to <= from) break;
    out.set(img.data.subarray((y * img.width + from) * c, (y * img.width + to) * c), ((y - y0) * w + (from - x0)) * c);
  }
  return { data: out, width: w, height: h, channels: c };
}

/** One detection's crop as GenEval feeds it to CLIP: mask on grey (when given), then the box. */
export function objectCrop(img: RawImage, det: Detection, what = 'image'): RawImage {
  let base = img;
  if (det.mask) {
    const [h, w] = det.mask.size;
    if (h !== img.height || w !== img.width) throw new Error(`${what}: the mask is ${w}×${h} but the image is ${img.width}×${img.height}`);
    base = compositeOnGrey(img, rleToMask(det.mask));
  }
  return pilCrop(base, det.box, what);
}

export interface ClipColorOptions {
  image: ClipImageTower;
  text: ClipTextTower;
  tokenizer: ClipTokenizer;
  /** Recorded in the summary; default "clip ViT-L-14 openai (image: …, text: …)". */
  name?: string;
}

/** GenEval's CLIP zero-shot color classifier over CLIP towers (see the module comment). */
export class ClipColorClassifier implements ColorClassifier {
  readonly name: string;
  private readonly classifiers = new Map<string, Promise<Float64Array[]>>();
  private last: { path: string; image: Promise<RawImage> } | undefined;

  constructor(private readonly o: ClipColorOptions) {
    this.name = o.name ?? `clip ViT-L-14 openai (image: ${o.image.label}, text: ${o.text.label})`;
  }

  /** The ten normalised class embeddings of `className`, in COLORS order; computed once per class. */
  classEmbeddings(className: string): Promise<Float64Array[]> {
    let p = this.classifiers.get(className);
    if (!p) {
      p = this.buildClass(className);
      this.classifiers.set(className, p);
      // A failed build should not stay cached as the class's answer.
      p.catch(() => this.classifiers.delete(className));
    }
    return p;
  }

  private async buildClass(className: string): Promise<Float64Array[]> {
    const texts = COLORS.flatMap((c) => colorTemplates(className).map((t) => t.replaceAll('{c}', c)));
    const emb = await this.o.text.embed(texts.map((t) => this.o.tokenizer.tokenize(t)), texts);
    return COLORS.map((_, ci) => {
      const three = emb.slice(ci * 3, ci * 3 + 3);
      const avg = new Float64Array(three[0].length);
      for (const e of three) for (let j = 0; j < avg.length; j++) avg[j] += e[j] / 3;
      let ss = 0;
      for (const x of avg) ss += x * x;
      const norm = Math.sqrt(ss);
      if (!(norm > 0)) throw new Error(`model ${this.o.text.label}: the "${COLORS[ci]}" templates of "${className}" average to a zero vector`);
      return avg.map((x) => x / norm);
    });
  }

  private read(path: string): Promise<RawImage> {
    // Clauses of one image come one after another: keep its pixels for the next call.
    if (this.last?.path !== path) this.last = { path, image: readRgb(path) };
    return this.last.image;
  }

  async classify(imagePath: string, className: string, objects: readonly Detection[]): Promise<Color[]> {
    if (objects.length === 0) return [];
    const classes = this.classEmbeddings(className);
    const img = await this.read(imagePath);
    const size = this.o.image.imageSize;
    const pixels = objects.map((d, i) => clipNormalize(clipResizeCrop(objectCrop(img, d, `${imagePath} "${className}" #${i + 1}`), size)));
    const emb = await this.o.image.embed(pixels, objects.map((_, i) => `${imagePath} "${className}" #${i + 1}`));
    const cls = await classes;
    return emb.map((e) => {
      checkSameDim(this.o.image, e.length, this.o.text, cls[0].length);
      let best = 0;
      let bestScore = -Infinity;
      cls.forEach((c, k) => {
        let s = 0;
        for (let j = 0; j < e.length; j++) s += e[j] * c[j];
        if (s > bestScore) {
          best = k;
          bestScore = s;
        }
      });
      return COLORS[best];
    });
  }
}
