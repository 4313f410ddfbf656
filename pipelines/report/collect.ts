import sharp from 'sharp';
import { readLatentManifest, readLatents, MANIFEST_NAME } from '../../src/formats/latent-shards.js';
import { parquetSourceFromStore, readParquetRowGroups } from '../../src/formats/parquet-read.js';
import { readWebDataset } from '../../src/formats/tar-read.js';
import { summarizeOutput, type RunSummary } from '../../src/run-summary.js';
import type { Store } from '../../src/stores/store.js';
import { doneName, readDoneMarker, readUnitStats, statsName, type DoneMarker } from '../../src/units/unit.js';
import { THUMBNAIL_QUALITY, THUMBNAIL_SIDE, THUMBS_SUFFIX } from '../../stages/sinks/dropped-thumbnails.js';
import { LatentStats, type LatentStatsResult } from '../../stages/latent-stats.js';
import { FixedHistogram } from './histogram.js';

/** One image of a grid, ready to inline. */
export interface Thumb {
  key: string;
  /** `data:image/jpeg;base64,…` */
  src: string;
  /** Short line under the image (a score or a filter value). */
  label: string;
  /** Hover text: caption and annotations. */
  title: string;
}

export interface HistogramPanel {
  title: string;
  field: string;
  hist: FixedHistogram;
  /** A config threshold drawn on the chart, e.g. aesthetic.min_score. */
  threshold?: { value: number; label: string };
}

export interface ThroughputPoint {
  unit: string;
  finishedAt: number;
  seconds: number;
  rows: number;
  rowsPerSecond: number;
}

export interface ReportData {
  output: string;
  job: string;
  generatedAt: string;
  summary: RunSummary;
  firstStartedAt?: string;
  lastFinishedAt?: string;
  histograms: HistogramPanel[];
  throughput: ThroughputPoint[];
  kept: Thumb[];
  /** Dropped thumbnails by drop reason (from the `<unit>.thumbs` sidecars), reasons sorted. */
  dropped: [string, Thumb[]][];
  /** True when no done unit has a thumbs sidecar (an output from before them, or thumbnails disabled). */
  noThumbSidecars: boolean;
  /** Whether the output holds image shards (`<unit>.tar`); a latent dataset has none, and no image grids. */
  hasImageShards: boolean;
  latent?: LatentStatsResult;
}

export interface CollectOptions {
  /** Images per grid (kept, and each drop reason). */
  thumbnails: number;
}

/** Fixed ranges: a value outside lands in the edge bin, so 600M rows cost the same memory as 600. */
interface MetricSpec {
  /** The record field, or a name for what `value` derives from a record. */
  field: string;
  /** Derived metrics: the value of a record (default: its `field`). */
  value?: (r: Record<string, unknown>) => number | null;
  title: string;
  lo: number;
  hi: number;
  bins: number;
  threshold?: (cfg: Record<string, any>) => { value: number; label: string } | undefined;
}

const num = (v: unknown): number | null => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null);

const METRICS: MetricSpec[] = [
  { field: 'aesthetic_score', title: 'Aesthetic score', lo: 0, hi: 10, bins: 200, threshold: (c) => (typeof c.aesthetic?.min_score === 'number' ? { value: c.aesthetic.min_score, label: `aesthetic.min_score ${c.aesthetic.min_score}` } : undefined) },
  { field: 'ocr_density', title: 'Text density (share of the image covered by text boxes)', lo: 0, hi: 1, bins: 200, threshold: (c) => (typeof c.ocr?.max_density === 'number' ? { value: c.ocr.max_density, label: `ocr.max_density ${c.ocr.max_density}` } : undefined) },
  { field: 'ocr_median_height', title: 'Text height (median word height / image height)', lo: 0, hi: 0.25, bins: 100, threshold: (c) => (typeof c.ocr?.min_text_height === 'number' ? { value: c.ocr.min_text_height, label: `ocr.min_text_height ${c.ocr.min_text_height}` } : undefined) },
  // image.min_edge acts on the shorter edge, so its line is drawn there and not on width or height.
  {
    field: 'original_shorter_edge',
    value: (r) => {
      const w = num(r.original_width);
      const h = num(r.original_height);
      return w === null || h === null ? null : Math.min(w, h);
    },
    title: 'Original shorter edge (px)',
    lo: 0,
    hi: 4096,
    bins: 64,
    threshold: (c) => (typeof c.image?.min_edge === 'number' && c.image.min_edge > 0 ? { value: c.image.min_edge, label: `image.min_edge ${c.image.min_edge}` } : undefined),
  },
  { field: 'original_width', title: 'Original width (px)', lo: 0, hi: 4096, bins: 64 },
  { field: 'original_height', title: 'Original height (px)', lo: 0, hi: 4096, bins: 64 },
  { field: 'width', title: 'Output width (px)', lo: 0, hi: 4096, bins: 64 },
  { field: 'height', title: 'Output height (px)', lo: 0, hi: 4096, bins: 64 },
];

