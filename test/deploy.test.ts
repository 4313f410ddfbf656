import { spawn } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, posix } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseOverride } from '../src/config/load-config.js';
import { jobs } from '../pipelines/index.js';
import { generateDemoData } from '../pipelines/demo-data.js';
import { buildBitEncoderStandin } from '../stages/bit-encoder-standin.js';
import { cliEntry, repoRoot, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';
import { writeTorchStandin } from './helpers/torch-standin.js';
import { openStore } from '../src/stores/open-store.js';
import { readLatentManifest, readLatentShard } from '../src/formats/latent-shards.js';

/** Where the documented image holds the bitprep checkout (deploy/README.md). */
const APP = '/app';

interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
interface Container { name: string; image: string; command?: string[]; workingDir?: string; env?: EnvVar[]; restartPolicy?: string; resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> } }
interface JobManifest {
  kind: string;
  spec: { completionMode?: string; completions?: number; parallelism?: number; backoffLimitPerIndex?: number; template: { spec: { restartPolicy: string; containers: Container[]; initContainers?: Container[] } } };
}

async function manifest(name: string): Promise<{ job: JobManifest; docs: Record<string, unknown>[] }> {
  const docs = parseAllDocuments(await readFile(join(repoRoot, 'deploy', 'k8s', name), 'utf8'));
  for (const d of docs) expect(d.errors, name).toEqual([]);
  const all = docs.map((d) => d.toJS() as Record<string, unknown>);
  const jobsIn = all.filter((d) => d.kind === 'Job') as unknown as JobManifest[];
  expect(jobsIn, name).toHaveLength(1);
  return { job: jobsIn[0], docs: all };
}

/** The bitprep container's `bitprep run <config> …`, with its config loaded and validated as bitprep would. */
async function bitprepCommand(job: JobManifest) {
  const c = job.spec.template.spec.containers.find((x) => x.name === 'bitprep');
  expect(c, 'a container named bitprep').toBeDefined();
  const cmd = c!.command!;
  expect(cmd.slice(0, 2)).toEqual(['bitprep', 'run']);
  // The config is one the repo ships, at the path the image layout puts it.
  const inImage = posix.resolve(c!.workingDir ?? '/', cmd[2]);
  expect(inImage.startsWith(`${APP}/configs/`), inImage).toBe(true);
  const local = join(repoRoot, posix.relative(APP, inImage));
  expect(existsSync(local), local).toBe(true);
  const overrides: [string, unknown][] = [];
  for (let i = 3; i < cmd.length; i++) {
    if (cmd[i] === '--set') overrides.push(parseOverride(cmd[++i]));
    else if (cmd[i] === '--output') overrides.push(['output', cmd[++i]]);
    else if (cmd[i] === '--progress') i++;
    else throw new Error(`unexpected argument ${cmd[i]}`);
  }
  const { config } = await loadConfig(local, jobs, overrides);
  return { container: c!, config: config as Record<string, any> };
}

function checkIndexedJob(job: JobManifest, container: Container): void {
  expect(job.spec.completionMode).toBe('Indexed');
  expect(job.spec.completions).toBeGreaterThan(0);
  expect(job.spec.parallelism).toBe(job.spec.completions);
  expect(job.spec.backoffLimitPerIndex).toBeGreaterThanOrEqual(1);
  expect(job.spec.template.spec.restartPolicy).toBe('Never');
  const env = new Map((container.env ?? []).map((e) => [e.name, e]));
  // Kubernetes gives the index, not the count: the count must be the Job's completions.
  expect(env.get('BITPREP_SHARD_COUNT')?.value).toBe(String(job.spec.completions));
  expect(env.get('AWS_REGION')?.value).toBeTruthy();
  expect(env.has('AWS_ENDPOINT_URL')).toBe(true);
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) expect(env.get(key)?.valueFrom?.secretKeyRef?.key, key).toBe(key);
  expect(container.resources?.requests?.cpu).toBeDefined();
  expect(container.resources?.requests?.memory).toBeDefined();
  // Nothing secret inline, in any container.
  const all = [...job.spec.template.spec.containers, ...(job.spec.template.spec.initContainers ?? [])];
  for (const e of all.flatMap((c) => c.env ?? [])) {
    if (/SECRET|PASSWORD|TOKEN|ACCESS_KEY|API_KEY/i.test(e.name)) {
      expect(e.value, `${e.name} is inline`).toBeUndefined();
      expect(e.valueFrom?.secretKeyRef, e.name).toBeDefined();
    }
  }
}

