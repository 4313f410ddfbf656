import { readWebDataset } from '../../src/formats/tar-read.js';
import { parseSidecarJson } from '../../src/records.js';
import { newSample, type Sample } from '../../src/sample.js';
import { openInputFile } from '../../src/stores/input-file.js';
import { openStore } from '../../src/stores/open-store.js';
import { expandHttpInput, isHttpInput } from '../../src/stores/remote-inputs.js';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { unitId, type Unit } from '../../src/units/unit.js';
import { sampleKey } from './sample-key.js';


/** WebDataset tars (`<key>.jpg|jpeg|png|webp`, `<key>.txt`, `<key>.json`), one unit per tar. */
export interface WebDatasetSourceOptions {
  /** Tar files, directories of `*.tar`, s3:// URLs of tars or prefixes, https:// tars, hf://datasets/… tars or folders. */
  paths: string[];
  /** Samples per tar expected at most; sizes the key's offset digits (img2dataset: 10,000). */
  unit_rows: number;
  /** JSON field holding the caption, when there is no `.txt` member. */
  caption_field?: string;
  /**
   * Keep each sample's own key instead of numbering it `<unit><offset>`: for tars whose keys are
   * already unique across the dataset (bitprep's image shards), so a derived dataset keeps them.
   */
  keep_keys?: boolean;
}

const IMAGE_EXTS = ['jpg', 'jpeg', 'png', 'webp'];

export async function planWebDatasetUnits(opts: WebDatasetSourceOptions): Promise<Unit[]> {
  const tars: string[] = [];
  for (const p of opts.paths) {
    if (isHttpInput(p)) tars.push(...(await expandHttpInput(p, (n) => n.endsWith('.tar'))));
    else if (p.startsWith('s3://')) {
      if (p.endsWith('.tar')) tars.push(p);
      else {
        const base = p.replace(/\/+$/, '');
        tars.push(...(await openStore(base).list()).filter((n) => n.endsWith('.tar')).map((n) => `${base}/${n}`));
      }
    } else if ((await stat(p).catch(() => undefined))?.isDirectory()) {
      tars.push(...(await readdir(p)).filter((n) => n.endsWith('.tar')).sort().map((n) => join(p, n)));
    } else tars.push(p);
  }
  return tars.map((uri, i) => ({ id: unitId(i, tars.length), inputs: [{ uri }] }));
}

/** Fields naming where a row entered bitprep, set once by the first job and carried unchanged after. */
export const PROVENANCE_FIELDS = ['source_file', 'source_row', 'source_key'] as const;

/**
 * Streams a tar's samples; the first image member becomes `image`, `.txt` the caption and `.json`
 * fields are carried (int64 exact: src/records.ts parseSidecarJson). An unsafe member (`../`,
 * absolute, link) stops the unit with an error naming it: a tar that tries to escape is not a
 * sample-level problem. A tar of no samples is a unit of no rows.
 *
 * Two pairs of names say where a row comes from:
 * - `source_file`/`source_row`/`source_key`: where the row entered bitprep. A sample whose json
 *   holds any of them (a bitprep image shard: laion-filter's parquet and row, dalle-ingest's raw
 *   tar and key) keeps them unchanged; a sample without (a raw dataset tar such as Dalle3-1M)
 *   gets this tar and its key in the tar as `source_file`/`source_key`.
 * - `shard_file`/`shard_key`: the tar and member key this job read the row from, always set
 *   (replacing those of an upstream tar-reading job: they name this file's input, not the row's
 *   origin).
 * The json's own `key` is not carried: it is `shard_key`.
 */
export async function* webDatasetSource(unit: Unit, opts: WebDatasetSourceOptions): AsyncGenerator<Sample> {
  let offset = 0;
  for (const inp of unit.inputs) {
    const { store, name } = openInputFile(inp.uri);
    for await (const ws of readWebDataset(await store.getStream(name), { name: inp.uri })) {
      if (!opts.keep_keys && offset >= opts.unit_rows) throw new Error(`input ${inp.uri} holds more than unit_rows=${opts.unit_rows} samples; raise input.unit_rows`);
      let json: Record<string, unknown> = {};
      const fields: Record<string, unknown> = {};
      const s = newSample(opts.keep_keys ? ws.key : sampleKey(unit.id, offset, opts.unit_rows), fields);
      offset++;
      if (ws.files.json) {
        try {
          const parsed = parseSidecarJson(new TextDecoder().decode(ws.files.json));
          if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`a JSON ${Array.isArray(parsed) ? 'array' : parsed === null ? 'null' : typeof parsed}, not an object`);
          json = parsed as Record<string, unknown>;
        } catch (err) {
          s.status = { kind: 'failed', stage: 'source', error: `${inp.uri}: ${ws.key}.json is not valid JSON: ${(err as Error).message}`, code: 'bad_json' };
        }
      }
      const caption = ws.files.txt ? new TextDecoder().decode(ws.files.txt).trim() : opts.caption_field && typeof json[opts.caption_field] === 'string' ? json[opts.caption_field] : null;
      const { key: _ownKey, ...carried } = json;
      Object.assign(fields, { url: json.url ?? null, caption }, carried);
      if (!PROVENANCE_FIELDS.some((f) => json[f] !== undefined && json[f] !== null)) Object.assign(fields, { source_file: inp.uri, source_key: ws.key });
      Object.assign(fields, { shard_file: inp.uri, shard_key: ws.key });
      const ext = IMAGE_EXTS.find((e) => ws.files[e]);
      if (ext) {
        s.image = ws.files[ext];
        s.imageExt = ext;
      } else if (s.status.kind === 'ok') {
        s.status = { kind: 'failed', stage: 'source', error: `${inp.uri}: sample ${ws.key} has no image member (${Object.keys(ws.files).join(', ')})`, code: 'no_image' };
      }
      yield s;
    }
  }
}
