import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { writeParquet } from '../../src/formats/parquet-write.js';
import type { Logger } from '../../src/log.js';
import { openStore } from '../../src/stores/open-store.js';
import type { Store } from '../../src/stores/store.js';
import { METHOD_RANK, type DedupDrop, type DedupMethod } from './dedup-drop.js';
import { dedupUnits, ordinalOf, outputIdentity, rowOfOrdinal, unitOfOrdinal, unitRecords, type DedupUnit } from './dedup-units.js';
import { DigestPartitions, partitionsFor } from './digest-partitions.js';
import { exactPass } from './exact-dedup.js';
import { LinePartitions } from './line-partitions.js';
import { DEDUP_SUMMARY, viewFolder, type DedupSummary } from './dedup-layout.js';

/**
 * `bitprep dedup <output>… --out DIR`: duplicates across every unit of one or several image
 * outputs (laion-filter, image-shards, dalle-ingest, diffusiondb-synth, recaption), the earliest
 * copy kept in the order of the outputs as given, then unit id, then row (deterministic):
 * - always, exact copies by the original bytes' SHA-256 (exact-dedup.ts);
 * - with `phash`, near copies by perceptual hash of the stored images (phash-near.ts);
 * - with `embeddings`, near copies by CLIP image embeddings, saved or computed (embedding-near.ts).
 *
 * Never rewrites a shard. Writes into DIR:
 * - `drops/part-<p>.parquet`: one row per dropped row (output, key, reason, method,
 *   original_sha256, distance, kept_output, kept_key);
 * - `view/<i>/<unit>.parquet` for the i-th output: every row of every unit with its fate after
 *   the dedup, in `bitprep refilter`'s layout (key, status, dropped_by, dropped_value,
 *   previous_status, previous_dropped_by, in_shards); pre-encode and training-mix read it to
 *   leave the dropped rows out (dedup-view.ts);
 * - `summary.json` last: a dedup killed before it is not a finished one, and rerunning it
 *   recomputes the same answer.
 *
 * Memory is bounded whatever the row count: each pass spills to partitions on disk under
 * `scratch`, read back one at a time.
 */
export interface DedupOptions {
  /** Near duplicates within this many bits of perceptual hash (0 … 12); undefined: off. */
  phash?: number;
  /** Near duplicates at or above this cosine similarity of image embeddings; undefined: off. */
  embeddings?: number;
  /** Compute the embeddings from the stored images with this CLIP image tower (an .onnx file or KServe v2 URLs) instead of reading saved ones. */
  clip?: string;
  /** k-means clusters for `embeddings` (default √rows). */
  clusters?: number;
  /** Hash partitions on disk (default: from the outputs' size, about 64 MiB each). */
  partitions?: number;
  /** Where the partitions go while the dedup runs (default: the system temp folder). */
  scratch?: string;
}

const DROP_SCHEMA = [
  { name: 'output', type: 'STRING' as const, nullable: false },
  { name: 'key', type: 'STRING' as const, nullable: false },
  { name: 'reason', type: 'STRING' as const, nullable: false },
  { name: 'method', type: 'STRING' as const, nullable: false },
  { name: 'original_sha256', type: 'STRING' as const },
  { name: 'distance', type: 'DOUBLE' as const, nullable: false },
  { name: 'kept_output', type: 'STRING' as const, nullable: false },
  { name: 'kept_key', type: 'STRING' as const, nullable: false },
];

const VIEW_SCHEMA = [
  { name: 'key', type: 'STRING' as const, nullable: false },
  { name: 'status', type: 'STRING' as const, nullable: false },
  { name: 'dropped_by', type: 'STRING' as const },
  { name: 'dropped_value', type: 'STRING' as const },
  { name: 'previous_status', type: 'STRING' as const, nullable: false },
  { name: 'previous_dropped_by', type: 'STRING' as const },
  { name: 'in_shards', type: 'BOOLEAN' as const, nullable: false },
];

/** The dropped_by a dedup writes in its views (and pre-encode in its records): exact or near copies. */
export const reasonOf = (m: DedupMethod): 'duplicate' | 'near_duplicate' => (m === 'sha256' ? 'duplicate' : 'near_duplicate');

/** Removes what an earlier dedup into the same folder wrote, summary first (so nothing reads it as finished meanwhile). */
async function clearOut(out: Store): Promise<void> {
  if (await out.exists(DEDUP_SUMMARY)) await out.delete(DEDUP_SUMMARY);
  for (const n of [...(await out.list('drops/')), ...(await out.list('view/'))]) await out.delete(n);
}

