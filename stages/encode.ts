import sharp from 'sharp';
import { z } from 'zod';
import { LATENT_BITS, packLogits } from '../src/formats/latent-bits.js';
import { modelBatchStage, RequestSplitter, type SplitEvent } from '../src/models/batcher.js';
import { floatToHalf, halfToFloat } from '../src/formats/half-float.js';
import type { ReplicaPool } from '../src/models/replica-pool.js';
import type { Tensor, TensorModel } from '../src/models/tensor.js';
import { SampleError, type RawImage } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { addCount } from '../src/stats.js';
import { BIT_ENCODER_CONTRACT, checkBitEncoder, imageToEncoderInput } from './bit-encoder.js';
import { decodeConcurrency } from './decode-resize.js';
import { parseStageOptions } from './stage-options.js';

/** Settings of the encoder half of pre-encoding (unset keys take the defaults below). */
export const encoderOptions = z.object({
  /** Input side in pixels; images are centre-cropped and resized to it (the paper's tokenizer: 512). */
  size: z.number().int().min(16).default(512),
  /** Images per encoder call. */
  batch_size: z.number().int().min(1).default(32),
  /** Batches decoded ahead and in flight at once (default 2 per replica: one running, one queued). */
  max_batches_in_flight: z.number().int().min(1).optional(),
  /** Send a partial batch after this long. */
  max_wait_ms: z.number().int().min(0).default(100),
  /** Images decoded at once (sharp's thread pool); see decodeConcurrency. */
  decode_concurrency: decodeConcurrency,
}).strict();

/** What encodeStages takes: the replicas, and encoderOptions' settings by their camel-case names (unset: the defaults). */
export interface EncodeOptions {
  /** BIT encoder replicas (ONNX sessions in process or KServe endpoints, one per GPU). */
  pool: ReplicaPool<TensorModel>;
  size?: number;
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
  const o = parseStageOptions('encode', encoderOptions, { size: opts.size, batch_size: opts.batchSize, max_batches_in_flight: opts.maxBatchesInFlight, max_wait_ms: opts.maxWaitMs, decode_concurrency: opts.decodeConcurrency });
  const { size } = o;
  const per = 3 * size * size;
  const decodedAt = new WeakMap<object, number>();
  const checked = new WeakSet<TensorModel>();

  const decode = sampleStage(
    'decode',
    async (s, stats) => {
      if (!s.image) throw new SampleError('no_image', `sample ${s.key} has no image to encode`);
      let out;
      try {
        out = await sharp(s.image, { failOn: 'error' })
          .rotate()
          .resize(size, size, { fit: 'cover', position: 'centre' })
          .removeAlpha()
          .toColourspace('srgb')
          .raw()
          .toBuffer({ resolveWithObject: true });
      } catch (err) {
        throw new SampleError('decode_error', `cannot decode image for the encoder: ${(err as Error).message}`);
      }
      s.pixels = { data: new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length), width: size, height: size, channels: 3 } satisfies RawImage;
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
    const inner = modelBatchStage<TensorModel, Uint8Array, Uint8Array>({
      name: 'encode',
      pool: opts.pool,
      batchSize: o.batch_size,
      maxWaitMs: o.max_wait_ms,
      maxBatchesInFlight: o.max_batches_in_flight ?? 2 * opts.pool.names.length,
      prepare: (s) => {
        const t = decodedAt.get(s);
        if (t !== undefined) addCount(stats, 'decoded_wait_seconds', (performance.now() - t) / 1000);
        const px = s.pixels;
        if (!px || px.channels !== 3 || px.width !== size || px.height !== size) throw new SampleError('no_pixels', `sample ${s.key}: no ${size}×${size} RGB pixels to encode`);
        s.pixels = undefined;
        return px.data;
      },
      call: async (model, images) => {
        if (!checked.has(model)) {
          checkBitEncoder(model, { size });
          checked.add(model);
        }
        if (inFlight++ === 0) addCount(stats, 'encoder_idle_seconds', (performance.now() - idleSince) / 1000);
        try {
          // modelBatchStage counts `batches`; `requests` counts what went over the wire (more when split).
          return await splitter.run(model, images, (part) => send(model, part), onSplit);
        } finally {
          if (--inFlight === 0) idleSince = performance.now();
        }
      },
      apply: (s, latent) => {
        s.latent = latent;
        addCount(stats, 'latents');
      },
    });
    return inner(input, ctx);
  };

  return [decode, encode];
}
