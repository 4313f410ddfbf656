/**
 * Aesthetic annotation (LAION improved aesthetic predictor, "V2"): a score per image from the
 * CLIP ViT-L/14 image embedding and the collapsed head in aesthetic-head.ts, written to
 * `fields.aesthetic_score`, and a filter on it.
 *
 * Two ways to get the embedding:
 * - clipAestheticStage runs the CLIP image tower on the sample's image (exact CLIP preprocessing,
 *   clip-preprocess.ts), batched over a ReplicaPool of tensor models (ONNX Runtime in process,
 *   or KServe v2 servers);
 * - embeddingAestheticStage looks the embedding up in LAION's published `img_emb_XXXX.npy` files,
 *   row-aligned with their `metadata_XXXX.parquet`, so no model runs at all.
 */
import { basename } from 'node:path';
import { z } from 'zod';
import { NpyFile } from '../src/formats/npy.js';
import { parquetSourceFromStore, readParquetMeta, readParquetRowGroups } from '../src/formats/parquet-read.js';
import { modelBatchStage } from '../src/models/batcher.js';
import { floatToHalf, halfToFloat } from '../src/formats/half-float.js';
import type { ReplicaPool } from '../src/models/replica-pool.js';
import { elementCount, type Tensor, type TensorModel } from '../src/models/tensor.js';
import { drop, SampleError, type RawImage, type Sample } from '../src/sample.js';
import { sampleStage, type Stage } from '../src/stage.js';
import { addCount } from '../src/stats.js';
import { openInputFile } from '../src/stores/input-file.js';
import type { AestheticHead } from './aesthetic-head.js';
import { CLIP_SIZE, clipNormalize, clipResizeCrop, decodeForClip } from './clip-preprocess.js';
import { parseStageOptions } from './stage-options.js';

export const AESTHETIC_FIELD = 'aesthetic_score';

// ---------------------------------------------------------------------------------------------
// CLIP image tower → head

/** Options of clipAestheticStage (unset keys take the defaults below). */
export const clipAestheticOptions = z.object({
  /** Model input taking [N, 3, size, size] FP32 (or FP16) pixels. */
  input_name: z.string().default('pixel_values'),
  /** Model output holding [N, 768] embeddings, normalised or not. */
  output_name: z.string().default('image_embeds'),
  /** Crop size of the tower (224; 336 for ViT-L/14@336px). */
  image_size: z.number().int().min(8).default(CLIP_SIZE),
  /** Images per model call. */
  batch_size: z.number().int().min(1).default(32),
  /** Send a partial batch after this long. */
  max_wait_ms: z.number().int().min(0).default(50),
  /** Batches between input and output at once (default 2 × replicas). */
  max_batches_in_flight: z.number().int().min(1).optional(),
  /** Field the score goes to. */
  field: z.string().min(1).default(AESTHETIC_FIELD),
}).strict();

/** What clipAestheticStage takes: the options and the loaded models. */
export type ClipAestheticOptions = z.input<typeof clipAestheticOptions> & {
  /** The loaded head (AestheticHead.load), so a missing or malformed file fails at start-up. */
  head: AestheticHead;
  /** Replicas of the CLIP ViT-L/14 image tower. */
  pool: ReplicaPool<TensorModel>;
  /** Keep each sample's embedding on it (`sample.embedding`), for a sink that saves them. */
  keepEmbedding?: boolean;
};

/** The options that decide whether a tower fits (checkClipModel). */
const clipModelOptions = clipAestheticOptions.pick({ input_name: true, output_name: true, image_size: true, batch_size: true });

export type ClipModelCheck = z.input<typeof clipModelOptions> & {
  /** Embedding width the head takes. */
  dim: number;
};

/**
 * Throws, naming the model and the tensor, when a tower cannot serve the stage: call it on each
 * replica at start-up. The stage checks again on a replica's first call.
 */
