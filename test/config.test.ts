import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config/config-error.js';
import { loadConfig, parseOverride } from '../src/config/load-config.js';
import { detectorStageOptions, type OcrOptions } from '../pipelines/annotations.js';
import { jobs } from '../pipelines/index.js';
import { PPOCR_DETECTOR } from '../stages/ocr/ppocr-models.js';
import { tempDir } from './helpers/temp-dir.js';

async function cfgFile(text: string, ext = 'yaml'): Promise<string> {
  const dir = await tempDir('cfg');
  const p = join(dir, `c.${ext}`);
  await writeFile(p, text);
  return p;
}

const valid = `job: image-shards
output: ./out
input: { kind: folder, path: ./imgs }
image: { size: 256 }
`;

describe('config', () => {
  it('fills defaults and validates a YAML config', async () => {
    const { job, config } = await loadConfig(await cfgFile(valid), jobs);
    expect(job.name).toBe('image-shards');
    expect(config).toMatchObject({ output: './out', parallel_units: 1, image: { size: 256, mode: 'centre_crop', quality: 95 }, input: { kind: 'folder', unit_rows: 10000 } });
  });

  it('reads JSON too', async () => {
    const { config } = await loadConfig(await cfgFile(JSON.stringify({ job: 'image-shards', output: 'o', input: { kind: 'folder', path: 'p' } }), 'json'), jobs);
    expect(config.output).toBe('o');
  });

  it('lets overrides win, parsed as YAML scalars', async () => {
    const { config } = await loadConfig(await cfgFile(valid), jobs, [parseOverride('image.size=128'), parseOverride('image.mode=keep_ratio'), ['output', 's3://b/p']]);
    expect(config).toMatchObject({ output: 's3://b/p', image: { size: 128, mode: 'keep_ratio' } });
  });

  it('names the file, the key and the problem', async () => {
    const p = await cfgFile(valid.replace('size: 256', 'size: big') + 'extra_key: 1\n');
    const err = await loadConfig(p, jobs).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/image\.size: .*number/i);
    expect(err.message).toMatch(/extra_key/);
  });

  it('names a bad enum value and a missing key', async () => {
    const err = await loadConfig(await cfgFile('job: image-shards\ninput: { kind: folder, path: x }\nimage: { mode: squash }\n'), jobs).catch((e) => e);
    expect(err.message).toMatch(/output: /);
    expect(err.message).toMatch(/image\.mode: .*centre_crop/);
  });

  it('rejects an unknown job with the list of jobs', async () => {
    const err = await loadConfig(await cfgFile('job: nope\noutput: x\n'), jobs).catch((e) => e);
    expect(err.message).toMatch(/unknown job "nope"; one of image-shards/);
  });

  it('rejects a malformed override', () => {
    expect(() => parseOverride('image.size')).toThrow(/key.path=value/);
  });
});

describe('shipped configs', () => {
  for (const name of ['laion-filter.yaml', 'image-shards.yaml', 'demo.yaml', 'recaption.yaml', 'dalle-ingest.yaml', 'pre-encode.yaml', 'training-mix.yaml']) {
    it(`configs/${name} is valid`, async () => {
      const { config } = await loadConfig(join(import.meta.dirname, '..', 'configs', name), jobs);
      expect(config.output).toBeTruthy();
    });
  }

  it('names a bad annotation block by its key', async () => {
    const p = await cfgFile(`job: laion-filter\noutput: ./o\ninput: { kind: parquet, paths: [./x] }\naesthetic: { head: ./h.safetensors, min_score: 5 }\n`);
    await expect(loadConfig(p, jobs)).rejects.toThrow(/aesthetic.*exactly one of aesthetic.clip and aesthetic.embeddings/s);
    const q = await cfgFile(`job: laion-filter\noutput: ./o\ninput: { kind: parquet, paths: [./x] }\nocr: { backend: detector }\n`);
    await expect(loadConfig(q, jobs)).rejects.toThrow(/ocr.*detector/s);
  });

  it('defaults OCR to ppocr-rec; backend ppocr needs no model (the packaged one) and fills in PP-OCRv4 settings the config leaves unset', async () => {
    const base = `job: laion-filter\noutput: ./o\ninput: { kind: parquet, paths: [./x] }\n`;
    const ocrOf = async (yaml: string) => (await loadConfig(await cfgFile(`${base}${yaml}\n`), jobs)).config.ocr as OcrOptions;
    expect((await ocrOf('ocr: {}')).backend).toBe('ppocr-rec');
    expect(detectorStageOptions(await ocrOf('ocr: { backend: ppocr, detector: { limit_side: 640 } }'))).toEqual({ ...PPOCR_DETECTOR, limit_side: 640 });
    expect(detectorStageOptions(await ocrOf('ocr: { backend: detector, detector: { model: { onnx: ./det.onnx } } }'))).toEqual({});
    // Keys the chosen backend would ignore are refused.
    await expect(ocrOf('ocr: { workers: 4 }')).rejects.toThrow(/ocr.workers sizes the tesseract backend's pool/);
    await expect(ocrOf('ocr: { backend: tesseract, detector: { limit_side: 640 } }')).rejects.toThrow(/ocr.detector configures the ppocr and detector backends/);
    expect((await ocrOf('ocr: { backend: tesseract, workers: 4 }')).workers).toBe(4);
  });
});
