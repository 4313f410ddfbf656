import { modelBreaker, type BreakerConfig } from '../src/outage.js';
import { z } from 'zod';
import { loadTensorModels, modelSource } from '../src/models/model-source.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { TensorModel } from '../src/models/tensor.js';
import type { Stage } from '../src/stage.js';
import { AestheticHead } from '../stages/aesthetic-head.js';
import { aestheticFilter, checkClipModel, checkEmbeddingPairs, clipAestheticOptions, clipAestheticStage, embeddingAestheticOptions, embeddingAestheticStage } from '../stages/aesthetic.js';
import { textDetectorStage, textDetectorStageOptions } from '../stages/ocr/detector-stage.js';
import { readerOcrStage } from '../stages/ocr/ocr-stage.js';
import { loadPpocrRecognizer, PPOCR_CONFIRM, PPOCR_DETECTOR, ppocrPath } from '../stages/ocr/ppocr-models.js';
import { RECOGNIZER_READER, recognizerVerifier } from '../stages/ocr/recognizer-verifier.js';
import { TesseractPool, tesseractPoolOptions } from '../stages/ocr/tesseract-pool.js';
import { TESSERACT_READER, tesseractVerifier } from '../stages/ocr/tesseract-verifier.js';
import type { TextRecognizer } from '../stages/ocr/text-recognizer.js';
import { textFilter, textThresholds } from '../stages/text-filter.js';
import { unsetDefaults } from './config-parts.js';

/** The LAION improved aesthetic predictor (stages/aesthetic.ts); README: Aesthetic score. */
export const aestheticOptions = z.object({
  /** The head as safetensors (convert LAION's .pth as the README shows). */
  head: z.string(),
  /** Embeddings from a CLIP ViT-L/14 image tower… */
  clip: z.object({
    model: modelSource,
    ...clipAestheticOptions.pick({ input_name: true, output_name: true, image_size: true, batch_size: true }).shape,
  }).strict().optional(),
  /** …or LAION's precomputed img_emb_*.npy with their metadata_*.parquet. */
  embeddings: embeddingAestheticOptions.pick({ pairs: true, join: true, url_column: true }).optional(),
  /** Drop below this score (funnel line `aesthetic`); LAION-Aesthetics V2 subsets use 4.5, 5, 6, 6.5. Unset: annotate only. */
  min_score: z.number().optional(),
}).strict().refine((a) => (a.clip ? 1 : 0) + (a.embeddings ? 1 : 0) === 1, { message: 'give exactly one of aesthetic.clip and aesthetic.embeddings' });

/** OCR text density and size (stages/ocr); thresholds in stages/text-filter.ts with their reasons. */
export const ocrOptions = z.object({
  /**
   * ppocr-rec: stroke geometry proposes text lines, PP-OCRv4's recogniser (packaged, offline)
   * confirms them; tesseract: the same geometry, tesseract.js confirms; ppocr: PP-OCRv4's text
   * detector (packaged, or `detector.model` serving it, e.g. on a GPU) with each line confirmed by
   * PP-OCRv4's recogniser; detector: a DBNet-style text-detection model of your own.
   * README: OCR text density and size.
   */
  backend: z.enum(['ppocr-rec', 'tesseract', 'ppocr', 'detector']).default('ppocr-rec'),
  /** tesseract.js workers (unset: the pool's default, one per core). */
  workers: unsetDefaults(tesseractPoolOptions).shape.workers,
  /**
   * The detector model and its options (stages/ocr/detector-stage.ts); unset keys take the stage's
   * defaults when it runs, or with backend ppocr PP-OCRv4's (PPOCR_DETECTOR in ppocr-models.ts).
   * With backend ppocr, `model` defaults to the packaged detector run in process on CPU.
   */
  detector: z.object({
    model: modelSource.optional(),
    ...unsetDefaults(textDetectorStageOptions.pick({ input_name: true, output_name: true, limit_side: true, threshold: true, box_threshold: true, unclip_ratio: true, ink_scale: true, ink_offset: true, channel_order: true, batch_size: true })).shape,
  }).strict().optional(),
  ...textThresholds.shape,
}).strict()
  .refine((o) => o.backend !== 'detector' || o.detector?.model !== undefined, { message: 'backend detector needs ocr.detector.model' })
  // Keys another backend would silently ignore are refused, so a config says what runs.
  .refine((o) => o.workers === undefined || o.backend === 'tesseract', { message: 'ocr.workers sizes the tesseract backend\'s pool; this backend has none (remove it, or set backend: tesseract)' })
  .refine((o) => o.detector === undefined || o.backend === 'ppocr' || o.backend === 'detector', { message: 'ocr.detector configures the ppocr and detector backends; the ppocr-rec and tesseract backends use no detector' });

export type AestheticOptions = z.infer<typeof aestheticOptions>;
export type OcrOptions = z.infer<typeof ocrOptions>;