export function checkClipModel(model: TensorModel, opts: ClipModelCheck): void {
  // Only the options that decide the fit: callers pass their whole section (model source included).
  const o = parseStageOptions('aesthetic-clip', clipModelOptions, { input_name: opts.input_name, output_name: opts.output_name, image_size: opts.image_size, batch_size: opts.batch_size });
  const { input_name: inName, output_name: outName, image_size: size } = o;
  const names = (l: { name: string }[]) => l.map((t) => t.name).join(', ');
  const inp = model.inputs.find((t) => t.name === inName);
  if (!inp) throw new Error(`model ${model.name}: no input "${inName}" (inputs: ${names(model.inputs)}); set aesthetic input_name`);
  if (model.inputs.length !== 1) throw new Error(`model ${model.name}: takes inputs ${names(model.inputs)}; the aesthetic stage feeds only "${inName}"`);
  if (inp.dtype !== 'FP32' && inp.dtype !== 'FP16') throw new Error(`model ${model.name}: input "${inName}" is ${inp.dtype}, expected FP32 or FP16`);
  const want = [3, size, size];
  if (inp.shape.length !== 4 || inp.shape.slice(1).some((d, i) => d >= 0 && d !== want[i])) {
    throw new Error(`model ${model.name}: input "${inName}" has shape [${inp.shape.join(', ')}], expected [N, ${want.join(', ')}]`);
  }
  const n = inp.shape[0];
  if (n >= 0 && !(n === 1 && o.batch_size === 1)) throw new Error(`model ${model.name}: input "${inName}" has a fixed batch of ${n}; export it with a dynamic batch axis (or use batch_size 1 with a batch-1 model)`);
  const out = model.outputs.find((t) => t.name === outName);
  if (!out) throw new Error(`model ${model.name}: no output "${outName}" (outputs: ${names(model.outputs)}); set aesthetic output_name`);
  if (out.dtype !== 'FP32' && out.dtype !== 'FP16') throw new Error(`model ${model.name}: output "${outName}" is ${out.dtype}, expected FP32 or FP16`);
  const last = out.shape[out.shape.length - 1];
  if (last >= 0 && last !== opts.dim) throw new Error(`model ${model.name}: output "${outName}" has shape [${out.shape.join(', ')}], but the aesthetic head takes ${opts.dim}-d embeddings (CLIP ViT-L/14 gives 768)`);
}

function embeddingsOf(model: string, name: string, t: Tensor, n: number, dim: number): Float32Array[] {
  if (t.shape[0] !== n || elementCount(t.shape) !== n * dim) throw new Error(`model ${model}: output "${name}" has shape [${t.shape.join(', ')}], expected [${n}, ${dim}]`);
  const src = t.data;
  const out: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    if (src instanceof Float32Array) out.push(src.slice(i * dim, (i + 1) * dim));
    else if (t.dtype === 'FP16') out.push(Float32Array.from(src.subarray(i * dim, (i + 1) * dim) as Uint16Array, halfToFloat));
    else throw new Error(`model ${model}: output "${name}" is ${t.dtype}, expected FP32 or FP16`);
  }
  return out;
}

/**
 * One call of a CLIP image tower on size×size RGB crops (clipResizeCrop's): CLIP's normalisation
 * into an FP32 or FP16 batch, as the model's input declares, and its embeddings back as float32
 * (`dim` values each; default: what the output holds per image).
 */
export async function clipTowerCall(model: TensorModel, images: readonly RawImage[], o: { inputName: string; outputName: string; size: number; dim?: number; signal?: AbortSignal }): Promise<Float32Array[]> {
  const n = images.length;
  const per = 3 * o.size * o.size;
  const x = new Float32Array(n * per);
  images.forEach((img, i) => clipNormalize(img, x, i * per));
  const half = model.inputs.find((t) => t.name === o.inputName)?.dtype === 'FP16';
  const shape = [n, 3, o.size, o.size];
  const tensor: Tensor = half ? { dtype: 'FP16', shape, data: Uint16Array.from(x, floatToHalf) } : { dtype: 'FP32', shape, data: x };
  const y = (await model.infer({ [o.inputName]: tensor }, { outputs: [o.outputName], signal: o.signal }))[o.outputName];
  if (!y) throw new Error(`model ${model.name}: no output "${o.outputName}" in the answer`);
  return embeddingsOf(model.name, o.outputName, y, n, o.dim ?? elementCount(y.shape) / Math.max(1, n));
}

/**
 * Scores ok samples' `image` (encoded bytes) with the CLIP tower and the head. Samples without an
 * image fail with code no_image; undecodable ones with decode_error; a failed model call fails
 * its batch with model_error. Stats: `scored`, plus the batcher's `model_ms`, `batches`, `samples`.
 */
