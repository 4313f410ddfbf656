import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readdir, readFile, stat, truncate, writeFile, mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitCommandLine, parseCommandTemplate, fillTemplate } from '../evaluation/generate/command-template.js';
import { generateCommand } from '../evaluation/generate/generate-command.js';
import { generateImages, type GenerateOptions } from '../evaluation/generate/generate.js';
import { imageSeed } from '../evaluation/generate/plan.js';
import { readImageFolder, readManifest } from '../evaluation/images/image-folder.js';
import { drawImage, ImageGenServer } from './helpers/image-gen-server.js';
import { tempDir } from './helpers/temp-dir.js';

const SIZE = 32;
const PARAMS = { guidance_scale: 4.5, steps: 20, sampler: 'dpm' };
const FAST_RETRY = { retries: 2, minDelayMs: 1, maxDelayMs: 5 };
const FLAKY = 'a flaky red bicycle';
const BROKEN = 'a prompt the server always fails';

const GENEVAL_LINES = [
  '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
  '{"tag": "two_object", "include": [{"class": "toilet", "count": 1}, {"class": "knife", "count": 1}], "prompt": "a photo of a toilet and a knife"}',
  '{"tag": "counting", "include": [{"class": "cake", "count": 3}], "exclude": [{"class": "cake", "count": 4}], "prompt": "a photo of three cakes"}',
  // Compact and with a float: a re-serialised line would differ from the original bytes.
  '{"tag":"position","include":[{"class":"dog","count":1},{"class":"cat","count":1,"position":["left of",0]}],"prompt":"a photo of a cat left of a dog","w":1.50}',
];

/** Every file under `dir` (relative path → bytes). */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), await readFile(p));
    }
  };
  await walk(dir);
  return out;
}

const python = (script: string, input: string): string => execFileSync('/usr/bin/python3', ['-c', script], { input }).toString();

