import { describe, expect, it } from 'vitest';
import { modelBatchStage, type ModelBatchStageOptions } from '../src/models/batcher.js';
import { NoReplicaError, ReplicaCallError, ReplicaPool, type ReplicaPoolOptions } from '../src/models/replica-pool.js';
import { TransientError } from '../src/retry.js';
import { drop, fail, newSample, type Sample } from '../src/sample.js';
import type { StageContext } from '../src/stage.js';
import { StatsCollector } from '../src/stats.js';
import { silentLogger } from '../src/log.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake model server: doubles its inputs after `latency` ms; `script` may throw or change the answer per call. */
class FakeReplica {
  calls = 0;
  batches: number[][] = [];
  constructor(readonly name: string, private readonly latency: () => number, private readonly script?: (call: number, xs: number[]) => number[] | void) {}
  async infer(xs: number[]): Promise<number[]> {
    const call = ++this.calls;
    const ms = this.latency();
    await (ms > 0 ? sleep(ms) : new Promise((r) => setImmediate(r)));
    const scripted = this.script?.(call, xs);
    this.batches.push(xs);
    return scripted ?? xs.map((x) => x * 2);
  }
}

const poolOf = (replicas: FakeReplica[], opts?: ReplicaPoolOptions) => new ReplicaPool(replicas.map((r) => ({ name: r.name, client: r })), opts);

function stage(pool: ReplicaPool<FakeReplica>, over: Partial<ModelBatchStageOptions<FakeReplica, number, number>> = {}) {
  return modelBatchStage<FakeReplica, number, number>({
    name: 'model', pool, batchSize: 8, maxWaitMs: 5, maxBatchesInFlight: 6,
    prepare: (s) => s.fields.i as number,
    call: (c, xs) => c.infer(xs),
    apply: (s, y) => { s.fields.y = y; },
    ...over,
  });
}

const context = (): StageContext => ({ unitId: 'u', stats: new StatsCollector(), log: silentLogger });

async function* source(samples: Sample[], pulled = { count: 0 }): AsyncGenerator<Sample> {
  for (const s of samples) {
    pulled.count++;
    yield s;
  }
}

const samples = (n: number) => Array.from({ length: n }, (_, i) => newSample(`s${i}`, { i }));

async function collect(it: AsyncIterable<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s / 2 ** 32);
}

const okCount = (out: Sample[]) => out.filter((s) => s.status.kind === 'ok').length;

