import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { luminance } from '../stages/ocr/text-candidates.js';
import { textRows } from '../stages/ocr/text-rows.js';

/** Text drawn by librsvg on a grey gradient; `lines` as [baseline y, font px, text]. */
async function drawn(width: number, height: number, lines: [number, number, string][]): Promise<Uint8Array> {
  const text = lines.map(([y, px, t]) => `<text x="6" y="${y}" font-family="DejaVu Sans" font-size="${px}" fill="#202020">${t}</text>`).join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><linearGradient id="g"><stop offset="0" stop-color="#d8d8d8"/><stop offset="1" stop-color="#a0a0a0"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/>${text}</svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).raw().toBuffer({ resolveWithObject: true });
  return luminance(data, info.width, info.height, info.channels);
}

describe('textRows', () => {
  it('cuts a paragraph of tiny text into its lines, each band holding one baseline', async () => {
    // Three lines of 7 px text at a 9 px pitch: what the geometry sees as one line at a coarse level.
    const baselines = [14, 23, 32];
    const gray = await drawn(160, 40, baselines.map((y) => [y, 7, 'travel best quality shipping sale'] as [number, number, string]));
    const rows = textRows(gray, 160, 40, { x0: 0, y0: 4, x1: 160, y1: 36, confidence: 0 });
    expect(rows).toHaveLength(3);
    // Each band holds its line's x-height (the 4–5 rows above the baseline) and no other line's.
    rows.forEach((r, i) => baselines.forEach((b, j) => expect(r.box.y0 <= b - 4 && r.box.y1 >= b - 1, `band ${i} (${r.box.y0}..${r.box.y1}) and line ${j}`).toBe(i === j)));
    expect(rows[1].box.y1 - rows[1].box.y0).toBe(9);
    // Bands tile the crop, top to bottom.
    expect(rows[0].box.y0).toBe(4);
    expect(rows[2].box.y1).toBe(36);
    for (let i = 1; i < rows.length; i++) expect(rows[i].box.y0).toBe(rows[i - 1].box.y1);
  });

  it('leaves one line whole, capitals with crossbars included', async () => {
    const gray = await drawn(400, 60, [[45, 36, 'HEH THE FILE']]);
    expect(textRows(gray, 400, 60, { x0: 0, y0: 10, x1: 400, y1: 52, confidence: 0 })).toEqual([]);
    const small = await drawn(200, 20, [[14, 8, 'open only today']]);
    expect(textRows(small, 200, 20, { x0: 0, y0: 3, x1: 200, y1: 17, confidence: 0 })).toEqual([]);
  });

  it('gives nothing for a flat crop or one too thin to hold two lines', () => {
    const flat = new Uint8Array(50 * 30).fill(128);
    expect(textRows(flat, 50, 30, { x0: 0, y0: 0, x1: 50, y1: 30, confidence: 0 })).toEqual([]);
    expect(textRows(flat, 50, 30, { x0: 0, y0: 0, x1: 50, y1: 4, confidence: 0 })).toEqual([]);
  });
});
