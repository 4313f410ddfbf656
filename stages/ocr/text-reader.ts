import { chroma, findTextCandidates, type CandidateOptions, type TextLine } from './text-candidates.js';
import type { TextBox } from './text-boxes.js';

/**
 * Text over photographs: the stroke geometry of text-candidates.ts finds where text may be and
 * decides alone where it is sure; a LineVerifier reads a few candidate lines to confirm the rest.
 * Geometry sees nearly all drawn text, small captions included, but also "text" in gravel and
 * grass; reading a whole photograph is slow and misses most text over busy backgrounds. So:
 *
 * 1. Candidate lines are grouped into blocks (like heights, one polarity, one contrast, stacked or
 *    side by side) and tried best first.
 * 2. A block is confirmed when the verifier reads a word in its best line or two
 *    (recognizer-verifier.ts: PP-OCRv4's recogniser on a crop of the image; tesseract-verifier.ts:
 *    tesseract.js on the line's glyphs redrawn dark on white); `weakReads` weaker reads in one
 *    image confirm their blocks together. At most `maxReads` reads per image; lines scoring below
 *    `minScore` are never read, so most text-free photographs cost no read at all.
 * 3. Aligned columns of `columnLines` or more lines are text without reading (textures make
 *    stacked runs, not aligned ones).
 * 4. Confirmed text grows into neighbouring lines of a like height (the rest of a paragraph, the
 *    other polarity of outlined text); lines seen in both polarities count once; word boxes are
 *    padded back to the ink the stroke threshold cut off.
 *
 * Each verifier comes with its reader settings (RECOGNIZER_READER, TESSERACT_READER), tuned with
 * bench/ocr-tune.ts on makeTuningImages; `npm run bench -- ocr` reports them on a held-out set.
 */
export interface ReaderOptions {
  /** Most line reads per image. */
  maxReads?: number;
  /** Lines of one block read (best first) before the block is given up. */
  linesPerBlock?: number;
  /** This many weak reads (of different lines) in one image confirm their blocks together; 0: weak reads never confirm. */
  weakReads?: number;
  /** Lines scoring below this (see `lineScore`) are not text candidates at all. */
  minScore?: number;
  /** Lines of one block (and lines grown into) have a stroke contrast within this ratio of each other (one colour of text). */
  contrastRatio?: number;
  /** Once text is confirmed, blocks scoring below this share of it are not read (weaker candidates beside sure text rarely change the measures). */
  followRatio?: number;
  /** Aligned columns of at least this many lines are text without reading; 0 always reads. */
  columnLines?: number;
  /** After confirmation, take in neighbouring lines of a like height (paragraphs, the other polarity of outlined text). */
  grow?: boolean;
  /** Word boxes grow by this share of the character height on each side (the stroke threshold cuts anti-aliased edges and outlines). */
  boxPad?: number;
  /** With the colour pixels given, search their colourfulness too (see readText). */
  useChroma?: boolean;
  /** Options of the candidate finder. */
  candidates?: CandidateOptions;
}

export const READER_DEFAULTS: Readonly<Required<ReaderOptions>> = {
  maxReads: 2,
  linesPerBlock: 2,
  weakReads: 0,
  minScore: 260,
  contrastRatio: 1.6,
  followRatio: 0.8,
  columnLines: 4,
  grow: true,
  boxPad: 0.06,
  useChroma: true,
  candidates: { flatContrast: 20 },
};

/** The image a verifier reads lines of. */
export interface ReaderPage {
  /** Luminance, width × height. */
  gray: Uint8Array;
  width: number;
  height: number;
  /** The decoded colour pixels, where the caller has them. */
  pixels?: ReaderPixels;
}

/**
 * What a read says of a line: `text`, a word read with confidence; `weak`, a word read with less
 * (see ReaderOptions.weakReads); `none`.
 */
export type LineReadout = 'text' | 'weak' | 'none';

/**
 * What a verifier found: the readout, and where the read found the candidate to hold several lines
 * of text (a paragraph of tiny text the geometry saw as one line, text-rows.ts), the bands of those
 * lines, whose heights replace the candidate's.
 */
