import { describe, expect, it } from 'vitest';
import { columnFilters, columnFilterSchema, toRegExp, type ColumnFilter } from '../stages/column-filters.js';
import { silentLogger } from '../src/log.js';
import { drop, fail, newSample, type Sample } from '../src/sample.js';
import type { StageContext } from '../src/stage.js';
import { countInFunnel, emptyFunnel, funnelBalances, StatsCollector } from '../src/stats.js';

const context = (): StageContext => ({ unitId: 'u0', stats: new StatsCollector(), log: silentLogger });

async function run(filters: ColumnFilter[], rows: Record<string, unknown>[] | Sample[], ctx = context()): Promise<Sample[]> {
  const samples = rows.map((r, i) => ('status' in r && 'key' in r ? (r as Sample) : newSample(`r${String(i).padStart(3, '0')}`, r as Record<string, unknown>)));
  async function* source() {
    yield* samples;
  }
  const out: Sample[] = [];
  for await (const s of columnFilters(filters)(source(), ctx)) out.push(s);
  return out;
}

const LAION_FILTERS: ColumnFilter[] = [
  { name: 'watermark', keep: 'pwatermark < 0.8' },
  { name: 'nsfw', keep: 'punsafe < 0.5' },
  { name: 'size', keep: 'WIDTH >= 256 and HEIGHT >= 256' },
  { name: 'aspect', keep: 'max(WIDTH, HEIGHT) / min(WIDTH, HEIGHT) <= 3' },
  { name: 'stock', keep: 'not (TEXT ~= "(?i)stock photo")' },
];

/** A LAION-like row that passes every filter above unless overridden. */
const row = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  URL: 'https://example.com/a.jpg',
  TEXT: 'a red bicycle leaning on a wall',
  top_caption: null,
  WIDTH: 640n,
  HEIGHT: 480n,
  similarity: 0.31,
  hash: -8_452_310_284_123_998_101n,
  pwatermark: 0.12,
  punsafe: 0.01,
  ...over,
});