export function clipAestheticStage(opts: ClipAestheticOptions): Stage {
  const name = 'aesthetic-clip';
  const { head, pool, keepEmbedding: _keep, ...options } = opts;
  const o = parseStageOptions(name, clipAestheticOptions, options);
  const { input_name: inName, output_name: outName, image_size: size, field } = o;
  const check: ClipModelCheck = { input_name: inName, output_name: outName, image_size: size, batch_size: o.batch_size, dim: head.dim };
  const checked = new WeakSet<TensorModel>();

  return (input, ctx) => {
    const stats = ctx.stats.stage(name);
    const inner = modelBatchStage<TensorModel, RawImage, Float32Array>({
      name,
      pool,
      batchSize: o.batch_size,
      maxWaitMs: o.max_wait_ms,
      maxBatchesInFlight: o.max_batches_in_flight ?? 2 * pool.names.length,
      // Held until the call as 224×224 RGB bytes: a quarter of the float tensor's memory.
      prepare: async (s) => {
        if (!s.image) throw new SampleError('no_image', 'no image bytes to score (sample.image is missing)');
        let raw: RawImage;
        try {
          raw = await decodeForClip(s.image);
        } catch (err) {
          throw new SampleError('decode_error', `cannot decode image for CLIP: ${err instanceof Error ? err.message : String(err)}`);
        }
        return clipResizeCrop(raw, size);
      },
      call: async (model, images) => {
        if (!checked.has(model)) {
          checkClipModel(model, check);
          checked.add(model);
        }
        return clipTowerCall(model, images, { inputName: inName, outputName: outName, size, dim: head.dim, signal: ctx.signal });
      },
      apply: (s, embedding) => {
        s.fields[field] = head.score(embedding);
        if (opts.keepEmbedding) s.embedding = embedding;
        addCount(stats, 'scored');
      },
    });
    return inner(input, ctx);
  };
}

// ---------------------------------------------------------------------------------------------
// Precomputed embeddings → head

/** One LAION embedding part: `img_emb_XXXX.npy` and its row-aligned `metadata_XXXX.parquet`. */
export const embeddingPair = z.object({
  embeddings: z.string(),
  /** Local path or s3:// URL. */
  metadata: z.string(),
}).strict();

export type EmbeddingPair = z.output<typeof embeddingPair>;

/** Options of embeddingAestheticStage (unset keys take the defaults below). */
export const embeddingAestheticOptions = z.object({
  pairs: z.array(embeddingPair).min(1),
  /**
   * How a sample finds its embedding:
   * - `row`: the input parquet *is* a pair's metadata file (LAION's metadata parquet used as the
   *   URL list). The sample's `source_file` (set by the parquet source) names the pair, matched
   *   by its full path/URL or else by file name, and `source_row` is the row in that pair's npy.
   *   Two pairs with one file name are refused.
   * - `url`: the sample's `url` field is looked up in the pairs' metadata `url_column`. The map
   *   (every URL of every pair, ~100 bytes each: list only the parts the input covers) is built
   *   once, on first use, and shared by all units; a URL listed twice keeps its first row.
   */
  join: z.enum(['row', 'url']),
  /** Metadata column with the image URL for the `url` join. */
  url_column: z.string().default('url'),
  /** Samples looked up at once. */
  concurrency: z.number().int().min(1).default(16),
  /** Field the score goes to. */
  field: z.string().min(1).default(AESTHETIC_FIELD),
}).strict();

/** What embeddingAestheticStage takes: the options and the loaded head. */
export type EmbeddingAestheticOptions = z.input<typeof embeddingAestheticOptions> & { head: AestheticHead; /** Keep each sample's embedding on it (`sample.embedding`). */ keepEmbedding?: boolean };

/** The options that say where the embeddings are (checkEmbeddingPairs). */
const embeddingSourceOptions = embeddingAestheticOptions.pick({ pairs: true, join: true, url_column: true });

/** Packs (pair, row) into one number: rows stay below 2^32, pairs below 2^20. */
const pack = (pair: number, row: number): number => pair * 2 ** 32 + row;
const unpack = (v: number): [number, number] => [Math.floor(v / 2 ** 32), v % 2 ** 32];

async function metadataRows(path: string): Promise<number> {
  const { store, name } = openInputFile(path);
  return (await readParquetMeta(await parquetSourceFromStore(store, name))).rows;
}

