import { createHash } from 'node:crypto';
import { join, resolve as resolvePath } from 'node:path';
import { tmpdir } from 'node:os';
import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { writeParquet } from '../../src/formats/parquet-write.js';
import { readPlan } from '../../src/executors/local.js';
import type { Logger } from '../../src/log.js';
import { openStore } from '../../src/stores/open-store.js';
import type { Store } from '../../src/stores/store.js';
import { DigestPartitions, partitionsFor } from './digest-partitions.js';

/**
 * `bitprep dedup <output>… --out DIR`: exact duplicates across every unit of one or several
 * image outputs (laion-filter, image-shards, dalle-ingest, diffusiondb-synth, recaption), by the
 * SHA-256 of the original bytes that decode-resize records (`original_sha256`). The same picture
 * under two URLs in two units, or in LAION and a synthetic or Dalle3 set, is kept once: the
 * earliest in the order of the outputs as given, then unit id, then row (deterministic). Bounded
 * memory: digests go to hash partitions on disk (digest-partitions.ts). Shards are never
 * rewritten; the drop lists say which rows a mix or pre-encode should leave out.
 *
 * Writes into DIR: `drops/part-<p>.parquet` (output, key, original_sha256, kept_output,
 * kept_key, one row per dropped row) and `summary.json`.
 */
export interface ExactDedupSummary {
  outputs: string[];
  /** Ok rows with a digest, per output and in all. */
  rows: number[];
  total_rows: number;
  /** Rows dropped as a later copy, per output and in all. */
  duplicates: number[];
  total_duplicates: number;
  /** Ok rows without a digest (nothing to compare), per output. */
  no_digest: number[];
  partitions: number;
}

const HEX = /^[0-9a-f]{64}$/;

/** An output's units in id order, all done (a dedup over a half-made output would change later). */
async function doneUnits(store: Store, url: string): Promise<string[]> {
  const names = await store.list();
  const done = names.filter((n) => /^[^/]+\.done\.json$/.test(n)).map((n) => n.slice(0, -'.done.json'.length)).sort();
  if (done.length === 0) throw new Error(`${url}: no done unit (not a bitprep image output, or not run yet)`);
  if (names.includes('_plan.json')) {
    const missing = (await readPlan(store)).unit_ids.filter((id) => !done.includes(id));
    if (missing.length > 0) throw new Error(`${url}: ${missing.length} unit(s) not done (e.g. ${missing[0]}); finish the run first, so the dedup does not change under it`);
  }
  return done;
}

export async function exactDedup(outputs: string[], outDir: string, log: Logger, opts: { partitions?: number; scratch?: string } = {}): Promise<ExactDedupSummary> {
  if (outputs.length === 0) throw new Error('dedup: name at least one output');
  const stores = outputs.map((o) => openStore(o));
  const units = await Promise.all(stores.map((s, i) => doneUnits(s, outputs[i])));
  const totalUnits = units.reduce((a, u) => a + u.length, 0);
  // Partitions sized from a row estimate (10k rows a unit, img2dataset's default) unless given.
  const partitions = opts.partitions ?? partitionsFor(totalUnits * 10_000);
  const scratch = join(opts.scratch ?? tmpdir(), `bitprep-dedup-${createHash('sha256').update(JSON.stringify([outputs, outDir])).digest('hex').slice(0, 12)}`);
  const parts = await DigestPartitions.create(scratch, partitions);
  const rows = outputs.map(() => 0);
  const noDigest = outputs.map(() => 0);
  let ordinal = 0;
  try {
    for (const [o, store] of stores.entries()) {
      for (const id of units[o]) {
        const src = await parquetSourceFromStore(store, `${id}.parquet`);
        for await (const g of readParquetRowGroups(src, { columns: ['key', 'status', 'original_sha256'] })) {
          for (const r of g.rows) {
            if (r.status !== 'ok') continue;
            const d = typeof r.original_sha256 === 'string' ? r.original_sha256.toLowerCase() : '';
            if (!HEX.test(d)) {
              noDigest[o]++;
              continue;
            }
            await parts.add(d, ordinal++, `${o}\u0000${String(r.key)}`);
            rows[o]++;
          }
        }
      }
      log.info(`dedup: ${outputs[o]}: ${rows[o]} ok rows with a digest in ${units[o].length} unit(s)`);
    }
    await parts.finish();
    const out = openStore(outDir);
    const duplicates = outputs.map(() => 0);
    // One drop file per partition: the whole list is never in memory.
    let batch: Record<string, unknown>[] = [];
    let part = 0;
    const write = async () => {
      await out.put(`drops/part-${String(part++).padStart(5, '0')}.parquet`, writeParquet(batch, { schema: DROP_SCHEMA, compression: 'ZSTD' }));
      batch = [];
    };
    for await (const d of parts.duplicates()) {
      const [o, key] = split(d.label);
      const [ko, keptKey] = split(d.keptLabel);
      duplicates[o]++;
      batch.push({ output: outputs[o], key, original_sha256: d.digest, kept_output: outputs[ko], kept_key: keptKey });
      if (batch.length >= 500_000) await write();
    }
    if (batch.length > 0 || part === 0) await write();
    const summary: ExactDedupSummary = {
      outputs,
      rows,
      total_rows: rows.reduce((a, b) => a + b, 0),
      duplicates,
      total_duplicates: duplicates.reduce((a, b) => a + b, 0),
      no_digest: noDigest,
      partitions,
    };
    await out.put('summary.json', JSON.stringify(summary, null, 2) + '\n');
    return summary;
  } finally {
    await parts.remove();
  }
}

const split = (label: string): [number, string] => {
  const i = label.indexOf('\u0000');
  return [Number(label.slice(0, i)), label.slice(i + 1)];
};

const DROP_SCHEMA = [
  { name: 'output', type: 'STRING' as const, nullable: false },
  { name: 'key', type: 'STRING' as const, nullable: false },
  { name: 'original_sha256', type: 'STRING' as const, nullable: false },
  { name: 'kept_output', type: 'STRING' as const, nullable: false },
  { name: 'kept_key', type: 'STRING' as const, nullable: false },
];

/** How an output is named in drop lists and matched against inputs: URLs as written, local paths absolute. */
export const outputIdentity = (path: string): string => (/^[a-z][a-z0-9+.-]*:\/\//i.test(path) ? path.replace(/\/+$/, '') : resolvePath(path));

/**
 * The keys a dedup run drops from one output, with the copy each duplicates (`kept_output/kept_key`),
 * read from its drop lists (`<dedup>/drops/part-*.parquet`); only that output's rows are kept in memory.
 */
export async function droppedKeys(dedupDirs: readonly string[], output: string): Promise<Map<string, string>> {
  const want = outputIdentity(output);
  const out = new Map<string, string>();
  for (const d of dedupDirs) {
    const store = openStore(d);
    if (!(await store.exists('summary.json'))) throw new Error(`${d}: no summary.json (not a finished bitprep dedup output)`);
    for (const name of (await store.list('drops/')).filter((n) => n.endsWith('.parquet'))) {
      for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, name), { columns: ['output', 'key', 'kept_output', 'kept_key'] })) {
        for (const r of g.rows) if (outputIdentity(String(r.output)) === want) out.set(String(r.key), `${String(r.kept_output)}/${String(r.kept_key)}`);
      }
    }
  }
  return out;
}
