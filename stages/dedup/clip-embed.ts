import { halfToFloat, floatToHalf } from '../../src/formats/half-float.js';
import { loadTensorModels, parseModelSpec } from '../../src/models/model-source.js';
import { elementCount, type Tensor, type TensorModel } from '../../src/models/tensor.js';
import { clipNormalize, clipResizeCrop, decodeForClip } from '../clip-preprocess.js';

/**
 * A CLIP image tower run over stored images, for a dedup of outputs that saved no embeddings: the
 * same preprocessing as laion-filter's aesthetic stage (PIL bicubic resize and centre crop,
 * CLIP's normalisation), one batch at a time.
 */
export interface ClipEmbedder {
  readonly name: string;
  embed(images: readonly Uint8Array[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

export interface ClipEmbedderOptions {
  inputName?: string;
  outputName?: string;
  imageSize?: number;
}

/** Opens the tower named by `spec` (an .onnx file, or KServe v2 URLs) and checks its tensors. */
export async function openClipEmbedder(spec: string, opts: ClipEmbedderOptions = {}): Promise<ClipEmbedder> {
  const inName = opts.inputName ?? 'pixel_values';
  const outName = opts.outputName ?? 'image_embeds';
  const size = opts.imageSize ?? 224;
  const [first, ...rest] = await loadTensorModels(parseModelSpec(spec), 'clip');
  await Promise.all(rest.map((r) => r.client.close()));
  const model: TensorModel = first.client;
  const inp = model.inputs.find((t) => t.name === inName);
  const out = model.outputs.find((t) => t.name === outName);
  if (!inp || !out) {
    await model.close();
    throw new Error(`--clip ${spec}: the model has inputs ${model.inputs.map((t) => t.name).join(', ')} and outputs ${model.outputs.map((t) => t.name).join(', ')}; a CLIP image tower takes "${inName}" and gives "${outName}"`);
  }
  const per = 3 * size * size;
  return {
    name: spec,
    async embed(images) {
      const n = images.length;
      if (n === 0) return [];
      const x = new Float32Array(n * per);
      for (const [i, bytes] of images.entries()) clipNormalize(clipResizeCrop(await decodeForClip(bytes), size), x, i * per);
      const tensor: Tensor = inp.dtype === 'FP16' ? { dtype: 'FP16', shape: [n, 3, size, size], data: Uint16Array.from(x, floatToHalf) } : { dtype: 'FP32', shape: [n, 3, size, size], data: x };
      const y = (await model.infer({ [inName]: tensor }, { outputs: [outName] }))[outName];
      if (!y || y.shape[0] !== n) throw new Error(`--clip ${spec}: output "${outName}" has shape [${y?.shape.join(', ')}], expected [${n}, dim]`);
      const dim = elementCount(y.shape) / n;
      return Array.from({ length: n }, (_, i) => (y.dtype === 'FP16' ? Float32Array.from((y.data as Uint16Array).subarray(i * dim, (i + 1) * dim), halfToFloat) : Float32Array.from((y.data as Float32Array).subarray(i * dim, (i + 1) * dim))));
    },
    close: () => model.close(),
  };
}