describe('eval generate: endpoint backend', () => {
  let dir: string;
  let server: ImageGenServer;
  let base: Omit<GenerateOptions, 'out' | 'promptSet' | 'promptFile'>;

  beforeAll(async () => {
    dir = await tempDir('eval-gen');
    server = await ImageGenServer.start({
      model: 'gen-test',
      size: `${SIZE}x${SIZE}`,
      expect: PARAMS,
      latencyMs: 5,
      faults: { [FLAKY]: [{ kind: 'status', status: 500 }], [BROKEN]: Array.from({ length: 3 }, () => ({ kind: 'status' as const, status: 503 })) },
    });
    base = { width: SIZE, height: SIZE, seedBase: 7, params: PARAMS, backend: { kind: 'endpoint', endpoint: server.url, model: 'gen-test', concurrency: 3, retry: FAST_RETRY } };
  });
  afterAll(async () => server?.close());

  it('writes GenEval layout: metadata lines byte-for-byte, 4 samples per prompt, readable by readImageFolder and json.load', async () => {
    const meta = join(dir, 'evaluation_metadata.jsonl');
    await writeFile(meta, GENEVAL_LINES.join('\n') + '\n');
    const out = join(dir, 'geneval');
    const s = await generateImages({ ...base, out, promptSet: 'geneval', promptFile: meta });
    expect(s).toMatchObject({ layout: 'geneval', prompts: 4, images: 16, written: 16, skipped: 0, failed: 0 });
    for (const [i, line] of GENEVAL_LINES.entries()) {
      const folder = join(out, String(i).padStart(5, '0'));
      expect(await readFile(join(folder, 'metadata.jsonl'), 'utf8')).toBe(line);
      expect((await readdir(join(folder, 'samples'))).sort()).toEqual(['0000.png', '0001.png', '0002.png', '0003.png']);
    }
    // GenEval reads each folder's metadata with json.load: it must give the original line's object.
    const same = python('import json,sys\nd=sys.argv[-1]\nls=sys.stdin.read().split("\\n")\nprint(all(json.load(open("%s/%05d/metadata.jsonl"%(d,i)))==json.loads(l) for i,l in enumerate(ls)))'.replace('sys.argv[-1]', JSON.stringify(out)), GENEVAL_LINES.join('\n'));
    expect(same.trim()).toBe('True');
    const folder = await readImageFolder(out);
    expect(folder.kind).toBe('geneval');
    expect(folder.images.map((i) => i.rel)).toEqual(GENEVAL_LINES.flatMap((_, p) => [0, 1, 2, 3].map((j) => `${String(p).padStart(5, '0')}/samples/000${j}.png`)));
    expect(folder.images[4].prompt).toBe('a photo of a toilet and a knife');
    // Seeds: the documented rule, recorded per image, sent to the server, and the pixels the server drew for them.
    const records = await readManifest(join(out, 'samples.jsonl'));
    expect(records).toHaveLength(16);
    for (const r of records) {
      expect(r.seed).toBe(imageSeed(7, String(r.prompt_index).padStart(5, '0'), r.sample_index));
      expect(await readFile(join(out, r.file))).toEqual(await drawImage(r.prompt, r.seed!, SIZE, SIZE));
    }
    expect(new Set(records.map((r) => r.seed)).size).toBe(16);
    const gen = JSON.parse(await readFile(join(out, 'generation.json'), 'utf8'));
    expect(gen).toMatchObject({ prompt_set: 'geneval', images_per_prompt: 4, size: '32x32', seed_base: 7, params: PARAMS, backend: { kind: 'endpoint', endpoint: server.url, model: 'gen-test' } });
    expect(gen.prompt_file_sha256).toBe(python('import hashlib,sys\nprint(hashlib.sha256(open(sys.stdin.read(),"rb").read()).hexdigest())', meta).trim());
    expect(server.violations).toEqual([]);
  });

  it('seed rule matches an independent Python implementation', () => {
    const got = python('import hashlib\nfor b,i,j in [(0,"0",0),(7,"00012",3),(123456,"391895",9)]:\n  print(int.from_bytes(hashlib.sha256(f"{b}:{i}:{j}".encode()).digest()[:4],"big")>>1)', '');
    expect(got.trim().split('\n').map(Number)).toEqual([imageSeed(0, '0', 0), imageSeed(7, '00012', 3), imageSeed(123456, '391895', 9)]);
  });

  it('flat layout: manifest readable by readImageFolder, params reach the server, seeds stable when prompts are appended', async () => {
    const file = join(dir, 'prompts.txt');
    await writeFile(file, 'a red cube\na blue sphere on grass\na green cone\n');
    const a = join(dir, 'flat-a');
    const s = await generateImages({ ...base, out: a, promptSet: 'lines', promptFile: file, imagesPerPrompt: 2 });
    expect(s).toMatchObject({ layout: 'flat', images: 6, written: 6, failed: 0 });
    const folder = await readImageFolder(a);
    expect(folder.kind).toBe('manifest');
    expect(folder.images.map((i) => [i.rel, i.prompt, i.promptIndex])).toEqual([
      ['images/0_0000.png', 'a red cube', 0],
      ['images/0_0001.png', 'a red cube', 0],
      ['images/1_0000.png', 'a blue sphere on grass', 1],
      ['images/1_0001.png', 'a blue sphere on grass', 1],
      ['images/2_0000.png', 'a green cone', 2],
      ['images/2_0001.png', 'a green cone', 2],
    ]);
    const manifest = await readManifest(join(a, 'manifest.jsonl'));
    expect(manifest[3]).toMatchObject({ seed: imageSeed(7, '1', 1), params: PARAMS, prompt_id: '1', size: '32x32' });
    expect(server.violations).toEqual([]);

    const longer = join(dir, 'prompts-longer.txt');
    await writeFile(longer, 'a red cube\na blue sphere on grass\na green cone\na yellow star\na purple ring\n');
    const b = join(dir, 'flat-b');
    await generateImages({ ...base, out: b, promptSet: 'lines', promptFile: longer, imagesPerPrompt: 2 });
    const manifestB = await readManifest(join(b, 'manifest.jsonl'));
    expect(manifestB).toHaveLength(10);
    expect(manifestB.slice(0, 6).map((e) => [e.file, e.seed])).toEqual(manifest.map((e) => [e.file, e.seed]));
    for (const e of manifest) expect(await readFile(join(b, e.file))).toEqual(await readFile(join(a, e.file)));
    // A resumed run must make the same pixels: other settings in the same folder are refused.
    await expect(generateImages({ ...base, out: a, promptSet: 'lines', promptFile: file, imagesPerPrompt: 2, seedBase: 8 })).rejects.toThrow(/seed_base: was 7, now 8/);
  });

  it('ImageReward ids and COCO image ids name the files; captions.txt pairs with the images in natural order', async () => {
    const ir = join(dir, 'benchmark-prompts.json');
    await writeFile(ir, JSON.stringify([{ id: '000864', prompt: 'a castle at dusk' }, { id: '001017', prompt: 'an owl reading' }], null, 2));
    const irOut = join(dir, 'imagereward');
    expect(await generateImages({ ...base, out: irOut, promptSet: 'imagereward', promptFile: ir })).toMatchObject({ images: 2, written: 2 });
    expect((await readImageFolder(irOut)).images.map((i) => [i.rel, i.prompt])).toEqual([['images/000864_0000.png', 'a castle at dusk'], ['images/001017_0000.png', 'an owl reading']]);

    const coco = join(dir, 'captions_val2014.json');
    const ids = [9, 25, 110, 42, 7, 1000];
    await writeFile(coco, JSON.stringify({ annotations: ids.flatMap((id, k) => [{ image_id: id, id: 100 + 2 * k, caption: `image ${id} caption a ` }, { image_id: id, id: 101 + 2 * k, caption: `image ${id} caption b` }]) }));
    const cocoOut = join(dir, 'coco');
    expect(await generateImages({ ...base, out: cocoOut, promptSet: 'coco', promptFile: coco, sample: 4 })).toMatchObject({ images: 4, written: 4 });
    const manifest = await readManifest(join(cocoOut, 'manifest.jsonl'));
    const byFile = new Map(manifest.map((e) => [e.file.slice('images/'.length), e.prompt]));
    // Read as GigaGAN does (no manifest inside images/, captions.txt one level up): each image keeps its caption.
    const gigagan = await readImageFolder(join(cocoOut, 'images'));
    expect(gigagan.kind).toBe('captions.txt');
    expect(gigagan.images).toHaveLength(4);
    for (const img of gigagan.images) expect(img.prompt).toBe(byFile.get(img.rel));
    expect(manifest.map((e) => e.prompt).every((p) => /^image \d+ caption [ab]$/.test(p))).toBe(true);
  });

  it('recovers a 500 by retrying; a prompt that keeps failing goes to failures.jsonl, the rest complete, a rerun retries only it', async () => {
    const file = join(dir, 'faulty.txt');
    await writeFile(file, `a calm lake\n${FLAKY}\n${BROKEN}\na tall tower\n`);
    const out = join(dir, 'faulty');
    const from = server.requests.length;
    const s = await generateImages({ ...base, out, promptSet: 'lines', promptFile: file });
    expect(s).toMatchObject({ written: 3, failed: 1 });
    expect(server.requests.slice(from).filter((r) => r.prompt === FLAKY).map((r) => r.status)).toEqual([500, 200]);
    const failures = (await readFile(join(out, 'failures.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(failures).toEqual([{ file: 'images/2_0000.png', prompt_index: 2, prompt_id: '2', sample_index: 0, seed: imageSeed(7, '2', 0), prompt: BROKEN, error: expect.stringMatching(/503/) }]);
    expect((await readManifest(join(out, 'manifest.jsonl'))).map((e) => e.prompt_index)).toEqual([0, 1, 3]);

    const again = server.requests.length;
    const s2 = await generateImages({ ...base, out, promptSet: 'lines', promptFile: file });
    expect(s2).toMatchObject({ written: 1, skipped: 3, failed: 0 });
    expect(server.promptsSince(again)).toEqual([BROKEN]);
    await expect(stat(join(out, 'failures.jsonl'))).rejects.toThrow();
    expect((await readManifest(join(out, 'manifest.jsonl'))).map((e) => e.prompt_index)).toEqual([0, 1, 2, 3]);
  });

  it('an interrupted then resumed run is byte-identical to an uninterrupted one and requests only the missing images', async () => {
    const file = join(dir, 'resume.txt');
    await writeFile(file, Array.from({ length: 10 }, (_, i) => `scene number ${i} with a lamp`).join('\n') + '\n');
    const opts = { ...base, promptSet: 'lines' as const, promptFile: file, imagesPerPrompt: 2, backend: { ...base.backend, concurrency: 2 } as GenerateOptions['backend'] };
    const whole = join(dir, 'resume-whole');
    await generateImages({ ...opts, out: whole });

    const cut = join(dir, 'resume-cut');
    const stop = new AbortController();
    let n = 0;
    await expect(generateImages({ ...opts, out: cut, signal: stop.signal, onImage: () => ++n === 5 && stop.abort() })).rejects.toThrow(/interrupted/);
    const have = (await readdir(join(cut, 'images'))).sort();
    expect(have.length).toBeGreaterThanOrEqual(5);
    expect(have.length).toBeLessThan(20);
    await expect(stat(join(cut, 'manifest.jsonl'))).rejects.toThrow();
    // A file cut short (by a crash outside the driver) has an intact header but must be regenerated.
    const broken = have[0];
    await truncate(join(cut, 'images', broken), 60);

    const from = server.requests.length;
    const s = await generateImages({ ...opts, out: cut });
    expect(s).toMatchObject({ written: 20 - have.length + 1, skipped: have.length - 1, failed: 0 });
    const requested = server.requests.slice(from).map((r) => `${r.prompt}|${r.seed}`).sort();
    const manifest = await readManifest(join(whole, 'manifest.jsonl'));
    const missing = manifest.filter((e) => !have.includes(e.file.slice('images/'.length)) || e.file === `images/${broken}`).map((e) => `${e.prompt}|${e.seed}`).sort();
    expect(requested).toEqual(missing);

    const [x, y] = [await snapshot(whole), await snapshot(cut)];
    expect([...y.keys()].sort()).toEqual([...x.keys()].sort());
    for (const [k, v] of x) expect(y.get(k)!.equals(v), k).toBe(true);
  });

  it('the command prints a JSON summary; a failing image makes it exit 1', async () => {
    const file = join(dir, 'cli.txt');
    await writeFile(file, 'a small boat\n');
    const out = join(dir, 'cli');
    const args = ['--prompts', 'lines', '--prompt-file', file, '--out', out, '--endpoint', server.url, '--model', 'gen-test', '--size', '32x32', '--seed', '7', '--progress', 'off', '--json'];
    const params = ['--param', 'guidance_scale=4.5', '--param', 'steps=20', '--param', 'sampler=dpm'];
    const printed: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => (printed.push(String(chunk)), true)) as typeof process.stdout.write;
    try {
      await generateCommand().parseAsync([...args, ...params], { from: 'user' });
      expect(process.exitCode ?? 0).toBe(0);
      // Without the sampler fields the server answers 400: the image fails and the exit code says so.
      await generateCommand().parseAsync([...args, '--out', join(dir, 'cli-bad'), '--retries', '0'], { from: 'user' });
      expect(process.exitCode).toBe(1);
    } finally {
      process.stdout.write = write;
      process.exitCode = undefined;
    }
    expect(JSON.parse(printed[0])).toMatchObject({ written: 1, failed: 0, images: 1 });
    expect(JSON.parse(printed[1])).toMatchObject({ written: 0, failed: 1, failures: [{ error: expect.stringMatching(/400|guidance_scale/) }] });
    expect((await readManifest(join(out, 'manifest.jsonl')))[0]).toMatchObject({ seed: imageSeed(7, '0', 0), params: PARAMS });
  });
});

describe('eval generate: command backend', () => {
  let dir: string;
  let script: string;
  let logDir: string;

  beforeAll(async () => {
    dir = await tempDir('eval-gen-cmd');
    logDir = join(dir, 'log');
    await mkdir(logDir);
    const sharpUrl = pathToFileURL(createRequire(import.meta.url).resolve('sharp')).href;
    script = join(dir, 'gen.mjs');
    await writeFile(
      script,
      `import sharp from ${JSON.stringify(sharpUrl)};
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
const a = process.argv.slice(2);
const arg = (k) => a[a.indexOf('--' + k) + 1];
writeFileSync(arg('log') + '/' + arg('index') + '.json', JSON.stringify(a));
if (arg('prompt').includes('explode')) { process.stderr.write('loading weights\\nCUDA error: model exploded\\n'); process.exit(1); }
if (arg('prompt').includes('nothing')) process.exit(0);
const d = createHash('sha256').update(arg('prompt') + ':' + arg('seed') + ':' + arg('steps')).digest();
await sharp({ create: { width: 16, height: 8, channels: 3, background: { r: d[0], g: d[1], b: d[2] } } }).png().toFile(arg('out'));
`,
    );
  });

  it('runs the template without a shell, prompts arrive verbatim, a failing command records its stderr', async () => {
    const nasty = `a "quoted" cat's $(touch ${join(dir, 'pwned')}) \`id\` & ; | > spaces   here`;
    const file = join(dir, 'prompts.txt');
    await writeFile(file, ['a plain dog', nasty, 'please explode', 'draw nothing'].join('\n') + '\n');
    const out = join(dir, 'out');
    const template = `'${process.execPath}' '${script}' --prompt {prompt} --seed {seed} --out {out} --steps {steps} --log "${logDir}" --index {index}`;
    const s = await generateImages({ out, promptSet: 'lines', promptFile: file, width: 16, height: 8, seedBase: 3, params: { steps: 20 }, backend: { kind: 'command', template, concurrency: 2 } });
    expect(s).toMatchObject({ written: 2, failed: 2 });
    const argv1 = JSON.parse(await readFile(join(logDir, '1.json'), 'utf8')) as string[];
    expect(argv1).toEqual(['--prompt', nasty, '--seed', String(imageSeed(3, '1', 0)), '--out', expect.stringContaining(out), '--steps', '20', '--log', logDir, '--index', '1']);
    await expect(stat(join(dir, 'pwned'))).rejects.toThrow();
    const folder = await readImageFolder(out);
    expect(folder.images.map((i) => [i.rel, i.prompt])).toEqual([['images/0_0000.png', 'a plain dog'], ['images/1_0000.png', nasty]]);
    const meta = await sharp(join(out, 'images/1_0000.png')).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([16, 8, 'png']);
    const failures = (await readFile(join(out, 'failures.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(failures.map((f) => f.prompt_index)).toEqual([2, 3]);
    expect(failures[0].error).toMatch(/exited with 1.*CUDA error: model exploded/s);
    expect(failures[1].error).toMatch(/wrote no file/);
    expect(JSON.parse(await readFile(join(out, 'generation.json'), 'utf8')).backend).toEqual({ kind: 'command', template });
    // The temp folder holding {out} is gone once the run ends.
    expect((await readdir(out)).sort()).toEqual(['failures.jsonl', 'generation.json', 'images', 'manifest.jsonl']);
  });

  it('splits templates like a POSIX shell (compared with Python shlex) and checks placeholders', () => {
    const cases = [`python gen.py --prompt {prompt} --out {out}`, `a 'b c' "d \\"e\\" f" g\\ h '' "x'y"`, `  run  'it''s'  "a\\\\b" {{literal}} --json '{"k": 1}'  `];
    for (const c of cases) expect(splitCommandLine(c), c).toEqual(JSON.parse(python('import shlex,sys,json\nprint(json.dumps(shlex.split(sys.stdin.read())))', c)));
    expect(() => splitCommandLine(`echo 'open`)).toThrow(/unterminated/);
    expect(() => parseCommandTemplate('gen {prompt} {cfg}', ['prompt'])).toThrow(/\{cfg\}/);
    const t = parseCommandTemplate(`gen --p={prompt} {{x}} '{"a": 1}'`, ['prompt']);
    expect(fillTemplate(t, { prompt: 'it\'s "x" $(y)' })).toEqual(['gen', '--p=it\'s "x" $(y)', '{x}', '{"a": 1}']);
  });
});