/** Fields holding caption text: named for captions, less the recaption job's settings about them (model, prompt version, seeds, attempts, kind). */
const isCaptionField = (k: string): boolean => /caption/i.test(k) && !/^caption_(model|prompt_version|seed|short_seed|attempts|kind)$/.test(k);
const decodeJson = (b: Uint8Array): any => JSON.parse(new TextDecoder().decode(b));

async function readJsonIfExists(store: Store, name: string): Promise<any> {
  return (await store.exists(name)) ? decodeJson(await store.get(name)) : undefined;
}

/** Up to `n` items spread evenly over `items`, first and order kept: which units to open for images. */
function spread<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  return Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)]);
}

async function thumbnail(bytes: Uint8Array): Promise<string> {
  const jpeg = await sharp(bytes, { autoOrient: true }).resize(THUMBNAIL_SIDE, THUMBNAIL_SIDE, { fit: 'inside', withoutEnlargement: true }).flatten({ background: '#ffffff' }).jpeg({ quality: THUMBNAIL_QUALITY }).toBuffer();
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
}

function describeRow(r: Record<string, unknown> | undefined): string {
  if (!r) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(r)) if (isCaptionField(k) && typeof v === 'string' && v) parts.push(v);
  const score = num(r.aesthetic_score);
  if (score !== null) parts.push(`aesthetic ${score.toFixed(2)}`);
  const density = num(r.ocr_density);
  if (density !== null) parts.push(`text density ${density.toFixed(3)}`);
  const height = num(r.ocr_median_height);
  if (height !== null && num(r.ocr_words)) parts.push(`text height ${height.toFixed(3)}`);
  return parts.join(' · ');
}

function formatValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (v && typeof v === 'object') return JSON.stringify(v);
  return v === null || v === undefined ? '' : String(v);
}

/**
 * Everything the report shows, in one pass over the output: done markers and stats files, the
 * records of every done unit (streamed a row group at a time into fixed-bin histograms), kept
 * images from a spread of shard tars, dropped images from the thumbs sidecars, and latent bit
 * usage when the output is a latent dataset.
 */
