import { z } from 'zod';
import { LATENT_BITS, packLogits } from '../src/formats/latent-bits.js';
import { modelBatchStage, RequestSplitter, type SplitEvent } from '../src/models/batcher.js';
import { floatToHalf, halfToFloat } from '../src/formats/half-float.js';
import type { ReplicaPool } from '../src/models/replica-pool.js';
import type { Tensor, TensorModel } from '../src/models/tensor.js';
import { SampleError, type RawImage } from '../src/sample.js';
import { decodeRgbAsPil } from '../src/images/pil-decode.js';
import { centreCrop, randomCrop } from '../src/images/train-crop.js';
import { drawView } from './encode-views.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { addCount } from '../src/stats.js';
import { BIT_ENCODER_CONTRACT, checkBitEncoder, imageToEncoderInput } from './bit-encoder.js';
import { decodeConcurrency } from './decode-resize.js';
import { parseStageOptions } from './stage-options.js';

/** Settings of the encoder half of pre-encoding (unset keys take the defaults below). */
export const encoderOptions = z.object({
  /** Input side in pixels: the encoder's input is a size × size crop (the paper's tokenizer: 512). */
  size: z.number().int().min(16).default(512),
  /**
   * How an image becomes the encoder's input, decoded as Pillow decodes it (no colour management,
   * no EXIF rotation) and resized exactly as Pillow resizes (src/images/train-crop.ts):
   * 'random', the reference training's augmentation (random_crop_arr: shorter side drawn from
   * size … size/0.8, BOX halvings, BICUBIC, a random crop, a horizontal flip with p 0.5), `views`
   * seeded draws per image; 'centre', torchvision's Resize(size, BICUBIC) + CenterCrop(size), one
   * view: for evaluation sets and reconstruction tables.
   */
  crop: z.enum(['random', 'centre']).default('random'),
  /** Crops encoded per image with crop 'random', each a row of its own (`view` 0 … views − 1, 1 KiB each); training-mix and feed show each epoch another one. */
  views: z.number().int().min(1).max(64).default(1),
  /** Seeds the views' draws (with the key and the view number: stages/encode-views.ts). */
  view_seed: z.number().int().min(0).max(0xffffffff).default(0),
  /** Images per encoder call. */
  batch_size: z.number().int().min(1).default(32),
  /** Batches decoded ahead and in flight at once (default 2 per replica: one running, one queued). */
  max_batches_in_flight: z.number().int().min(1).optional(),
  /** Send a partial batch after this long. */
  max_wait_ms: z.number().int().min(0).default(100),
  /** Images decoded at once (sharp's thread pool); see decodeConcurrency. */
  decode_concurrency: decodeConcurrency,
}).strict();

/** What is wrong with a crop and views setting, if anything (checked at plan time by pre-encode's config, and here). */
export function viewsProblem(crop: 'random' | 'centre', views: number): string | undefined {
  return crop === 'centre' && views !== 1 ? `crop 'centre' makes one view per image; views ${views} needs crop 'random'` : undefined;
}

/** What encodeStages takes: the replicas, and encoderOptions' settings by their camel-case names (unset: the defaults). */
export interface EncodeOptions {
  /** BIT encoder replicas (ONNX sessions in process or KServe endpoints, one per GPU). */
  pool: ReplicaPool<TensorModel>;
  size?: number;
  crop?: 'random' | 'centre';
  views?: number;
  viewSeed?: number;
  batchSize?: number;
  maxBatchesInFlight?: number;
  maxWaitMs?: number;
  decodeConcurrency?: number;
}

/** One splitter per replica pool, so what one unit learns of an endpoint's limit serves the next. */
const splitters = new WeakMap<ReplicaPool<TensorModel>, RequestSplitter<TensorModel>>();

function splitterFor(pool: ReplicaPool<TensorModel>): RequestSplitter<TensorModel> {
  let s = splitters.get(pool);
  if (!s) {
    s = new RequestSplitter<TensorModel>((model) => {
      const url = (model as { url?: unknown }).url;
      return typeof url === 'string' ? url : model.name;
    });
    splitters.set(pool, s);
  }
  return s;
}

/**
 * The two halves of pre-encoding: `decode` (CPU: image bytes → size×size RGB, centre crop, in
 * parallel, ahead of the encoder) and `encode` (the BIT encoder in batches over the replica pool:
 * NCHW [-1, 1] → logits [N,128,64] → bits → 1024 packed bytes in `sample.latent`).
 *
 * Waiting is measured on both sides, in the `encode` stage's units: `encoder_idle_seconds`
 * (no batch in flight on any replica while the stage ran: the encoder waited for the CPUs) and
 * `decoded_wait_seconds` (decoded images summed over the time they sat waiting for the encoder:
 * the CPUs were ahead). One is large and the other small, and which one says what to scale.
 *
 * An endpoint that refuses a batch for its size (HTTP 413: its body limit is below batch_size
 * images) gets it in halves, recursively, and later batches pre-split to the largest size it took
 * (`requests_split` counts the refusals; a warning names the endpoint and the new size). One image
 * still refused is an outage that stops the unit (see RequestSplitter).
 */
