import { spawn, type ChildProcess } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../src/log.js';
import { FileStore } from '../src/stores/file-store.js';
import { S3Store, s3ClientFromEnv } from '../src/stores/s3-store.js';
import type { Store } from '../src/stores/store.js';
import { commandLine, LEASE_PREFIX, LeaseHeldError, OutputLease, readLeases, scopesOverlap, type LeaseLostEvent, type LeaseRecord } from '../src/units/output-lease.js';
import { repoRoot } from './helpers/run-cli.js';
import { startS3Server, type S3Server } from './helpers/s3-server.js';
import { tempDir } from './helpers/temp-dir.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(m), warn: (m) => lines.push(`warning: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

/** A child process that takes a lease on `url`, prints it, reports a lost lease, and hangs until killed. */
class Holder {
  readonly child: ChildProcess;
  out = '';
  readonly exited: Promise<void>;

  constructor(url: string, opts: { ttlMs: number; host?: string; scope?: { index: number; count: number } }, env: Record<string, string> = {}) {
    const mod = (p: string) => JSON.stringify(join(repoRoot, p));
    const code = `
      import { OutputLease } from ${mod('src/units/output-lease.ts')};
      import { openStore } from ${mod('src/stores/open-store.ts')};
      const lease = await OutputLease.acquire(openStore(${JSON.stringify(url)}), {
        ttlMs: ${opts.ttlMs}, scope: ${JSON.stringify(opts.scope ?? 'all')},
        holder: { command: 'bitprep run child.yaml'${opts.host ? `, host: ${JSON.stringify(opts.host)}` : ''} },
        log: { info() {}, warn() {}, error() {} },
        onLost: (e) => console.log('lost ' + JSON.stringify({ reason: e.reason, by: e.by?.run_id, message: e.message })),
      });
      console.log('acquired ' + JSON.stringify(lease.record));
      setInterval(() => {}, 1000);
    `;
    this.child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    this.child.stdout!.on('data', (d) => (this.out += d));
    this.child.stderr!.on('data', (d) => (err += d));
    this.exited = new Promise((resolve) => this.child.on('exit', () => resolve()));
    this.exited.then(() => (this.out += `\nexited: ${err}`));
  }

  /** Resolves with the first line starting with `prefix`, parsed as JSON after it. */
  async line<T>(prefix: string, timeoutMs = 20_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const m = new RegExp(`^${prefix} (.*)$`, 'm').exec(this.out);
      if (m) return JSON.parse(m[1]) as T;
      if (this.out.includes('\nexited: ') || Date.now() > until) throw new Error(`child never printed "${prefix}": ${this.out}`);
      await sleep(20);
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    if (signal === 'SIGKILL') await this.exited;
  }
}

const holders: Holder[] = [];
afterEach(async () => {
  for (const h of holders.splice(0)) {
    h.child.kill('SIGCONT');
    await h.kill();
  }
});

async function lastWritten(store: Store, name: string): Promise<LeaseRecord> {
  return JSON.parse(new TextDecoder().decode(await store.get(name))) as LeaseRecord;
}

