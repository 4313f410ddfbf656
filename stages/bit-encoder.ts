/**
 * The model contract bitprep holds a BIT encoder export to, and the input preprocessing that
 * feeds it. The pre-encode job checks every replica with `checkBitEncoder` at start-up, so a
 * wrong export fails before any shard is read, with every problem listed at once.
 *
 * Contract (what `tools/export_bit_encoder.py` writes):
 * - one input `image`: FP32 (or FP16) [N, 3, S, S], RGB, NCHW, scaled to [-1, 1] (x / 127.5 − 1),
 *   N dynamic, S the training resolution (512 by default);
 * - output `logits`: FP32 [N, 128, 64], token-major; bit = logit > 0 (see src/formats/latent-bits.ts).
 *   FP16 exports still answer FP32 logits, so a bit never depends on how the server rounds.
 */
import { floatToHalf } from '../src/formats/half-float.js';
import type { DType, TensorModel, TensorSpec } from '../src/models/tensor.js';
import { LATENT_BITS_PER_TOKEN, LATENT_TOKENS } from '../src/formats/latent-bits.js';

export const BIT_ENCODER_CONTRACT = {
  input: { name: 'image', dtypes: ['FP32', 'FP16'] as const, channels: 3, defaultSize: 512 },
  output: { name: 'logits', dtype: 'FP32' as const, tokens: LATENT_TOKENS, bitsPerToken: LATENT_BITS_PER_TOKEN },
  exportHint: 're-export with tools/export_bit_encoder.py',
} as const;

export type BitEncoderInputDtype = (typeof BIT_ENCODER_CONTRACT.input.dtypes)[number];

export interface BitEncoderCheck {
  /**
   * Image side S. When given explicitly, an input whose spatial dims are dynamic is accepted (the
   * caller vouches for the resolution); when left to the default 512, the export must declare
   * it, because a dynamic-resolution export does not say which resolution it was trained at and
   * codes from another resolution are silently different.
   */
  size?: number;
  /** Required input dtype; by default FP32 and FP16 are both accepted (see `bitEncoderInputDtype`). */
  dtype?: BitEncoderInputDtype;
  /**
   * The batch size the caller will send. A dynamic batch is always accepted; a fixed one only
   * when it equals this, since pre-encode sends batches of varying size.
   */
  batch?: number;
}

/** Thrown by `checkBitEncoder`; `problems` holds one line per mismatch. */
export class BitEncoderContractError extends Error {
  constructor(readonly model: string, readonly problems: string[], expected: string) {
    super(
      `model ${model} does not meet the BIT encoder contract (${expected}):\n` +
        problems.map((p) => `  - ${p}`).join('\n') +
        `\n${BIT_ENCODER_CONTRACT.exportHint} (input "image", output "logits", dynamic batch; add --fp16 for an FP16 input)`,
    );
    this.name = 'BitEncoderContractError';
  }
}

const dims = (shape: number[]) => `[${shape.map((d) => (d < 0 ? '?' : d)).join(', ')}]`;

/**
 * Checks a model's declared inputs and outputs against the BIT encoder contract; throws one
 * BitEncoderContractError listing every mismatch (tensor, expected, found). When `image` or
 * `logits` is missing but the model has exactly one input (output), that tensor is checked as
 * the intended one too, so a renamed export gets all its problems reported in one go.
 */
