import PQueue from 'p-queue';

export interface MapOptions {
  /** Most calls of `fn` in flight at once; also bounds results held for reordering. */
  concurrency: number;
  /** Emit results in input order (default) or as they finish. */
  ordered?: boolean;
  /** A queue shared between stages to cap their combined work (e.g. CPU-bound decoding). */
  queue?: PQueue;
}

/**
 * Maps an async iterable with bounded concurrency. Input is pulled only while fewer than
 * `concurrency` items are in flight or waiting to be emitted, so memory stays bounded however
 * large the input and however slow the consumer. An error from `fn` ends the iteration.
 */
export async function* mapConcurrent<T, R>(input: AsyncIterable<T> | Iterable<T>, fn: (item: T) => Promise<R>, opts: MapOptions): AsyncGenerator<R> {
  const limit = Math.max(1, Math.floor(opts.concurrency));
  const queue = opts.queue ?? new PQueue({ concurrency: limit });
  const ordered = opts.ordered ?? true;
  type Slot = { promise: Promise<R>; settled: boolean; value?: R; error?: unknown };
  const window: Slot[] = [];
  let wake: (() => void) | undefined;

  const start = (item: T): void => {
    const slot = { settled: false } as Slot;
    slot.promise = queue.add(() => fn(item)) as Promise<R>;
    slot.promise.then(
      (v) => { slot.value = v; slot.settled = true; wake?.(); },
      (e) => { slot.error = e; slot.settled = true; wake?.(); },
    );
    window.push(slot);
  };
  const take = async (): Promise<R> => {
    for (;;) {
      const i = ordered ? (window[0].settled ? 0 : -1) : window.findIndex((s) => s.settled);
      if (i >= 0) {
        const [slot] = window.splice(i, 1);
        if (slot.error !== undefined) throw slot.error;
        return slot.value as R;
      }
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  };

  try {
    for await (const item of input as AsyncIterable<T>) {
      if (window.length >= limit) yield await take();
      start(item);
    }
    while (window.length > 0) yield await take();
  } finally {
    // Abandoned slots must not surface as unhandled rejections.
    for (const s of window) s.promise.catch(() => undefined);
  }
}

export interface BatchOptions {
  /** Emit when this many items are gathered. */
  size: number;
  /** Emit a partial batch when its first item has waited this long (ms). */
  maxWaitMs?: number;
}

const TIMEOUT = Symbol('timeout');

/** Groups items into arrays of at most `size`, emitting early after `maxWaitMs`. */
export async function* batch<T>(input: AsyncIterable<T>, opts: BatchOptions): AsyncGenerator<T[]> {
  if (!(opts.size >= 1)) throw new Error(`batch size must be at least 1, got ${opts.size}`);
  const it = input[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  let buf: T[] = [];
  let deadline = 0;
  try {
    for (;;) {
      pending ??= it.next();
      let r: IteratorResult<T> | typeof TIMEOUT;
      if (buf.length > 0 && opts.maxWaitMs !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<typeof TIMEOUT>((res) => (timer = setTimeout(() => res(TIMEOUT), Math.max(0, deadline - Date.now()))));
        r = await Promise.race([pending, timeout]);
        clearTimeout(timer);
        if (r === TIMEOUT) {
          yield buf;
          buf = [];
          continue;
        }
      } else {
        r = await pending;
      }
      pending = undefined;
      if (r.done) break;
      if (buf.length === 0) deadline = Date.now() + (opts.maxWaitMs ?? 0);
      buf.push(r.value);
      if (buf.length >= opts.size) {
        yield buf;
        buf = [];
      }
    }
    if (buf.length > 0) yield buf;
  } finally {
    if (pending === undefined) await it.return?.();
  }
}