describe('Kubernetes Indexed Jobs', () => {
  it('laion-filter: Indexed, CPU only, S3 from a Secret, the shipped config with valid overrides', async () => {
    const { job } = await manifest('laion-filter.job.yaml');
    const { container, config } = await bitprepCommand(job);
    checkIndexedJob(job, container);
    expect(config.job).toBe('laion-filter');
    expect(config.output).toMatch(/^s3:\/\//);
    expect(config.input.paths[0]).toMatch(/^s3:\/\//);
    expect(config.aesthetic.clip.model.kserve).toHaveLength(1);
    const limits = JSON.stringify(job.spec.template.spec);
    expect(limits).not.toMatch(/nvidia\.com\/gpu|amd\.com\/gpu/);
  });

  it('pre-encode: Indexed, a GPU Triton sidecar serving the encoder bitprep is pointed at', async () => {
    const { job, docs } = await manifest('pre-encode.job.yaml');
    const { container, config } = await bitprepCommand(job);
    checkIndexedJob(job, container);
    expect(config.job).toBe('pre-encode');
    expect(config.output).toMatch(/^s3:\/\//);
    const triton = job.spec.template.spec.initContainers?.find((c) => c.name === 'triton');
    expect(triton?.restartPolicy).toBe('Always');
    expect(Number(triton?.resources?.limits?.['nvidia.com/gpu'])).toBeGreaterThanOrEqual(1);
    const port = /--http-port=(\d+)/.exec(triton!.command!.join(' '))?.[1];
    expect(config.encoder.model).toEqual({ kserve: [`http://127.0.0.1:${port}`], model: 'bit_encoder' });
    // Triton's model config: the name bitprep asks for, one instance per GPU, the encoder's contract.
    const cm = docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> };
    const pbtxt = cm.data['config.pbtxt'];
    expect(pbtxt).toContain('name: "bit_encoder"');
    expect(pbtxt).toMatch(/instance_group \[\{ count: 1 kind: KIND_GPU \}\]/);
    expect(pbtxt).toContain(`dims: [3, ${config.encoder.size}, ${config.encoder.size}]`);
    expect(pbtxt).toContain('dims: [128, 64]');
  });
  it('pre-encode.torch: a PyTorch sidecar runs serve_bit_encoder.py once per GPU, each on the port bitprep lists', async () => {
    const { job } = await manifest('pre-encode.torch.job.yaml');
    const { container, config } = await bitprepCommand(job);
    checkIndexedJob(job, container);
    expect(config.job).toBe('pre-encode');
    const init = job.spec.template.spec.initContainers ?? [];
    const encoder = init.find((c) => c.name === 'encoder')!;
    expect(encoder.restartPolicy).toBe('Always');
    const gpus = Number(encoder.resources?.limits?.['amd.com/gpu'] ?? encoder.resources?.limits?.['nvidia.com/gpu']);
    expect(gpus).toBe(8);
    const script = encoder.command![2];
    expect(script).toContain('/tools/serve_bit_encoder.py');
    // The tools the sidecar runs are copied in from the bitprep image, both files the server needs.
    const tools = init.find((c) => c.name === 'tools')!;
    for (const f of ['serve_bit_encoder.py', 'export_bit_encoder.py']) {
      expect(tools.command!.join(' ')).toContain(`/app/tools/${f}`);
      expect(existsSync(join(repoRoot, 'tools', f))).toBe(true);
    }
    // The loop, run with a stand-in python3 that prints its arguments, starts one server per GPU on ports 8000 + i.
    const fake = await tempDir('k8s-torch');
    await writeFile(join(fake, 'python3'), '#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES $*"\n');
    await chmod(join(fake, 'python3'), 0o755);
    // Run by sh, as the container runs it (wait -n is bash's; under dash the script falls back to wait).
    await writeFile(join(fake, 'encoder.sh'), script.replace('exit 1', 'exit 0'));
    const r = await bash(['-c', `sh ${join(fake, 'encoder.sh')}`], { PATH: `${fake}:${process.env.PATH}` });
    expect(r.code, r.out).toBe(0);
    const lines = r.out.trim().split('\n').sort();
    expect(lines).toHaveLength(gpus);
    const ports = lines.map((l) => Number(/--port (\d+)/.exec(l)![1])).sort();
    expect(ports).toEqual(Array.from({ length: gpus }, (_, i) => 8000 + i));
    for (const l of lines) expect(l.split(' ')[0]).toBe(String(Number(/--port (\d+)/.exec(l)![1]) - 8000));
    expect(config.encoder.model).toEqual({ kserve: ports.map((p) => `http://127.0.0.1:${p}`), model: 'bit_encoder' });
    expect(config.encoder.max_batches_in_flight).toBe(2 * gpus);
  });
});

const sbatchPath = (name: string) => join(repoRoot, 'deploy', 'slurm', name);

/** Runs a script with bash as Slurm would run an array task's body, without Slurm. */
function bash(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
}

/** A port free now with the next one free as well (the script's servers take base, base+1). */
async function freePortPair(): Promise<number> {
  const listen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(undefined));
      s.listen(port, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
  for (;;) {
    const p = await listen(0);
    if (p !== undefined && p < 65000 && (await listen(p + 1)) !== undefined) return p;
  }
}

describe('Kubernetes queue workers', () => {
  it('laion-filter workers: a Deployment of bitprep worker on a Redis URL and S3 keys from Secrets, with time to drain', async () => {
    const docs = parseAllDocuments(await readFile(join(repoRoot, 'deploy', 'k8s', 'laion-filter.queue-workers.yaml'), 'utf8'));
    for (const d of docs) expect(d.errors).toEqual([]);
    const dep = docs.map((d) => d.toJS()).find((d) => d.kind === 'Deployment') as { spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: { terminationGracePeriodSeconds: number; containers: Container[] } } } };
    expect(dep).toBeDefined();
    expect(dep.spec.replicas).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) expect(dep.spec.template.metadata.labels[k], k).toBe(v);
    // Workers finish their running units on SIGTERM: the pod must get that time.
    expect(dep.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
    const c = dep.spec.template.spec.containers.find((x) => x.name === 'bitprep')!;
    expect(c.command?.join(' ')).toMatch(/exec bitprep worker --queue "\$REDIS_URL"/);
    const env = new Map((c.env ?? []).map((e) => [e.name, e]));
    for (const [name, secret] of [['REDIS_URL', 'bitprep-redis'], ['AWS_ACCESS_KEY_ID', 'bitprep-s3'], ['AWS_SECRET_ACCESS_KEY', 'bitprep-s3']]) {
      expect(env.get(name)?.value, `${name} is inline`).toBeUndefined();
      expect(env.get(name)?.valueFrom?.secretKeyRef?.name, name).toBe(secret);
    }
  });
});

