import { z } from 'zod';
import type { BreakerOptions } from '../outage.js';
import { KServeTensorModel } from './kserve-client.js';
import { OnnxTensorModel } from './onnx-model.js';
import { DEFAULT_RETRY } from '../retry.js';
import type { TensorModel } from './tensor.js';

/** A tensor model: an ONNX file run in process, or KServe v2 endpoints (one replica each, e.g. one per GPU). */
export const modelSource = z.union([
  z.object({
    onnx: z.string(),
    /** Replicas in this process (sessions); one is right on CPU, one per GPU with CUDA. */
    replicas: z.number().int().min(1).default(1),
    providers: z.array(z.enum(['cpu', 'cuda'])).default(['cpu']),
    intra_op_threads: z.number().int().min(1).optional(),
  }).strict(),
  z.object({
    kserve: z.array(z.string().url()).min(1),
    model: z.string(),
    timeout_ms: z.number().int().min(1).optional(),
    /**
     * Retries of a call after a transient failure (429, 5xx, resets, refused connections, timeouts),
     * with exponential backoff from 250 ms; a server still unreachable after them is an outage that
     * stops the run (default 5).
     */
    retries: z.number().int().min(0).optional(),
  }).strict(),
]);
export type ModelSource = z.infer<typeof modelSource>;

/** Opens a model source: ONNX sessions in this process, or one KServe client per endpoint, named for the pool. */
export async function loadTensorModels(src: ModelSource, what: string, opts: { breaker?: BreakerOptions } = {}): Promise<{ name: string; client: TensorModel }[]> {
  if ('onnx' in src) {
    return Promise.all(
      Array.from({ length: src.replicas }, async (_, i) => ({
        name: `${what}-${i}`,
        client: await OnnxTensorModel.load(src.onnx, { executionProviders: src.providers, intraOpThreads: src.intra_op_threads }),
      })),
    );
  }
  return Promise.all(src.kserve.map(async (url) => ({ name: url, client: await KServeTensorModel.connect(url, src.model, { timeoutMs: src.timeout_ms, retry: src.retries === undefined ? undefined : { ...DEFAULT_RETRY, retries: src.retries }, breaker: opts.breaker }) })));
}

/**
 * Reads a model given on a command line: a path to an `.onnx` file (run in process, on CPU unless
 * `cuda` is asked), or KServe v2 model URLs `http://host:8000/v2/models/NAME`, comma-separated for
 * several replicas (all must name the same model).
 */
export function parseModelSpec(spec: string, opts: { cuda?: boolean } = {}): ModelSource {
  const parts = spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length > 0 && parts.every((p) => /^https?:\/\//.test(p))) {
    const origins: string[] = [];
    let name: string | undefined;
    for (const p of parts) {
      const url = new URL(p);
      const m = /^\/v2\/models\/([^/]+)\/?$/.exec(url.pathname);
      if (!m) throw new Error(`model ${p}: a KServe model URL ends in /v2/models/<name>`);
      const n = decodeURIComponent(m[1]);
      if (name !== undefined && n !== name) throw new Error(`model ${spec}: replicas name different models (${name}, ${n})`);
      name = n;
      origins.push(url.origin);
    }
    return { kserve: origins, model: name as string };
  }
  if (parts.length !== 1) throw new Error(`model ${spec}: give one .onnx file or KServe URLs (http://host:port/v2/models/<name>, comma-separated)`);
  return { onnx: parts[0], replicas: 1, providers: opts.cuda ? ['cuda', 'cpu'] : ['cpu'] };
}