describe('column-filters', () => {
  it('counts each filter on its own funnel line, first rejecting filter wins, order kept', async () => {
    const rows = [
      row(),
      row({ pwatermark: 0.93 }),
      row({ pwatermark: 0.95, punsafe: 0.9 }), // both reject: watermark comes first
      row({ punsafe: 0.7 }),
      row({ WIDTH: 200n }),
      row({ WIDTH: 2000n, HEIGHT: 300n }),
      row({ TEXT: 'Business team meeting - Stock Photo' }),
      row({ pwatermark: null }), // missing: dropped by watermark (default on_missing)
      row({ TEXT: 'sunset over the sea' }),
    ];
    const ctx = context();
    const out = await run(LAION_FILTERS, rows, ctx);
    expect(out.map((s) => s.key)).toEqual(rows.map((_, i) => `r${String(i).padStart(3, '0')}`));
    expect(out.map((s) => (s.status.kind === 'dropped' ? s.status.by : s.status.kind))).toEqual(['ok', 'watermark', 'watermark', 'nsfw', 'size', 'aspect', 'stock', 'watermark', 'ok']);
    expect(out[1].status).toEqual({ kind: 'dropped', by: 'watermark', value: { pwatermark: 0.93 } });
    // bigint columns reach the expression as numbers; short-circuit `and` reads only WIDTH.
    expect(out[4].status).toEqual({ kind: 'dropped', by: 'size', value: { WIDTH: 200 } });
    expect(out[5].status).toEqual({ kind: 'dropped', by: 'aspect', value: { WIDTH: 2000, HEIGHT: 300 } });
    expect(out[7].status).toEqual({ kind: 'dropped', by: 'watermark', value: { pwatermark: null } });

    const funnel = emptyFunnel();
    for (const s of out) countInFunnel(funnel, s);
    expect(funnelBalances(funnel)).toBe(true);
    expect(funnel).toEqual({ rows_in: 9, written: 2, dropped: { watermark: 3, nsfw: 1, size: 1, aspect: 1, stock: 1 }, failed: {} });

    const st = ctx.stats.all().find((s) => s.name === 'column-filters')!;
    expect(st).toMatchObject({ in: 9, ok: 2, dropped: 7, failed: 0 });
    expect(st.counts).toMatchObject({ 'dropped:watermark': 3, 'dropped:nsfw': 1, 'dropped:size': 1, 'dropped:aspect': 1, 'dropped:stock': 1, 'missing:watermark': 1 });
    const perFilter = LAION_FILTERS.reduce((a, f) => a + st.counts[`dropped:${f.name}`], 0);
    expect(perFilter).toBe(st.dropped);
  });

  it('lists filters that never drop with a zero count', async () => {
    const ctx = context();
    await run(LAION_FILTERS, [row()], ctx);
    expect(ctx.stats.stage('column-filters').counts['dropped:nsfw']).toBe(0);
  });

  it('on_missing: drop, keep and fail; null and absent both count as missing', async () => {
    const rows = [{ a: 1 }, { a: null }, {}, { a: undefined }];
    const dropped = await run([{ name: 'f', keep: 'a > 0' }], rows);
    expect(dropped.map((s) => s.status.kind)).toEqual(['ok', 'dropped', 'dropped', 'dropped']);
    expect(dropped[2].status).toEqual({ kind: 'dropped', by: 'f', value: { a: null } });

    const ctx = context();
    const kept = await run([{ name: 'f', keep: 'a > 0', on_missing: 'keep' }, { name: 'g', keep: 'exists(b)' }], [{ a: null, b: 1 }, { a: null, b: 2 }], ctx);
    expect(kept.map((s) => s.status.kind)).toEqual(['ok', 'ok']);
    expect(ctx.stats.stage('column-filters').counts['missing:f']).toBe(2);

    const failed = await run([{ name: 'f', keep: 'a > 0', on_missing: 'fail' }], [{ b: 1 }]);
    expect(failed[0].status).toMatchObject({ kind: 'failed', stage: 'column-filters', code: 'missing_column' });
    expect((failed[0].status as { error: string }).error).toMatch(/"f".*column a is missing/);
  });

  it('a keep-on-missing filter still rejects when a present column fails it', async () => {
    const out = await run([{ name: 'size', keep: 'WIDTH >= 256 and HEIGHT >= 256', on_missing: 'keep' }], [{ WIDTH: 100, HEIGHT: null }, { WIDTH: 300, HEIGHT: null }]);
    expect(out[0].status).toEqual({ kind: 'dropped', by: 'size', value: { WIDTH: 100 } });
    expect(out[1].status.kind).toBe('ok');
  });

  it('compiles at creation: a syntax error names the filter and the expression', () => {
    expect(() => columnFilters([{ name: 'ok', keep: 'a < 1' }, { name: 'broken', keep: 'pwatermark <' }])).toThrow(/filter "broken".*"pwatermark <"/s);
    expect(() => columnFilters([{ name: 'badre', keep: 'TEXT ~= "(unclosed"' }])).toThrow(/filter "badre".*regular expression/s);
    expect(() => columnFilters([{ name: 'a', keep: 'x < 1' }, { name: 'a', keep: 'y < 1' }])).toThrow(/duplicate filter name "a"/);
  });

  it('a runtime type error fails the sample with filter_error naming the filter', async () => {
    const ctx = context();
    const out = await run([{ name: 'watermark', keep: 'pwatermark < 0.8' }, { name: 'never', keep: 'false' }], [{ pwatermark: 'high' }, { pwatermark: 0.5 }], ctx);
    expect(out[0].status).toMatchObject({ kind: 'failed', stage: 'column-filters', code: 'filter_error' });
    expect((out[0].status as { error: string }).error).toMatch(/"watermark".*number.*text/);
    expect(out[1].status).toEqual({ kind: 'dropped', by: 'never', value: {} });
    expect(ctx.stats.stage('column-filters')).toMatchObject({ failed: 1, dropped: 1 });
  });

  it('fails rather than rounds a bigint beyond 2^53', async () => {
    const out = await run([{ name: 'sample', keep: 'hash mod 10 < 5' }], [{ hash: 12n }, { hash: 2n ** 62n }]);
    expect(out[0].status.kind).toBe('ok');
    expect(out[1].status).toMatchObject({ kind: 'failed', code: 'filter_error' });
  });

  it('a non-boolean result is an error, not truthiness', async () => {
    const out = await run([{ name: 'num', keep: 'pwatermark' }], [{ pwatermark: 0.5 }]);
    expect(out[0].status).toMatchObject({ kind: 'failed', code: 'filter_error' });
  });

  it('strings: equality, in / not in, regex with inline flags and escapes, quoted column names', async () => {
    const filters: ColumnFilter[] = [
      { name: 'lang', keep: 'LANGUAGE in ("en", "de")' },
      { name: 'not_blocked', keep: 'status not in ("blocked", "removed")' },
      { name: 'no_digits_only', keep: 'not (TEXT ~= "^\\\\d+$")' },
      { name: 'caption_len', keep: "'caption-len' >= 3" },
      { name: 'is_photo', keep: 'kind == "photo" and flag == true' },
    ];
    const base = { LANGUAGE: 'en', status: 'ok', TEXT: 'a cat', 'caption-len': 5, kind: 'photo', flag: true };
    const out = await run(filters, [base, { ...base, LANGUAGE: 'fr' }, { ...base, status: 'removed' }, { ...base, TEXT: '12345' }, { ...base, 'caption-len': 1 }, { ...base, flag: false }]);
    expect(out.map((s) => (s.status.kind === 'dropped' ? s.status.by : s.status.kind))).toEqual(['ok', 'lang', 'not_blocked', 'no_digits_only', 'caption_len', 'is_photo']);
    expect(toRegExp('(?i)stock photo').test('STOCK PHOTO')).toBe(true);
    expect(toRegExp('(?is)a.b').flags).toBe('is');
  });

  it('non-ok samples pass through untouched and uncounted', async () => {
    const d = drop(newSample('d', { pwatermark: 0.99 }), 'earlier', 1);
    const f = fail(newSample('f', { pwatermark: 'x' }), 'fetch', new Error('404'));
    const ctx = context();
    const out = await run([{ name: 'watermark', keep: 'pwatermark < 0.8' }], [d, f, newSample('k', { pwatermark: 0.1 })], ctx);
    expect(out[0].status).toEqual({ kind: 'dropped', by: 'earlier', value: 1 });
    expect(out[1].status).toMatchObject({ kind: 'failed', stage: 'fetch', error: '404' });
    expect(out[2].status.kind).toBe('ok');
    expect(ctx.stats.stage('column-filters').in).toBe(1);
  });

  it('schema: on_missing defaults to drop; unknown keys are refused', () => {
    expect(columnFilterSchema.parse([{ name: 'w', keep: 'pwatermark < 0.8' }])).toEqual([{ name: 'w', keep: 'pwatermark < 0.8', on_missing: 'drop' }]);
    expect(columnFilterSchema.safeParse([{ name: 'w', keep: 'x', on_missing: 'maybe' }]).success).toBe(false);
    expect(columnFilterSchema.safeParse([{ name: 'w', keep: 'x', expr: 'y' }]).success).toBe(false);
  });
});
