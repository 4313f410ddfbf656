import { createWriteStream } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { jobs } from '../pipelines/index.js';
import { ConfigError } from '../src/config/config-error.js';
import { loadConfig, parseOverride, validateConfig } from '../src/config/load-config.js';
import { didYouMean, preflight, PreflightError } from '../src/config/preflight.js';
import { TarWriter } from '../src/formats/tar-write.js';
import type { AnyJob, Job } from '../src/job.js';
import { silentLogger } from '../src/log.js';
import { allowListProblems } from '../src/net/address-policy.js';
import { randomAestheticLayers, writeAestheticHead } from '../stages/aesthetic-head.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { checkColumnFilters, columnFilters, readsOf } from '../stages/column-filters.js';
import { writeNpy } from '../src/formats/npy.js';
import { duckRows } from './helpers/duckdb.js';
import { repoRoot, runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

let dir: string;
/** A LAION-style parquet with the columns the shipped laion-filter config's filters read. */
let laionA: string;
/** The same columns but pwatermark, in a second file. */
let laionNoWatermark: string;
let head: string;
let clipOnnx: string;
let encoderOnnx: string;
let tars: string;
let emptyDir: string;

const laionRows = (n: number, watermark = true) =>
  Array.from({ length: n }, (_, i) => `SELECT 'http://127.0.0.1/${i}.jpg' AS URL, 'caption ${i}' AS TEXT, 640 AS WIDTH, 480 AS HEIGHT, ${watermark ? `${i / 10} AS pwatermark, ` : ''}0.01 AS punsafe, 0.3 AS "similarity"`).join(' UNION ALL ');

async function writeTar(path: string, samples: number): Promise<void> {
  const out = createWriteStream(path);
  const w = new TarWriter({ write: (c) => new Promise<void>((ok, no) => out.write(c, (e) => (e ? no(e) : ok()))) });
  for (let i = 0; i < samples; i++) await w.addSample(`k${i}`, { txt: `caption ${i}`, json: JSON.stringify({ key: `k${i}` }) });
  await w.finish();
  await new Promise<void>((ok) => out.end(ok));
}

beforeAll(async () => {
  dir = await tempDir('preflight');
  await mkdir(join(dir, 'laion'), { recursive: true });
  laionA = join(dir, 'laion', 'part-00000.parquet');
  laionNoWatermark = join(dir, 'part-nowm.parquet');
  await duckRows(`COPY (${laionRows(3)}) TO '${laionA}' (FORMAT parquet)`);
  await duckRows(`COPY (${laionRows(2, false)}) TO '${laionNoWatermark}' (FORMAT parquet)`);
  head = join(dir, 'head.safetensors');
  await writeAestheticHead(head, randomAestheticLayers(1));
  clipOnnx = join(dir, 'clip.onnx');
  await writeFile(clipOnnx, buildClipStandinModel(1));
  encoderOnnx = join(dir, 'encoder.onnx');
  await writeFile(encoderOnnx, buildBitEncoderStandin(1, 32).onnx);
  tars = join(dir, 'tars');
  await mkdir(tars);
  await writeTar(join(tars, '00000.tar'), 2);
  emptyDir = join(dir, 'empty');
  await mkdir(emptyDir);
});

/** Validates a config object as `bitprep plan` does, then runs the preflight on it. */
async function preflightOf(cfg: Record<string, unknown>): Promise<{ units: unknown[] }> {
  const { job, config } = validateConfig(cfg, 'test.json', jobs);
  return preflight(job, config, silentLogger, 'test.json');
}

async function problemsOf(cfg: Record<string, unknown>): Promise<readonly string[]> {
  const err = await preflightOf(cfg).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PreflightError);
  return (err as PreflightError).problems;
}

