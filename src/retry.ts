import pRetry from 'p-retry';

/** Retry policy for remote calls (models, downloads): transient failures only (429, 5xx, resets, timeouts). */
export interface RetryOptions {
  /** Retries after the first try. */
  retries: number;
  /** First backoff in ms; doubles each retry, with full jitter. */
  minDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { retries: 5, minDelayMs: 250, maxDelayMs: 20_000 };

/** An HTTP answer worth retrying later; `retryAfterMs` comes from Retry-After when the server sent one. */
export class TransientError extends Error {
  constructor(message: string, readonly retryAfterMs?: number) {
    super(message);
    this.name = 'TransientError';
  }
}

/** Parses Retry-After (seconds or an HTTP date) into ms. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const s = Number(value);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** True for errors a retry may cure: network resets, timeouts, TransientError. */
export function isTransient(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  const e = err as { name?: string; code?: string; cause?: { code?: string } };
  const code = e?.code ?? e?.cause?.code;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return e.name === 'TimeoutError';
  return ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'EAI_AGAIN'].includes(code ?? '') || (err instanceof TypeError && /fetch failed|terminated|other side closed/i.test(err.message));
}

/**
 * Runs `fn` with retries on transient errors: exponential backoff with full jitter, and at least
 * the server's Retry-After when it sent one. Other errors fail at once, unchanged.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = DEFAULT_RETRY, onRetry?: (err: unknown, attempt: number) => void, signal?: AbortSignal): Promise<T> {
  return pRetry(fn, {
    retries: opts.retries,
    minTimeout: opts.minDelayMs,
    maxTimeout: opts.maxDelayMs,
    factor: 2,
    randomize: true,
    signal,
    shouldRetry: ({ error }) => isTransient(error),
    onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
      if (retriesLeft === 0 || !isTransient(error)) return;
      onRetry?.(error, attemptNumber);
      const ra = error instanceof TransientError ? error.retryAfterMs : undefined;
      if (ra) await new Promise((r) => setTimeout(r, Math.min(opts.maxDelayMs, ra)));
    },
  });
}
