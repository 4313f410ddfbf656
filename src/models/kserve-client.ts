import { decodeInferResponse, encodeInferRequest, HEADER_LENGTH, isDType, DTYPES } from './kserve-codec.js';
import { Breaker, endpointOutage, modelBreaker, type BreakerOptions } from '../outage.js';
import { DEFAULT_RETRY, parseRetryAfter, TransientError, withRetry, type RetryOptions } from '../retry.js';
import { checkInputs, TensorMismatchError, type NamedTensors, type TensorModel, type TensorSpec } from './tensor.js';

export interface KServeClientOptions {
  /** Per HTTP request, body included (default 60 s). */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Binary tensor extension (default true); see KServeTensorModel for the JSON fallback. */
  binary?: boolean;
  headers?: Record<string, string>;
  /** Calls in a row failing with one reason (5xx, timeouts), none succeeding, that make the endpoint down; default: the `breaker` section's model_failures. */
  breaker?: BreakerOptions;
}

export interface KServeClientStats {
  /** infer() calls that reached the network. */
  requests: number;
  /** Extra attempts after transient failures (429, 5xx, resets, timeouts). */
  retries: number;
  bytesSent: number;
  bytesReceived: number;
  /** 1 once the client has switched from binary to JSON for good. */
  jsonFallbacks: number;
}

/** A non-retryable answer from the server (4xx other than 429); the message names the model. */
export class KServeHttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'KServeHttpError';
  }
}

// A 400 like this means the server does not speak the binary extension, not that our tensors are wrong.
const BINARY_UNSUPPORTED = /binary|content[- ]?type/i;

/**
 * A remote tensor model over the KServe v2 HTTP protocol (Triton, `bitprep serve`, …).
 *
 * Binary mode falls back to JSON once: if the server answers a binary request with 400 or 415
 * whose message mentions binary data or the content type, the same request is resent as JSON;
 * if that succeeds the client stays on JSON from then on. INT64 beyond 2^53 cannot travel as JSON.
 */
export class KServeTensorModel implements TensorModel {
  readonly stats: KServeClientStats = { requests: 0, retries: 0, bytesSent: 0, bytesReceived: 0, jsonFallbacks: 0 };
  private binary: boolean;
  private readonly timeoutMs: number;
  private readonly retry: RetryOptions;
  private readonly headers: Record<string, string>;
  private readonly breaker: Breaker;

  private constructor(readonly url: string, readonly name: string, readonly inputs: TensorSpec[], readonly outputs: TensorSpec[], opts: KServeClientOptions) {
    this.breaker = new Breaker(`${url} (model ${name})`, opts.breaker ?? modelBreaker());
    this.binary = opts.binary ?? true;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.headers = opts.headers ?? {};
  }