const laionConfig = (over: Record<string, unknown> = {}) => ({
  job: 'laion-filter',
  output: join(dir, 'out-laion'),
  input: { kind: 'parquet', paths: [laionA] },
  filters: [
    { name: 'watermark', keep: 'pwatermark < 0.8' },
    { name: 'nsfw', keep: 'punsafe < 0.5' },
  ],
  fetch: { allow_addresses: ['127.0.0.1/32'] },
  aesthetic: { head, clip: { model: { onnx: clipOnnx } }, min_score: 5 },
  ...over,
});

describe('preflight: laion-filter', () => {
  it('lists five mistakes at once, with a "did you mean" for the typo, and plans nothing', async () => {
    const missing = join(dir, 'laion', 'part-00001.parquet');
    const missingClip = join(dir, 'models', 'clip-vit-l14.onnx');
    const cfg = laionConfig({
      input: { kind: 'parquet', paths: [laionA, missing] },
      filters: [
        { name: 'watermark', keep: 'pwatermak < 0.8' },
        { name: 'nsfw', keep: 'punsafe <' },
      ],
      fetch: { allow_addresses: ['127.0.0.1/33'] },
      aesthetic: { head, clip: { model: { onnx: missingClip } }, min_score: 5 },
    });
    const err = await preflightOf(cfg).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PreflightError);
    // A ConfigError: the CLI prints it without a stack and exits 2.
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as PreflightError;
    expect(e.problems).toHaveLength(5);
    expect(e.message.split('\n')[0]).toBe('config test.json: 5 problems:');
    expect(e.message.split('\n').slice(1)).toEqual(e.problems.map((p) => `  ${p}`));
    expect(e.problems).toEqual([
      `input.paths[1]: ${missing} does not exist`,
      `filters[0] "watermark": column pwatermak is not in ${laionA} (did you mean pwatermark?)`,
      expect.stringMatching(/^filters\[1\] "nsfw": cannot compile "punsafe <": parse error at character 10: expecting .*got 'EndOfExpression'$/),
      expect.stringMatching(/^fetch\.allow_addresses\[0\]: invalid address or CIDR range "127\.0\.0\.1\/33": prefix length \/33 is out of range for an IPv4 address/),
      `aesthetic.clip.model.onnx: ${missingClip} does not exist`,
    ]);
    for (const p of e.problems) expect(p).not.toContain('\n');
    // Nothing was planned or written: a run calls preflight before its executor touches the output.
    await expect(readdir(cfg.output as string)).rejects.toThrow(/ENOENT/);

    // The same through the CLI, as a user meets it: `plan` lists all five and exits 2; `run` too, before any work.
    const path = await writeConfig(dir, 'five-mistakes.json', cfg);
    for (const command of ['plan', 'run']) {
      const r = await runCli([command, path, ...(command === 'run' ? ['--progress', 'off'] : [])]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`config ${path}: 5 problems:`);
      expect(r.stderr).toContain('did you mean pwatermark?');
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    await expect(readdir(cfg.output as string)).rejects.toThrow(/ENOENT/);
  });

  it('passes the same config once it is fixed, checking the ONNX tower against the head, and returns the units', async () => {
    const { units } = await preflightOf(laionConfig());
    expect(units).toEqual([{ id: expect.any(String), inputs: [{ uri: laionA, rowStart: 0, rowEnd: 3 }] }]);
  });

  it('loads a small ONNX model at plan time and reports a broken contract by key and file', async () => {
    const problems = await problemsOf(laionConfig({ aesthetic: { head, clip: { model: { onnx: encoderOnnx } } } }));
    expect(problems).toEqual([expect.stringMatching(new RegExp(`^aesthetic\\.clip\\.model\\.onnx ${encoderOnnx.replace(/[.\\/]/g, '\\$&')}: model .*no input "pixel_values"`))]);
    const notOnnx = join(dir, 'not-a-model.onnx');
    await writeFile(notOnnx, 'hello');
    expect(await problemsOf(laionConfig({ aesthetic: { head, clip: { model: { onnx: notOnnx } } } }))).toEqual([expect.stringMatching(/^aesthetic\.clip\.model\.onnx: model not-a-model: cannot load/)]);
    const detector = join(dir, 'models', 'ppocr-det.onnx');
    expect(await problemsOf(laionConfig({ aesthetic: undefined, ocr: { backend: 'detector', detector: { model: { onnx: detector } } } }))).toEqual([`ocr.detector.model.onnx: ${detector} does not exist`]);
    // A KServe endpoint is not contacted at plan time (nothing listens on this port).
    await expect(preflightOf(laionConfig({ aesthetic: { head, clip: { model: { kserve: ['http://127.0.0.1:9'], model: 'clip' } } } }))).resolves.toBeDefined();
  });

  it('checks every input file for every column, names the files lacking it, and knows the source\'s own fields', async () => {
    const problems = await problemsOf(
      laionConfig({
        input: { kind: 'parquet', paths: [laionA, laionNoWatermark], url_column: 'url' },
        filters: [
          { name: 'watermark', keep: 'pwatermark < 0.8', on_missing: 'keep' },
          { name: 'case', keep: 'PUNSAFE < 0.5' },
          { name: 'stock', keep: 'not (TEXT ~= "(?i)stock photo")' },
          { name: 'own', keep: 'source_row >= 0 and caption != "" and url != "x" and \'similarity\' > 0.1' },
          { name: 'mystery', keep: 'if zzz_qq > 1 then true else false' },
        ],
        aesthetic: undefined,
      }),
    );
    const files = `any of the 2 input files (${laionA}, ${laionNoWatermark})`;
    expect(problems).toEqual([
      `input.url_column: column url is not in ${files} (did you mean URL?)`,
      `filters[0] "watermark": column pwatermark is not in ${laionNoWatermark} (columns: URL, TEXT, WIDTH, HEIGHT, punsafe, similarity)`,
      `filters[1] "case": column PUNSAFE is not in ${files} (did you mean punsafe?)`,
      'filters[2] "stock": column TEXT is input.caption_column, which filters read as caption (write caption in the expression)',
      `filters[4] "mystery": column zzz_qq is not in ${files} (columns: URL, TEXT, WIDTH, HEIGHT, pwatermark, punsafe, similarity)`,
    ]);
  });

  it('names an input directory without table files and an unreadable footer', async () => {
    const junk = join(dir, 'junk.parquet');
    await writeFile(junk, 'not parquet at all');
    const problems = await problemsOf(laionConfig({ input: { kind: 'parquet', paths: [emptyDir, junk] }, aesthetic: undefined }));
    expect(problems).toEqual([`input.paths[0]: directory ${emptyDir} holds no .parquet, .csv, .tsv, .jsonl, .ndjson, .csv.gz, .tsv.gz, .jsonl.gz, .ndjson.gz files`, expect.stringMatching(new RegExp(`^input\\.paths: cannot read the Parquet footer of ${junk.replace(/[.\\/]/g, '\\$&')}: `))]);
  });

  it('checks precomputed embedding pairs: files exist, and join row covers every input file', async () => {
    const npy = join(dir, 'img_emb_0000.npy');
    await writeNpy(npy, new Float32Array(3 * 768), [3, 768]);
    const problems = await problemsOf(
      laionConfig({
        aesthetic: { head, embeddings: { pairs: [{ embeddings: npy, metadata: laionNoWatermark }, { embeddings: join(dir, 'img_emb_0001.npy'), metadata: laionA }], join: 'row' } },
      }),
    );
    expect(problems).toEqual([
      `aesthetic.embeddings.pairs[0]: ${npy} has 3 rows but ${laionNoWatermark} has 2; they must be row-aligned`,
      `aesthetic.embeddings.pairs[1].embeddings: ${join(dir, 'img_emb_0001.npy')} does not exist`,
    ]);
    const url = await problemsOf(laionConfig({ aesthetic: { head, embeddings: { pairs: [{ embeddings: npy, metadata: laionA }], join: 'url' } } }));
    expect(url).toEqual([`aesthetic.embeddings.url_column: column url is not in ${laionA} (did you mean URL?)`]);
    const unpaired = await problemsOf(laionConfig({ input: { kind: 'parquet', paths: [laionA, laionNoWatermark] }, filters: [], aesthetic: { head, embeddings: { pairs: [{ embeddings: npy, metadata: laionA }], join: 'row' } } }));
    expect(unpaired).toEqual([`aesthetic.embeddings.pairs: join row needs a pair whose metadata is each input file, and ${laionNoWatermark} has none; every row of it would fail no_embedding`]);
  });
});

