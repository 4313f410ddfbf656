import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSample, type Sample } from '../src/sample.js';
import { pipe } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { consoleLogger } from '../src/log.js';
import { readerOcrStage } from '../stages/ocr/ocr-stage.js';
import { TESSERACT_READER, tesseractVerifier } from '../stages/ocr/tesseract-verifier.js';
import { TesseractPool } from '../stages/ocr/tesseract-pool.js';
import { textFilter, textVerdict } from '../stages/text-filter.js';
import { makeTextImages, type TextImage } from './helpers/text-images.js';

async function* samplesOf(images: TextImage[]): AsyncGenerator<Sample> {
  for (const im of images) {
    const s = newSample(im.name);
    s.image = im.png;
    s.imageExt = 'png';
    yield s;
  }
}

const decision = (f: Record<string, unknown>) => (textVerdict(f) === null ? 'keep' : 'drop');

describe('OCR stage (tesseract.js) on drawn text', () => {
  let pool: TesseractPool;
  let images: TextImage[];
  const out = new Map<string, Sample>();

  beforeAll(async () => {
    pool = new TesseractPool({ workers: 2 });
    // 36 images: 12 text-free photographs, 6 each of captions, logos, dense paragraphs and small print,
    // over photographs (60%), gradients and plain colours; a seed the reader was not tuned on.
    images = await makeTextImages(36, 2026);
    const stats = new StatsCollector();
    for await (const s of pipe(samplesOf(images), [readerOcrStage({ verifier: tesseractVerifier(pool), backend: 'tesseract', reader: TESSERACT_READER })], { unitId: 't', stats, log: consoleLogger })) out.set(s.key, s);
  }, 120_000);

  afterAll(async () => {
    await pool.close();
  });

  it('writes the measures on every image', () => {
    expect(out.size).toBe(images.length);
    for (const s of out.values()) {
      expect(s.status.kind, s.key).toBe('ok');
      expect(s.fields.ocr_backend).toBe('tesseract');
      expect(typeof s.fields.ocr_density).toBe('number');
      expect(typeof s.fields.ocr_words).toBe('number');
    }
  });

  it('measures density and text height near the drawn boxes where the text is on a clean background', () => {
    const clean = images.filter((im) => im.background !== 'photo' && (im.kind === 'caption' || im.kind === 'logo' || im.kind === 'dense'));
    expect(clean.length).toBeGreaterThanOrEqual(4);
    // Stated tolerances, where the reader finds the text: density within 30% of the truth (+0.01),
    // median word height within 25%. It must find the text in at least 70% of these images
    // (measured 6 of 8 on this seed: it misses two large single-line captions, which does not
    // change their keep decision).
    const found = clean.filter((im) => Number(out.get(im.name)!.fields.ocr_words) > 0);
    expect(found.length / clean.length).toBeGreaterThanOrEqual(0.7);
    for (const im of found) {
      const f = out.get(im.name)!.fields;
      expect(Math.abs(Number(f.ocr_density) - im.truth.ocr_density), im.name).toBeLessThanOrEqual(0.3 * im.truth.ocr_density + 0.01);
      expect(Math.abs(Number(f.ocr_median_height) - im.truth.ocr_median_height!), im.name).toBeLessThanOrEqual(0.25 * im.truth.ocr_median_height!);
    }
  });

  it('finds next to no text in text-free photographs', () => {
    const free = images.filter((im) => im.kind === 'none');
    const quiet = free.filter((im) => Number(out.get(im.name)!.fields.ocr_density) <= 0.01);
    expect(quiet.length / free.length).toBeGreaterThanOrEqual(0.9);
  });

  it('agrees with the drawn truth on keep or drop for most images, over photographs too', () => {
    const agree = images.filter((im) => decision(out.get(im.name)!.fields) === decision(im.truth as unknown as Record<string, unknown>));
    const photos = images.filter((im) => im.background === 'photo');
    const agreePhotos = photos.filter((im) => agree.includes(im));
    expect(agree.length / images.length).toBeGreaterThanOrEqual(0.8);
    expect(agreePhotos.length / photos.length).toBeGreaterThanOrEqual(0.75);
  });

  it('the text filter drops by density and by height with the measured value, and fails unannotated samples', async () => {
    const a = newSample('dense');
    a.fields = { ocr_density: 0.4, ocr_words: 30, ocr_median_height: 0.05 };
    const b = newSample('small');
    b.fields = { ocr_density: 0.01, ocr_words: 5, ocr_median_height: 0.02 };
    const c = newSample('fine');
    c.fields = { ocr_density: 0.05, ocr_words: 2, ocr_median_height: 0.1 };
    const d = newSample('none');
    d.fields = { ocr_density: 0, ocr_words: 0, ocr_median_height: null };
    const e = newSample('unannotated');
    async function* src() {
      yield* [a, b, c, d, e];
    }
    const got: Sample[] = [];
    for await (const s of pipe(src(), [textFilter({ max_density: 0.15, min_text_height: 0.03 })], { unitId: 't', stats: new StatsCollector(), log: consoleLogger })) got.push(s);
    expect(got.map((s) => s.status)).toEqual([
      { kind: 'dropped', by: 'text_density', value: 0.4 },
      { kind: 'dropped', by: 'text_height', value: 0.02 },
      { kind: 'ok' },
      { kind: 'ok' },
      expect.objectContaining({ kind: 'failed', code: 'no_ocr_fields' }),
    ]);
  });

  it('fails a sample without an image, naming it', async () => {
    const s = newSample('noimg');
    async function* src() {
      yield s;
    }
    for await (const _ of pipe(src(), [readerOcrStage({ verifier: tesseractVerifier(pool), backend: 'tesseract', reader: TESSERACT_READER })], { unitId: 't', stats: new StatsCollector(), log: consoleLogger })) void _;
    expect(s.status).toMatchObject({ kind: 'failed', code: 'no_image' });
    expect((s.status as { error: string }).error).toContain('noimg');
  });
});
