import { modelBatchStage } from '../../src/models/batcher.js';
import type { ReplicaPool } from '../../src/models/replica-pool.js';
import type { TensorModel } from '../../src/models/tensor.js';
import { SampleError } from '../../src/sample.js';
import type { Stage } from '../../src/stage.js';
import type { ProbabilityMap } from './db-postprocess.js';
import { measureText } from './text-boxes.js';
import { checkDetectorOptions, prepareDetectorInput, TextDetector, type DetectorInput, type TextDetectorOptions } from './text-detector.js';

/**
 * Images are decoded and resized before a replica is chosen, so for a model with a static input
 * size give `input_size` here; otherwise every batch fails with an error saying so.
 */
export interface TextDetectorStageOptions extends TextDetectorOptions {
  /** Replicas of one DBNet-style model (ONNX in process or KServe endpoints). */
  pool: ReplicaPool<TensorModel>;
  /** Stage name in stats and failure records (default 'ocr-detector'). */
  name?: string;
  /** Images per model call (default 8). */
  batch_size?: number;
  /** Send a partial batch once its first image has waited this long (default 50 ms). */
  max_wait_ms?: number;
  /** Batches in flight at once (default 2 per replica, so each replica has one queued behind the running one). */
  max_batches_in_flight?: number;
}

/**
 * The OCR stage's text-detection backend: for each ok sample with `image` (encoded bytes), runs
 * the detector through modelBatchStage and writes the TextMeasures fields (`ocr_density`,
 * `ocr_words`, `ocr_median_height`, `ocr_min_height`, measured against the image's own size)
 * and `ocr_backend: 'detector'`. A detector reports text lines where words sit close together,
 * so `ocr_words` counts boxes, not words.
 *
 * Failure codes: no_image, decode_error (the image cannot be decoded), model_error (the model
 * call failed after the pool's retries; the whole batch fails). Decoding and normalising happen
 * before a replica is taken, and post-processing after it is released, so replicas only wait
 * on the model.
 */
export function textDetectorStage(opts: TextDetectorStageOptions): Stage {
  const { pool, name = 'ocr-detector', batch_size, max_wait_ms, max_batches_in_flight, ...detectorOpts } = opts;
  // Checked now, so a bad option fails at start-up rather than on every sample.
  checkDetectorOptions(detectorOpts);
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
    batchSize: batch_size ?? 8,
    maxWaitMs: max_wait_ms ?? 50,
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
    apply: (s, { map, input, detector }) => {
      const boxes = detector.boxes(map, input);
      Object.assign(s.fields, measureText(boxes, input.originalWidth, input.originalHeight), { ocr_backend: 'detector' });
    },
  });
}
