import { describe, expect, it } from 'vitest';
import PQueue from 'p-queue';
import { batch, mapConcurrent } from '../src/concurrency.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function* counting(n: number, pulled: { count: number }, delayMs = 0): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) {
    if (delayMs) await sleep(delayMs);
    pulled.count++;
    yield i;
  }
}

describe('mapConcurrent', () => {
  it('keeps input order when ordered, with at most `concurrency` calls in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const out: number[] = [];
    const pulled = { count: 0 };
    for await (const v of mapConcurrent(counting(50, pulled), async (i) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await sleep((i * 7) % 5);
      inFlight--;
      return i * 2;
    }, { concurrency: 4 })) out.push(v);
    expect(out).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
    expect(peak).toBe(4);
  });

  it('emits in completion order when unordered', async () => {
    const out: number[] = [];
    const pulled = { count: 0 };
    for await (const v of mapConcurrent(counting(4, pulled), async (i) => {
      await sleep([40, 5, 25, 1][i]);
      return i;
    }, { concurrency: 4, ordered: false })) out.push(v);
    expect(out).toEqual([3, 1, 2, 0]);
  });

  it('pulls no further ahead than its window while the consumer is slow (backpressure)', async () => {
    const pulled = { count: 0 };
    const it = mapConcurrent(counting(1_000_000, pulled), async (i) => i, { concurrency: 8 })[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) await it.next();
    await sleep(50);
    // The window holds at most 8 items beyond what was consumed, however large the input.
    expect(pulled.count).toBeLessThanOrEqual(3 + 8 + 1);
    await it.return?.(undefined);
  });

  it('shares a queue so two maps together stay under its limit', async () => {
    const queue = new PQueue({ concurrency: 2 });
    let inFlight = 0;
    let peak = 0;
    const work = async (i: number) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await sleep(3);
      inFlight--;
      return i;
    };
    const a = mapConcurrent(counting(20, { count: 0 }), work, { concurrency: 8, queue });
    const b = mapConcurrent(counting(20, { count: 0 }), work, { concurrency: 8, queue });
    const drain = async (g: AsyncIterable<number>) => { let n = 0; for await (const _ of g) n++; return n; };
    expect(await Promise.all([drain(a), drain(b)])).toEqual([20, 20]);
    expect(peak).toBe(2);
  });

  it('surfaces an error from fn', async () => {
    const g = mapConcurrent([1, 2, 3], async (i) => {
      if (i === 2) throw new Error('boom at 2');
      return i;
    }, { concurrency: 2 });
    await expect((async () => { for await (const _ of g) void _; })()).rejects.toThrow('boom at 2');
  });
});

describe('batch', () => {
  it('groups by size with a partial last batch', async () => {
    const out: number[][] = [];
    for await (const b of batch(counting(10, { count: 0 }), { size: 4 })) out.push(b);
    expect(out).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  });

  it('emits a partial batch after maxWaitMs when the input stalls', async () => {
    async function* stalling() {
      yield 1;
      yield 2;
      await sleep(300);
      yield 3;
    }
    const out: { items: number[]; at: number }[] = [];
    const t0 = Date.now();
    for await (const b of batch(stalling(), { size: 10, maxWaitMs: 50 })) out.push({ items: b, at: Date.now() - t0 });
    expect(out.map((o) => o.items)).toEqual([[1, 2], [3]]);
    // The first batch left long before the stalled item arrived.
    expect(out[0].at).toBeLessThan(250);
  });

  it('rejects a size below 1', async () => {
    await expect((async () => { for await (const _ of batch(counting(1, { count: 0 }), { size: 0 })) void _; })()).rejects.toThrow(/at least 1/);
  });
});
