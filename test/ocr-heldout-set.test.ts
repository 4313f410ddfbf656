import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { measureText } from '../stages/ocr/text-boxes.js';
import { makeHeldoutSet, type HeldoutImage } from './helpers/ocr-heldout-set.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * The OCR bench's held-out set (bench/ocr_heldout_set.py, Pillow) read back by sharp: its word
 * boxes hold all the ink and are tight, and its measures are what measureText gives for them.
 */
describe('the held-out OCR evaluation set', () => {
  let dir: string;
  let set: HeldoutImage[];

  beforeAll(async () => {
    dir = await tempDir('ocr-heldout');
    set = await makeHeldoutSet(dir, 80, 3);
  }, 60_000);

  it('is half text-free photographs, and every text image has words with their measures', () => {
    expect(set).toHaveLength(80);
    expect(set.filter((m) => m.kind === 'none')).toHaveLength(40);
    for (const m of set) {
      if (m.kind === 'none') expect(m.words).toEqual([]);
      else expect(m.words.length, m.name).toBeGreaterThan(0);
      expect(measureText(m.words, m.width, m.height), m.name).toEqual({ ...m.truth, ocr_density: expect.closeTo(m.truth.ocr_density, 12) });
    }
    const heights = set.filter((m) => m.kind !== 'none').map((m) => m.truth.ocr_median_height!);
    expect(Math.min(...heights)).toBeLessThan(0.01);
    expect(Math.max(...heights)).toBeGreaterThan(0.1);
  });

  it('holds all the ink inside its word boxes, and each box is tight around its ink (plain backgrounds)', async () => {
    const plain = set.filter((m) => m.background === 'plain' && m.kind !== 'caption' && m.kind !== 'none');
    expect(plain.length).toBeGreaterThanOrEqual(3);
    for (const m of plain) {
      const { data, info } = await sharp(join(dir, `${m.name}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([m.width, m.height]);
      const at = (x: number, y: number) => (y * info.width + x) * 3;
      // The fill: the colour of most pixels.
      const counts = new Map<number, number>();
      for (let i = 0; i < data.length; i += 3) counts.set((data[i] << 16) | (data[i + 1] << 8) | data[i + 2], (counts.get((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]) ?? 0) + 1);
      const fill = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
      const fillRgb = [fill >> 16, (fill >> 8) & 255, fill & 255];
      // Ink: a pixel visibly off the fill (antialiasing leaves fringes of a level or two beside glyphs).
      const ink = (x: number, y: number) => fillRgb.some((c, k) => Math.abs(data[at(x, y) + k] - c) > 8);
      const inBox = (x: number, y: number) => m.words.some((b) => x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1);
      let outside = 0;
      for (let y = 0; y < m.height; y++) for (let x = 0; x < m.width; x++) if (ink(x, y) && !inBox(x, y)) outside++;
      expect(outside, `${m.name}: ink pixels outside every word box`).toBe(0);
      for (const b of m.words) {
        const rows: number[] = [];
        const cols: number[] = [];
        for (let y = b.y0; y < b.y1; y++) for (let x = b.x0; x < b.x1; x++) if (ink(x, y)) (rows.push(y), cols.push(x));
        expect(rows.length, `${m.name} ${b.text}: no ink in its box`).toBeGreaterThan(0);
        // Tight: ink reaches within a pixel of every edge (another word's ink may share a box's corner).
        expect(Math.min(...rows) - b.y0, `${m.name} ${b.text}: top`).toBeLessThanOrEqual(1);
        expect(b.y1 - 1 - Math.max(...rows), `${m.name} ${b.text}: bottom`).toBeLessThanOrEqual(1);
        expect(Math.min(...cols) - b.x0, `${m.name} ${b.text}: left`).toBeLessThanOrEqual(1);
        expect(b.x1 - 1 - Math.max(...cols), `${m.name} ${b.text}: right`).toBeLessThanOrEqual(1);
      }
    }
  });
});