export function encodeStages(opts: EncodeOptions): Stage[] {
  const o = parseStageOptions('encode', encoderOptions, { size: opts.size, crop: opts.crop, views: opts.views, view_seed: opts.viewSeed, batch_size: opts.batchSize, max_batches_in_flight: opts.maxBatchesInFlight, max_wait_ms: opts.maxWaitMs, decode_concurrency: opts.decodeConcurrency });
  const { size } = o;
  const problem = viewsProblem(o.crop, o.views);
  if (problem) throw new Error(`encode: ${problem}`);
  const per = 3 * size * size;
  const decodedAt = new WeakMap<object, number>();
  const viewsOf = new WeakMap<object, Uint8Array[]>();
  const checked = new WeakSet<TensorModel>();

  const decode = sampleStage(
    'decode',
    async (s, stats) => {
      if (!s.image) throw new SampleError('no_image', `sample ${s.key} has no image to encode`);
      let img: RawImage;
      try {
        img = await decodeRgbAsPil(s.image);
      } catch (err) {
        throw new SampleError('decode_error', `cannot decode image for the encoder: ${(err as Error).message}`);
      }
      const crops = o.crop === 'centre' ? [centreCrop(img, size)] : Array.from({ length: o.views }, (_, v) => randomCrop(img, size, drawView(o.view_seed, s.key, v, img.width, img.height, size)));
      viewsOf.set(s, crops.map((c) => c.data));
      decodedAt.set(s, performance.now());
      addCount(stats, 'images');
    },
    { concurrency: o.decode_concurrency },
  );

  const encode: Stage = (input, ctx) => {
    const stats = ctx.stats.stage('encode');
    let inFlight = 0;
    let idleSince = performance.now();
    const splitter = splitterFor(opts.pool);
    const onSplit = (e: SplitEvent) => {
      addCount(stats, 'requests_split');
      ctx.log.warn(`encode: ${e.target} refused a request of ${e.refused} images for its size (${e.message}); sending at most ${e.nextSize} per request to it from now on (raise its body limit, or lower encoder.batch_size)`);
    };
    const send = async (model: TensorModel, images: Uint8Array[]): Promise<Uint8Array[]> => {
      const n = images.length;
      const x = new Float32Array(n * per);
      images.forEach((rgb, i) => imageToEncoderInput(rgb, size, x, i * per));
      const c = BIT_ENCODER_CONTRACT;
      const half = model.inputs.find((t) => t.name === c.input.name)?.dtype === 'FP16';
      const tensor: Tensor = half ? { dtype: 'FP16', shape: [n, 3, size, size], data: Uint16Array.from(x, floatToHalf) } : { dtype: 'FP32', shape: [n, 3, size, size], data: x };
      const out = await model.infer({ [c.input.name]: tensor }, { outputs: [c.output.name], signal: ctx.signal });
      const y = out[c.output.name];
      if (!y || y.data.length !== n * LATENT_BITS) throw new Error(`model ${model.name}: output "${c.output.name}" has ${y ? y.data.length : 0} values for ${n} images, expected ${n * LATENT_BITS} ([${n}, 128, 64])`);
      const logits = y.dtype === 'FP16' ? Float32Array.from(y.data as Uint16Array, halfToFloat) : (y.data as Float32Array);
      addCount(stats, 'requests');
      return images.map((_, i) => packLogits(logits, i * LATENT_BITS));
    };
    const inner = modelBatchStage<TensorModel, Uint8Array[], Uint8Array[]>({
      name: 'encode',
      pool: opts.pool,
      batchSize: o.batch_size,
      maxWaitMs: o.max_wait_ms,
      maxBatchesInFlight: o.max_batches_in_flight ?? 2 * opts.pool.names.length,
      prepare: (s) => {
        const t = decodedAt.get(s);
        if (t !== undefined) addCount(stats, 'decoded_wait_seconds', (performance.now() - t) / 1000);
        const views = viewsOf.get(s);
        if (!views) throw new SampleError('no_pixels', `sample ${s.key}: no ${size}×${size} RGB pixels to encode`);
        viewsOf.delete(s);
        return views;
      },
      call: async (model, samples) => {
        if (!checked.has(model)) {
          checkBitEncoder(model, { size });
          checked.add(model);
        }
        if (inFlight++ === 0) addCount(stats, 'encoder_idle_seconds', (performance.now() - idleSince) / 1000);
        try {
          // modelBatchStage counts `batches`; `requests` counts what went over the wire (more when split).
          return await splitter.run(model, samples, async (part) => {
            // One request holds every view of its samples; each sample gets its own latents back.
            const latents = await send(model, part.flat());
            let at = 0;
            return part.map((views) => latents.slice(at, (at += views.length)));
          }, onSplit);
        } finally {
          if (--inFlight === 0) idleSince = performance.now();
        }
      },
      apply: (s, latents) => {
        s.latent = latents[0];
        s.views = latents;
        addCount(stats, 'latents', latents.length);
      },
    });
    return inner(input, ctx);
  };

  return [decode, encode];
}