export interface LineVerdict {
  readout: LineReadout;
  rows?: readonly TextBox[];
}

/** Reads one candidate line and says whether it holds a word (tesseract-verifier.ts, recognizer-verifier.ts). */
export interface LineVerifier {
  verify(line: TextLine, page: ReaderPage): Promise<LineVerdict>;
}

/** The longest run of three or more letters or digits in `text` cased as a word is (lower, Capitalised, UPPER, digits); 0 when none. */
export function longestWordRun(text: string): number {
  const runs = (text.match(/[A-Za-z0-9]{3,}/g) ?? []).filter((r) => /^([a-z]+|[A-Z][a-z]+|[A-Z]+|[0-9]+)$/.test(r));
  return runs.length === 0 ? 0 : Math.max(...runs.map((r) => r.length));
}

/** The end (x, original px) of a line's first words that fit within `aspect` line heights. */
export function firstWordsEnd(line: TextLine, aspect: number): number {
  const lh = line.box.y1 - line.box.y0;
  let xEnd = line.words[0].x1;
  for (const wd of line.words) {
    if (wd.x1 - line.box.x0 > aspect * lh) break;
    xEnd = wd.x1;
  }
  return xEnd;
}

/** How text-like a line is: its stroke contrast (relative to the contrast it was cut at, 48 on a textured image) × √characters. */
export const lineScore = (l: TextLine): number => ((l.response * 48) / l.strokes.threshold) * Math.sqrt(l.chars);

const overlapArea = (a: TextBox, b: TextBox): number =>
  Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0)) * Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
const area = (b: TextBox): number => (b.x1 - b.x0) * (b.y1 - b.y0);

const likeHeight = (a: TextLine, b: TextLine): boolean => {
  const ratio = b.charHeight / a.charHeight;
  return ratio >= 0.75 && ratio <= 1.33;
};
const likeContrast = (a: TextLine, b: TextLine, contrastRatio: number): boolean => {
  const cr = b.response / a.response;
  return cr <= contrastRatio && cr * contrastRatio >= 1;
};

/** Stacked (the next line of a paragraph) or along (the next word of a line), within `vGap`/`hGap` character heights. */
function adjacent(a: TextLine, b: TextLine, vGap: number, hGap: number, minXOverlap: number): boolean {
  const ch = Math.max(a.charHeight, b.charHeight);
  const v = Math.max(b.box.y0 - a.box.y1, a.box.y0 - b.box.y1);
  const xOverlap = Math.min(b.box.x1, a.box.x1) - Math.max(b.box.x0, a.box.x0);
  const yOverlap = Math.min(b.box.y1, a.box.y1) - Math.max(b.box.y0, a.box.y0);
  const hg = Math.max(b.box.x0 - a.box.x1, a.box.x0 - b.box.x1);
  const stacked = v <= vGap * ch && xOverlap > minXOverlap * Math.min(a.box.x1 - a.box.x0, b.box.x1 - b.box.x0);
  const along = yOverlap > 0.5 * Math.min(a.box.y1 - a.box.y0, b.box.y1 - b.box.y0) && hg <= hGap * ch;
  return stacked || along;
}

/** Groups lines into blocks (connected components of one polarity, like height and contrast, adjacency), each block's lines best first. */
export function blocksOf(lines: TextLine[], contrastRatio: number): TextLine[][] {
  const parent = lines.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (let i = 0; i < lines.length; i++) {
    for (let j = i + 1; j < lines.length; j++) {
      const a = lines[i];
      const b = lines[j];
      if (a.polarity === b.polarity && likeHeight(a, b) && likeContrast(a, b, contrastRatio) && adjacent(a, b, 1.5, 2, 0)) parent[find(i)] = find(j);
    }
  }
  const groups = new Map<number, TextLine[]>();
  lines.forEach((l, i) => {
    const r = find(i);
    if (!groups.has(r)) groups.set(r, []);
    groups.get(r)!.push(l);
  });
  return [...groups.values()].map((g) => g.sort((a, b) => lineScore(b) - lineScore(a)));
}