export async function collectReport(store: Store, opts: CollectOptions): Promise<ReportData> {
  const names = await store.list();
  const nameSet = new Set(names);
  const plan = await readJsonIfExists(store, '_plan.json');
  const cfg: Record<string, any> = (await readJsonIfExists(store, '_config.json')) ?? {};
  const unitIds: string[] = plan?.unit_ids ?? names.filter((n) => n.endsWith('.done.json')).map((n) => n.slice(0, -'.done.json'.length));
  const job: string = plan?.job ?? cfg.job ?? 'unknown';
  if (!plan && unitIds.length === 0) throw new Error(`${store.url}: no _plan.json and no done markers: not a bitprep output`);
  const summary = await summarizeOutput(store, job, unitIds.map((id) => ({ id, inputs: [] })));

  const done: { id: string; marker: DoneMarker }[] = [];
  for (const id of unitIds) if (nameSet.has(doneName(id))) done.push({ id, marker: await readDoneMarker(store, id) });

  const throughput: ThroughputPoint[] = [];
  let firstStartedAt: string | undefined;
  let lastFinishedAt: string | undefined;
  for (const { id } of done) {
    if (!nameSet.has(statsName(id))) continue;
    const st = await readUnitStats(store, id);
    if (!firstStartedAt || st.started_at < firstStartedAt) firstStartedAt = st.started_at;
    if (!lastFinishedAt || st.finished_at > lastFinishedAt) lastFinishedAt = st.finished_at;
    const rows = st.funnel?.rows_in ?? 0;
    throughput.push({ unit: id, finishedAt: Date.parse(st.finished_at), seconds: st.seconds, rows, rowsPerSecond: st.rows_per_second ?? rows / Math.max(st.seconds, 1e-6) });
  }
  throughput.sort((a, b) => a.finishedAt - b.finishedAt || (a.unit < b.unit ? -1 : 1));

  // Dropped thumbnails first, so the records pass can pick up their captions and scores.
  const has = (m: DoneMarker, suffix: string, id: string) => m.outputs.some((o) => o.name === id + suffix);
  // By name rather than by marker: retry-failed rewrites a unit's marker from the files it rewrites.
  const withThumbs = done.filter((d) => nameSet.has(d.id + THUMBS_SUFFIX));
  const droppedRaw = new Map<string, { key: string; jpg: Uint8Array; value: unknown }[]>();
  for (const { id } of spread(withThumbs, 200)) {
    for await (const s of readWebDataset(await store.getStream(id + THUMBS_SUFFIX), { name: id + THUMBS_SUFFIX })) {
      if (!s.files.jpg || !s.files.json) continue;
      const meta = decodeJson(s.files.json) as { dropped_by: string; value: unknown };
      let list = droppedRaw.get(meta.dropped_by);
      if (!list) droppedRaw.set(meta.dropped_by, (list = []));
      if (list.length < opts.thumbnails) list.push({ key: s.key, jpg: s.files.jpg, value: meta.value });
    }
  }
  const wantRows = new Set([...droppedRaw.values()].flat().map((t) => t.key));
  const rowsFor = new Map<string, Record<string, unknown>>();

  const panels = METRICS.map((m) => ({ title: m.title, field: m.field, hist: new FixedHistogram(m.lo, m.hi, m.bins), threshold: m.threshold?.(cfg), value: m.value ?? ((r: Record<string, unknown>) => num(r[m.field])) }));
  const captionPanels = new Map<string, HistogramPanel>();
  for (const { id, marker } of done) {
    if (!has(marker, '.parquet', id)) continue;
    for await (const g of readParquetRowGroups(await parquetSourceFromStore(store, `${id}.parquet`))) {
      for (const r of g.rows) {
        const kept = r.status === 'ok';
        for (const p of panels) {
          const v = p.value(r);
          if (v !== null) p.hist.add(v, kept);
        }
        for (const [k, v] of Object.entries(r)) {
          if (typeof v !== 'string' || !isCaptionField(k)) continue;
          let p = captionPanels.get(k);
          if (!p) captionPanels.set(k, (p = { title: `Caption length in words (${k})`, field: k, hist: new FixedHistogram(0, 128, 64) }));
          p.hist.add(v.trim() ? v.trim().split(/\s+/).length : 0, kept);
        }
        if (wantRows.has(String(r.key))) rowsFor.set(String(r.key), r);
      }
    }
  }
  const histograms: HistogramPanel[] = [...panels.map(({ value: _value, ...p }) => p), ...[...captionPanels.values()].sort((a, b) => (a.field < b.field ? -1 : 1))].filter((p) => p.hist.count > 0);

  const dropped: [string, Thumb[]][] = [];
  for (const reason of [...droppedRaw.keys()].sort()) {
    const thumbs: Thumb[] = [];
    for (const t of droppedRaw.get(reason)!) {
      const row = rowsFor.get(t.key);
      thumbs.push({ key: t.key, src: `data:image/jpeg;base64,${Buffer.from(t.jpg).toString('base64')}`, label: `${reason} ${formatValue(t.value)}`, title: [t.key, `dropped by ${reason}: ${formatValue(t.value)}`, describeRow(row)].filter(Boolean).join('\n') });
    }
    dropped.push([reason, thumbs]);
  }

  const shardUnits = done.filter((d) => has(d.marker, '.tar', d.id)).map((d) => d.id);
  const kept = await keptThumbs(store, shardUnits, opts.thumbnails);

  let latent: LatentStatsResult | undefined;
  if (nameSet.has(MANIFEST_NAME)) {
    const stats = new LatentStats();
    for await (const { latent: l } of readLatents(store, await readLatentManifest(store))) stats.add(l);
    latent = stats.result();
  }

  return { output: store.url, job, generatedAt: new Date().toISOString(), summary, firstStartedAt, lastFinishedAt, histograms, throughput, kept, dropped, noThumbSidecars: withThumbs.length === 0, hasImageShards: shardUnits.length > 0, latent };
}

/** Up to `n` kept images: the first samples of shard tars spread evenly over the done units. */
async function keptThumbs(store: Store, unitIds: string[], n: number): Promise<Thumb[]> {
  if (n <= 0) return [];
  const units = spread(unitIds, n);
  const perUnit = Math.ceil(n / Math.max(units.length, 1));
  const out: Thumb[] = [];
  for (const id of units) {
    let taken = 0;
    for await (const s of readWebDataset(await store.getStream(`${id}.tar`), { name: `${id}.tar` })) {
      if (taken >= perUnit || out.length >= n) break;
      const ext = ['jpg', 'jpeg', 'webp', 'png'].find((e) => s.files[e]);
      if (!ext) continue;
      const fields = s.files.json ? (decodeJson(s.files.json) as Record<string, unknown>) : undefined;
      let src: string;
      try {
        src = await thumbnail(s.files[ext]);
      } catch (err) {
        throw new Error(`${id}.tar: sample ${s.key}: cannot decode its ${ext}: ${err instanceof Error ? err.message : String(err)}`);
      }
      const score = num(fields?.aesthetic_score);
      out.push({ key: s.key, src, label: score !== null ? `aesthetic ${score.toFixed(2)}` : s.key, title: [s.key, describeRow(fields)].filter(Boolean).join('\n') });
      taken++;
    }
  }
  return out;
}
