import { join } from 'node:path';
import { decodeNpy } from '../../src/formats/npy.js';
import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import type { Logger } from '../../src/log.js';
import { seededRandom } from '../../src/seeded-random.js';
import type { EmitDrop } from './dedup-drop.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { ClipEmbedder } from './clip-embed.js';
import { okRowsByKey, ordinalOf, storedImages, type DedupUnit } from './dedup-units.js';
import { dot, nearestCentroid, sphericalKMeans } from './kmeans.js';
import { LinePartitions } from './line-partitions.js';
import { EMBEDDING_INDEX, EMBEDDING_NPY } from '../sinks/image-shards.js';

/**
 * Near duplicates by image embedding, as SemDedup (Abbas et al. 2023) and NeMo Curator do it: the
 * CLIP image embeddings laion-filter saved (`<unit>.img_emb.npy` + `.img_emb.parquet`,
 * `embeddings:`), or ones computed from the stored images with a CLIP tower, are clustered with spherical k-means fitted on a seeded sample, and within each
 * cluster a row is dropped when an earlier row's cosine similarity is at least `threshold`.
 * Pairs split across two clusters are not compared (the method's known approximation: a near
 * duplicate almost always falls in the same cluster as its original; `clusters: 1` compares
 * every pair). Bounded memory: the sample and the centroids, then one partition of clusters at a
 * time from disk (4 KiB per row of scratch).
 */
export interface EmbeddingPassOptions {
  /** Cosine similarity at or above which a later row is a near duplicate (0 < t ≤ 1). */
  threshold: number;
  /** k-means clusters; default √rows (cost balanced between assigning rows and comparing within clusters). */
  clusters?: number;
  /** Rows the k-means is fitted on (a seeded reservoir sample). */
  sample?: number;
  seed?: number;
  /** Compute the embeddings from the stored images with this tower instead of reading saved ones. */
  embedder?: ClipEmbedder;
}

export interface EmbeddingPassCounts {
  /** Rows with an embedding, per output. */
  embedded: number[];
  clusters: number;
  dim: number;
}

interface UnitEmbeddings {
  dim: number;
  rows: { ordinal: number; key: string; v: Float32Array }[];
}

/** Every unit has its saved embeddings: the dedup checks it before any pass, so a missing one fails it at once. */
export async function checkSavedEmbeddings(units: readonly DedupUnit[], outputs: readonly string[]): Promise<void> {
  for (const u of units) {
    for (const ext of [EMBEDDING_NPY, EMBEDDING_INDEX]) {
      if (!(await u.store.exists(`${u.id}${ext}`))) {
        throw new Error(`${outputs[u.output]}/${u.id}${ext}: no saved embeddings (make the output with laion-filter's \`embeddings:\`, or dedup it with --phash)`);
      }
    }
  }
}

/** Scales a vector to unit length in place; false for a zero or non-finite one. */
function normalise(v: Float32Array): boolean {
  let norm = 0;
  for (let d = 0; d < v.length; d++) norm += v[d] * v[d];
  norm = Math.sqrt(norm);
  if (!(norm > 0 && Number.isFinite(norm))) return false;
  for (let d = 0; d < v.length; d++) v[d] /= norm;
  return true;
}

const BATCH = 32;

/**
 * One unit's embeddings computed from its stored images, cached in the scratch folder: the
 * passes read every unit twice (sample, then clusters) and the tower runs once.
 */
