import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { seededRandom } from '../../src/seeded-random.js';
import { measureText, type TextBox, type TextMeasures } from '../../stages/ocr/text-boxes.js';

/** Real photographs Debian's python3-skimage ships (scripts/test-deps.sh installs it). */
export const SKIMAGE_DATA = '/usr/lib/python3/dist-packages/skimage/data';
export const SKIMAGE_PHOTOS = ['astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.jpg', 'motorcycle_left.png', 'motorcycle_right.png', 'camera.png', 'coins.png', 'moon.png', 'grass.png', 'gravel.png', 'brick.png', 'hubble_deep_field.jpg'];

export const hasSkimagePhotos = (): boolean => SKIMAGE_PHOTOS.every((f) => existsSync(join(SKIMAGE_DATA, f)));

/** What a labelled image is meant to show; the truth is measured, not taken from the kind. */
export type TextKind = 'none' | 'caption' | 'logo' | 'dense' | 'small' | 'tiny' | 'banner';
export type Background = 'photo' | 'plain' | 'gradient';

export interface TextImage {
  name: string;
  /** PNG bytes (lossless so the truth boxes hold to the pixel). */
  png: Buffer;
  /** Width; squares unless made by makeTuningImages. */
  size: number;
  height: number;
  kind: TextKind;
  background: Background;
  /** Ink boxes of every drawn word. */
  words: TextBox[];
  truth: TextMeasures;
}

const FONTS = [
  { family: 'DejaVu Sans', weight: 'normal' },
  { family: 'DejaVu Sans', weight: 'bold' },
  { family: 'DejaVu Serif', weight: 'normal' },
  { family: 'DejaVu Serif', weight: 'bold' },
  { family: 'DejaVu Sans Mono', weight: 'bold' },
] as const;

const VOCAB = ('sale summer best price new free shipping photo stock image design vintage wedding party holiday travel garden kitchen ' +
  'coffee morning happy birthday love family music festival city night beach sunset mountain forest winter ocean quote daily ' +
  'official store limited edition premium quality collection modern classic open house menu special offer today only').split(' ');

const COLOURS = [
  { fill: '#ffffff', stroke: '#000000' },
  { fill: '#000000', stroke: '#ffffff' },
  { fill: '#ffe000', stroke: '#202020' },
  { fill: '#ffffff', stroke: 'none' },
  { fill: '#101010', stroke: 'none' },
  { fill: '#d01818', stroke: 'none' },
] as const;