describe('Slurm array scripts', () => {
  let dir: string;
  let env: Record<string, string>;
  const doneIds = async (out: string) => (await readdir(out)).filter((n) => n.endsWith('.done.json')).map((n) => n.slice(0, -10)).sort();

  beforeAll(async () => {
    dir = await tempDir('deploy');
    // `bitprep` on PATH as the checkout's CLI (from source), the way the scripts call it.
    await mkdir(join(dir, 'bin'));
    await writeFile(join(dir, 'bin', 'bitprep'), `#!/bin/sh\nexec "${process.execPath}" "${cliEntry}" "$@"\n`);
    await chmod(join(dir, 'bin', 'bitprep'), 0o755);
    env = {
      PATH: `${join(dir, 'bin')}:${process.env.PATH}`,
      BITPREP_HOME: repoRoot,
      JOB_COMPLETION_INDEX: '',
      AWS_BATCH_JOB_ARRAY_INDEX: '',
      BITPREP_SHARD_COUNT: '',
      SLURM_GPUS_ON_NODE: '',
    };
  });

  it('every script logs where Slurm can open the file, and expands arrays that may be empty as bash before 4.4 allows under set -u', async () => {
    for (const name of await readdir(join(repoRoot, 'deploy', 'slurm'))) {
      const text = await readFile(sbatchPath(name), 'utf8');
      // Slurm opens --output before the script runs: a folder in it must already exist, and nothing here makes one.
      const output = /^#SBATCH --output=(\S+)$/m.exec(text)?.[1];
      expect(output, name).toBeDefined();
      expect(output, name).not.toContain('/');
      expect(text, name).toMatch(/^set -euo pipefail$/m);
      // "${a[@]}" of an empty array is an unbound-variable error under set -u before bash 4.4.
      const bare = text.split('\n').filter((l) => !l.trimStart().startsWith('#')).flatMap((l) => [...l.matchAll(/(.?)"\$\{\w+\[@\]\}"/g)].filter((m) => m[1] !== '+'));
      expect(bare.map((m) => m[0]), name).toEqual([]);
    }
  });

  it('laion-filter.sbatch expands its empty list of overrides (no BITPREP_INPUT, CLIP or head set)', async () => {
    // The line that runs bitprep, with bitprep swapped for printf, under set -u.
    const text = await readFile(sbatchPath('laion-filter.sbatch'), 'utf8');
    const run = text.split('\n').find((l) => l.startsWith('exec bitprep run'))!.replace('exec bitprep run', "printf '%s|'");
    const r = await bash(['-c', `set -euo pipefail\nconfig=c.yaml output=out\nsets=()\n${run}`], {});
    expect(r.code, r.out).toBe(0);
    expect(r.out).toBe('c.yaml|--output|out|--progress|plain|');
  });

  it('both scripts parse, ask for an array, and pre-encode for a whole 8-GPU node', async () => {
    for (const name of ['laion-filter.sbatch', 'pre-encode.sbatch']) {
      const syntax = await bash(['-n', sbatchPath(name)], {});
      expect(syntax.code, syntax.out).toBe(0);
      const text = await readFile(sbatchPath(name), 'utf8');
      expect(text, name).toMatch(/^#SBATCH --array=\d+-\d+(%\d+)?$/m);
      expect(text).not.toMatch(/AWS_SECRET_ACCESS_KEY=/);
    }
    const pe = await readFile(sbatchPath('pre-encode.sbatch'), 'utf8');
    expect(pe).toMatch(/^#SBATCH --gres=gpu:8$/m);
    expect(pe).toMatch(/^#SBATCH --exclusive$/m);
  });

  it('laion-filter.sbatch: array task 4 of 3..5 runs exactly shard 1/3 of the config it is given', async () => {
    await generateDemoData(join(dir, 'data'), 14);
    const cfg = await writeConfig(dir, 'shards.json', {
      job: 'image-shards',
      output: join(dir, 'unused'),
      input: { kind: 'parquet', paths: ['overridden-by-BITPREP_INPUT'], unit_rows: 2 },
      image: { size: 64, min_edge: 32, max_pixels: 50_000_000 },
    });
    const out = join(dir, 'shards');
    const r = await bash([sbatchPath('laion-filter.sbatch')], {
      ...env,
      BITPREP_CONFIG: cfg,
      BITPREP_OUTPUT: out,
      BITPREP_INPUT: join(dir, 'data', 'laion'),
      SLURM_ARRAY_TASK_ID: '4',
      SLURM_ARRAY_TASK_MIN: '3',
      SLURM_ARRAY_TASK_COUNT: '3',
    });
    expect(r.code, r.out).toBe(0);
    const plan = JSON.parse(await readFile(join(out, '_plan.json'), 'utf8')) as { unit_ids: string[] };
    expect(plan.unit_ids.length).toBeGreaterThanOrEqual(6);
    expect(r.out).toContain(`shard 1/3 (from SLURM_ARRAY_TASK_ID)`);
    expect(await doneIds(out)).toEqual(plan.unit_ids.filter((_, i) => i % 3 === 1));
  });

  /** pre-encode.sbatch as array task 0 of 1, its servers from port `base`, with the encoder settings in `servers`. */
  const preEncodeTask = (cfg: string, out: string, tars: string[], base: number, servers: Record<string, string>) =>
    bash([sbatchPath('pre-encode.sbatch')], {
      ...env,
      BITPREP_CONFIG: cfg,
      BITPREP_OUTPUT: out,
      BITPREP_INPUT: tars.join(','),
      BITPREP_SOURCE: 'laion',
      ENCODER_BASE_PORT: String(base),
      ENCODER_WAIT_S: '120',
      SLURM_ARRAY_TASK_ID: '0',
      SLURM_ARRAY_TASK_MIN: '0',
      SLURM_ARRAY_TASK_COUNT: '1',
      ...servers,
    });

  it('pre-encode.sbatch: starts one encoder server per GPU, encodes through them, stops them', async () => {
    const shardsOut = join(dir, 'shards');
    const tars = (await readdir(shardsOut)).filter((n) => /^\d+\.tar$/.test(n)).map((n) => join(shardsOut, n));
    expect(tars.length).toBeGreaterThanOrEqual(2);
    const model = join(dir, 'bit_encoder.onnx');
    await writeFile(model, buildBitEncoderStandin(7, 64).onnx);
    const cfg = await writeConfig(dir, 'pre-encode.json', {
      job: 'pre-encode',
      output: join(dir, 'unused'),
      input: { paths: ['overridden-by-BITPREP_INPUT'] },
      source: 'overridden',
      encoder: { model: { kserve: ['http://127.0.0.1:1'], model: 'overridden' }, size: 64, batch_size: 4 },
    });
    const base = await freePortPair();
    const out = join(dir, 'latents');
    const r = await preEncodeTask(cfg, out, tars, base, { GPUS: '2', ENCODER_SERVER: 'bitprep', BIT_ENCODER_ONNX: model });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('2 encoder(s)');
    expect(r.out).toContain('shard 0/1 (from SLURM_ARRAY_TASK_ID)');
    // Both servers took batches: the stats name each replica.
    const stats = await Promise.all((await readdir(out)).filter((n) => n.endsWith('.stats.json')).map(async (n) => readFile(join(out, n), 'utf8')));
    for (const port of [base, base + 1]) expect(stats.join('\n')).toContain(`127.0.0.1:${port}`);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.shards).toHaveLength(tars.length);
    expect(index.rows).toBeGreaterThan(0);
    // The servers went with the task.
    for (const port of [base, base + 1]) await expect(fetch(`http://127.0.0.1:${port}/v2/health/ready`)).rejects.toThrow();
  });

  it('pre-encode.sbatch with ENCODER_SERVER=torch: the tokenizer in PyTorch (serve_bit_encoder.py), the same latents as the ONNX export', async () => {
    const shardsOut = join(dir, 'shards');
    const tars = (await readdir(shardsOut)).filter((n) => /^\d+\.tar$/.test(n)).map((n) => join(shardsOut, n));
    const standin = buildBitEncoderStandin(7, 64);
    const located = await writeTorchStandin(dir, standin, 64);
    const cfg = join(dir, 'pre-encode.json');
    const base = await freePortPair();
    const out = join(dir, 'latents-torch');
    const r = await preEncodeTask(cfg, out, tars, base, { GPUS: '1', ENCODER_SERVER: 'torch', BIT_ENCODER_TORCH: [...located, '--dtype', 'float32'].join(' '), TORCH_DEVICE: 'cpu', PYTHON: '/usr/bin/python3' });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/serving bit_encoder at http:\/\/127\.0\.0\.1:\d+\/v2\/models\/bit_encoder \(cpu, float32/);
    // The ONNX export of the same weights (the test before) gave these rows; float32 rounding may flip a logit within 1e-5 of 0.
    const read = async (o: string) => {
      const rows = new Map<string, Uint8Array>();
      const store = openStore(o);
      for (const sh of (await readLatentManifest(store)).shards) for await (const g of readLatentShard(store, sh.name)) for (const row of g) rows.set(`${String(row.key)}/${String(row.view)}`, row.latent as Uint8Array);
      return rows;
    };
    const [torchRows, onnxRows] = await Promise.all([read(out), read(join(dir, 'latents'))]);
    expect([...torchRows.keys()].sort()).toEqual([...onnxRows.keys()].sort());
    let differ = 0;
    for (const [k, a] of torchRows) for (let i = 0; i < a.length; i++) differ += a[i] === onnxRows.get(k)![i] ? 0 : 1;
    expect(differ).toBeLessThanOrEqual(torchRows.size);
    await expect(fetch(`http://127.0.0.1:${base}/v2/health/ready`)).rejects.toThrow();
  });
});