async function computeUnit(u: DedupUnit, k: number, outputs: readonly string[], embedder: ClipEmbedder, cacheDir: string): Promise<UnitEmbeddings> {
  const cache = join(cacheDir, `${k}.json`);
  const cached = await readFile(cache, 'utf8').catch(() => undefined);
  if (cached !== undefined) {
    const c = JSON.parse(cached) as { dim: number; rows: [number, string, string][] };
    return { dim: c.dim, rows: c.rows.map(([ordinal, key, b64]) => ({ ordinal, key, v: fromBase64(b64) })) };
  }
  const rows: UnitEmbeddings['rows'] = [];
  let batch: { key: string; row: number; bytes: Uint8Array }[] = [];
  const where = `${outputs[u.output]}/${u.id}`;
  const flush = async () => {
    const vs = await embedder.embed(batch.map((b) => b.bytes));
    for (const [i, b] of batch.entries()) {
      if (!normalise(vs[i])) throw new Error(`${where}.tar: sample ${b.key}: ${embedder.name} gave a zero or non-finite embedding`);
      rows.push({ ordinal: ordinalOf(k, b.row), key: b.key, v: vs[i] });
    }
    batch = [];
  };
  for await (const img of storedImages(u, outputs[u.output])) {
    batch.push(img);
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  const dim = rows[0]?.v.length ?? 0;
  await mkdir(cacheDir, { recursive: true });
  await writeFile(cache, JSON.stringify({ dim, rows: rows.map((r) => [r.ordinal, r.key, toBase64(r.v)]) }));
  return { dim, rows };
}

const toBase64 = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
function fromBase64(b64: string): Float32Array {
  const bytes = Buffer.from(b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** One unit's saved embeddings, unit length, each with its dedup ordinal. */
async function readUnit(u: DedupUnit, k: number, where: string): Promise<UnitEmbeddings> {
  const npy = decodeNpy(await u.store.get(u.id + EMBEDDING_NPY), where + EMBEDDING_NPY);
  const keys: string[] = [];
  for await (const g of readParquetRowGroups(await parquetSourceFromStore(u.store, u.id + EMBEDDING_INDEX), { columns: ['key'] })) for (const r of g.rows) keys.push(String(r.key));
  const [n, dim] = npy.shape.length === 2 ? npy.shape : [0, 0];
  if (npy.shape.length !== 2 || n !== keys.length) throw new Error(`${where}.img_emb.npy: shape (${npy.shape.join(', ')}) does not match the ${keys.length} keys of ${u.id}.img_emb.parquet`);
  const ok = await okRowsByKey(u);
  const rows: UnitEmbeddings['rows'] = [];
  for (let i = 0; i < n; i++) {
    const row = ok.get(keys[i]);
    if (row === undefined) throw new Error(`${where}.img_emb.parquet: key ${keys[i]} (row ${i}) is not an ok row of the unit's records; the embeddings are stale`);
    const v = npy.data.slice(i * dim, (i + 1) * dim);
    if (!normalise(v)) throw new Error(`${where}.img_emb.npy: row ${i} (key ${keys[i]}) is a zero or non-finite vector`);
    rows.push({ ordinal: ordinalOf(k, row), key: keys[i], v });
  }
  return { dim, rows };
}

export async function embeddingPass(units: readonly DedupUnit[], outputs: readonly string[], opts: EmbeddingPassOptions, scratch: string, emit: EmitDrop, log: Logger): Promise<EmbeddingPassCounts> {
  const { threshold } = opts;
  if (!(threshold > 0 && threshold <= 1)) throw new Error(`dedup --embeddings: ${threshold}: give a cosine similarity in (0, 1]`);
  const where = (u: DedupUnit) => `${outputs[u.output]}/${u.id}`;
  const cacheDir = join(scratch, 'computed-embeddings');
  const unitEmbeddings = (u: DedupUnit, k: number) => (opts.embedder ? computeUnit(u, k, outputs, opts.embedder, cacheDir) : readUnit(u, k, where(u)));

  // Pass 1: a seeded reservoir sample to fit the clusters on.
  const sampleSize = opts.sample ?? 20_000;
  const random = seededRandom(opts.seed ?? 0);
  const sample: Float32Array[] = [];
  const embedded: number[] = new Array(outputs.length).fill(0);
  let seen = 0;
  let dim = 0;
  for (const [k, u] of units.entries()) {
    const e = await unitEmbeddings(u, k);
    if (e.rows.length === 0) continue;
    if (dim === 0) dim = e.dim;
    else if (e.dim !== dim) throw new Error(`${where(u)}: embeddings of ${e.dim} values, earlier units have ${dim}; dedup outputs embedded by one model`);
    for (const r of e.rows) {
      seen++;
      if (sample.length < sampleSize) sample.push(r.v);
      else {
        const j = Math.floor(random() * seen);
        if (j < sampleSize) sample[j] = r.v;
      }
    }
    embedded[u.output] += e.rows.length;
  }
  const clusters = Math.max(1, Math.min(sample.length, opts.clusters ?? Math.round(Math.sqrt(seen))));
  if (seen === 0) return { embedded, clusters: 0, dim };
  log.info(`dedup --embeddings ${threshold}: ${seen} embeddings of ${dim} values; fitting ${clusters} clusters on ${sample.length}`);
  const centroids = sphericalKMeans(sample, clusters, { seed: opts.seed ?? 0 });

  // Pass 2: each row to its nearest centroid's partition (4 KiB per row as base64 float32).
  const partitions = Math.min(4096, Math.max(1, Math.ceil((seen * 4200) / (96 * 2 ** 20))));
  const parts = await LinePartitions.create(join(scratch, 'embedding-clusters'), partitions);
  try {
    for (const [k, u] of units.entries()) {
      for (const r of (await unitEmbeddings(u, k)).rows) {
        const best = nearestCentroid(r.v, centroids);
        await parts.add(best % partitions, JSON.stringify([best, r.ordinal, r.key, toBase64(r.v)]));
      }
    }
    await parts.finish();
    // Pass 3: within each cluster, each row against the earlier ones, the earliest close one kept.
    for (let p = 0; p < partitions; p++) {
      const groups = new Map<number, { ordinal: number; key: string; v: Float32Array }[]>();
      for await (const line of parts.read(p)) {
        const [c, ordinal, key, b64] = JSON.parse(line) as [number, number, string, string];
        const v = fromBase64(b64);
        let g = groups.get(c);
        if (!g) groups.set(c, (g = []));
        g.push({ ordinal, key, v });
      }
      for (const g of groups.values()) {
        g.sort((a, b) => a.ordinal - b.ordinal);
        for (let j = 1; j < g.length; j++) {
          for (let i = 0; i < j; i++) {
            const s = dot(g[i].v, g[j].v);
            if (s < threshold) continue;
            await emit({ row: g[j].ordinal, key: g[j].key, method: 'embeddings', kept: g[i].ordinal, keptKey: g[i].key, distance: Math.max(0, 1 - s) });
            break;
          }
        }
      }
    }
  } finally {
    await parts.remove();
  }
  return { embedded, clusters, dim };
}
