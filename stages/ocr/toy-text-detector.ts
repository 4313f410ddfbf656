import onnxProto from 'onnx-proto';
import { OnnxGraphBuilder, type Value } from '../../src/models/onnx-builder.js';

const { onnx } = onnxProto;

/** Knobs of the toy detector; the defaults were tuned on 13–64 px DejaVu Sans text. */
export interface ToyTextDetectorOptions {
  /** Local-mean window, in input pixels, that strokes are compared against (odd, default 7). */
  contrast?: number;
  /** Contrast at which a pixel counts half as stroke edge (default 0.08: above photo grain, well below ink on paper). */
  edge_bias?: number;
  /**
   * Erosion steps summed into the distance map (default 12 cells of 4 px): text lines up to
   * about 2 × 4 × depth px tall are shrunk in proportion; taller ones are over-boxed.
   */
  depth?: number;
  /** Fraction of a blob's local depth below which the map says "not text" (default 0.7): the shrink DB's unclip undoes. */
  shrink?: number;
}

/** The coarse grid the blobs are built on: 1/4 of the input, where DB's head works too. */
const STRIDE = 4;

/**
 * A hand-designed DBNet stand-in for tests and the demo, NOT a trained DBNet: it "finds text"
 * only in the sense that text is dense, high-contrast strokes, so any busy high-contrast pattern
 * reads as text to it. Same contract as PaddleOCR's det model: input `x` FP32 [N, 3, H, W]
 * (ImageNet-normalised RGB, H and W multiples of 32), output `maps` FP32 [N, 1, H, W] in 0..1.
 *
 * Graph:
 * 1. luminance from the normalised input (a 1×1 Conv whose weights also undo the normalisation),
 *    3×3 denoise;
 * 2. stroke edges: local contrast |g − mean(g)|, soft-thresholded;
 * 3. word blobs on a 1/4 grid: edge fraction per cell, averaged over 3×3 cells and
 *    soft-thresholded, then a morphological closing that bridges letter gaps and counters;
 * 4. DB's shrunk text region: a distance-to-blob-edge map (the sum of repeated 3×3 erosions),
 *    averaged along the line and divided by its local maximum, so the kept core is a fixed
 *    fraction of each line's height whatever the font size; DB's unclip (area × 1.5 / perimeter)
 *    grows it back to about the ink box;
 * 5. linear upsampling to the input size, then a Sigmoid around `shrink` (after upsampling, so
 *    small text keeps a full-resolution plateau that clears DB's box threshold).
 * Means are AveragePool with count_include_pad = 0 (only real pixels count), so image borders
 * and smooth gradients read as zero contrast.
 */
export function buildToyTextDetectorModel(opts: ToyTextDetectorOptions = {}): Uint8Array {
  const contrast = opts.contrast ?? 7;
  const edgeBias = opts.edge_bias ?? 0.08;
  const depth = opts.depth ?? 12;
  const shrink = opts.shrink ?? 0.7;
  if (!(Number.isInteger(contrast) && contrast >= 3 && contrast % 2 === 1)) throw new Error(`toy text detector: contrast must be an odd integer ≥ 3, got ${contrast}`);
  if (!(Number.isInteger(depth) && depth >= 1)) throw new Error(`toy text detector: depth must be a positive integer, got ${depth}`);
  if (!(edgeBias > 0 && edgeBias < 1)) throw new Error(`toy text detector: edge_bias must be in (0, 1), got ${edgeBias}`);
  if (!(shrink > 0 && shrink < 1)) throw new Error(`toy text detector: shrink must be in (0, 1), got ${shrink}`);

  const g = new OnnxGraphBuilder('toy-text-detector', { opset: 17 });
  const scalar = (name: string, v: number): Value => g.initializer(name, 'FP32', [1], [v]);
  const soft = (v: Value, bias: number, gain: number, name: string, output?: string): Value =>
    g.sigmoid(g.op('Mul', [g.add(v, scalar(`${name}_bias`, -bias)), scalar(`${name}_gain`, gain)]), output);
  const pool = (type: 'AveragePool' | 'MaxPool', v: Value, kh: number, kw: number): Value => {
    const [rh, rw] = [(kh - 1) / 2, (kw - 1) / 2];
    return g.op(type, [v], { kernel_shape: [kh, kw], pads: [rh, rw, rh, rw], strides: [1, 1], ...(type === 'AveragePool' ? { count_include_pad: 0 } : {}) });
  };
  // A row then a column pass: the same mean as a k×k window at 2k reads per pixel.
  const mean = (v: Value, k: number): Value => pool('AveragePool', pool('AveragePool', v, 1, k), k, 1);
  const dilate = (v: Value, k: number): Value => pool('MaxPool', v, k, k);
  // MaxPool ignores its padding, so the image border never erodes a blob: text cut by the frame stays text.
  const erode = (v: Value, k: number): Value => g.op('Neg', [dilate(g.op('Neg', [v]), k)]);

  const x = g.input('x', 'FP32', [-1, 3, -1, -1]);
  // gray = Σ luma_c · (x_c · std_c + mean_c): std folds into the weights, the means into the bias.
  const luma = [0.299, 0.587, 0.114];
  const imMean = [0.485, 0.456, 0.406];
  const imStd = [0.229, 0.224, 0.225];
  const w = g.initializer('gray_w', 'FP32', [1, 3, 1, 1], luma.map((l, c) => l * imStd[c]));
  const b = g.initializer('gray_b', 'FP32', [1], [luma.reduce((s, l, c) => s + l * imMean[c], 0)]);
  const gray = mean(g.conv(x, w, b, { kernelShape: [1, 1] }), 3);

  const edges = soft(g.op('Abs', [g.op('Sub', [gray, mean(gray, contrast)])]), edgeBias, 60, 'edge');
  const cells = g.op('AveragePool', [edges], { kernel_shape: [STRIDE, STRIDE], strides: [STRIDE, STRIDE] });
  // Edge fraction over 3×3 cells: inside a word it stays high across letter gaps; a lone line or speck stays low.
  const blob = soft(mean(cells, 3), 0.3, 40, 'blob');
  // Closing over 5×5 cells fills the counters and gaps of large letters without growing the outline.
  const closed = erode(dilate(blob, 5), 5);

  let level = closed;
  let dist = closed;
  for (let i = 1; i < depth; i++) {
    level = erode(level, 3);
    dist = g.add(dist, level);
  }
  // Ascenders and descenders make a line's depth uneven; averaging along it keeps one core per line.
  const depthAlong = pool('AveragePool', dist, 1, 5);
  const peak = dilate(depthAlong, 2 * depth + 1);
  // The floor keeps the faint residue of empty areas from being its own local maximum.
  const rel = g.op('Div', [depthAlong, g.op('Max', [peak, scalar('one', 1)])]);
  const up = g.op('Resize', [rel, '', g.initializer('scales', 'FP32', [4], [1, 1, STRIDE, STRIDE])], { mode: 'linear' });
  g.output(soft(up, shrink, 40, 'core', 'maps'), 'FP32', [-1, 1, -1, -1]);

  // The builder names every dynamic dim alike; batch, height and width must stay independent.
  const proto = g.toProto();
  for (const vi of [...(proto.graph?.input ?? []), ...(proto.graph?.output ?? [])]) {
    const dims = vi.type?.tensorType?.shape?.dim ?? [];
    ['N', '', 'H', 'W'].forEach((name, i) => {
      if (name && dims[i]) dims[i] = { dimParam: name };
    });
  }
  return onnx.ModelProto.encode(proto).finish();
}