const boundsOf = (block: TextLine[]): TextBox => ({
  x0: Math.min(...block.map((l) => l.box.x0)),
  y0: Math.min(...block.map((l) => l.box.y0)),
  x1: Math.max(...block.map((l) => l.box.x1)),
  y1: Math.max(...block.map((l) => l.box.y1)),
  confidence: 0,
});

/** Blocks of opposite polarity over the same place with like heights: one outlined text, seen as its fill and as its outline. */
function isTwin(a: TextLine[], b: TextLine[]): boolean {
  if (a[0].polarity === b[0].polarity || !likeHeight(a[0], b[0])) return false;
  const p = boundsOf(a);
  const q = boundsOf(b);
  return overlapArea(p, q) >= 0.5 * Math.min(area(p), area(q));
}

/**
 * Columns of text: `min` or more lines of like height and one polarity, each of six or more
 * characters, stacked at a regular pitch with their left, centre or right edges aligned. Textures
 * make stacked runs but rarely aligned ones (measured: never four on 136 text-free photographs).
 */
function alignedColumns(lines: TextLine[], min: number): TextLine[][] {
  const out: TextLine[][] = [];
  const long = lines.filter((l) => l.chars >= 6);
  const edges = [(l: TextLine) => l.box.x0, (l: TextLine) => (l.box.x0 + l.box.x1) / 2, (l: TextLine) => l.box.x1];
  for (const a of long) {
    for (const edge of edges) {
      const col = long
        .filter((b) => b.polarity === a.polarity && Math.abs(edge(b) - edge(a)) <= 0.6 * a.charHeight && likeHeight(a, b))
        .sort((p, q) => p.box.y0 - q.box.y0);
      let run: TextLine[] = [col[0]];
      for (let i = 1; i <= col.length; i++) {
        const pitch = i < col.length ? col[i].box.y0 - col[i - 1].box.y0 : Infinity;
        if (pitch > 0.8 * a.charHeight && pitch <= 2.6 * a.charHeight) run.push(col[i]);
        else if (pitch > 2.6 * a.charHeight) {
          if (run.length >= min && run.includes(a)) out.push(run);
          run = i < col.length ? [col[i]] : [];
        }
      }
    }
  }
  return out;
}

/**
 * Around accepted text, lines of a like height that continue it (the next line of a paragraph,
 * the next word of a line), to a fixed point. Same polarity: like contrast too. Either polarity:
 * a paragraph of outlined text over a photograph comes out of the geometry in pieces of both.
 */
function growText(lines: TextLine[], accepted: Set<TextLine>, contrastRatio: number): void {
  for (let changed = true; changed; ) {
    changed = false;
    for (const l of lines) {
      if (accepted.has(l)) continue;
      for (const a of accepted) {
        if (!likeHeight(a, l) || (l.polarity === a.polarity && !likeContrast(a, l, contrastRatio))) continue;
        if (adjacent(a, l, 1.2, 1.5, 0.3)) {
          accepted.add(l);
          changed = true;
          break;
        }
      }
    }
  }
}

export interface ReadResult {
  boxes: TextBox[];
  /** Lines read by the verifier, for the stage's stats. */
  reads: number;
}

/** Decoded pixels (interleaved, 8 bits, `channels` per pixel) of the image being read. */
export interface ReaderPixels {
  data: Uint8Array;
  channels: number;
}

/**
 * Reads one image: `gray` (w×h luminance, e.g. `luminance()` of the decoded pixels) is what the
 * geometry and the snippets are made of; with `pixels` (the decoded colour image) the geometry
 * also searches its colourfulness (`chroma()`) for text that differs from its background in hue
 * more than in luminance.
 */
