import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Batcher, batchable } from './kserve-dynamic-batching.js';
import { CodecError, decodeInferRequest, encodeInferResponse, HEADER_LENGTH } from './kserve-codec.js';
import { BYTES_PER_ELEMENT, checkInputs, TensorMismatchError, type TensorModel } from './tensor.js';

/**
 * A KServe v2 HTTP server (JSON and binary tensor data) over in-process TensorModels, with
 * optional dynamic batching. Client errors are 400 with {"error": "..."}.
 */

export interface KServeServerOptions {
  port: number;
  host?: string;
  /**
   * Bodies over this many bytes get 413 and are not read further. When unset, each model gets
   * `requestBodyLimit(model, maxBatch).bytes`: room for a binary request of maxBatch samples, and
   * never less than 64 MiB.
   */
  maxRequestBytes?: number;
  /** Rows per gathered model call; > 1 enables dynamic batching for batch-major models. */
  maxBatch?: number;
  /** How long the first request of a batch waits for company (default 5 ms). */
  maxDelayMs?: number;
}

export interface KServeServer {
  url: string;
  port: number;
  /** The request body limit of each model, and how it was chosen. */
  limits: Record<string, RequestBodyLimit>;
  close(): Promise<void>;
}

/** Used when a model's request size cannot be known (dynamic dims besides the batch) and as a floor. */
export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024;
/** Room for the JSON header of a binary request (tensor names, shapes, parameters) beyond the tensor bytes. */
export const REQUEST_HEADER_HEADROOM_BYTES = 1024 * 1024;

export interface RequestBodyLimit {
  bytes: number;
  /** Binary tensor bytes of one sample over all inputs; undefined when a non-batch dim is dynamic. */
  perSampleBytes?: number;
  /** Bytes of the largest binary request the model can legally get at this max batch (+ header headroom), when known. */
  largestRequestBytes?: number;
  /** `input[dims]` of the inputs whose size is unknown (dynamic dims besides the first). */
  dynamicInputs: string[];
  /** One line: the limit and why. */
  reason: string;
}

const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(n % (1024 * 1024) === 0 ? 0 : 1)} MiB`;

/**
 * The request body limit for `model` when requests of up to `maxBatch` rows are expected: the
 * bytes of every input for maxBatch samples (binary tensor extension, from the declared input
 * shapes; a fixed first dim is taken as it is) plus REQUEST_HEADER_HEADROOM_BYTES, and never
 * less than DEFAULT_MAX_REQUEST_BYTES. An explicit limit wins. When an input has a dynamic dim
 * besides the first (e.g. H and W), one sample's size is unknown and the limit is the default.
 * JSON-encoded tensors are several times larger than binary ones and are not accounted for.
 */
export function requestBodyLimit(model: TensorModel, maxBatch: number, explicitBytes?: number): RequestBodyLimit {
  let perSample = 0;
  let fixed = 0;
  const dynamicInputs: string[] = [];
  for (const s of model.inputs) {
    if (s.shape.length === 0) {
      fixed += BYTES_PER_ELEMENT[s.dtype]; // a scalar
      continue;
    }
    const rest = s.shape.slice(1);
    if (rest.some((d) => d < 0)) {
      dynamicInputs.push(`${s.name}[${s.shape.map((d) => (d < 0 ? '?' : d)).join(',')}]`);
      continue;
    }
    const bytes = rest.reduce((a, d) => a * d, 1) * BYTES_PER_ELEMENT[s.dtype];
    if (s.shape[0] >= 0) fixed += s.shape[0] * bytes; // not batch-major: every request has this size
    else perSample += bytes;
  }
  const known = dynamicInputs.length === 0;
  const largest = known ? maxBatch * perSample + fixed + REQUEST_HEADER_HEADROOM_BYTES : undefined;
  const base = { perSampleBytes: known ? perSample : undefined, largestRequestBytes: largest, dynamicInputs };
  if (explicitBytes !== undefined) return { ...base, bytes: explicitBytes, reason: `${mib(explicitBytes)} (set explicitly)` };
  if (!known) {
    return { ...base, bytes: DEFAULT_MAX_REQUEST_BYTES, reason: `${mib(DEFAULT_MAX_REQUEST_BYTES)} (default: input ${dynamicInputs.join(', ')} has dynamic dims besides the batch, so a request's size is unknown; set the limit explicitly for larger requests)` };
  }
  const bytes = Math.max(DEFAULT_MAX_REQUEST_BYTES, largest!);
  const how = `${maxBatch} × ${mib(perSample)} per sample${fixed > 0 ? ` + ${mib(fixed)} fixed` : ''} + ${mib(REQUEST_HEADER_HEADROOM_BYTES)} header room = ${mib(largest!)}`;
  return { ...base, bytes, reason: bytes === largest ? `${mib(bytes)} (${how})` : `${mib(bytes)} (the default; ${how} fits in it)` };
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?(\/ready|\/infer)?$/;