interface DrawnWord {
  text: string;
  x: number;
  /** Baseline. */
  y: number;
  fontSize: number;
  font: (typeof FONTS)[number];
  colour: (typeof COLOURS)[number];
  /** Under 1: faint or see-through text. */
  opacity?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function wordSvg(w: DrawnWord): string {
  const stroke = w.colour.stroke === 'none' ? '' : ` stroke="${w.colour.stroke}" stroke-width="${Math.max(1, w.fontSize / 14).toFixed(1)}" paint-order="stroke"`;
  const opacity = w.opacity !== undefined && w.opacity < 1 ? ` opacity="${w.opacity.toFixed(2)}"` : '';
  return `<text x="${w.x}" y="${w.y}" font-family="${w.font.family}" font-weight="${w.font.weight}" font-size="${w.fontSize}" fill="${w.colour.fill}"${stroke}${opacity}>${esc(w.text)}</text>`;
}

const svgOf = (width: number, height: number, words: DrawnWord[], under = ''): Buffer =>
  Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${under}${words.map(wordSvg).join('')}</svg>`);

/** The ink box of one word drawn alone (fully opaque): what a perfect OCR would box. */
async function inkBox(width: number, height: number, w: DrawnWord): Promise<TextBox | null> {
  const { data, info } = await sharp(svgOf(width, height, [{ ...w, opacity: 1 }])).ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true });
  let x0 = info.width;
  let y0 = info.height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < info.height; y++) {
    const row = y * info.width;
    for (let x = 0; x < info.width; x++) {
      if (data[row + x] > 64) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x0, y0, x1: x1 + 1, y1: y1 + 1, confidence: 1, text: w.text };
}

/** Approximate advance of a word, only for laying out lines (the truth comes from the ink). */
const advance = (text: string, fontSize: number, font: (typeof FONTS)[number]): number =>
  text.length * fontSize * (font.family.includes('Mono') ? 0.62 : font.weight === 'bold' ? 0.72 : 0.64) + fontSize * 0.4;

async function background(kind: Background, width: number, height: number, r: () => number): Promise<Buffer> {
  const c = () => Math.floor(r() * 256);
  if (kind === 'photo') {
    const file = join(SKIMAGE_DATA, SKIMAGE_PHOTOS[Math.floor(r() * SKIMAGE_PHOTOS.length)]);
    const img = sharp(file).removeAlpha().toColourspace('srgb');
    const meta = await sharp(file).metadata();
    // A random crop of the image's aspect at 60–100% of the photograph, so one photo gives many backgrounds.
    const k = 0.6 + 0.4 * r();
    const fit = Math.min(meta.width! / width, meta.height! / height);
    const cw = width === height ? Math.floor(Math.min(meta.width!, meta.height!) * k) : Math.max(1, Math.floor(width * fit * k));
    const ch = width === height ? cw : Math.max(1, Math.floor(height * fit * k));
    const left = Math.floor(r() * (meta.width! - cw + 1));
    const top = Math.floor(r() * (meta.height! - ch + 1));
    return img.extract({ left, top, width: cw, height: ch }).resize(width, height, { fit: 'fill' }).flop(r() < 0.5).raw().toBuffer();
  }
  const svg =
    kind === 'plain'
      ? `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="${width}" height="${height}" fill="rgb(${c()},${c()},${c()})"/></svg>`
      : `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><linearGradient id="g" x2="${r().toFixed(2)}" y2="1"><stop offset="0" stop-color="rgb(${c()},${c()},${c()})"/><stop offset="1" stop-color="rgb(${c()},${c()},${c()})"/></linearGradient></defs><rect width="${width}" height="${height}" fill="url(#g)"/></svg>`;
  return sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer();
}

/** Font sizes (fraction of the image height; ink is about 0.7–1.0 of it), lines and words per line of each kind. */
function kindLayout(kind: Exclude<TextKind, 'none'>, r: () => number): [number, number, number, number] {
  switch (kind) {
    case 'caption':
      return [0.07, 0.13, 1 + Math.floor(r() * 2), 2 + Math.floor(r() * 3)];
    case 'logo':
      return [0.09, 0.18, 1, 1 + Math.floor(r() * 2)];
    case 'dense':
      return [0.05, 0.075, 6 + Math.floor(r() * 4), 5];
    case 'small':
      return [0.016, 0.026, 1 + Math.floor(r() * 3), 3 + Math.floor(r() * 4)];
    case 'tiny':
      return [0.009, 0.015, 1 + Math.floor(r() * 4), 3 + Math.floor(r() * 5)];
    case 'banner':
      return [0.035, 0.06, 1, 2 + Math.floor(r() * 4)];
  }
}

/** Lays out the words of one kind of text; sizes keep a margin from the default thresholds on purpose. */
function layout(kind: TextKind, width: number, height: number, r: () => number): DrawnWord[] {
  if (kind === 'none') return [];
  const font = FONTS[Math.floor(r() * FONTS.length)];
  const colour = COLOURS[Math.floor(r() * COLOURS.length)];
  const pick = () => VOCAB[Math.floor(r() * VOCAB.length)];
  const [lo, hi, lines, perLine] = kindLayout(kind, r);
  const fontSize = Math.max(5, Math.round(height * (lo + (hi - lo) * r())));
  const lineGap = fontSize * 1.3;
  const words: DrawnWord[] = [];
  const blockHeight = lines * lineGap;
  let y = Math.round(fontSize + r() * Math.max(1, height - blockHeight - fontSize * 0.5));
  const left0 = Math.round(width * 0.03 + r() * width * (kind === 'dense' ? 0.04 : 0.25));
  for (let l = 0; l < lines && y < height - fontSize * 0.3; l++, y += lineGap) {
    let x = left0;
    for (let k = 0; k < perLine; k++) {
      // A few tries for a word that still fits the line, so no line (or logo) ends up empty.
      let text = pick();
      for (let t = 0; t < 8 && x + advance(text, fontSize, font) > width * 0.97; t++) text = pick();
      const adv = advance(text, fontSize, font);
      if (x + adv > width * 0.97) break;
      words.push({ text, x, y: Math.round(y), fontSize, font, colour });
      x += Math.round(adv);
    }
  }
  return words;
}

async function labelled(name: string, kind: TextKind, bg: Background, base: Buffer, width: number, height: number, words: DrawnWord[], under: string, jpegQuality: number): Promise<TextImage> {
  let img = sharp(base, { raw: { width, height, channels: 3 } }).composite(words.length ? [{ input: svgOf(width, height, words, under) }] : []);
  // JPEG artefacts as the web has them, kept in a lossless PNG of the decoded pixels.
  if (jpegQuality > 0) img = sharp(await img.jpeg({ quality: jpegQuality }).toBuffer());
  const png = await img.png({ compressionLevel: 1 }).toBuffer();
  const boxes = (await Promise.all(words.map((w) => inkBox(width, height, w)))).filter((b): b is TextBox => b !== null);
  return { name, png, size: width, height, kind, background: bg, words: boxes, truth: measureText(boxes, width, height) };
}

/**
 * Labelled images with drawn text over real photographs, plain and gradient backgrounds, and
 * text-free photographs; deterministic for a seed. Each carries the ink boxes of its words and
 * the measures a perfect OCR would report.
 */
export async function makeTextImages(count: number, seed = 11, size = 512): Promise<TextImage[]> {
  const r = seededRandom(seed);
  const kinds: TextKind[] = ['none', 'none', 'caption', 'logo', 'dense', 'small'];
  const out: TextImage[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length];
    const bgRoll = r();
    const bg: Background = kind === 'none' || bgRoll < 0.6 ? 'photo' : bgRoll < 0.8 ? 'gradient' : 'plain';
    const base = await background(bg, size, size, r);
    const words = layout(kind, size, size, r);
    out.push(await labelled(`${String(i).padStart(4, '0')}-${kind}-${bg}`, kind, bg, base, size, size, words, '', 0));
  }
  return out;
}

/**
 * The OCR tuning set: what makeTextImages draws, made as web images are (the held-out set of
 * bench/ocr_heldout_set.py has the same phenomena from another renderer, other faces and sizes):
 * widths and heights of 448–1088 px, tiny text (under 1.5% of the height) and text on banners
 * beside the other kinds, faint or see-through text, JPEG artefacts on photographs and gradients,
 * and as many text-free photographs as images with text.
 */
export async function makeTuningImages(count: number, seed: number): Promise<TextImage[]> {
  const r = seededRandom(seed);
  const kinds: TextKind[] = ['none', 'caption', 'none', 'logo', 'none', 'dense', 'none', 'small', 'none', 'tiny', 'none', 'banner', 'none', 'small'];
  const out: TextImage[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length];
    const width = 448 + 32 * Math.floor(r() * 21);
    const height = Math.min(1088, Math.max(448, 32 * Math.round((width * (0.65 + 0.9 * r())) / 32)));
    const bgRoll = r();
    const bg: Background = kind === 'none' || bgRoll < 0.6 ? 'photo' : bgRoll < 0.8 ? 'gradient' : 'plain';
    const base = await background(bg, width, height, r);
    const words = layout(kind, width, height, r);
    const opacity = r() < 0.3 ? 0.35 + 0.45 * r() : 1;
    for (const w of words) w.opacity = opacity;
    let under = '';
    if (kind === 'banner' && words.length > 0) {
      const pad = words[0].fontSize * 0.4;
      const x1 = Math.max(...words.map((w) => w.x + advance(w.text, w.fontSize, w.font)));
      const band = words[0].colour.fill === '#ffffff' || words[0].colour.fill === '#ffe000' ? '#1a1a40' : '#f4f0e0';
      under = `<rect x="${words[0].x - pad}" y="${words[0].y - words[0].fontSize - pad}" width="${x1 - words[0].x + 2 * pad}" height="${words[0].fontSize * 1.3 + 2 * pad}" fill="${band}" opacity="${(0.6 + 0.4 * r()).toFixed(2)}"/>`;
    }
    const jpegQuality = bg !== 'plain' && r() < 0.7 ? 50 + Math.floor(r() * 46) : 0;
    out.push(await labelled(`${String(i).padStart(4, '0')}-${kind}-${bg}`, kind, bg, base, width, height, words, under, jpegQuality));
  }
  return out;
}
