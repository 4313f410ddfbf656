import { readWebDataset } from '../../src/formats/tar-read.js';
import { newSample, type Sample } from '../../src/sample.js';
import { openInputFile } from '../../src/stores/input-file.js';
import { openStore } from '../../src/stores/open-store.js';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { unitId, type Unit } from '../../src/units/unit.js';
import { sampleKey } from './sample-key.js';


/** WebDataset tars (`<key>.jpg|jpeg|png|webp`, `<key>.txt`, `<key>.json`), one unit per tar. */
export interface WebDatasetSourceOptions {
  /** Tar files, directories of `*.tar`, or s3:// URLs of tars or prefixes. */
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
    if (p.startsWith('s3://')) {
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

/**
 * Streams a tar's samples; the first image member becomes `image`, `.txt` the caption and `.json`
 * fields are carried. An unsafe member (`../`, absolute, link) stops the unit with an error
 * naming it: a tar that tries to escape is not a sample-level problem.
 */
export async function* webDatasetSource(unit: Unit, opts: WebDatasetSourceOptions): AsyncGenerator<Sample> {
  let offset = 0;
  for (const inp of unit.inputs) {
    const { store, name } = openInputFile(inp.uri);
    for await (const ws of readWebDataset(await store.getStream(name), { name: inp.uri })) {
      if (!opts.keep_keys && offset >= opts.unit_rows) throw new Error(`input ${inp.uri} holds more than unit_rows=${opts.unit_rows} samples; raise input.unit_rows`);
      let json: Record<string, unknown> = {};
      const fields: Record<string, unknown> = { source_key: ws.key, source_file: inp.uri };
      const s = newSample(opts.keep_keys ? ws.key : sampleKey(unit.id, offset, opts.unit_rows), fields);
      offset++;
      if (ws.files.json) {
        try {
          json = JSON.parse(new TextDecoder().decode(ws.files.json));
        } catch (err) {
          s.status = { kind: 'failed', stage: 'source', error: `${inp.uri}: ${ws.key}.json is not valid JSON: ${(err as Error).message}`, code: 'bad_json' };
        }
      }
      const caption = ws.files.txt ? new TextDecoder().decode(ws.files.txt).trim() : opts.caption_field && typeof json[opts.caption_field] === 'string' ? json[opts.caption_field] : null;
      Object.assign(fields, { url: json.url ?? null, caption }, json, { source_key: ws.key, source_file: inp.uri });
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
