import sharp from 'sharp';
import { z } from 'zod';
import { TarWriter } from '../../src/formats/tar-write.js';
import { toJson } from '../../src/json-safe.js';
import type { Sample } from '../../src/sample.js';
import type { Stage } from '../../src/stage.js';
import type { UnitOutputs } from '../../src/units/unit-outputs.js';
import { parseStageOptions } from '../stage-options.js';

/** Longest side and JPEG quality of a dropped-sample thumbnail: enough to judge a threshold by eye at ~5 KB. */
export const THUMBNAIL_SIDE = 160;
export const THUMBNAIL_QUALITY = 70;
/**
 * A plain tar, but not named `*.tar`: WebDataset readers (ours in stages/sources/webdataset-source.ts,
 * and `ls *.tar` in users' scripts) take every `.tar` in a shard folder as a shard, and dropped
 * images must never re-enter a derived dataset.
 */
export const THUMBS_SUFFIX = '.thumbs';

/**
 * Thumbnails of dropped images for `bitprep report` (`<unit>.thumbs`). Bounded per unit so
 * the sidecar stays small at LAION scale: 60k units × 12 × ~5 KB ≈ 3.6 GB at 600M rows, about
 * 0.1% of the dataset.
 */
export const droppedThumbnailOptions = z.object({
  /** Dropped samples kept as thumbnails per unit, spread round-robin over drop reasons; 0 writes no sidecar. */
  dropped_per_unit: z.number().int().min(0).default(12),
}).strict();

interface Candidate {
  key: string;
  jpeg: Uint8Array;
  meta: string;
}

/**
 * A bounded, deterministic sample of one unit's dropped images, written as `<unit>.thumbs`, a tar
 * (`<key>.jpg` + `<key>.json` with {key, dropped_by, value}) so a report can show what a filter
 * removed. drop() releases a sample's payloads, so `remember()` stages placed before the
 * dropping stages keep a weak reference to the latest encoded image of each sample; the sink then
 * offers every dropped sample. Per reason the candidates with the smallest keys are kept, and the
 * file takes them round-robin over reasons (sorted by name) up to `perUnit`: the same rows give
 * the same bytes whatever the timing, so a killed and rerun unit writes an identical file.
 */
export class DroppedThumbnails {
  private readonly images = new WeakMap<Sample, Uint8Array>();
  private readonly byReason = new Map<string, Candidate[]>();

  constructor(readonly perUnit: number) {
    if (!(Number.isInteger(perUnit) && perUnit > 0)) throw new Error(`dropped thumbnails: per unit must be a positive integer, got ${perUnit}`);
  }

  /** The thumbnails the options ask for, or none when `dropped_per_unit` is 0. */
  static fromOptions(opts: z.input<typeof droppedThumbnailOptions> = {}): DroppedThumbnails | undefined {
    const o = parseStageOptions('dropped thumbnails', droppedThumbnailOptions, opts);
    return o.dropped_per_unit > 0 ? new DroppedThumbnails(o.dropped_per_unit) : undefined;
  }

  /** A pass-through stage that notes each ok sample's current encoded image. */
  remember(): Stage {
    const images = this.images;
    return async function* rememberImages(input) {
      for await (const s of input) {
        if (s.status.kind === 'ok' && s.image) images.set(s, s.image);
        yield s;
      }
    };
  }

  /** Considers a sample that reached the sink; only dropped samples with a remembered image count. */
  async offer(s: Sample): Promise<void> {
    const st = s.status;
    if (st.kind !== 'dropped') return;
    const bytes = this.images.get(s);
    if (!bytes) return;
    let list = this.byReason.get(st.by);
    if (!list) this.byReason.set(st.by, (list = []));
    // Smallest keys win; a key past the largest of a full list cannot enter, so most rows cost nothing.
    if (list.length >= this.perUnit && s.key >= list[list.length - 1].key) return;
    let jpeg: Uint8Array;
    try {
      const buf = await sharp(bytes, { autoOrient: true }).resize(THUMBNAIL_SIDE, THUMBNAIL_SIDE, { fit: 'inside', withoutEnlargement: true }).flatten({ background: '#ffffff' }).jpeg({ quality: THUMBNAIL_QUALITY }).toBuffer();
      jpeg = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch {
      // An image sharp cannot thumbnail is left out; the sample's record still tells its story.
      return;
    }
    const at = list.findIndex((c) => c.key > s.key);
    list.splice(at < 0 ? list.length : at, 0, { key: s.key, jpeg, meta: toJson({ key: s.key, dropped_by: st.by, value: st.value ?? null }) });
    if (list.length > this.perUnit) list.pop();
  }

  /** The chosen candidates, round-robin over reasons sorted by name, then in key order. */
  chosen(): Candidate[] {
    const lists = [...this.byReason.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, l]) => l);
    const out: Candidate[] = [];
    for (let i = 0; out.length < this.perUnit && lists.some((l) => i < l.length); i++) {
      for (const l of lists) if (i < l.length && out.length < this.perUnit) out.push(l[i]);
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Writes `<unit>.thumbs` (empty when nothing was dropped after decoding) through the unit's outputs. */
  async write(outputs: UnitOutputs): Promise<void> {
    const out = await outputs.stream(THUMBS_SUFFIX);
    const tar = new TarWriter(out);
    for (const c of this.chosen()) await tar.addSample(c.key, { jpg: c.jpeg, json: c.meta });
    await tar.finish();
    await out.close();
  }
}