async function npyShape(path: string): Promise<{ rows: number; rowLength: number }> {
  const f = await NpyFile.open(path);
  try {
    return { rows: f.rows, rowLength: f.rowLength };
  } finally {
    await f.close();
  }
}

/** Throws a SampleError('embedding_mismatch') when a pair's files do not line up with each other or the head. */
async function checkPair(p: EmbeddingPair, dim: number): Promise<void> {
  const [npy, rows] = await Promise.all([npyShape(p.embeddings), metadataRows(p.metadata)]);
  if (npy.rowLength !== dim) throw new SampleError('embedding_mismatch', `${p.embeddings}: rows hold ${npy.rowLength} values, the aesthetic head takes ${dim}`);
  if (npy.rows !== rows) throw new SampleError('embedding_mismatch', `${p.embeddings} has ${npy.rows} rows but ${p.metadata} has ${rows}; they must be row-aligned`);
}

/**
 * Checks every pair (files readable, npy rows = metadata rows, row width = head width, URL
 * column present): call at start-up so a bad pairing fails before any unit runs.
 */
export async function checkEmbeddingPairs(opts: Pick<EmbeddingAestheticOptions, 'head' | 'pairs' | 'join' | 'url_column'>): Promise<void> {
  const o = parseStageOptions('aesthetic-embeddings', embeddingSourceOptions, { pairs: opts.pairs, join: opts.join, url_column: opts.url_column });
  for (const p of o.pairs) {
    await checkPair(p, opts.head.dim);
    if (o.join === 'url') {
      const { store, name } = openInputFile(p.metadata);
      const meta = await readParquetMeta(await parquetSourceFromStore(store, name));
      const col = o.url_column;
      if (!meta.columns.includes(col)) throw new Error(`${p.metadata} has no column ${JSON.stringify(col)} (columns: ${meta.columns.join(', ')}); set url_column`);
    }
  }
}

async function buildUrlMap(pairs: EmbeddingPair[], column: string): Promise<{ map: Map<string, number>; duplicates: number }> {
  const map = new Map<string, number>();
  let duplicates = 0;
  const text = new TextDecoder();
  for (const [i, p] of pairs.entries()) {
    const { store, name } = openInputFile(p.metadata);
    const src = await parquetSourceFromStore(store, name);
    for await (const group of readParquetRowGroups(src, { columns: [column] })) {
      group.rows.forEach((r, k) => {
        const v = r[column];
        const url = typeof v === 'string' ? v : v instanceof Uint8Array ? text.decode(v) : null;
        if (url === null) return;
        if (map.has(url)) duplicates++;
        else map.set(url, pack(i, group.rowStart + k));
      });
    }
  }
  return { map, duplicates };
}

/**
 * Scores ok samples from precomputed embeddings (see EmbeddingAestheticOptions.join). A sample
 * whose embedding cannot be found fails with code no_embedding, naming its URL or file and row;
 * a pair whose files disagree fails its samples with embedding_mismatch, and unreadable metadata
 * in the `url` join fails them with embedding_index. Stats: `scored`.
 */
