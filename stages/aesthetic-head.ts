/**
 * The LAION improved aesthetic predictor ("V2") head: an MLP over the L2-normalised CLIP
 * ViT-L/14 image embedding, Linear 768→1024→128→64→16→1 with dropouts between and no
 * activations (LAION commented the ReLUs out). Without activations the five layers are one affine
 * map, so the head is collapsed at load time, in float64, into a 768-vector and a bias: a score
 * is then one dot product.
 *
 * Weights come from a safetensors conversion of `sac+logos+ava1-l14-linearMSE.pth` (see the
 * README for the few lines of Python); the keys keep the PyTorch names, `layers.{0,2,4,6,7}.weight`
 * ([out, in], as torch.nn.Linear stores them) and `.bias`.
 */
import { readSafetensors, encodeSafetensors, writeSafetensors, type Safetensors, type SafetensorsFloatDType, type SafetensorsInput } from '../src/formats/safetensors.js';
import { SampleError } from '../src/sample.js';
import { seededRandom } from '../src/seeded-random.js';

/** State-dict prefixes of the Linear layers, in order (1, 3, 5 are dropouts). */
export const AESTHETIC_LAYER_KEYS = ['layers.0', 'layers.2', 'layers.4', 'layers.6', 'layers.7'] as const;
/** Widths from the embedding to the score. */
export const AESTHETIC_DIMS = [768, 1024, 128, 64, 16, 1] as const;

/** One torch.nn.Linear: `weight` row-major [out, in], `bias` [out]. */
export interface LinearLayer {
  weight: ArrayLike<number>;
  bias: ArrayLike<number>;
  in: number;
  out: number;
}

/**
 * y = Lk(…L1(x)) as y = w·x + b for a chain of linear layers ending in one output, in float64.
 * Works backwards with a row vector (v = W_k, then v·W_{k-1}, …), so no large matrix product
 * is ever formed.
 */
export function collapseLinearLayers(layers: LinearLayer[]): { w: Float64Array; b: number } {
  if (layers.length === 0) throw new Error('collapseLinearLayers: no layers');
  const last = layers[layers.length - 1];
  if (last.out !== 1) throw new Error(`collapseLinearLayers: the last layer has ${last.out} outputs, expected 1`);
  let v = Float64Array.from(last.weight);
  let b = last.bias[0];
  for (let j = layers.length - 2; j >= 0; j--) {
    const l = layers[j];
    if (l.out !== v.length) throw new Error(`collapseLinearLayers: layer ${j} has ${l.out} outputs but layer ${j + 1} takes ${v.length} inputs`);
    for (let o = 0; o < l.out; o++) b += v[o] * l.bias[o];
    const next = new Float64Array(l.in);
    for (let o = 0; o < l.out; o++) {
      const vo = v[o];
      if (vo === 0) continue;
      const row = o * l.in;
      for (let i = 0; i < l.in; i++) next[i] += vo * l.weight[row + i];
    }
    v = next;
  }
  return { w: v, b };
}

export class AestheticHead {
  /** Embedding width the head takes (768 for ViT-L/14). */
  readonly dim: number;

  constructor(readonly w: Float64Array, readonly b: number, readonly source = 'aesthetic head') {
    this.dim = w.length;
  }

  /** Loads and collapses the head; errors name the file and the key. */
  static async load(path: string, opts: { dims?: readonly number[] } = {}): Promise<AestheticHead> {
    return AestheticHead.fromSafetensors(await readSafetensors(path), opts);
  }