describe('modelBatchStage', () => {
  it('keeps input order across 4 replicas with random latencies', async () => {
    const r = rng(1);
    const replicas = ['a', 'b', 'c', 'd'].map((n) => new FakeReplica(n, () => Math.floor(r() * 6)));
    const ctx = context();
    const input = samples(203);
    const out = await collect(stage(poolOf(replicas))(source(input), ctx));
    expect(out.map((s) => s.key)).toEqual(input.map((s) => s.key));
    expect(out.every((s) => s.status.kind === 'ok' && s.fields.y === (s.fields.i as number) * 2)).toBe(true);
    const st = ctx.stats.stage('model');
    expect([st.in, st.ok, st.failed]).toEqual([203, 203, 0]);
    expect(st.counts.samples).toBe(203);
    const perReplica = replicas.map((x) => st.counts[`replica:${x.name}:batches`] ?? 0);
    expect(perReplica.reduce((a, b) => a + b, 0)).toBe(st.counts.batches);
    expect(perReplica).toEqual(replicas.map((x) => x.batches.length));
    expect(st.counts.model_ms).toBeGreaterThan(0);
  });

  it('passes dropped and failed samples through untouched, in place, never to the model', async () => {
    const input = samples(100);
    // Leading run, a run longer than a batch, scattered ones, and a trailing run.
    const bad = new Set([0, 1, 2, ...Array.from({ length: 20 }, (_, i) => 30 + i), 55, 57, 61, 96, 97, 98, 99]);
    for (const i of bad) (i % 2 ? drop(input[i], 'filter', i) : fail(input[i], 'decode', new Error('corrupt')));
    const before = input.map((s) => JSON.stringify(s.status));
    const seen: number[] = [];
    const replica = new FakeReplica('a', () => 1);
    const ctx = context();
    const out = await collect(stage(poolOf([replica]), { prepare: (s) => (seen.push(s.fields.i as number), s.fields.i as number) })(source(input), ctx));
    expect(out).toHaveLength(100);
    out.forEach((s, i) => expect(s).toBe(input[i]));
    expect(out.map((s) => JSON.stringify(s.status))).toEqual(before);
    expect(seen.sort((a, b) => a - b)).toEqual([...Array(100).keys()].filter((i) => !bad.has(i)));
    expect(replica.batches.flat().some((x) => bad.has(x))).toBe(false);
    expect(ctx.stats.stage('model').in).toBe(100 - bad.size);
  });

  it('ejects a replica that fails transiently; its batches complete elsewhere and stats name it', async () => {
    const flaky = new FakeReplica('b', () => 1, () => { throw Object.assign(new Error('HTTP 503 overloaded'), { status: 503 }); });
    const replicas = [new FakeReplica('a', () => 1), flaky, new FakeReplica('c', () => 1), new FakeReplica('d', () => 1)];
    const pool = poolOf(replicas, { failuresToEject: 2, cooldownMs: 60_000 });
    const ctx = context();
    const out = await collect(stage(pool)(source(samples(160)), ctx));
    expect(okCount(out)).toBe(160);
    const b = pool.stats().find((s) => s.name === 'b')!;
    expect(b.ejections).toBe(1);
    expect(b.ejected).toBe(true);
    expect(b.failures).toBeGreaterThanOrEqual(2);
    expect(b.lastError).toContain('503');
    const st = ctx.stats.stage('model');
    expect(st.counts['replica:b:batches']).toBeUndefined();
    expect(st.counts.retries).toBe(b.failures);
    expect(st.counts.batches).toBe(20);
  });

  it('fails only the batch whose call hits a non-transient error, naming the replica', async () => {
    const replica = new FakeReplica('gpu0', () => 1, (call) => { if (call === 2) throw new Error('input shape mismatch'); });
    const ctx = context();
    const out = await collect(stage(poolOf([replica]), { maxWaitMs: 1000 })(source(samples(40)), ctx));
    const failed = out.map((s, i) => [s, i] as const).filter(([s]) => s.status.kind === 'failed');
    expect(failed).toHaveLength(8);
    expect(failed.map(([, i]) => i)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    for (const [s] of failed) {
      expect(s.status).toMatchObject({ kind: 'failed', stage: 'model', code: 'model_error' });
      expect((s.status as { error: string }).error).toMatch(/replica gpu0: input shape mismatch/);
    }
    expect(replica.calls).toBe(5); // no retry of a non-transient error
    const st = ctx.stats.stage('model');
    expect([st.in, st.ok, st.failed]).toEqual([40, 32, 8]);
    expect(st.counts['replica:gpu0:failed_batches']).toBe(1);
  });

  it('fails a batch whose call returns the wrong number of results', async () => {
    const replica = new FakeReplica('a', () => 0, (_, xs) => (xs.includes(20) ? xs.slice(1) : undefined));
    const out = await collect(stage(poolOf([replica]), { maxWaitMs: 1000 })(source(samples(32)), context()));
    out.forEach((s, i) => {
      if (i >= 16 && i < 24) expect((s.status as { error: string }).error).toMatch(/^model call failed: replica a: model returned 7 results for 8 inputs$/);
      else expect(s.status.kind).toBe('ok');
    });
  });

  it('fails only the sample whose prepare throws', async () => {
    const replica = new FakeReplica('a', () => 0);
    const out = await collect(stage(poolOf([replica]), { prepare: (s) => { if (s.key === 's3') throw new Error('no pixels'); return s.fields.i as number; } })(source(samples(10)), context()));
    expect(out.map((s) => s.status.kind)).toEqual(['ok', 'ok', 'ok', 'failed', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(out[4].fields.y).toBe(8);
  });

  it('does not pull more than (maxBatchesInFlight + 1) × batchSize ahead of a slow consumer', async () => {
    const pulled = { count: 0 };
    let consumed = 0;
    let peak = 0;
    const input = samples(400);
    async function* watched(): AsyncGenerator<Sample> {
      for await (const s of source(input, pulled)) {
        peak = Math.max(peak, pulled.count - consumed);
        yield s;
      }
    }
    const replicas = [new FakeReplica('a', () => 0), new FakeReplica('b', () => 1)];
    const it = stage(poolOf(replicas), { batchSize: 8, maxBatchesInFlight: 3, maxWaitMs: 2 })(watched(), context());
    for await (const s of it) {
      expect(s.status.kind).toBe('ok');
      consumed++;
      if (consumed % 10 === 0) await sleep(1);
    }
    expect(consumed).toBe(400);
    expect(peak).toBeLessThanOrEqual((3 + 1) * 8);
    expect(peak).toBeGreaterThan(8); // batches really do overlap
  });

  it('gives a slow replica fewer batches than fast ones (least outstanding work)', async () => {
    const slow = new FakeReplica('slow', () => 60);
    const fast = ['f1', 'f2', 'f3'].map((n) => new FakeReplica(n, () => 0));
    const ctx = context();
    const out = await collect(stage(poolOf([slow, ...fast]), { batchSize: 4, maxBatchesInFlight: 16 })(source(samples(240)), ctx));
    expect(okCount(out)).toBe(240);
    const st = ctx.stats.stage('model');
    expect(st.counts['replica:slow:batches']).toBeLessThan(Math.min(...fast.map((f) => st.counts[`replica:${f.name}:batches`])));
  });
});

describe('ReplicaPool', () => {
  it('waits for an ejected replica to come back rather than failing', async () => {
    let broken = true;
    const pool = new ReplicaPool([{ name: 'only', client: null }], { failuresToEject: 1, cooldownMs: 30, maxAttempts: 3 });
    const v = await pool.run(async () => {
      if (broken) {
        broken = false;
        throw new TransientError('HTTP 502');
      }
      return 'ok';
    });
    expect(v).toBe('ok');
    expect(pool.stats()[0]).toMatchObject({ calls: 2, failures: 1, ejections: 1, lastError: 'HTTP 502' });
  });

  it('fails with an error naming every replica and its last error when all stay ejected', async () => {
    const pool = new ReplicaPool([{ name: 'r0', client: 0 }, { name: 'r1', client: 1 }], { failuresToEject: 1, cooldownMs: 200, maxWaitMs: 50 });
    const err = await pool.run(async (c) => { throw Object.assign(new Error(`HTTP 503 from ${c}`), { status: 503 }); }).catch((e) => e);
    expect(err).toBeInstanceOf(NoReplicaError);
    expect(err.message).toMatch(/r0 \(back in [\d.]+ s; last error: HTTP 503 from 0\)/);
    expect(err.message).toMatch(/r1 \(back in [\d.]+ s; last error: HTTP 503 from 1\)/);
  });

  it('gives up after maxAttempts transient failures, naming the replicas tried', async () => {
    const pool = new ReplicaPool([{ name: 'x', client: 0 }, { name: 'y', client: 1 }], { failuresToEject: 10 });
    const err = await pool.run(async () => { throw Object.assign(new Error('reset'), { code: 'ECONNRESET' }); }).catch((e) => e);
    expect(err).toBeInstanceOf(ReplicaCallError);
    expect(err.attempts).toBe(4);
    expect(err.message).toMatch(/gave up after 4 attempts; earlier: [xy]: reset; [xy]: reset; [xy]: reset/);
    expect(pool.stats().map((s) => s.calls)).toEqual([2, 2]);
  });

  it('keeps at most maxInFlightPerReplica calls on each replica', async () => {
    const pool = new ReplicaPool([{ name: 'a', client: 'a' }, { name: 'b', client: 'b' }], { maxInFlightPerReplica: 2 });
    const live: Record<string, number> = { a: 0, b: 0 };
    let peak = 0;
    await Promise.all(Array.from({ length: 20 }, () => pool.run(async (c) => {
      live[c]++;
      peak = Math.max(peak, live[c]);
      await sleep(1);
      live[c]--;
    })));
    expect(peak).toBe(2);
    expect(pool.stats().reduce((n, s) => n + s.calls, 0)).toBe(20);
  });
});