export async function runDedup(given: string[], outDir: string, log: Logger, opts: DedupOptions = {}): Promise<DedupSummary> {
  if (given.length === 0) throw new Error('dedup: name at least one output');
  // Named by identity (local paths absolute), so readers in another folder match them.
  const outputs = given.map(outputIdentity);
  const twice = outputs.find((o, i) => outputs.indexOf(o) !== i);
  if (twice !== undefined) throw new Error(`dedup: ${twice} is named twice`);
  if (outputs.includes(outputIdentity(outDir)) || (await openStore(outDir).exists('_plan.json'))) throw new Error(`dedup: --out ${outDir} is a bitprep output; give the dedup a folder of its own`);
  const units = await dedupUnits(outputs);
  if (opts.embeddings !== undefined && opts.clip === undefined) await (await import('./embedding-near.js')).checkSavedEmbeddings(units, outputs);
  // Opened before any pass, so a wrong model fails the dedup at once.
  const embedder = opts.clip !== undefined ? await (await import('./clip-embed.js')).openClipEmbedder(opts.clip) : undefined;
  // Partitions sized from a row estimate (10k rows a unit, img2dataset's default) unless given.
  const partitions = opts.partitions ?? partitionsFor(units.length * 10_000);
  const scratch = join(opts.scratch ?? tmpdir(), `bitprep-dedup-${createHash('sha256').update(JSON.stringify([outputs, outDir])).digest('hex').slice(0, 12)}`);
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  const out = openStore(outDir);
  await clearOut(out);
  try {
    // Every pass's drops go to partitions by unit, so the views are written one partition at a time.
    const byUnit = await LinePartitions.create(join(scratch, 'drops'), partitions);
    const emit = (d: DedupDrop) => byUnit.add(unitOfOrdinal(d.row) % partitions, JSON.stringify(d));
    const exact = await exactPass(units, outputs, await DigestPartitions.create(join(scratch, 'digests'), partitions), emit, log);
    const okRows = exact.rows.reduce((a, b) => a + b, 0) + exact.noDigest.reduce((a, b) => a + b, 0);
    let phash: number | null = null;
    if (opts.phash !== undefined) {
      const { phashPass } = await import('./phash-near.js');
      await phashPass(units, outputs, opts.phash, scratch, opts.partitions ?? partitionsFor(okRows * (opts.phash + 1) * 4), emit, log);
      phash = opts.phash;
    }
    let embeddings: DedupSummary['methods']['embeddings'] = null;
    if (opts.embeddings !== undefined) {
      const { embeddingPass } = await import('./embedding-near.js');
      const e = await embeddingPass(units, outputs, { threshold: opts.embeddings, clusters: opts.clusters, embedder }, scratch, emit, log);
      embeddings = { threshold: opts.embeddings, clusters: e.clusters, dim: e.dim, source: embedder ? embedder.name : 'saved' };
    }
    await byUnit.finish();

    const duplicates: number[] = new Array(outputs.length).fill(0);
    const near: number[] = new Array(outputs.length).fill(0);
    let written = 0;
    for (let p = 0; p < partitions; p++) {
      const best = new Map<number, DedupDrop>();
      for await (const line of byUnit.read(p)) {
        const d = JSON.parse(line) as DedupDrop;
        const b = best.get(d.row);
        if (!b || METHOD_RANK[d.method] < METHOD_RANK[b.method] || (d.method === b.method && d.kept < b.kept)) best.set(d.row, d);
      }
      const drops: Record<string, unknown>[] = [];
      for (let k = p; k < units.length; k += partitions) {
        const rows = await writeView(out, units, k, best, outputs);
        for (const d of rows) {
          drops.push(d);
          (d.method === 'sha256' ? duplicates : near)[units[k].output]++;
        }
      }
      if (drops.length > 0 || (p === partitions - 1 && written === 0)) {
        await out.put(`drops/part-${String(written++).padStart(5, '0')}.parquet`, writeParquet(drops, { schema: DROP_SCHEMA, compression: 'ZSTD' }));
      }
    }
    const summary: DedupSummary = {
      format: 'bitprep-dedup',
      version: 1,
      outputs,
      methods: { sha256: true, phash, embeddings },
      rows: exact.rows.map((r, o) => r + exact.noDigest[o]),
      total_rows: okRows,
      duplicates,
      total_duplicates: duplicates.reduce((a, b) => a + b, 0),
      near_duplicates: near,
      total_near_duplicates: near.reduce((a, b) => a + b, 0),
      no_digest: exact.noDigest,
      partitions,
      views: outputs.map((_, o) => viewFolder(o)),
    };
    await out.put(DEDUP_SUMMARY, JSON.stringify(summary, null, 2) + '\n');
    return summary;
  } finally {
    await embedder?.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

/** One unit's view (every row, its fate after the dedup); returns its drop-list rows. */
async function writeView(out: Store, units: readonly DedupUnit[], k: number, best: Map<number, DedupDrop>, outputs: readonly string[]): Promise<(Record<string, unknown> & { method: DedupMethod })[]> {
  const u = units[k];
  const view: Record<string, unknown>[] = [];
  const drops: (Record<string, unknown> & { method: DedupMethod })[] = [];
  for await (const { row, r } of unitRecords(u, ['key', 'status', 'dropped_by'])) {
    const status = String(r.status);
    const by = r.dropped_by == null ? null : String(r.dropped_by);
    const v = { key: String(r.key), status, dropped_by: by, dropped_value: null as string | null, previous_status: status, previous_dropped_by: by, in_shards: status === 'ok' };
    const d = status === 'ok' ? best.get(ordinalOf(k, row)) : undefined;
    if (d) {
      if (d.key !== v.key || rowOfOrdinal(d.row) !== row) throw new Error(`dedup: internal error: row ${row} of ${u.id} is ${v.key}, a pass named ${d.key}`);
      const keptOutput = outputs[units[unitOfOrdinal(d.kept)].output];
      Object.assign(v, { status: 'dropped', dropped_by: reasonOf(d.method), dropped_value: `${keptOutput}/${d.keptKey}` });
      drops.push({ output: outputs[u.output], key: d.key, reason: reasonOf(d.method), method: d.method, original_sha256: d.digest ?? null, distance: d.distance, kept_output: keptOutput, kept_key: d.keptKey });
    }
    view.push(v);
  }
  await out.put(`${viewFolder(u.output)}${u.id}.parquet`, writeParquet(view, { schema: VIEW_SCHEMA, compression: 'ZSTD' }));
  return drops;
}
