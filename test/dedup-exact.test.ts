import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { exactDedup, ExactSeenSet } from '../stages/dedup-exact.js';
import { silentLogger } from '../src/log.js';
import { drop, fail, newSample, type Sample } from '../src/sample.js';
import type { Stage, StageContext } from '../src/stage.js';
import { countInFunnel, emptyFunnel, funnelBalances, StatsCollector } from '../src/stats.js';

const context = (unitId = 'u0'): StageContext => ({ unitId, stats: new StatsCollector(), log: silentLogger });
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

async function run(stage: Stage, samples: Sample[], ctx = context()): Promise<Sample[]> {
  async function* source() {
    yield* samples;
  }
  const out: Sample[] = [];
  for await (const s of stage(source(), ctx)) out.push(s);
  return out;
}

const img = (key: string, content: string | null, extra: Record<string, unknown> = {}) => newSample(key, { ...(content === null ? {} : { original_sha256: sha(content) }), ...extra });

/** A full GC even without `node --expose-gc`: the flag set at run time shows up in a new context. */
function exposeGc(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

describe('ExactSeenSet', () => {
  it('maps each digest to its first key, ignoring case', () => {
    const set = new ExactSeenSet();
    expect(set.add(sha('a'), 'k1')).toBeUndefined();
    expect(set.add(sha('b'), 'k2')).toBeUndefined();
    expect(set.add(sha('a'), 'k3')).toBe('k1');
    expect(set.add(sha('a').toUpperCase(), 'k4')).toBe('k1');
    expect(set.firstKey(sha('b'))).toBe('k2');
    expect(set.has(sha('c'))).toBe(false);
    expect(set.size).toBe(2);
    expect(() => set.add('not-hex', 'k')).toThrow(/hex digest/);
  });

  it('keeps every entry through growth, with non-ASCII keys', () => {
    const set = new ExactSeenSet();
    let firsts = 0;
    for (let i = 0; i < 20_000; i++) if (set.add(sha(String(i)), `clé_${i}`) === undefined) firsts++;
    expect(firsts).toBe(20_000);
    expect(set.size).toBe(20_000);
    for (let i = 0; i < 20_000; i += 997) expect(set.firstKey(sha(String(i)))).toBe(`clé_${i}`);
    expect(set.add(sha('19999'), 'x')).toBe('clé_19999');
  });

  it('stays small: 100k digests in under 6 MB', () => {
    const gc = (globalThis as { gc?: () => void }).gc ?? exposeGc();
    const mem = () => {
      gc?.();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const digests = Array.from({ length: 100_000 }, (_, i) => sha(`img${i}`));
    const before = mem();
    const set = new ExactSeenSet();
    for (let i = 0; i < digests.length; i++) set.add(digests[i], `00012_${String(i).padStart(6, '0')}`);
    expect(set.size).toBe(100_000);
    // The arrays the set holds, counted exactly; ~20 bytes + key per entry plus growth slack.
    expect(set.byteLength).toBeLessThan(6 * 1024 * 1024);
    // The process-level measure is only meaningful after a full GC (node --expose-gc).
    if (gc) expect(mem() - before).toBeLessThan(8 * 1024 * 1024);
    else console.warn('no gc available: skipped the process memory check');
  });
});

describe('dedup-exact', () => {
  it('keeps the first of each content, drops later copies naming the first, keeps order', async () => {
    const ctx = context();
    const input = [img('a', 'x'), img('b', 'y'), img('c', 'x'), img('d', null), img('e', 'y'), img('f', 'x'), img('g', 'z')];
    const out = await run(exactDedup({}), input, ctx);
    expect(out.map((s) => s.key)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(out.map((s) => s.status)).toEqual([
      { kind: 'ok' },
      { kind: 'ok' },
      { kind: 'dropped', by: 'duplicate', value: { of: 'a' } },
      { kind: 'ok' }, // no hash: passes through
      { kind: 'dropped', by: 'duplicate', value: { of: 'b' } },
      { kind: 'dropped', by: 'duplicate', value: { of: 'a' } },
      { kind: 'ok' },
    ]);
    expect(ctx.stats.stage('dedup-exact')).toMatchObject({ in: 7, ok: 4, dropped: 3, failed: 0, counts: { duplicates: 3, no_hash: 1 } });
    const funnel = emptyFunnel();
    for (const s of out) countInFunnel(funnel, s);
    expect(funnelBalances(funnel)).toBe(true);
    expect(funnel.dropped).toEqual({ duplicate: 3 });
  });

  it('non-ok samples pass through untouched and do not claim their hash', async () => {
    const d = drop(img('d', 'x'), 'watermark', { pwatermark: 0.9 });
    const f = fail(img('f', 'x'), 'fetch', new Error('timeout'));
    const out = await run(exactDedup({}), [d, f, img('k', 'x')]);
    expect(out[0].status).toEqual({ kind: 'dropped', by: 'watermark', value: { pwatermark: 0.9 } });
    expect(out[1].status).toMatchObject({ kind: 'failed', stage: 'fetch' });
    expect(out[2].status).toEqual({ kind: 'ok' });
  });

  it('deduplicates across two stage instances (units) sharing one set', async () => {
    const seen = new ExactSeenSet();
    const u1 = await run(exactDedup({ seen }), [img('u1_0', 'p'), img('u1_1', 'q')], context('u1'));
    const u2 = await run(exactDedup({ seen }), [img('u2_0', 'q'), img('u2_1', 'r'), img('u2_2', 'r')], context('u2'));
    expect(u1.map((s) => s.status.kind)).toEqual(['ok', 'ok']);
    expect(u2.map((s) => s.status)).toEqual([{ kind: 'dropped', by: 'duplicate', value: { of: 'u1_1' } }, { kind: 'ok' }, { kind: 'dropped', by: 'duplicate', value: { of: 'u2_1' } }]);
    expect(seen.size).toBe(3);
    // Separate sets do not see each other.
    const alone = await run(exactDedup({}), [img('v', 'p')]);
    expect(alone[0].status.kind).toBe('ok');
  });

  it('other fields: non-hex values such as URLs and bigints are hashed first', async () => {
    const rows = [newSample('a', { URL: 'https://x/1.jpg' }), newSample('b', { URL: 'https://x/2.jpg' }), newSample('c', { URL: 'https://x/1.jpg' })];
    const out = await run(exactDedup({ field: 'URL' }), rows);
    expect(out.map((s) => s.status.kind)).toEqual(['ok', 'ok', 'dropped']);
    const byHash = await run(exactDedup({ field: 'hash' }), [newSample('a', { hash: -5n }), newSample('b', { hash: -5n }), newSample('c', { hash: null })]);
    expect(byHash.map((s) => s.status.kind)).toEqual(['ok', 'dropped', 'ok']);
  });
});