export function checkBitEncoder(model: TensorModel, opts: BitEncoderCheck = {}): void {
  const c = BIT_ENCODER_CONTRACT;
  const explicitSize = opts.size !== undefined;
  const size = opts.size ?? c.input.defaultSize;
  if (!(Number.isInteger(size) && size > 0)) throw new RangeError(`checkBitEncoder: size must be a positive integer, got ${size}`);
  const inDtypes: readonly DType[] = opts.dtype ? [opts.dtype] : c.input.dtypes;
  const expected =
    `input "${c.input.name}" ${inDtypes.join(' or ')} [N, ${c.input.channels}, ${size}, ${size}] → ` +
    `output "${c.output.name}" ${c.output.dtype} [N, ${c.output.tokens}, ${c.output.bitsPerToken}]`;
  const problems: string[] = [];
  const list = (l: TensorSpec[]) => l.map((t) => `"${t.name}"`).join(', ') || 'none';

  const pick = (kind: 'input' | 'output', specs: TensorSpec[], name: string): { spec?: TensorSpec; label: string } => {
    const spec = specs.find((t) => t.name === name);
    if (spec) return { spec, label: `${kind} "${name}"` };
    if (specs.length === 1) {
      problems.push(`${kind} name: expected "${name}", found "${specs[0].name}"`);
      return { spec: specs[0], label: `${kind} "${specs[0].name}" (should be "${name}")` };
    }
    problems.push(`${kind} "${name}": missing (${kind}s: ${list(specs)})`);
    return { label: '' };
  };

  const input = pick('input', model.inputs, c.input.name);
  if (model.inputs.length > 1) problems.push(`inputs: the encoder must take only "${c.input.name}", found ${list(model.inputs)}`);
  if (input.spec) {
    const { spec, label } = input;
    if (!inDtypes.includes(spec.dtype)) problems.push(`${label} dtype: expected ${inDtypes.join(' or ')}, found ${spec.dtype}`);
    if (spec.shape.length !== 4) {
      problems.push(`${label} shape: expected [N, ${c.input.channels}, ${size}, ${size}] (rank 4, NCHW), found ${dims(spec.shape)}`);
    } else {
      const [n, ch, h, w] = spec.shape;
      if (n >= 0 && n !== opts.batch) {
        problems.push(`${label} batch dim: expected dynamic (N), found fixed ${n}${opts.batch === undefined ? '' : ` while batches of ${opts.batch} will be sent`}`);
      }
      if (ch !== c.input.channels) problems.push(`${label} channel dim (1): expected ${c.input.channels} (RGB, NCHW), found ${ch < 0 ? 'dynamic' : ch}`);
      for (const [axis, d, what] of [[2, h, 'height'], [3, w, 'width']] as const) {
        if (d === size) continue;
        if (d < 0 && explicitSize) continue;
        problems.push(
          d < 0
            ? `${label} ${what} dim (${axis}): dynamic, and no size was given; pass the resolution the encoder was trained at explicitly (size: ${size}) or export with a fixed size`
            : `${label} ${what} dim (${axis}): expected ${size}, found ${d}${explicitSize ? '' : ' (pass size if the encoder really runs at that resolution)'}`,
        );
      }
    }
  }

  const output = pick('output', model.outputs, c.output.name);
  if (output.spec) {
    const { spec, label } = output;
    if (spec.dtype !== c.output.dtype) problems.push(`${label} dtype: expected ${c.output.dtype}, found ${spec.dtype} (cast the logits to float32 in the export)`);
    const want = [c.output.tokens, c.output.bitsPerToken];
    if (spec.shape.length !== 3) {
      problems.push(`${label} shape: expected [N, ${want.join(', ')}], found ${dims(spec.shape)}`);
    } else {
      const [n, t, b] = spec.shape;
      const inN = input.spec?.shape.length === 4 ? input.spec.shape[0] : -1;
      if (n >= 0 && n !== inN) problems.push(`${label} batch dim: expected N (the input's batch), found ${n}`);
      if (t !== want[0] || b !== want[1]) problems.push(`${label} shape: expected [N, ${want.join(', ')}], found ${dims(spec.shape)}`);
    }
  }

  if (problems.length > 0) throw new BitEncoderContractError(model.name, problems, expected);
}

/** The dtype to send to a model that passed `checkBitEncoder`. */
export function bitEncoderInputDtype(model: TensorModel): BitEncoderInputDtype {
  const spec = model.inputs.find((t) => t.name === BIT_ENCODER_CONTRACT.input.name);
  return spec?.dtype === 'FP16' ? 'FP16' : 'FP32';
}

// x / 127.5 − 1 for every byte value; the tables also keep both variants bit-identical.
const F32_TABLE = Float32Array.from({ length: 256 }, (_, v) => v / 127.5 - 1);
const F16_TABLE = Uint16Array.from(F32_TABLE, floatToHalf);

function checkLayout(fn: string, rgb: Uint8Array, size: number, outLength: number, offset: number): number {
  if (!(Number.isInteger(size) && size > 0)) throw new RangeError(`${fn}: size must be a positive integer, got ${size}`);
  const plane = size * size;
  if (rgb.length !== plane * 3) throw new RangeError(`${fn}: expected ${size}×${size} interleaved RGB (${plane * 3} bytes), got ${rgb.length} bytes`);
  if (!(Number.isInteger(offset) && offset >= 0) || offset + plane * 3 > outLength) {
    throw new RangeError(`${fn}: output has ${outLength} elements, cannot hold ${plane * 3} from offset ${offset}`);
  }
  return plane;
}

/**
 * Writes one size×size interleaved-RGB image into `out` from `offset` as CHW float32 in [-1, 1]
 * (x / 127.5 − 1): 0 → −1, 255 → +1. Image i of a batch goes at offset i·3·size².
 */
export function imageToEncoderInput(rgb: Uint8Array, size: number, out: Float32Array, offset = 0): void {
  const plane = checkLayout('imageToEncoderInput', rgb, size, out.length, offset);
  const g = offset + plane;
  const b = g + plane;
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    out[offset + p] = F32_TABLE[rgb[i]];
    out[g + p] = F32_TABLE[rgb[i + 1]];
    out[b + p] = F32_TABLE[rgb[i + 2]];
  }
}

/**
 * As `imageToEncoderInput`, for FP16 exports: raw IEEE half bits (round to nearest even of
 * x / 127.5 − 1), which is what an FP16 tensor carries in bitprep (Node 20 has no Float16Array).
 */
export function imageToEncoderInputHalf(rgb: Uint8Array, size: number, out: Uint16Array, offset = 0): void {
  const plane = checkLayout('imageToEncoderInputHalf', rgb, size, out.length, offset);
  const g = offset + plane;
  const b = g + plane;
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    out[offset + p] = F16_TABLE[rgb[i]];
    out[g + p] = F16_TABLE[rgb[i + 1]];
    out[b + p] = F16_TABLE[rgb[i + 2]];
  }
}