  /** Waits (with retries) until the server and model are ready, then reads the model's metadata. */
  static async connect(url: string, model: string, opts: KServeClientOptions = {}): Promise<KServeTensorModel> {
    const base = url.replace(/\/+$/, '');
    const modelPath = `${base}/v2/models/${encodeURIComponent(model)}`;
    const get = (u: string, what: string) =>
      withRetry(async () => {
        const res = await fetch(u, { headers: opts.headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) });
        const text = await res.text();
        if (res.ok) return text;
        // Not ready yet (503 from Triton while loading) is worth waiting for; 404 is not.
        if (res.status === 429 || res.status >= 500) throw new TransientError(`${what}: HTTP ${res.status}`, parseRetryAfter(res.headers.get('retry-after')));
        throw new KServeHttpError(res.status, `model ${model} at ${base}: ${what} answered ${res.status}: ${errorMessage(text)}`);
      }, opts.retry ?? DEFAULT_RETRY);
    try {
      await get(`${base}/v2/health/ready`, 'server readiness');
      const meta = JSON.parse(await get(modelPath, 'model metadata')) as { inputs?: unknown; outputs?: unknown };
      await get(`${modelPath}/ready`, 'model readiness');
      return new KServeTensorModel(base, model, specs(model, 'input', meta.inputs), specs(model, 'output', meta.outputs), opts);
    } catch (err) {
      // Not serving the model, unauthorised, unreachable: nothing this run does can succeed.
      const outage = endpointOutage(`${base} (model ${model})`, err, err instanceof KServeHttpError ? err.status : undefined, err instanceof KServeHttpError ? err.message : `model ${model} at ${base}: could not connect: ${describe(err)}`);
      if (outage) throw outage;
      if (err instanceof KServeHttpError || err instanceof TensorMismatchError) throw err;
      throw new Error(`model ${model} at ${base}: could not connect: ${describe(err)}`, { cause: err });
    }
  }

  async infer(inputs: NamedTensors, opts: { outputs?: string[]; signal?: AbortSignal } = {}): Promise<NamedTensors> {
    checkInputs(this.name, this.inputs, inputs);
    const outputs = opts.outputs ?? this.outputs.map((s) => s.name);
    for (const o of outputs) if (!this.outputs.some((s) => s.name === o)) throw new TensorMismatchError(`model ${this.name}: unknown output tensor "${o}" (outputs: ${this.outputs.map((s) => s.name).join(', ')})`);
    this.stats.requests++;
    let attempts = 0;
    try {
      return await withRetry(
        async () => {
          attempts++;
          if (!this.binary) return this.succeeded(await this.post(inputs, outputs, false, opts.signal));
          try {
            return this.succeeded(await this.post(inputs, outputs, true, opts.signal));
          } catch (err) {
            if (!(err instanceof KServeHttpError && (err.status === 400 || err.status === 415) && BINARY_UNSUPPORTED.test(err.message))) throw err;
            const out = await this.post(inputs, outputs, false, opts.signal);
            this.binary = false;
            this.stats.jsonFallbacks++;
            return this.succeeded(out);
          }
        },
        this.retry,
        () => this.stats.retries++,
        opts.signal,
      );
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const http = err instanceof KServeHttpError ? err : undefined;
      const message = http ? http.message : `model ${this.name} at ${this.url}: infer failed after ${attempts} attempt(s): ${describe(err, this.timeoutMs)}`;
      // 413 stays a KServeHttpError: the caller may split the batch (stages/encode.ts).
      const outage = http?.status === 413 ? undefined : endpointOutage(`${this.url} (model ${this.name})`, err, http?.status, message);
      if (outage) throw outage;
      if (http) throw http;
      this.breaker.failure(failureReason(err), message);
      throw new Error(message, { cause: err });
    }
  }

  async close(): Promise<void> {}

  private succeeded(out: NamedTensors): NamedTensors {
    this.breaker.success();
    return out;
  }

  private async post(inputs: NamedTensors, outputs: string[], binary: boolean, signal?: AbortSignal): Promise<NamedTensors> {
    const enc = encodeInferRequest(inputs, { binary, outputs });
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await fetch(`${this.url}/v2/models/${encodeURIComponent(this.name)}/infer`, {
      method: 'POST',
      headers: { ...this.headers, ...enc.headers },
      body: enc.body,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    this.stats.bytesSent += enc.body.byteLength;
    const body = new Uint8Array(await res.arrayBuffer());
    this.stats.bytesReceived += body.byteLength;
    if (res.ok) return decodeInferResponse(body, res.headers.get(HEADER_LENGTH)).outputs;
    const msg = errorMessage(new TextDecoder().decode(body));
    if (res.status === 429 || res.status >= 500) throw new TransientError(`HTTP ${res.status}: ${msg}`, parseRetryAfter(res.headers.get('retry-after')));
    throw new KServeHttpError(res.status, `model ${this.name} at ${this.url}: server answered ${res.status}: ${msg}`);
  }
}

function specs(model: string, kind: string, raw: unknown): TensorSpec[] {
  if (!Array.isArray(raw)) throw new Error(`model ${model}: metadata has no ${kind}s list`);
  return raw.map((s: { name?: unknown; datatype?: unknown; shape?: unknown }) => {
    if (typeof s?.name !== 'string' || !Array.isArray(s.shape)) throw new Error(`model ${model}: malformed ${kind} in metadata: ${JSON.stringify(s)}`);
    if (!isDType(s.datatype)) throw new TensorMismatchError(`model ${model}: ${kind} "${s.name}" has datatype ${String(s.datatype)}, which bitprep does not support (supported: ${DTYPES.join(', ')})`);
    return { name: s.name, dtype: s.datatype, shape: s.shape.map(Number) };
  });
}

/** A retried failure's reason for the breaker: `http_503`, `timeout` or `network`. */
function failureReason(err: unknown): string {
  const e = err as { name?: string; message?: string };
  if (e?.name === 'TimeoutError') return 'timeout';
  const status = /^HTTP (\d+)/.exec(e?.message ?? '')?.[1];
  return status ? `http_${status}` : 'network';
}

function errorMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: unknown };
    if (typeof j?.error === 'string') return j.error;
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 500) || '(empty body)';
}

function describe(err: unknown, timeoutMs?: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return timeoutMs ? `timed out after ${timeoutMs} ms` : 'timed out';
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`;
}
