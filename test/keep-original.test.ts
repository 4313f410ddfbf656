import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { FileStore } from '../src/stores/file-store.js';
import { duckRows } from './helpers/duckdb.js';
import { readAllRecords, readAllTarMembers } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * image.keep_original through the CLI: the downloaded bytes stored unchanged beside the resized
 * image, or instead of it; and a `sha256` column (DataComp's) verified against them.
 */
let dir: string;
let table: string;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await tempDir('keep-original');
  await generateDemoData(join(dir, 'data'), 12);
  // The demo's rows with a sha256 column of each file's bytes (DuckDB writes the table); one row's hash is wrong.
  const rows = await duckRows(`SELECT URL, TEXT FROM read_parquet('${join(dir, 'data', 'laion')}/*.parquet') ORDER BY URL`);
  const hashes: string[] = [];
  for (const [i, r] of rows.entries()) {
    const bytes = await readFile(join(dir, 'data', 'laion', String(r.URL))).catch(() => undefined);
    hashes.push(bytes ? (i === 2 ? sha(Buffer.from('not these bytes')) : sha(bytes)) : '');
  }
  await writeFile(join(dir, 'hashes.csv'), 'URL,sha256\n' + rows.map((r, i) => `${r.URL},${hashes[i]}`).join('\n') + '\n');
  table = join(dir, 'data', 'laion', 'with-sha.parquet');
  await duckRows(`COPY (SELECT p.URL, p.TEXT, NULLIF(h.sha256, '') AS sha256 FROM read_parquet('${join(dir, 'data', 'laion')}/*.parquet') p JOIN read_csv('${join(dir, 'hashes.csv')}', all_varchar = true) h USING (URL) ORDER BY URL) TO '${table}' (FORMAT PARQUET)`);
}, 60_000);

async function run(name: string, image: Record<string, unknown>) {
  const cfg = await writeConfig(dir, `${name}.json`, { job: 'image-shards', output: join(dir, name), input: { kind: 'parquet', paths: [table], unit_rows: 100 }, image: { size: 64, max_pixels: 50_000_000, ...image } });
  const r = await runCli(['run', cfg, '--progress', 'off']);
  expect(r.code, r.stderr).toBe(0);
  const store = new FileStore(join(dir, name));
  return { records: await readAllRecords(store), members: await readAllTarMembers(store) };
}

describe('image.keep_original', () => {
  it('true: the original bytes beside the resized image, byte for byte; a wrong sha256 fails the row', async () => {
    const { records, members } = await run('beside', { keep_original: true });
    const ok = records.filter((r) => r.status === 'ok');
    expect(ok.length).toBeGreaterThan(5);
    for (const r of ok) {
      const original = members.get(`${String(r.key)}.original.${r.original_format === 'jpeg' ? 'jpg' : String(r.original_format)}`);
      expect(original, String(r.key)).toBeDefined();
      expect(sha(original!)).toBe(r.original_sha256);
      const file = new Uint8Array(await readFile(join(dir, 'data', 'laion', String(r.url))));
      expect(sha(original!), `${String(r.url)} ${String(r.sha256)} ${sha(file)}`).toBe(sha(file));
      expect(members.get(`${String(r.key)}.jpg`)).toBeDefined();
    }
    const bad = records.find((r) => r.error_code === 'hash_mismatch');
    expect(bad).toMatchObject({ status: 'failed', failed_stage: 'decode-resize' });
    expect(String(bad!.error)).toMatch(/is not the sha256 column's/);
  });

  it("only: the original bytes instead of a re-encoded image, with the original's size", async () => {
    const { records, members } = await run('only', { keep_original: 'only' });
    const ok = records.filter((r) => r.status === 'ok');
    expect(ok.length).toBeGreaterThan(5);
    for (const r of ok) {
      const ext = r.original_format === 'jpeg' ? 'jpg' : String(r.original_format);
      const bytes = members.get(`${String(r.key)}.${ext}`)!;
      expect(sha(bytes)).toBe(r.original_sha256);
      expect([r.width, r.height]).toEqual([r.original_width, r.original_height]);
      expect([...members.keys()].filter((k) => k.startsWith(`${String(r.key)}.original.`))).toEqual([]);
    }
  });
});
