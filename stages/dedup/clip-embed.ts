import { loadTensorModels, parseModelSpec } from '../../src/models/model-source.js';
import type { TensorModel } from '../../src/models/tensor.js';
import { clipTowerCall } from '../aesthetic.js';
import { clipResizeCrop, decodeForClip } from '../clip-preprocess.js';

/**
 * A CLIP image tower run over stored images, for a dedup of outputs that saved no embeddings: the
 * same preprocessing and call as laion-filter's aesthetic stage (clipTowerCall), one batch at a
 * time.
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
  const inputName = opts.inputName ?? 'pixel_values';
  const outputName = opts.outputName ?? 'image_embeds';
  const size = opts.imageSize ?? 224;
  const [first, ...rest] = await loadTensorModels(parseModelSpec(spec), 'clip');
  await Promise.all(rest.map((r) => r.client.close()));
  const model: TensorModel = first.client;
  if (!model.inputs.some((t) => t.name === inputName) || !model.outputs.some((t) => t.name === outputName)) {
    await model.close();
    throw new Error(`--clip ${spec}: the model has inputs ${model.inputs.map((t) => t.name).join(', ')} and outputs ${model.outputs.map((t) => t.name).join(', ')}; a CLIP image tower takes "${inputName}" and gives "${outputName}"`);
  }
  return {
    name: spec,
    async embed(images) {
      if (images.length === 0) return [];
      const crops = [];
      for (const bytes of images) crops.push(clipResizeCrop(await decodeForClip(bytes), size));
      return clipTowerCall(model, crops, { inputName, outputName, size });
    },
    close: () => model.close(),
  };
}