  static fromSafetensors(st: Safetensors, opts: { dims?: readonly number[] } = {}): AestheticHead {
    const dims = opts.dims ?? AESTHETIC_DIMS;
    if (dims.length !== AESTHETIC_LAYER_KEYS.length + 1) throw new Error(`aesthetic head: dims must list ${AESTHETIC_LAYER_KEYS.length + 1} widths, got ${dims.length}`);
    const layers = AESTHETIC_LAYER_KEYS.map((key, i): LinearLayer => {
      const [inDim, outDim] = [dims[i], dims[i + 1]];
      const need = (name: string, shape: number[]) => {
        if (!st.has(name)) throw new Error(`aesthetic head ${st.name}: missing tensor "${name}" (expected [${shape.join(', ')}]; has ${st.names.join(', ') || 'none'})`);
        const t = st.get(name);
        if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
          throw new Error(`aesthetic head ${st.name}: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (PyTorch Linear weights are [out, in])`);
        }
        return t.data;
      };
      return { weight: need(`${key}.weight`, [outDim, inDim]), bias: need(`${key}.bias`, [outDim]), in: inDim, out: outDim };
    });
    const { w, b } = collapseLinearLayers(layers);
    if (!Number.isFinite(b) || !w.every(Number.isFinite)) throw new Error(`aesthetic head ${st.name}: weights are not finite`);
    return new AestheticHead(w, b, st.name);
  }

  /** The score of one embedding: L2-normalised first, as LAION's code does. */
  score(embedding: ArrayLike<number>): number {
    if (embedding.length !== this.dim) throw new SampleError('bad_embedding', `embedding has ${embedding.length} values, the aesthetic head takes ${this.dim}`);
    let sq = 0;
    let dot = 0;
    for (let i = 0; i < this.dim; i++) {
      const x = embedding[i];
      sq += x * x;
      dot += x * this.w[i];
    }
    const norm = Math.sqrt(sq);
    if (!(norm > 0 && Number.isFinite(norm))) throw new SampleError('bad_embedding', `embedding norm is ${norm}; cannot normalise`);
    // w·(x/|x|) = (w·x)/|x|: one pass instead of normalising a copy.
    return dot / norm + this.b;
  }
}

/** Tensors of a head file under LAION's state-dict keys. */
export function aestheticHeadTensors(layers: LinearLayer[], dtype: SafetensorsFloatDType = 'F32'): Record<string, SafetensorsInput> {
  if (layers.length !== AESTHETIC_LAYER_KEYS.length) throw new Error(`aesthetic head: ${AESTHETIC_LAYER_KEYS.length} layers expected, got ${layers.length}`);
  const out: Record<string, SafetensorsInput> = {};
  layers.forEach((l, i) => {
    out[`${AESTHETIC_LAYER_KEYS[i]}.weight`] = { dtype, shape: [l.out, l.in], data: l.weight };
    out[`${AESTHETIC_LAYER_KEYS[i]}.bias`] = { dtype, shape: [l.out], data: l.bias };
  });
  return out;
}

/** A head file's bytes (safetensors) from given layers, for tests and the demo. */
export function encodeAestheticHead(layers: LinearLayer[], dtype: SafetensorsFloatDType = 'F32'): Uint8Array {
  return encodeSafetensors(aestheticHeadTensors(layers, dtype), { format: 'pt' });
}

export async function writeAestheticHead(path: string, layers: LinearLayer[], dtype: SafetensorsFloatDType = 'F32'): Promise<void> {
  await writeSafetensors(path, aestheticHeadTensors(layers, dtype), { format: 'pt' });
}

/**
 * Seeded stand-in weights with the real head's shapes (not LAION's weights), for tests and the
 * demo. Scaled like torch's default init, with the last layer widened and its bias set so that
 * unit inputs score around 5.5 ± 1, within the real head's 1–10 range.
 */
export function randomAestheticLayers(seed: number, dims: readonly number[] = AESTHETIC_DIMS): LinearLayer[] {
  const rand = seededRandom(seed);
  const layers = dims.slice(0, -1).map((inDim, i): LinearLayer => {
    const outDim = dims[i + 1];
    const s = 1 / Math.sqrt(inDim);
    const gain = i === dims.length - 2 ? 100 : 1;
    return {
      in: inDim,
      out: outDim,
      weight: Float32Array.from({ length: outDim * inDim }, () => (rand() * 2 - 1) * s * gain),
      bias: Float32Array.from({ length: outDim }, () => (rand() * 2 - 1) * s),
    };
  });
  const last = layers[layers.length - 1];
  (last.bias as Float32Array)[0] += 5.5 - collapseLinearLayers(layers).b;
  return layers;
}