export function embeddingAestheticStage(opts: EmbeddingAestheticOptions): Stage {
  const name = 'aesthetic-embeddings';
  const { head, keepEmbedding: _keep, ...options } = opts;
  const o = parseStageOptions(name, embeddingAestheticOptions, options);
  const { pairs, field, url_column: column } = o;
  if (pairs.length >= 2 ** 20) throw new Error(`${name}: at most ${2 ** 20 - 1} pairs`);

  // Row join: which pair a source file is.
  const byPath = new Map(pairs.map((p, i) => [p.metadata, i]));
  const byBase = new Map<string, number>();
  for (const [i, p] of pairs.entries()) {
    const b = basename(p.metadata);
    if (o.join === 'row' && byBase.has(b)) throw new Error(`${name}: pairs ${pairs[byBase.get(b)!].metadata} and ${p.metadata} share the file name ${b}, so join 'row' cannot tell them apart`);
    byBase.set(b, i);
  }

  // Built once per factory and shared by all units; a failure is kept, so every sample reports it.
  let urls: Promise<{ map: Map<string, number>; duplicates: number }> | undefined;
  const pairChecks = new Map<number, Promise<void>>();
  const checked = (i: number) => {
    let c = pairChecks.get(i);
    if (!c) pairChecks.set(i, (c = checkPair(pairs[i], head.dim)));
    return c;
  };

  return (input, ctx) => {
    // Handles are per unit, so nothing stays open once a unit ends.
    const files = new Map<number, Promise<NpyFile>>();
    const file = (i: number) => {
      let f = files.get(i);
      if (!f) {
        f = NpyFile.open(pairs[i].embeddings);
        f.catch(() => {}); // awaited by every user; this only keeps an early failure from being unhandled
        files.set(i, f);
      }
      return f;
    };

    const locate = async (s: Sample): Promise<{ pair: number; row: number; what: string }> => {
      if (o.join === 'url') {
        const url = s.fields.url;
        if (typeof url !== 'string' || url === '') throw new SampleError('no_embedding', 'sample has no url to look its embedding up by');
        if (!urls) {
          urls = buildUrlMap(pairs, column).catch((err: unknown) => {
            throw new SampleError('embedding_index', `cannot index URLs of the embedding metadata: ${err instanceof Error ? err.message : String(err)}`);
          });
          urls.then(
            ({ map, duplicates }) => ctx.log.info(`${name}: ${map.size} URLs indexed from ${pairs.length} metadata file(s)${duplicates ? `; ${duplicates} repeated URLs keep their first row` : ''}`),
            () => {},
          );
        }
        const hit = (await urls).map.get(url);
        if (hit === undefined) throw new SampleError('no_embedding', `no embedding for url ${url} in ${pairs.length} metadata file(s)`);
        const [pair, row] = unpack(hit);
        return { pair, row, what: `url ${url}` };
      }
      const src = s.fields.source_file;
      const raw = s.fields.source_row;
      const row = typeof raw === 'bigint' ? Number(raw) : raw;
      if (typeof src !== 'string' || typeof row !== 'number' || !Number.isInteger(row) || row < 0) {
        throw new SampleError('no_embedding', `join 'row' needs source_file and source_row (got ${JSON.stringify(src)}, ${String(raw)})`);
      }
      const pair = byPath.get(src) ?? byBase.get(basename(src));
      if (pair === undefined) throw new SampleError('no_embedding', `no embedding pair for source file ${src} (row ${row})`);
      return { pair, row, what: `${src} row ${row}` };
    };

    const inner = sampleStage(
      name,
      async (s, stats) => {
        const { pair, row, what } = await locate(s);
        await checked(pair);
        const f = await file(pair);
        if (row >= f.rows) throw new SampleError('no_embedding', `no embedding for ${what}: ${pairs[pair].embeddings} has ${f.rows} rows`);
        const embedding = await f.readRows(row, row + 1);
        s.fields[field] = head.score(embedding);
        if (opts.keepEmbedding) s.embedding = embedding;
        addCount(stats, 'scored');
      },
      { concurrency: o.concurrency, ordered: true },
    );

    return (async function* () {
      try {
        yield* inner(input, ctx);
      } finally {
        const open = [...files.values()];
        files.clear();
        await Promise.all(open.map((f) => f.then((h) => h.close(), () => {})));
      }
    })();
  };
}

// ---------------------------------------------------------------------------------------------
// Filter

/** Options of aestheticFilter. */
export const aestheticFilterOptions = z.object({
  /** Samples scoring below this are dropped (LAION-Aesthetics subsets: 4.5, 5, 6, 6.5). */
  min: z.number(),
  /** Field the score is read from. */
  field: z.string().min(1).default(AESTHETIC_FIELD),
}).strict();

export type AestheticFilterOptions = z.input<typeof aestheticFilterOptions>;

/**
 * Drops samples whose score is below `min` under the name `aesthetic` with the score as the
 * value; the score stays in the record's fields. A sample with no score (the scoring stage did
 * not run) fails with code no_aesthetic_score rather than passing unjudged.
 */
export function aestheticFilter(opts: AestheticFilterOptions): Stage {
  const { min, field } = parseStageOptions('aesthetic-filter', aestheticFilterOptions, opts);
  return sampleStage('aesthetic-filter', (s) => {
    const v = s.fields[field];
    if (typeof v !== 'number' || Number.isNaN(v)) throw new SampleError('no_aesthetic_score', `no ${field} to filter on; run an aesthetic stage first`);
    if (v < min) drop(s, 'aesthetic', v);
  });
}
