/**
 * STAND-IN CLIP towers and tokenizer for tests and the offline demo: NOT CLIP. They have the real
 * contracts (clip-towers.ts: `pixel_values` FP32 [N,3,224,224] → `image_embeds` FP32 [N,D];
 * `input_ids` INT64 [N,77] → `text_embeds` FP32 [N,D]) and a CLIP-shaped tokenizer.json, so
 * `bitprep eval clip-score` and GenEval's CLIP color classifier run end to end without weights.
 * Their scores mean nothing; outputs made with them must carry STANDIN_CLIP_NAME.
 *
 * - Image: AveragePool over 56×56 blocks (a 4×4 grid of mean colours, 48 values) → Gemm 48→D.
 * - Text: each id taken modulo TEXT_TABLE_ROWS → Gather from a table (row 0 zero, so padding
 *   adds nothing) → ReduceSum over the 77 positions.
 * Weights come from a seed; tests recompute the embeddings from them in float64.
 */
import { OnnxGraphBuilder } from '../../src/models/onnx-builder.js';
import { seededRandom } from '../../src/seeded-random.js';
import { CLIP_CONTEXT_LENGTH, CLIP_EOT, CLIP_SOT } from '../models/clip-text.js';

/** The model name result files get when the stand-ins are used. */
export const STANDIN_CLIP_NAME = 'STAND-IN CLIP (tiny seeded ONNX, not CLIP: scores mean nothing)';
export const STANDIN_IMAGE_GRID = 4;
export const TEXT_TABLE_ROWS = 1024;

/** ONNX bytes of the stand-in image tower and its weights: w row-major [48, dim], b [dim]. */
export function buildClipImageStandin(seed: number, dim = 64, size = 224): { bytes: Uint8Array; w: Float32Array; b: Float32Array } {
  const rand = seededRandom(seed);
  const feats = 3 * STANDIN_IMAGE_GRID * STANDIN_IMAGE_GRID;
  const w = Float32Array.from({ length: feats * dim }, () => rand() * 2 - 1);
  const b = Float32Array.from({ length: dim }, () => (rand() * 2 - 1) * 0.1);
  const block = size / STANDIN_IMAGE_GRID;
  if (!Number.isInteger(block)) throw new Error(`clip stand-in: image size ${size} is not a multiple of ${STANDIN_IMAGE_GRID}`);
  const g = new OnnxGraphBuilder(`standin-clip-image-${seed}`);
  const x = g.input('pixel_values', 'FP32', [-1, 3, size, size]);
  const pooled = g.op('AveragePool', [x], { kernel_shape: [block, block], strides: [block, block] });
  const flat = g.op('Flatten', [pooled], { axis: 1 });
  const y = g.gemm(flat, g.initializer('w', 'FP32', [feats, dim], w), g.initializer('b', 'FP32', [dim], b), {}, 'image_embeds');
  g.output(y, 'FP32', [-1, dim]);
  return { bytes: g.build(), w, b };
}

/** ONNX bytes of the stand-in text tower and its table, row-major [TEXT_TABLE_ROWS, dim]. */
export function buildClipTextStandin(seed: number, dim = 64, contextLength = CLIP_CONTEXT_LENGTH): { bytes: Uint8Array; table: Float32Array } {
  const rand = seededRandom(seed);
  const table = Float32Array.from({ length: TEXT_TABLE_ROWS * dim }, (_, i) => (i < dim ? 0 : rand() * 2 - 1));
  const g = new OnnxGraphBuilder(`standin-clip-text-${seed}`);
  const ids = g.input('input_ids', 'INT64', [-1, contextLength]);
  const rows = g.op('Mod', [ids, g.initializer('rows', 'INT64', [1], [TEXT_TABLE_ROWS])]);
  const emb = g.op('Gather', [g.initializer('table', 'FP32', [TEXT_TABLE_ROWS, dim], table), rows], { axis: 0 });
  g.output(g.reduce('Sum', emb, [1], false, 'text_embeds'), 'FP32', [-1, dim]);
  return { bytes: g.build(), table };
}

/** GPT-2/CLIP's byte → printable character map, the alphabet byte-level BPE vocabularies are written in. */
function bytesToUnicode(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep(b) ? b : 256 + n++);
  return map;
}

/**
 * A tokenizer.json shaped like CLIP's (Hugging Face openai/clip-vit-*: NFC + whitespace collapse +
 * lower-case, CLIP's split regex, byte-level alphabet, BPE with `</w>` word ends, SOT/EOT at
 * 49406/49407). Ids as CLIP lays them out: byte characters 0–255 in byte order of CLIP's
 * `bytes_to_unicode` list, the same with `</w>` 256–511, then one token per merge. `words` get
 * merges that make each a single token (`word</w>`); other text falls apart into characters.
 */
export function buildClipStandinTokenizer(words: readonly string[] = []): object {
  const chars = bytesToUnicode();
  // CLIP orders its base vocab by bytes_to_unicode's list order (printable bytes first).
  const order = [...chars.keys()].sort((a, b) => chars[a].codePointAt(0)! - chars[b].codePointAt(0)!);
  const vocab: Record<string, number> = {};
  order.forEach((byte, i) => {
    vocab[chars[byte]] = i;
    vocab[`${chars[byte]}</w>`] = 256 + i;
  });
  const merges: string[] = [];
  for (const word of words) {
    const pieces = [...new TextEncoder().encode(word.toLowerCase())].map((b) => chars[b]);
    pieces[pieces.length - 1] += '</w>';
    let left = pieces[0];
    for (const p of pieces.slice(1)) {
      const merged = left + p;
      if (vocab[merged] === undefined) {
        merges.push(`${left} ${p}`);
        vocab[merged] = 512 + merges.length - 1;
      }
      left = merged;
    }
  }
  vocab['<|startoftext|>'] = CLIP_SOT;
  vocab['<|endoftext|>'] = CLIP_EOT;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(CLIP_SOT, '<|startoftext|>'), special(CLIP_EOT, '<|endoftext|>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: ['<|endoftext|>', CLIP_EOT], cls: ['<|startoftext|>', CLIP_SOT], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}
