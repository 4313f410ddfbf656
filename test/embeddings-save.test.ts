import { execFileSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateDemoData } from '../pipelines/demo-data.js';
import { startDemoImageServer } from '../pipelines/demo-server.js';
import { FileStore } from '../src/stores/file-store.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { duckRows } from './helpers/duckdb.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * laion-filter `embeddings:` through the CLI: the aesthetic stage's embeddings of the kept images
 * saved per unit in LAION's layout, read back by numpy and DuckDB, and joined back by url as
 * precomputed embeddings in a second run that scores alike.
 */
let dir: string;
let server: Awaited<ReturnType<typeof startDemoImageServer>>;
let base: string;

beforeAll(async () => {
  dir = await tempDir('embeddings-save');
  // The demo's own image host (pipelines/demo-server.ts), serving the generated images by name.
  server = await startDemoImageServer(join(dir, 'data', 'images'));
  base = server.url;
  await generateDemoData(join(dir, 'data'), 20, 3, { urlBase: base });
  await mkdir(join(dir, 'models'));
  await writeFile(join(dir, 'models', 'clip.onnx'), buildClipStandinModel(7));
  await writeAestheticHead(join(dir, 'models', 'head.safetensors'), randomAestheticLayers(7));
}, 60_000);

afterAll(async () => {
  await server?.close();
});

const job = (name: string, aesthetic: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  writeConfig(dir, `${name}.json`, {
    job: 'laion-filter',
    output: join(dir, name),
    input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 8 },
    fetch: { allow_addresses: ['127.0.0.1/32'], retries: 0, respect_robots: false },
    image: { size: 64, min_edge: 32, max_pixels: 50_000_000 },
    aesthetic: { head: join(dir, 'models', 'head.safetensors'), ...aesthetic },
    ...extra,
  });

describe('laion-filter embeddings', () => {
  it('saves the kept images’ embeddings per unit as float16 .npy with a row-aligned key index, which join back by url', async () => {
    const r = await runCli(['run', await job('saved', { clip: { model: { onnx: join(dir, 'models', 'clip.onnx') } } }, { embeddings: {} }), '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    const out = join(dir, 'saved');
    const records = await readAllRecords(new FileStore(out));
    const units = (await readdir(out)).filter((n) => n.endsWith('.img_emb.npy')).map((n) => n.slice(0, -'.img_emb.npy'.length)).sort();
    expect(units.length).toBeGreaterThan(1);
    const pairs = [];
    for (const u of units) {
      const npy = join(out, `${u}.img_emb.npy`);
      const meta = join(out, `${u}.img_emb.parquet`);
      // numpy reads the shape and dtype; DuckDB the index; both agree with the unit's kept rows, in order.
      const [shape, dtype] = JSON.parse(execFileSync('/usr/bin/python3', ['-c', 'import json, sys, numpy as np; a = np.load(sys.argv[1]); print(json.dumps([list(a.shape), str(a.dtype)]))', npy], { encoding: 'utf8' })) as [number[], string];
      const keys = (await duckRows(`SELECT key FROM '${meta}'`)).map((x) => String(x.key));
      const kept = records.filter((x) => x.status === 'ok' && String(x.key).startsWith(u)).map((x) => String(x.key)).sort();
      expect(keys).toEqual(kept);
      expect(shape).toEqual([keys.length, 768]);
      expect(dtype).toBe('float16');
      pairs.push({ embeddings: npy, metadata: meta });
    }

    // A second run with the saved embeddings as precomputed ones (join by url) scores the kept images alike.
    const again = await runCli(['run', await job('joined', { embeddings: { pairs, join: 'url', url_column: 'url' } }), '--progress', 'off']);
    expect(again.code, again.stderr).toBe(0);
    const scored = new Map((await readAllRecords(new FileStore(join(dir, 'joined')))).map((x) => [String(x.key), x]));
    let compared = 0;
    for (const x of records.filter((y) => y.status === 'ok')) {
      const y = scored.get(String(x.key))!;
      expect(y.status).toBe('ok');
      // float16 keeps 3 significant digits of each component.
      expect(Math.abs(Number(y.aesthetic_score) - Number(x.aesthetic_score))).toBeLessThan(0.02);
      compared++;
    }
    expect(compared).toBeGreaterThan(5);

    // retry-failed adds the recovered rows' embeddings after the unit's own: the missing image now exists.
    const missing = records.find((x) => x.status === 'failed' && x.error_code === 'http_404')!;
    expect(missing).toBeDefined();
    const unitRows = async (u: string) => duckRows(`SELECT key, status, error_code FROM '${join(out, `${u}.parquet`)}'`);
    let unit = '';
    for (const u of units) if ((await unitRows(u)).some((x) => x.key === missing.key)) unit = u;
    const npyOf = (u: string) => JSON.parse(execFileSync('/usr/bin/python3', ['-c', 'import json, sys, numpy as np; print(json.dumps(np.load(sys.argv[1]).astype(float).tolist()))', join(out, `${u}.img_emb.npy`)], { encoding: 'utf8' })) as number[][];
    const before = npyOf(unit);
    // A picture of its own (a copy of another would be dropped as a duplicate).
    await sharp({ create: { width: 96, height: 72, channels: 3, background: { r: 20, g: 180, b: 60 } } }).jpeg().toFile(join(dir, 'data', 'images', String(missing.url).split('/').pop()!));
    const retry = await runCli(['retry-failed', out, '--reasons', 'fetch:http_404']);
    expect(retry.code, retry.stderr).toBe(0);
    const after = npyOf(unit);
    const keys = (await duckRows(`SELECT key FROM read_parquet('${join(out, `${unit}.img_emb.parquet`)}', file_row_number = true) ORDER BY file_row_number`)).map((x) => String(x.key));
    const okNow = (await unitRows(unit)).filter((x) => x.status === 'ok').map((x) => String(x.key));
    expect(keys.slice().sort()).toEqual(okNow.sort());
    // Every 404 of the unit (the same missing file, planted more than once) is now ok, its row after the unit's own.
    const recovered = records.filter((x) => x.error_code === 'http_404').map((x) => String(x.key)).filter((k) => okNow.includes(k)).sort();
    expect(recovered).toContain(String(missing.key));
    expect(keys.slice(before.length)).toEqual(recovered);
    expect(after.length).toBe(before.length + recovered.length);
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.at(-1)!.some((v) => v !== 0)).toBe(true);
  });

  it('refuses embeddings without an aesthetic stage', async () => {
    const cfg = await writeConfig(dir, 'no-aesthetic.json', { job: 'laion-filter', output: join(dir, 'x'), input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')] }, embeddings: {} });
    const r = await runCli(['plan', cfg]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/embeddings are the aesthetic stage's/);
  });
});
