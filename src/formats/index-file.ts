import type { Store } from '../stores/store.js';

/**
 * Reads the JSON index a dataset gets once its last unit is done (`index.json`, `mix.json`),
 * refusing another format or a schema newer than this bitprep reads. `what` names the dataset
 * in the message, e.g. "latent dataset".
 */
export async function readIndexFile<T extends { format: unknown; schema_version: number }>(store: Store, name: string, o: { format: string; schemaVersion: number; what: string }): Promise<T> {
  let m: T;
  try {
    m = JSON.parse(new TextDecoder().decode(await store.get(name)));
  } catch (err) {
    throw new Error(`${store.url}: no readable ${name} (is it a finished ${o.what}? \`bitprep summary\` writes it once every unit is done): ${(err as Error).message}`);
  }
  if (m.format !== o.format) throw new Error(`${store.url}/${name}: format ${JSON.stringify(m.format)}, expected ${o.format}`);
  if (m.schema_version > o.schemaVersion) throw new Error(`${store.url}/${name}: schema version ${m.schema_version} is newer than this bitprep reads (${o.schemaVersion})`);
  return m;
}