/** The detector stage's options as a config gives them: with backend ppocr, PP-OCRv4's settings where the config leaves a key unset. */
export function detectorStageOptions(cfg: OcrOptions): z.input<typeof textDetectorStageOptions> {
  const { model: _model, ...given } = cfg.detector ?? {};
  const set = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return cfg.backend === 'ppocr' ? { ...PPOCR_DETECTOR, ...set } : set;
}

/**
 * The annotation stages' per-process resources (model sessions, OCR workers), made once per
 * process and shared by every unit it runs; `close()` releases them.
 */
export class Annotators {
  private constructor(
    private readonly aesthetic: { head: AestheticHead; pool?: ReplicaPool<TensorModel>; cfg: AestheticOptions } | undefined,
    private readonly ocr: { tesseract?: TesseractPool; recognizer?: TextRecognizer; detector?: ReplicaPool<TensorModel>; cfg: OcrOptions } | undefined,
    private readonly models: TensorModel[],
  ) {}

  /** The width of the embeddings the aesthetic stage gives (its head's input), when there is one. */
  get embeddingDim(): number | undefined {
    return this.aesthetic?.head.dim;
  }

  static async open(cfg: { aesthetic?: AestheticOptions; ocr?: OcrOptions; breaker?: BreakerConfig }): Promise<Annotators> {
    const breaker = cfg.breaker && modelBreaker(cfg.breaker);
    const models: TensorModel[] = [];
    let aesthetic;
    if (cfg.aesthetic) {
      const a = cfg.aesthetic;
      const head = await AestheticHead.load(a.head);
      let pool: ReplicaPool<TensorModel> | undefined;
      if (a.clip) {
        const replicas = await loadTensorModels(a.clip.model, 'clip', { breaker });
        models.push(...replicas.map((r) => r.client));
        for (const r of replicas) checkClipModel(r.client, { ...a.clip, dim: head.dim });
        pool = new ReplicaPool(replicas);
      } else if (a.embeddings) {
        await checkEmbeddingPairs({ head, ...a.embeddings });
      }
      aesthetic = { head, pool, cfg: a };
    }
    let ocr;
    if (cfg.ocr) {
      const o = cfg.ocr;
      // PP-OCRv4's recogniser: one session of one thread (the stages keep several images in flight).
      const recognizer = o.backend === 'ppocr' || o.backend === 'ppocr-rec' ? await loadPpocrRecognizer({ intraOpThreads: 1 }) : undefined;
      if (recognizer) models.push(recognizer.model);
      if (o.backend === 'detector' || o.backend === 'ppocr') {
        const source = o.detector?.model ?? { onnx: ppocrPath('detector'), replicas: 1, providers: ['cpu' as const] };
        const replicas = await loadTensorModels(source, 'text-detector', { breaker });
        models.push(...replicas.map((r) => r.client));
        ocr = { detector: new ReplicaPool(replicas), recognizer, cfg: o };
      } else if (recognizer) ocr = { recognizer, cfg: o };
      else ocr = { tesseract: new TesseractPool({ workers: o.workers }), cfg: o };
    }
    return new Annotators(aesthetic, ocr, models);
  }

  /**
   * Aesthetic score and filter, then OCR and the text filters: OCR is the most expensive step,
   * so it only reads images that passed the aesthetic threshold.
   */
  stages(opts: { keepEmbedding?: boolean } = {}): Stage[] {
    const out: Stage[] = [];
    if (this.aesthetic) {
      const { head, pool, cfg } = this.aesthetic;
      if (cfg.clip && pool) {
        const { model: _model, ...clip } = cfg.clip;
        out.push(clipAestheticStage({ head, pool, ...clip, keepEmbedding: opts.keepEmbedding }));
      } else if (cfg.embeddings) out.push(embeddingAestheticStage({ head, ...cfg.embeddings, keepEmbedding: opts.keepEmbedding }));
      if (cfg.min_score !== undefined) out.push(aestheticFilter({ min: cfg.min_score }));
    }
    if (this.ocr) {
      const { tesseract, recognizer, detector, cfg } = this.ocr;
      if (detector) out.push(textDetectorStage({ pool: detector, ...detectorStageOptions(cfg), recognizer, confirm: PPOCR_CONFIRM, backend: cfg.backend }));
      else if (recognizer) out.push(readerOcrStage({ verifier: recognizerVerifier(recognizer), backend: 'ppocr-rec', reader: RECOGNIZER_READER }));
      else if (tesseract) out.push(readerOcrStage({ verifier: tesseractVerifier(tesseract), backend: 'tesseract', reader: TESSERACT_READER, concurrency: tesseract.size * 2 }));
      out.push(textFilter({ max_density: cfg.max_density, min_text_height: cfg.min_text_height }));
    }
    return out;
  }

  async close(): Promise<void> {
    await this.ocr?.tesseract?.close();
    await Promise.all(this.models.map((m) => m.close()));
  }
}
