import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultQueueName, maskRedisUrl } from '../src/executors/queue-redis.js';
import { writeParquet } from '../src/formats/parquet-write.js';
import { FileStore } from '../src/stores/file-store.js';
import { startFaultImageServer, type FaultImageServer } from './helpers/fault-image-server.js';
import { readAllRecords } from './helpers/read-output.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { runCli, startCli, writeConfig, type CliResult } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const UNITS = 30;
const ROWS_PER_UNIT = 4;
const POISON = '00030';
const ATTEMPTS = 2;
/** Every image answers after this pause, so a unit is reliably mid-run when its start is logged. */
const IMAGE_DELAY_MS = 700;

/** `unit <id>: <what>` lines a worker logged. */
const unitLines = (log: string, what: string): string[] => [...log.matchAll(new RegExp(`^unit (\\d+): ${what}`, 'gm'))].map((m) => m[1]);

describe('queue executor: plan --queue, 3 workers on Redis, one killed mid-unit, a poison unit', () => {
  let dir: string;
  let redis: RedisServer;
  let images: FaultImageServer;
  let config: string;

  beforeAll(async () => {
    dir = await tempDir('queue');
    redis = await startRedisServer();
    const pics = new Map<string, Buffer>();
    for (let i = 0; i < ROWS_PER_UNIT; i++) {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120"><rect width="160" height="120" fill="rgb(${40 * i},90,${200 - 30 * i})"/><circle cx="${30 + 25 * i}" cy="60" r="30" fill="#fe3"/></svg>`;
      pics.set(`p${i}.jpg`, await sharp(Buffer.from(svg)).jpeg({ quality: 85 }).toBuffer());
    }
    images = await startFaultImageServer(pics);
    await mkdir(join(dir, 'in'));
    const schema = [
      { name: 'URL', type: 'STRING' as const },
      { name: 'TEXT', type: 'STRING' as const },
    ];
    const rows = Array.from({ length: UNITS * ROWS_PER_UNIT }, (_, r) => ({ URL: `${images.url}/delay/${IMAGE_DELAY_MS}/p${r % ROWS_PER_UNIT}.jpg`, TEXT: `caption ${r}` }));
    await writeFile(join(dir, 'in', 'part-00000.parquet'), writeParquet(rows, { schema, compression: 'SNAPPY' }));
    // The poison: a valid footer (so planning counts its rows) over garbage pages, so every run
    // of its unit fails when it reads them.
    const poison = Buffer.from(writeParquet(rows.slice(0, ROWS_PER_UNIT), { schema, compression: 'SNAPPY' }));
    poison.fill(0xff, 4, poison.length - 8 - poison.readUInt32LE(poison.length - 8));
    await writeFile(join(dir, 'in', 'part-00001.parquet'), poison);
    config = await writeConfig(dir, 'job.json', {
      job: 'laion-filter',
      output: join(dir, 'unused'),
      parallel_units: 2,
      input: { kind: 'parquet', paths: [join(dir, 'in')], unit_rows: ROWS_PER_UNIT },
      fetch: { allow_addresses: ['127.0.0.1/32'], concurrency: ROWS_PER_UNIT },
      image: { size: 64, quality: 90 },
      decode_concurrency: 2,
    });
  });

  afterAll(async () => {
    await images?.close();
    await redis?.stop();
  });

  it('ends with every unit done once, outputs equal to a local run, and the poison unit dead-lettered', async () => {
    const localOut = join(dir, 'local');
    const local = await runCli(['run', config, '--output', localOut, '--parallel-units', '8', '--progress', 'off']);
    expect(local.code, local.stderr).toBe(1); // the poison unit fails
    const localError = new RegExp(`unit ${POISON} failed, left undone for a rerun: (.*)$`, 'm').exec(local.stderr)?.[1];
    expect(localError, local.stderr).toMatch(/part-00001\.parquet/);

    const out = join(dir, 'queued');
    const queueArgs = ['--queue', redis.url];
    const plan = await runCli(['plan', config, '--output', out, ...queueArgs, '--attempts', String(ATTEMPTS), '--backoff-ms', '200']);
    expect(plan.code, plan.stderr).toBe(0);
    const queueName = defaultQueueName(out);
    expect(plan.stdout).toContain(`queue ${queueName}: ${UNITS + 1} enqueued, 0 already done, 0 already queued`);

    const workerArgs = ['worker', ...queueArgs, '--exit-when-empty', '--lock-ms', '3000', '--progress', 'off'];
    const stderrOf: string[] = ['', '', ''];
    const workers: ReturnType<typeof startCli>[] = [];
    const startWorker = (i: number) => {
      workers[i] = startCli(workerArgs);
      workers[i].child.stderr!.on('data', (d) => (stderrOf[i] += d));
    };
    const waitFor = async (what: () => boolean) => {
      const deadline = Date.now() + 45_000;
      while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(what(), stderrOf.join('\n')).toBe(true);
    };
    // Worker 0 starts first, so it holds early units (never the poison, planned last). Once the
    // other two are running units too, it is SIGKILLed right after it starts another: each unit
    // waits ≥ IMAGE_DELAY_MS on its images, so that one is mid-run.
    startWorker(0);
    await waitFor(() => stderrOf[0].includes(`queue ${queueName} on`));
    startWorker(1);
    startWorker(2);
    await waitFor(() => unitLines(stderrOf[1], 'started').length > 0 && unitLines(stderrOf[2], 'started').length > 0);
    const mark = stderrOf[0].length;
    await waitFor(() => unitLines(stderrOf[0].slice(mark), 'started').length > 0);
    workers[0].child.kill('SIGKILL');
    const killed = await workers[0].done;
    expect(killed.signal).toBe('SIGKILL');
    const orphaned = unitLines(killed.stderr, 'started').filter((id) => !unitLines(killed.stderr, 'done').includes(id));
    expect(orphaned.length).toBeGreaterThan(0);
    expect(orphaned).not.toContain(POISON);

    const rest: CliResult[] = await Promise.all(workers.slice(1).map((w) => w.done));
    // The worker that dead-lettered the poison unit exits 1 (work left undone); the other exits 0.
    const deadLine = new RegExp(`^error: unit ${POISON}: failed ${ATTEMPTS} time\\(s\\), moved to the dead-letter list`, 'm');
    for (const r of rest) expect(r.code, r.stderr).toBe(deadLine.test(r.stderr) ? 1 : 0);
    expect(rest.filter((r) => r.code === 1)).toHaveLength(1);

    // Every good unit was completed exactly once, the orphaned ones by the surviving workers.
    const survivorsLog = rest.map((r) => r.stderr).join('\n');
    const killedDone = unitLines(killed.stderr, 'done');
    const survivorsDone = unitLines(survivorsLog, 'done');
    // The kill can land between a unit's done marker and its log line: the survivor that takes the
    // unit over then finds it done and skips it, which still makes one run of that unit.
    const committedUnlogged = unitLines(survivorsLog, 'already done, skipped').filter((id) => orphaned.includes(id));
    const doneLines = [...killedDone, ...survivorsDone, ...committedUnlogged].sort();
    const good = Array.from({ length: UNITS }, (_, i) => String(i).padStart(5, '0'));
    expect(doneLines).toEqual(good);
    for (const id of orphaned) expect([...survivorsDone, ...committedUnlogged]).toContain(id);
    const names = await readdir(out);
    expect(names.filter((n) => n.endsWith('.done.json')).sort()).toEqual(good.map((id) => `${id}.done.json`));
    expect(names.filter((n) => n.includes('.partial-'))).toEqual([]);

    // Outputs: the same shard files, byte for byte, and the same records as the local run.
    const a = new FileStore(localOut);
    const b = new FileStore(out);
    const shards = (await a.list()).filter((n) => /^\d+\.(tar|parquet)$/.test(n));
    expect(shards.length).toBe(2 * UNITS);
    expect((await b.list()).filter((n) => /^\d+\.(tar|parquet)$/.test(n))).toEqual(shards);
    for (const n of shards) expect(Buffer.compare(Buffer.from(await a.get(n)), Buffer.from(await b.get(n))), n).toBe(0);
    const recA = await readAllRecords(a);
    expect(recA.filter((r) => r.status === 'ok').length).toBe(UNITS * ROWS_PER_UNIT);
    expect(await readAllRecords(b)).toEqual(recA);

    // The poison unit failed every attempt and sits in the dead-letter list once, with the local run's error.
    const allLogs = survivorsLog + killed.stderr;
    expect(allLogs.match(new RegExp(`^error: unit ${POISON} failed \\(attempt \\d of ${ATTEMPTS}\\)`, 'gm'))).toHaveLength(ATTEMPTS);
    expect(allLogs.match(new RegExp(`^error: unit ${POISON}: failed ${ATTEMPTS} time\\(s\\), moved to the dead-letter list`, 'gm'))).toHaveLength(1);
    const status = await runCli(['status', ...queueArgs, '--json']);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s).toMatchObject({ queue: queueName, output: out, job: 'laion-filter', units: { planned: UNITS + 1, done: UNITS } });
    expect(s.counts).toMatchObject({ completed: UNITS, failed: 1, waiting: 0, active: 0, delayed: 0 });
    expect(s.dead).toHaveLength(1);
    expect(s.dead[0]).toMatchObject({ unit: POISON, error: localError, attempts: ATTEMPTS });
    const text = await runCli(['status', ...queueArgs]);
    expect(text.stdout).toContain(`units: ${UNITS}/${UNITS + 1} done`);
    expect(text.stdout).toContain(`  ${POISON} (${ATTEMPTS} attempts`);

    // The summary the last worker wrote counts every done unit.
    const summary = JSON.parse(Buffer.from(await b.get('run-summary.json')).toString('utf8'));
    expect(summary.units).toMatchObject({ planned: UNITS + 1, done: UNITS, pending: [POISON] });
    expect(summary.dead).toEqual([{ unit: POISON, error: localError, attempts: ATTEMPTS }]);

    // Planning again adds nothing: done units are skipped, the dead one stays dead. --json is honoured.
    const again = await runCli(['plan', config, '--output', out, ...queueArgs, '--attempts', String(ATTEMPTS), '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ job: 'laion-filter', output: out, queue: queueName, planned: UNITS + 1, enqueued: 0, alreadyDone: UNITS, alreadyQueued: 0, dead: 1 });
  }, 150_000);

  it('masks the password of a Redis URL and names the queue it cannot reach', async () => {
    expect(maskRedisUrl('redis://:s3cret@127.0.0.1:6379/2')).toBe('redis://:***@127.0.0.1:6379/2');
    const r = await runCli(['status', '--queue', `redis://:s3cret@127.0.0.1:${redis.port}/3`, '--json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('redis://:***@127.0.0.1');
    expect(r.stderr).not.toContain('s3cret');
  });
});