describe('preflight: missing inputs are problems, not phantom units', () => {
  const cases: [string, (paths: string[]) => Record<string, unknown>][] = [
    ['pre-encode', (paths) => ({ job: 'pre-encode', output: join(dir, 'out-pre'), input: { paths }, source: 'laion', encoder: { model: { onnx: encoderOnnx }, size: 32 } })],
    ['recaption', (paths) => ({ job: 'recaption', output: join(dir, 'out-recaption'), input: { paths }, server: { base_url: 'http://127.0.0.1:9/v1' } })],
    ['dalle-ingest', (paths) => ({ job: 'dalle-ingest', output: join(dir, 'out-dalle'), input: { paths } })],
  ];
  for (const [name, config] of cases) {
    it(`${name}: a missing input path and a folder without tars are named; no _plan.json is written`, async () => {
      const missing = join(dir, 'no-such-shards');
      const cfg = config([tars, missing, emptyDir]);
      expect(await problemsOf(cfg)).toEqual([`input.paths[1]: ${missing} does not exist`, `input.paths[2]: directory ${emptyDir} holds no .tar files`]);
      await expect(readdir(cfg.output as string)).rejects.toThrow(/ENOENT/);
      // Through the CLI, `run` refuses before touching the output (no phantom unit pinned in _plan.json).
      const r = await runCli(['run', await writeConfig(dir, `${name}-missing.json`, config([tars, missing])), '--progress', 'off']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${missing} does not exist`);
      await expect(readdir(cfg.output as string)).rejects.toThrow(/ENOENT/);
      // The existing tars alone plan one unit per tar.
      const { units } = await preflightOf(config([tars]));
      expect(units).toEqual([{ id: expect.any(String), inputs: [{ uri: join(tars, '00000.tar') }] }]);
    });
  }

  it('pre-encode: the encoder must honour the BIT encoder contract (each mismatch a line) and the tokenizer must exist', async () => {
    const cfg = (over: Record<string, unknown>) => ({ job: 'pre-encode', output: join(dir, 'out-pre'), input: { paths: [tars] }, source: 'laion', encoder: { model: { onnx: clipOnnx }, size: 32 }, ...over });
    const problems = await problemsOf(cfg({ text_tokens: { tokenizer: join(dir, 'tokenizer.json') } }));
    expect(problems.length).toBeGreaterThanOrEqual(3);
    expect(problems.slice(0, -1).every((p) => p.startsWith(`encoder.model.onnx ${clipOnnx}: BIT encoder contract: `))).toBe(true);
    expect(problems).toContain(`encoder.model.onnx ${clipOnnx}: BIT encoder contract: input name: expected "image", found "pixel_values" (re-export with tools/export_bit_encoder.py)`);
    expect(problems.at(-1)).toBe(`text_tokens.tokenizer: ${join(dir, 'tokenizer.json')} does not exist`);
  });
});

describe('preflight: other jobs', () => {
  it('diffusiondb-synth: the prompt column, and the NSFW column only while its filter is on', async () => {
    const cfg = (prompts: Record<string, unknown>) => ({
      job: 'diffusiondb-synth',
      output: join(dir, 'out-ddb'),
      input: { paths: [laionA], prompt_column: 'TXT', nsfw_column: 'punsafe_' },
      prompts,
      models: [{ name: 'flux', preset: 'flux-schnell', endpoints: ['http://127.0.0.1:9/v1'] }],
    });
    expect(await problemsOf(cfg({}))).toEqual([
      `input.prompt_column: column TXT is not in ${laionA} (did you mean TEXT?)`,
      `input.nsfw_column: column punsafe_ is not in ${laionA} (did you mean punsafe?); or set prompts.max_prompt_nsfw: null to filter nothing`,
    ]);
    expect(await problemsOf(cfg({ max_prompt_nsfw: null }))).toEqual([`input.prompt_column: column TXT is not in ${laionA} (did you mean TEXT?)`]);
  });

  it('training-mix: every set path is a finished latent dataset', async () => {
    const problems = await problemsOf({ job: 'training-mix', output: join(dir, 'out-mix'), sets: [{ name: 'a', paths: [join(dir, 'no-latents')], weight: 1 }, { name: 'b', paths: [emptyDir], weight: 1 }] });
    expect(problems).toEqual([`sets[0].paths[0]: ${join(dir, 'no-latents')} does not exist`, expect.stringMatching(/^sets\[1\]\.paths\[0\]: .*no readable index\.json/)]);
    // Planning never ran: it would have written the mix's selection into the output.
    await expect(readdir(join(dir, 'out-mix'))).rejects.toThrow(/ENOENT/);
  });

  it('recaption: a cache-only run needs its cache', async () => {
    const out = join(dir, 'out-recaption-cache');
    expect(await problemsOf({ job: 'recaption', output: out, input: { paths: [tars] }, server: { base_url: 'http://127.0.0.1:9/v1' }, captions_from: 'cache' })).toEqual([
      `cache (default <output>/caption-cache): ${join(out, 'caption-cache')} does not exist, and captions_from: cache reads every caption from it (run bitprep recaption import first)`,
    ]);
  });

  it('image-shards: a folder input must hold an image', async () => {
    expect(await problemsOf({ job: 'image-shards', output: join(dir, 'out-img'), input: { kind: 'folder', path: emptyDir } })).toEqual([
      `input.path: folder ${emptyDir} holds no file with extension jpg, jpeg, png, webp, gif, tif, tiff, avif, bmp (input.extensions)`,
    ]);
  });
});

describe('preflight(): how problems are gathered', () => {
  const fakeJob = (over: Partial<Job>): { job: AnyJob; planned: () => number } => {
    let planned = 0;
    const job: AnyJob = {
      name: 'fake',
      description: 'test job',
      schema: undefined as never,
      async plan() {
        planned++;
        return [{ id: '0', inputs: [] }];
      },
      open: () => ({
        run: async () => {
          throw new Error('not run');
        },
        close: async () => {},
      }),
      ...over,
    };
    return { job, planned: () => planned };
  };
  const cfg = { job: 'fake', output: '/tmp/x', parallel_units: 1 };

  it('a plan that throws is one problem; plan is skipped while check finds problems; lines are folded and deduplicated', async () => {
    const noCheck = fakeJob({ plan: async () => Promise.reject(new Error('input x:\n  is gone')) });
    await expect(preflight(noCheck.job, cfg, silentLogger, 'c.yaml')).rejects.toThrow(/^config c\.yaml: 1 problem:\n {2}input x: is gone$/);

    const checked = fakeJob({ check: async () => ['a: one', 'a: one', 'b:\ntwo'] });
    const err = (await preflight(checked.job, cfg, silentLogger).catch((e: unknown) => e)) as PreflightError;
    expect(err.problems).toEqual(['a: one', 'b: two']);
    expect(err.message.split('\n')[0]).toBe('config fake: 2 problems:');
    expect(checked.planned()).toBe(0);

    const throwing = fakeJob({ check: async () => Promise.reject(new Error('boom')) });
    await expect(preflight(throwing.job, cfg, silentLogger)).rejects.toThrow(/fake check failed: boom/);

    const fine = fakeJob({ check: async () => [] });
    await expect(preflight(fine.job, cfg, silentLogger)).resolves.toEqual({ units: [{ id: '0', inputs: [] }] });
    expect(fine.planned()).toBe(1);
  });
});

describe('filter expressions at plan time', () => {
  it('finds the columns an expression reads: not strings, functions, keywords, constants or `of` properties', () => {
    expect(readsOf('pwatermark < 0.8 and not (TEXT ~= "(?i)stock photo and cheap")')).toEqual({ columns: ['pwatermark', 'TEXT'], functions: [] });
    expect(readsOf("'my-col' > 1 or max(WIDTH, HEIGHT) / min(WIDTH, HEIGHT) <= 3")).toEqual({ columns: ['my-col', 'WIDTH', 'HEIGHT'], functions: ['max', 'min'] });
    expect(readsOf('if flag == true then a mod 2 else b in ("x", "y")')).toEqual({ columns: ['flag', 'a', 'b'], functions: [] });
    expect(readsOf("width of size > 3 and 'true' == false and android > 1 and order_id not in (1, 2)")).toEqual({ columns: ['size', 'true', 'android', 'order_id'], functions: [] });
  });

  it('reports each bad filter on its own line: syntax, regex and unknown functions', () => {
    const r = checkColumnFilters([
      { name: 'ok', keep: 'a < 1' },
      { name: 'syntax', keep: 'a < < 1' },
      { name: 'regex', keep: 'TEXT ~= "(unclosed"' },
      { name: 'fn', keep: 'sqr(a) > 2' },
      { name: 'lexer', keep: 'a == "unterminated' },
    ]);
    expect(r.flatMap((f) => (f.problem ? [f.problem] : []))).toEqual([
      'filters[1] "syntax": cannot compile "a < < 1": parse error at character 5: expecting \'-\', \'not\', \'if\', \'(\', \'Number\', \'Symbol\', \'String\', got \'<\'',
      expect.stringMatching(/^filters\[2\] "regex": cannot compile "TEXT ~= \\"\(unclosed\\"": Invalid regular expression/),
      'filters[3] "fn": cannot compile "sqr(a) > 2": unknown function sqr() (did you mean sqrt?)',
      'filters[4] "lexer": cannot compile "a == \\"unterminated": lexical error: unrecognized text at character 6',
    ]);
    expect(r[0]).toEqual({ label: 'filters[0] "ok"', columns: ['a'] });
    // The stage refuses an unknown function when it is made, not on every row.
    expect(() => columnFilters([{ name: 'fn', keep: 'lenght(TEXT) > 2' }])).toThrow(/filter "fn": cannot compile .*unknown function lenght\(\)/);
  });
});

describe('address ranges and suggestions', () => {
  it('names every bad allow_addresses entry and why', () => {
    expect(allowListProblems(['127.0.0.1/32', '::1', '10.0.0.0/8', 'localhost', '10.0.0.256', '192.168.0.0/33', 'fe80::/129', '10.0.0.0/x', '1.2.3.4/8/9', '::ffff:10.0.0.0/104'], 'fetch.allow_addresses')).toEqual([
      'fetch.allow_addresses[3]: invalid address or CIDR range "localhost": "localhost" is a host name, not an address (give its address, e.g. 127.0.0.1/32 or ::1/128)',
      'fetch.allow_addresses[4]: invalid address or CIDR range "10.0.0.256": "10.0.0.256" is not an IPv4 or IPv6 address',
      'fetch.allow_addresses[5]: invalid address or CIDR range "192.168.0.0/33": prefix length /33 is out of range for an IPv4 address (0–32)',
      'fetch.allow_addresses[6]: invalid address or CIDR range "fe80::/129": prefix length /129 is out of range for an IPv6 address (0–128)',
      'fetch.allow_addresses[7]: invalid address or CIDR range "10.0.0.0/x": prefix length "x" is not a whole number',
      'fetch.allow_addresses[8]: invalid address or CIDR range "1.2.3.4/8/9": more than one "/"',
    ]);
  });

  it('suggests by case first, then by edit distance within a budget', () => {
    expect(didYouMean('pwatermak', ['URL', 'pwatermark', 'punsafe'])).toBe('pwatermark');
    expect(didYouMean('WIDHT', ['WIDTH', 'HEIGHT'])).toBe('WIDTH');
    expect(didYouMean('text', ['TEXT', 'next'])).toBe('TEXT');
    expect(didYouMean('zzz_qq', ['URL', 'TEXT'])).toBeUndefined();
    expect(didYouMean('ab', ['ac'])).toBeUndefined();
  });
});

describe('null unsets an optional key', () => {
  const shipped = join(repoRoot, 'configs', 'laion-filter.yaml');

  it('--set aesthetic=null makes the shipped laion-filter config download-only (ocr=null too)', async () => {
    const { config } = await loadConfig(shipped, jobs, [parseOverride('aesthetic=null')]);
    expect(config.aesthetic).toBeUndefined();
    expect(config.ocr).toBeDefined();
    const both = await loadConfig(shipped, jobs, [parseOverride('aesthetic=null'), parseOverride('ocr=null'), parseOverride('image=')]);
    expect(both.config.aesthetic).toBeUndefined();
    expect(both.config.ocr).toBeUndefined();
    // A defaulted section given null takes its default.
    expect(both.config.image).toMatchObject({ size: 512, mode: 'centre_crop' });
  });

  it('YAML `aesthetic: null` (or an empty value) in the file is accepted the same way', async () => {
    const p = join(dir, 'nulls.yaml');
    await writeFile(p, `job: laion-filter\noutput: ./o\ninput: { kind: parquet, paths: [./x] }\naesthetic: null\nocr:\nfetch: { retries: null }\n`);
    const { config } = await loadConfig(p, jobs);
    expect(config.aesthetic).toBeUndefined();
    expect(config.ocr).toBeUndefined();
    expect(config.fetch).toEqual({});
  });

  it('keeps null where the schema means something by it, and still refuses it for a required key', async () => {
    const ddb = { job: 'diffusiondb-synth', output: './o', input: { paths: ['./x'] }, models: [{ name: 'm', preset: 'flux-schnell', endpoints: ['http://127.0.0.1:9/v1'] }] };
    const { config } = validateConfig(ddb, 't', jobs, [parseOverride('prompts.max_prompt_nsfw=null'), parseOverride('models.0.steps_field=null')]);
    expect(config.prompts).toMatchObject({ max_prompt_nsfw: null });
    expect((config.models as { steps_field: unknown }[])[0].steps_field).toBeNull();
    expect(() => validateConfig(ddb, 't', jobs, [parseOverride('output=null')])).toThrow(/output: .*null/);
    // Unsetting a key under a section the config lacks leaves the section out.
    expect(validateConfig(laionConfig({ aesthetic: undefined }), 't', jobs, [parseOverride('aesthetic.clip=null')]).config.aesthetic).toBeUndefined();
    // A misspelt key is still an unknown key, null or not.
    expect(() => validateConfig(laionConfig(), 't', jobs, [parseOverride('aestetic=null')])).toThrow(/aestetic/);
  });

  it('through the CLI: `plan configs/laion-filter.yaml --set aesthetic=null` plans a download-only run', async () => {
    const out = join(dir, 'out-cli');
    const r = await runCli(['plan', shipped, '--set', 'aesthetic=null', '--set', `input.paths=[${join(dir, 'laion')}]`, '--output', out]);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`laion-filter: 1 unit(s) → ${out}`);
  });

  it('through the CLI: a config with problems exits 2 naming them, without a stack trace', async () => {
    const missing = join(dir, 'gone.parquet');
    const p = await writeConfig(dir, 'bad.json', laionConfig({ input: { kind: 'parquet', paths: [missing] } }));
    const r = await runCli(['plan', p]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toMatch(/does not exist/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