async function refusal(p: Promise<unknown>): Promise<LeaseHeldError> {
  const err = await p.then(
    (l) => {
      void (l as OutputLease).release();
      throw new Error('acquired a lease that should have been refused');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LeaseHeldError);
  return err as LeaseHeldError;
}

it('scopes: the whole output overlaps everything; array tasks overlap when they can share a unit', () => {
  expect(scopesOverlap('all', 'all')).toBe(true);
  expect(scopesOverlap('all', '3-of-4')).toBe(true);
  expect(scopesOverlap('0-of-2', '1-of-2')).toBe(false);
  expect(scopesOverlap('1-of-2', '1-of-2')).toBe(true);
  expect(scopesOverlap('1-of-2', '3-of-4')).toBe(true); // unit 3 is in both
  expect(scopesOverlap('0-of-2', '3-of-4')).toBe(false);
  expect(scopesOverlap('0-of-2', '0-of-3')).toBe(true); // unit 0
  expect(scopesOverlap('1-of-2', '2-of-3')).toBe(true); // unit 5
  expect(commandLine(['node', 'bitprep', 'run', 'c.yaml', '--set', 'recaption.api_key=sk-123', 's3://u:pw@h/b'])).toBe('bitprep run c.yaml --set recaption.api_key=*** s3://u:***@h/b');
});

describe.each(['file', 's3'] as const)('output lease on a %s store', (kind) => {
  let s3: S3Server | undefined;
  let base: string;
  let n = 0;
  let env: Record<string, string> = {};

  beforeAll(async () => {
    if (kind === 's3') {
      s3 = await startS3Server();
      env = s3.env;
      base = 's3://bucket';
    } else base = await tempDir('lease');
  });
  afterAll(async () => {
    await s3?.close();
  });

  /** A fresh output: its URL (for children) and a store on it. */
  function output(): { url: string; store: Store } {
    const url = `${base}/out-${++n}`;
    return { url, store: kind === 's3' ? S3Store.fromUrl(url, { client: s3ClientFromEnv(env) }) : new FileStore(url) };
  }

  it('putIfAbsent creates once; a second create of the name is refused and the first content kept', async () => {
    const { store } = output();
    expect(await store.putIfAbsent!('_lease/x.json', 'first')).toBe(true);
    expect(await store.putIfAbsent!('_lease/x.json', 'second')).toBe(false);
    expect(new TextDecoder().decode(await store.get('_lease/x.json'))).toBe('first');
    expect(await store.list()).toEqual(['_lease/x.json']);
    if (kind === 'file') {
      // No temp file is left beside it.
      expect(await readdir(join((store as FileStore).url, '_lease'))).toEqual(['x.json']);
    } else {
      // s3rver 3.7.1 ignores If-None-Match on PUT (it overwrites), which is why S3Store.putIfAbsent
      // also checks first and reads back; AWS S3, MinIO and Ceph answer 412 here.
      const s = store as S3Store;
      await s.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: `${s.prefix}/_lease/x.json`, Body: 'overwritten', IfNoneMatch: '*' }));
      expect(new TextDecoder().decode(await store.get('_lease/x.json'))).toBe('overwritten');
    }
  });

  it('a second acquire is refused with one line naming the holder; a released lease can be taken again', async () => {
    const { store } = output();
    const log = recordingLog();
    const a = await OutputLease.acquire(store, { holder: { command: 'bitprep run a.yaml' }, log });
    expect(a.name).toBe('_lease/all.1.json');
    expect(await store.list()).toEqual(['_lease/all.1.json']);
    const written = JSON.parse(new TextDecoder().decode(await store.get(a.name))) as LeaseRecord;
    expect(written).toMatchObject({ scope: 'all', host: hostname(), pid: process.pid, run_id: a.record.run_id, command: 'bitprep run a.yaml' });
    expect(Date.parse(written.expires_at) - Date.parse(written.started_at)).toBe(60_000);

    const err = await refusal(OutputLease.acquire(store, { log }));
    expect(err.held.run_id).toBe(a.record.run_id);
    expect(err.message).not.toContain('\n');
    for (const part of [store.url, `host ${hostname()}`, `pid ${process.pid}`, `since ${a.record.started_at}`, `expiring ${a.record.expires_at}`, 'bitprep run a.yaml', 'Wait for that run to finish', `${store.url}/_lease/all.1.json`]) {
      expect(err.message).toContain(part);
    }

    await a.release();
    expect(await store.list()).toEqual([]);
    const b = await OutputLease.acquire(store, { log });
    expect(b.name).toBe('_lease/all.1.json');
    await b.release();
    expect(log.lines).toEqual([]);
  });

  it('an expired lease of a SIGKILLed holder on another host is taken over, with a log line, once it expires', async () => {
    const { url, store } = output();
    const h = new Holder(url, { ttlMs: 1500, host: 'node-b' }, env);
    holders.push(h);
    const held = await h.line<LeaseRecord>('acquired');
    await h.kill('SIGKILL');
    // Another host's pid cannot be checked: until it expires, the lease stands.
    const err = await refusal(OutputLease.acquire(store, { log: recordingLog() }));
    expect(err.message).toContain('host node-b');
    expect(err.message).toContain('bitprep run child.yaml');
    const last = await lastWritten(store, '_lease/all.1.json'); // the holder may have renewed it before it died
    await sleep(Math.max(0, Date.parse(last.expires_at) - Date.now()) + 50);
    const log = recordingLog();
    const lease = await OutputLease.acquire(store, { log });
    expect(lease.name).toBe('_lease/all.2.json');
    expect(lease.record.supersedes).toEqual([{ name: '_lease/all.1.json', run_id: held.run_id, host: 'node-b', pid: held.pid }]);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatch(new RegExp(`took over _lease/all\\.1\\.json from run ${held.run_id} \\(host node-b, pid ${held.pid}, since ${held.started_at}\\): it expired at ${last.expires_at}`));
    expect(await store.list()).toEqual(['_lease/all.2.json']);
    await lease.release();
  }, 30_000);

  it('the lease of a SIGKILLed process on this host is taken over at once', async () => {
    const { url, store } = output();
    const h = new Holder(url, { ttlMs: 60_000 }, env);
    holders.push(h);
    const held = await h.line<LeaseRecord>('acquired');
    expect(held.host).toBe(hostname());
    await refusal(OutputLease.acquire(store, { log: recordingLog() }));
    await h.kill('SIGKILL');
    const log = recordingLog();
    const lease = await OutputLease.acquire(store, { log });
    expect(log.lines[0]).toMatch(new RegExp(`took over _lease/all\\.1\\.json from run ${held.run_id} .*: process ${held.pid} is no longer running on this host`));
    await lease.release();
  }, 30_000);

  it('array tasks of one job hold their scopes side by side; a full run or a duplicate task is refused', async () => {
    const { store } = output();
    const log = recordingLog();
    const t0 = await OutputLease.acquire(store, { scope: { index: 0, count: 2 }, log });
    const t1 = await OutputLease.acquire(store, { scope: { index: 1, count: 2 }, log });
    expect([t0.name, t1.name]).toEqual(['_lease/0-of-2.1.json', '_lease/1-of-2.1.json']);

    const full = await refusal(OutputLease.acquire(store, { log }));
    expect(full.message).toMatch(/array task [01]-of-2 is leased to run .* so the whole output cannot be written/);
    const dup = await refusal(OutputLease.acquire(store, { scope: { index: 1, count: 2 }, log }));
    expect(dup.held.run_id).toBe(t1.record.run_id);
    expect(dup.message).toContain('two array tasks were given the same --shard-index/--shard-count');
    // Another count: 3-of-4 shares units with 1-of-2, 2-of-4 does not share with 1-of-2 but does with 0-of-2.
    expect((await refusal(OutputLease.acquire(store, { scope: { index: 3, count: 4 }, log }))).held.run_id).toBe(t1.record.run_id);
    expect((await refusal(OutputLease.acquire(store, { scope: { index: 2, count: 4 }, log }))).held.run_id).toBe(t0.record.run_id);

    await t0.release();
    await t1.release();
    const all = await OutputLease.acquire(store, { log });
    const task = await refusal(OutputLease.acquire(store, { scope: { index: 0, count: 2 }, log }));
    expect(task.message).toMatch(/the whole output is leased to run .* so array task 0-of-2 cannot be written/);
    await all.release();
    expect((await readLeases(store)).length).toBe(0);
  });

  it('renewal extends expires_at, and a renewed lease outlives its first expiry', async () => {
    const { store } = output();
    const lease = await OutputLease.acquire(store, { ttlMs: 900, log: recordingLog() });
    const first = JSON.parse(new TextDecoder().decode(await store.get(lease.name))) as LeaseRecord;
    await sleep(450); // renewed at ~300 ms
    const later = JSON.parse(new TextDecoder().decode(await store.get(lease.name))) as LeaseRecord;
    expect(Date.parse(later.expires_at)).toBeGreaterThan(Date.parse(first.expires_at));
    expect(Date.parse(later.renewed_at)).toBeGreaterThan(Date.parse(first.renewed_at));
    expect(later.started_at).toBe(first.started_at);
    await sleep(Math.max(0, Date.parse(first.expires_at) - Date.now()) + 200);
    const err = await refusal(OutputLease.acquire(store, { log: recordingLog() }));
    expect(Date.parse(err.held.expires_at)).toBeGreaterThan(Date.now());
    expect(lease.lost).toBeUndefined();
    await lease.release();
  }, 20_000);

  it('a holder that stalls past its expiry and is taken over hears it at its next renewal (onLost)', async () => {
    const { url, store } = output();
    const h = new Holder(url, { ttlMs: 1200 }, env);
    holders.push(h);
    const held = await h.line<LeaseRecord>('acquired');
    h.child.kill('SIGSTOP'); // alive (its pid exists) but not renewing
    await sleep(100); // a renewal already under way lands
    const last = await lastWritten(store, '_lease/all.1.json');
    expect(last.run_id).toBe(held.run_id);
    await sleep(Math.max(0, Date.parse(last.expires_at) - Date.now()) + 100);
    const log = recordingLog();
    const lease = await OutputLease.acquire(store, { log });
    expect(log.lines[0]).toMatch(/it expired at/);
    h.child.kill('SIGCONT');
    const lost = await h.line<{ reason: LeaseLostEvent['reason']; by?: string; message: string }>('lost');
    expect(lost.reason).toBe('taken_over');
    expect(lost.by).toBe(lease.record.run_id);
    expect(lost.message).toContain(`taken over by run ${lease.record.run_id} on host ${hostname()}, pid ${process.pid}`);
    // The stalled holder does not get it back: the output stays with the taker.
    await sleep(500);
    expect((await readLeases(store)).map((l) => l.record?.run_id)).toEqual([lease.record.run_id]);
    await lease.release();
  }, 30_000);

  if (kind === 'file') {
    it('starts at the same moment: one of several identical acquires wins; a full run and array tasks never both win', async () => {
      const { store } = output();
      const log = recordingLog();
      const same = await Promise.allSettled(Array.from({ length: 6 }, () => OutputLease.acquire(store, { log })));
      const won = same.filter((r): r is PromiseFulfilledResult<OutputLease> => r.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const r of same) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(LeaseHeldError);
      await won[0].value.release();

      for (let round = 0; round < 3; round++) {
        const { store: out } = output();
        const tries = await Promise.allSettled([OutputLease.acquire(out, { log }), OutputLease.acquire(out, { scope: { index: 0, count: 2 }, log }), OutputLease.acquire(out, { scope: { index: 1, count: 2 }, log })]);
        const ok = tries.map((r) => r.status === 'fulfilled');
        expect(ok[0] && (ok[1] || ok[2])).toBe(false);
        for (const r of tries) if (r.status === 'fulfilled') await r.value.release();
        expect((await out.list(LEASE_PREFIX)).length).toBe(0);
      }
    }, 30_000);
  }
});