export async function readText(verifier: LineVerifier, gray: Uint8Array, w: number, h: number, options: ReaderOptions = {}, pixels?: ReaderPixels): Promise<ReadResult> {
  const o: Required<ReaderOptions> = { ...READER_DEFAULTS, ...options };
  const page: ReaderPage = { gray, width: w, height: h, pixels };
  const channels = pixels && pixels.channels >= 3 && o.useChroma ? [chroma(pixels.data, w, h, pixels.channels)] : [];
  const lines = findTextCandidates(gray, w, h, { ...o.candidates, channels }).filter((l) => lineScore(l) >= o.minScore);
  const accepted = new Set<TextLine>();
  if (o.columnLines > 0) for (const col of alignedColumns(lines, o.columnLines)) for (const l of col) accepted.add(l);

  const blocks = blocksOf(lines, o.contrastRatio).sort((a, b) => lineScore(b[0]) - lineScore(a[0]));
  // Outlined text is a block in each polarity: one confirmed, the other is skipped; one failed, the other is tried next.
  const twins = blocks.map((b) => blocks.filter((c) => c !== b && isTwin(b, c)));
  const state = new Map<TextLine[], 'confirmed' | 'failed'>();
  const queue = [...blocks];
  let reads = 0;
  let confirmedScore = 0;
  const weak: TextLine[][] = [];
  const rowsOf = new Map<TextLine, readonly TextBox[]>();
  while (queue.length > 0 && reads < o.maxReads) {
    const block = queue.shift()!;
    const bi = blocks.indexOf(block);
    if (state.has(block) || twins[bi].some((t) => state.get(t) === 'confirmed') || block.some((l) => accepted.has(l))) continue;
    if (lineScore(block[0]) < o.followRatio * confirmedScore) continue;
    let ok = false;
    for (const line of block.slice(0, o.linesPerBlock)) {
      if (reads >= o.maxReads) break;
      reads++;
      const { readout, rows } = await verifier.verify(line, page);
      if (rows && readout !== 'none') rowsOf.set(line, rows);
      if (readout === 'text') {
        ok = true;
        break;
      }
      if (readout === 'weak' && !weak.includes(block)) weak.push(block);
    }
    state.set(block, ok ? 'confirmed' : 'failed');
    if (ok) {
      confirmedScore = Math.max(confirmedScore, lineScore(block[0]));
      for (const l of block) accepted.add(l);
    } else for (const t of twins[bi]) if (!state.has(t)) queue.unshift(t);
  }
  // Weak reads in several places of one image: small or worn text that reads in parts (textures rarely read as words twice).
  if (o.weakReads > 0 && weak.length >= o.weakReads) for (const b of weak) for (const l of b) accepted.add(l);
  if (o.grow && accepted.size > 0) growText(lines, accepted, o.contrastRatio);

  // Lines seen in both polarities (outlined text) count once.
  const kept: TextLine[] = [];
  for (const l of [...accepted].sort((a, b) => lineScore(b) - lineScore(a))) {
    if (!kept.some((k) => k.polarity !== l.polarity && overlapArea(k.box, l.box) >= 0.5 * area(l.box))) kept.push(l);
  }
  const boxes: TextBox[] = [];
  for (const l of kept) {
    const pad = o.boxPad * l.charHeight;
    const padded = l.words.map((b) => ({ ...b, x0: Math.max(0, b.x0 - pad), y0: Math.max(0, b.y0 - pad), x1: Math.min(w, b.x1 + pad), y1: Math.min(h, b.y1 + pad) }));
    const rows = rowsOf.get(l);
    if (!rows) boxes.push(...padded);
    // A paragraph seen as one line: its words cut into the paragraph's lines.
    else {
      // The outer rows reach past the crop the rows were found in, so the words' union (the density) is kept.
      const bands = rows.map((r, i) => ({ y0: i === 0 ? -Infinity : r.y0, y1: i === rows.length - 1 ? Infinity : r.y1 }));
      for (const b of padded) for (const r of bands) if (Math.min(b.y1, r.y1) > Math.max(b.y0, r.y0)) boxes.push({ ...b, y0: Math.max(b.y0, r.y0), y1: Math.min(b.y1, r.y1) });
    }
  }
  return { boxes, reads };
}
