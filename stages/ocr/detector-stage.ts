import { z } from 'zod';
import { modelBatchStage } from '../../src/models/batcher.js';
import type { ReplicaPool } from '../../src/models/replica-pool.js';
import type { TensorModel } from '../../src/models/tensor.js';
import { SampleError } from '../../src/sample.js';
import type { Stage } from '../../src/stage.js';
import type { ProbabilityMap } from './db-postprocess.js';
import { parseStageOptions } from '../stage-options.js';
import { confirmedLines, type RecognizerVerifierOptions } from './recognizer-verifier.js';
import { measureText } from './text-boxes.js';
import type { TextRecognizer } from './text-recognizer.js';
import { prepareDetectorInput, TextDetector, textDetectorOptions, type DetectorInput } from './text-detector.js';

/**
 * Options of the detector stage: the detector's (text-detector.ts) and the batching ones.
 * Images are decoded and resized before a replica is chosen, so for a model with a static input
 * size give `input_size` here; otherwise every batch fails with an error saying so.
 */
export const textDetectorStageOptions = textDetectorOptions.extend({
  /** Stage name in stats and failure records. */
  name: z.string().min(1).default('ocr-detector'),
  /** Images per model call. */
  batch_size: z.number().int().min(1).default(8),
  /** Send a partial batch once its first image has waited this long. */
  max_wait_ms: z.number().int().min(0).default(50),
  /** Batches in flight at once (default 2 per replica, so each replica has one queued behind the running one). */
  max_batches_in_flight: z.number().int().min(1).optional(),
});

/** What textDetectorStage takes: the options (unset keys take their defaults) and the replicas. */
export type TextDetectorStageOptions = z.input<typeof textDetectorStageOptions> & {
  /** Replicas of one DBNet-style model (ONNX in process or KServe endpoints). */
  pool: ReplicaPool<TensorModel>;
  /** When given, a line counts only if this recogniser reads a word in it (confirmedLines, recognizer-verifier.ts). */
  recognizer?: TextRecognizer;
  /** The reading a line needs to count. */
  confirm?: RecognizerVerifierOptions;
  /** What the records' `ocr_backend` says (default 'detector'). */
  backend?: string;
};

/** The stage's options parsed (defaults filled in), split into the batching ones and the detector's. */
function settingsOf(options: z.input<typeof textDetectorStageOptions>) {
  const { name, batch_size, max_wait_ms, max_batches_in_flight, ...detector } = parseStageOptions('text-detector stage', textDetectorStageOptions, options);
  return { name, batch_size, max_wait_ms, max_batches_in_flight, detector };
}

/** Throws, naming the model and the tensor, when a model cannot serve the stage with these options; for start-up checks. */
export function checkDetectorModel(model: TensorModel, options: z.input<typeof textDetectorStageOptions>): void {
  void new TextDetector(model, settingsOf(options).detector);
}

/**
 * The OCR stage's text-detection backend: for each ok sample with `image` (encoded bytes), runs
 * the detector through modelBatchStage and writes the TextMeasures fields (`ocr_density`,
 * `ocr_words`, `ocr_median_height`, `ocr_min_height`, measured against the image's own size)
 * and `ocr_backend` (`backend`). A detector reports text lines where words sit close together,
 * so `ocr_words` counts boxes, not words. With a `recognizer`, each line is read and counts only
 * when a word is read in it (textured photographs give DB text-like regions, but no words).
 *
 * Failure codes: no_image, decode_error (the image cannot be decoded), model_error (the model
 * call failed after the pool's retries; the whole batch fails). Decoding and normalising happen
 * before a replica is taken, and post-processing after it is released, so replicas only wait
 * on the model.
 */
export function textDetectorStage(opts: TextDetectorStageOptions): Stage {
  const { pool, recognizer, confirm, backend = 'detector', ...options } = opts;
  // Checked now, so a bad option fails at start-up rather than on every sample.
  const { name, batch_size, max_wait_ms, max_batches_in_flight, detector: detectorOpts } = settingsOf(options);
  // Each replica is its own TensorModel; one detector per replica, made on first use.
  const detectors = new Map<TensorModel, TextDetector>();
  const detectorFor = (m: TensorModel): TextDetector => {
    let d = detectors.get(m);
    if (!d) detectors.set(m, (d = new TextDetector(m, detectorOpts)));
    return d;
  };
  // prepare() runs before any replica is chosen, so it needs the options alone.
  const prep = (image: Uint8Array): Promise<DetectorInput> => prepareDetectorInput(image, detectorOpts);

  return modelBatchStage<TensorModel, DetectorInput, { map: ProbabilityMap; input: DetectorInput; detector: TextDetector }>({
    name,
    pool,
    batchSize: batch_size,
    maxWaitMs: max_wait_ms,
    maxBatchesInFlight: max_batches_in_flight ?? 2 * pool.names.length,
    prepare: async (s) => {
      if (!s.image) throw new SampleError('no_image', `sample ${s.key}: no image bytes to detect text in (sample.image is missing)`);
      try {
        return await prep(s.image);
      } catch (err) {
        throw new SampleError('decode_error', `sample ${s.key}: cannot decode image for text detection: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
    call: async (client, inputs) => {
      const detector = detectorFor(client);
      const maps = await detector.infer(inputs);
      return maps.map((map, i) => ({ map, input: inputs[i], detector }));
    },
    apply: async (s, { map, input, detector }) => {
      let boxes = detector.boxes(map, input);
      if (recognizer && boxes.length > 0) boxes = await confirmedLines(recognizer, input.pixels, boxes, confirm);
      Object.assign(s.fields, measureText(boxes, input.originalWidth, input.originalHeight), { ocr_backend: backend });
    },
  });
}