export async function startKServeServer(models: Record<string, TensorModel>, opts: KServeServerOptions): Promise<KServeServer> {
  const host = opts.host ?? '127.0.0.1';
  const maxBatch = opts.maxBatch ?? 1;
  const limits: Record<string, RequestBodyLimit> = {};
  for (const [name, m] of Object.entries(models)) limits[name] = requestBodyLimit(m, maxBatch, opts.maxRequestBytes);
  const batchers = new Map<string, Batcher>();
  if (maxBatch > 1) for (const [name, m] of Object.entries(models)) if (batchable(m)) batchers.set(name, new Batcher(m, maxBatch, opts.maxDelayMs ?? 5));

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      const status = err instanceof HttpError ? err.status : err instanceof CodecError || err instanceof TensorMismatchError || err instanceof URIError ? 400 : 500;
      sendJson(res, status, { error: (err as Error).message ?? String(err) });
      // The rest of an oversized body is not worth reading; drop the connection once answered.
      if (status === 413) res.once('finish', () => req.socket.destroy());
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/\/+$/, '');
    if (req.method === 'GET' && (path === '/v2/health/ready' || path === '/v2/health/live')) return sendJson(res, 200, { ready: true, live: true });
    if (req.method === 'GET' && path === '/v2') return sendJson(res, 200, { name: 'bitprep', version: '1', extensions: ['binary_tensor_data'] });
    const m = ROUTE.exec(path);
    if (!m) throw new HttpError(404, `no route for ${req.method} ${path}`);
    const [, name, action] = m;
    const model = Object.hasOwn(models, name) ? models[name] : undefined;
    if (!model) throw new HttpError(404, `unknown model "${name}" (serving: ${Object.keys(models).join(', ')})`);
    if (req.method === 'GET' && !action) return sendJson(res, 200, { name, versions: ['1'], platform: 'bitprep', inputs: wireSpecs(model.inputs), outputs: wireSpecs(model.outputs) });
    if (req.method === 'GET' && action === '/ready') return sendJson(res, 200, { name, ready: true });
    if (req.method !== 'POST' || action !== '/infer') throw new HttpError(405, `${req.method} not allowed on ${path}`);

    const body = await readBody(req, limits[name].bytes);
    const request = decodeInferRequest(body, headerValue(req, HEADER_LENGTH));
    checkInputs(name, model.inputs, request.inputs);
    const wanted = request.outputs?.map((o) => o.name);
    for (const o of wanted ?? []) if (!model.outputs.some((s) => s.name === o)) throw new HttpError(400, `model ${name}: unknown output tensor "${o}" (outputs: ${model.outputs.map((s) => s.name).join(', ')})`);
    let outputs;
    try {
      const b = batchers.get(name);
      outputs = b ? await b.infer(request.inputs, wanted) : await model.infer(request.inputs, wanted ? { outputs: wanted } : undefined);
    } catch (err) {
      if (err instanceof TensorMismatchError) throw err;
      throw new HttpError(500, `model ${name} failed: ${(err as Error).message ?? String(err)}`);
    }
    const binary = (n: string) => request.outputs?.find((o) => o.name === n)?.binary ?? request.binaryOutputDefault;
    const enc = encodeInferResponse(name, outputs, binary, request.id);
    res.writeHead(200, { ...enc.headers, 'content-length': String(enc.body.byteLength) });
    res.end(enc.body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    limits,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const b of batchers.values()) b.cancelAll(new Error('server closing'));
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

const wireSpecs = (specs: TensorModel['inputs']) => specs.map((s) => ({ name: s.name, datatype: s.dtype, shape: s.shape }));

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...(status === 413 && { connection: 'close' }) });
  res.end(body);
}

function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const tooBig = () => new HttpError(413, `request body exceeds the server's limit of ${limit} bytes`);
  const declared = Number(req.headers['content-length']);
  if (declared > limit) {
    req.pause();
    return Promise.reject(tooBig());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.byteLength;
      if (size > limit) {
        req.pause();
        req.removeAllListeners('data');
        reject(tooBig());
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}
