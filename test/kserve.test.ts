import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { serveCommand } from '../src/cli/serve-command.js';
import { KServeHttpError, KServeTensorModel } from '../src/models/kserve-client.js';
import { tensorFromBytes } from '../src/models/kserve-codec.js';
import { floatToHalf, halfToFloat } from '../src/formats/half-float.js';
import { startKServeServer, type KServeServer } from '../src/models/kserve-server.js';
import { TensorMismatchError, type NamedTensors, type Tensor, type TensorModel, type TensorSpec } from '../src/models/tensor.js';

// ---- JS test models ---------------------------------------------------------------------------

const IN = 4;
const OUT = 3;
const W = Float32Array.from({ length: IN * OUT }, (_, i) => Math.sin(i + 1) * 0.7);
const B = Float32Array.from({ length: OUT }, (_, i) => 0.1 * (i - 1));

function mlpRef(x: Float32Array, rows: number): { y: Float32Array; logits: Float32Array } {
  const y = new Float32Array(rows * OUT);
  const logits = new Float32Array(rows * OUT);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < OUT; j++) {
      let s = B[j];
      for (let k = 0; k < IN; k++) s += x[r * IN + k] * W[k * OUT + j];
      logits[r * OUT + j] = s;
      y[r * OUT + j] = 1 / (1 + Math.exp(-s));
    }
  return { y, logits };
}

interface JsModel extends TensorModel {
  calls: NamedTensors[];
  inputs: TensorSpec[];
}

function jsModel(name: string, inputs: TensorSpec[], outputs: TensorSpec[], fn: (i: NamedTensors) => NamedTensors): JsModel {
  const m: JsModel = {
    name,
    inputs,
    outputs,
    calls: [],
    async infer(i, opts) {
      m.calls.push(i);
      await new Promise((r) => setTimeout(r, 2));
      const all = fn(i);
      return Object.fromEntries(Object.entries(all).filter(([k]) => !opts?.outputs || opts.outputs.includes(k)));
    },
    async close() {},
  };
  return m;
}

const mlp = () =>
  jsModel('mlp', [{ name: 'x', dtype: 'FP32', shape: [-1, IN] }], [{ name: 'y', dtype: 'FP32', shape: [-1, OUT] }, { name: 'logits', dtype: 'FP32', shape: [-1, OUT] }], (i) => {
    const rows = i.x.shape[0];
    const { y, logits } = mlpRef(i.x.data as Float32Array, rows);
    return { y: { dtype: 'FP32', shape: [rows, OUT], data: y }, logits: { dtype: 'FP32', shape: [rows, OUT], data: logits } };
  });

const TYPES: TensorSpec[] = [
  { name: 'u8', dtype: 'UINT8', shape: [-1, 3] },
  { name: 'i32', dtype: 'INT32', shape: [-1, 2] },
  { name: 'i64', dtype: 'INT64', shape: [-1, 2] },
  { name: 'flag', dtype: 'BOOL', shape: [-1, 2] },
  { name: 'half', dtype: 'FP16', shape: [-1, 2] },
];
const types = () =>
  jsModel(
    'types',
    TYPES,
    TYPES.map((s) => ({ ...s, name: `${s.name}_out` })),
    (i) => Object.fromEntries(Object.entries(i).map(([k, t]) => [`${k}_out`, t])),
  );

// Row sums over a dynamic width: batching must never merge different widths.
const rowsum = () =>
  jsModel('rowsum', [{ name: 'x', dtype: 'FP32', shape: [-1, -1] }], [{ name: 's', dtype: 'FP32', shape: [-1, 1] }], (i) => {
    const [rows, w] = i.x.shape;
    const d = i.x.data as Float32Array;
    return { s: { dtype: 'FP32', shape: [rows, 1], data: Float32Array.from({ length: rows }, (_, r) => d.subarray(r * w, r * w + w).reduce((a, b) => a + b, 0)) } };
  });

const xOf = (rows: number, seed = 0): Tensor => ({ dtype: 'FP32', shape: [rows, IN], data: Float32Array.from({ length: rows * IN }, (_, i) => Math.cos(i * 1.3 + seed) * 2) });

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tol);
}

const fastRetry = { retries: 3, minDelayMs: 5, maxDelayMs: 50 };

// ---- a scripted proxy for failure injection --------------------------------------------------

type Step = 'pass' | 'reset' | 'slow' | { status: number; headers?: Record<string, string>; body: string };

async function proxy(target: string, script: (req: IncomingMessage, n: number) => Step): Promise<{ url: string; infers: number; close(): Promise<void> }> {
  const state = { infers: 0 };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const step = req.method === 'POST' ? script(req, state.infers++) : 'pass';
    if (step === 'reset') return req.socket.destroy();
    if (step === 'slow') return void setTimeout(() => res.destroyed || res.end(), 5000).unref();
    if (step !== 'pass') return void res.writeHead(step.status, { 'content-type': 'application/json', ...step.headers }).end(step.body);
    const up = await fetch(target + req.url, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined });
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'inference-header-content-length']) if (up.headers.get(h)) headers[h] = up.headers.get(h)!;
    res.writeHead(up.status, headers).end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get infers() {
      return state.infers;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

// ---- tests --------------------------------------------------------------------------------------

describe('KServe v2 server and client', () => {
  let server: KServeServer;
  const models = { mlp: mlp(), types: types(), rowsum: rowsum() };

  beforeAll(async () => {
    server = await startKServeServer(models, { port: 0, maxRequestBytes: 64 * 1024 });
  });
  afterAll(() => server.close());

  it('binary and JSON give the same outputs as the direct computation', async () => {
    const bin = await KServeTensorModel.connect(server.url, 'mlp');
    const json = await KServeTensorModel.connect(server.url, 'mlp', { binary: false });
    expect(bin.inputs).toEqual([{ name: 'x', dtype: 'FP32', shape: [-1, IN] }]);
    expect(bin.outputs.map((o) => o.name)).toEqual(['y', 'logits']);
    const x = xOf(5);
    const a = await bin.infer({ x });
    const b = await json.infer({ x });
    const ref = mlpRef(x.data as Float32Array, 5);
    expect(a.y.shape).toEqual([5, OUT]);
    expect(Array.from(a.y.data as Float32Array)).toEqual(Array.from(b.y.data as Float32Array));
    expectClose(a.y.data as Float32Array, ref.y, 1e-6);
    expectClose(b.logits.data as Float32Array, ref.logits, 1e-6);
    const only = await bin.infer({ x }, { outputs: ['logits'] });
    expect(Object.keys(only)).toEqual(['logits']);
    expect(bin.stats.requests).toBe(2);
    expect(bin.stats.retries).toBe(0);
    expect(bin.stats.bytesSent).toBeGreaterThan(2 * 5 * IN * 4);
    // binary bodies carry raw floats; JSON spells them out
    expect(json.stats.bytesReceived).toBeGreaterThan(bin.stats.bytesReceived / 2);
  });

  it('UINT8, INT32, INT64, BOOL and FP16 round-trip exactly, binary and JSON', async () => {
    const inputs: NamedTensors = {
      u8: { dtype: 'UINT8', shape: [2, 3], data: Uint8Array.from([0, 1, 127, 128, 254, 255]) },
      i32: { dtype: 'INT32', shape: [2, 2], data: Int32Array.from([-2147483648, -1, 0, 2147483647]) },
      i64: { dtype: 'INT64', shape: [2, 2], data: BigInt64Array.from([-(2n ** 53n) + 1n, -1n, 0n, 2n ** 53n - 1n]) },
      flag: { dtype: 'BOOL', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
      half: { dtype: 'FP16', shape: [2, 2], data: Uint16Array.from([0x3c00, 0xc000, 0x3555, 0x7bff]) },
    };
    for (const binary of [true, false]) {
      const c = await KServeTensorModel.connect(server.url, 'types', { binary });
      const out = await c.infer(inputs);
      for (const [k, t] of Object.entries(inputs)) {
        expect(out[`${k}_out`].dtype).toBe(t.dtype);
        expect(out[`${k}_out`].shape).toEqual(t.shape);
        expect(out[`${k}_out`].data).toEqual(t.data);
      }
    }
    // beyond 2^53 only binary is exact; JSON refuses rather than rounding
    const big = { ...inputs, i64: { dtype: 'INT64', shape: [1, 2], data: BigInt64Array.from([2n ** 62n + 1n, -(2n ** 60n) - 3n]) } as Tensor };
    const rows1 = Object.fromEntries(Object.entries(big).map(([k, t]) => [k, k === 'i64' ? t : ({ ...t, shape: [1, t.shape[1]], data: t.data.slice(0, t.shape[1]) } as Tensor)]));
    const bin = await KServeTensorModel.connect(server.url, 'types');
    expect((await bin.infer(rows1)).i64_out.data).toEqual(big.i64.data);
    const json = await KServeTensorModel.connect(server.url, 'types', { binary: false });
    await expect(json.infer(rows1)).rejects.toThrow(/INT64 value .* beyond 2\^53/);
  });

  it('FP16 <-> float conversion is exact for every half and rounds to nearest even', () => {
    const bad: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const f = halfToFloat(h);
      if (Number.isNaN(f) ? !Number.isNaN(halfToFloat(floatToHalf(f))) : floatToHalf(f) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToHalf(65520)).toBe(0x7c00); // overflows to infinity
    expect(floatToHalf(2 ** -25)).toBe(0); // tie at the smallest subnormal → even (zero)
    expect(floatToHalf(3 * 2 ** -26)).toBe(1);
  });

  it('decodes tensors at unaligned offsets by copying', () => {
    const buf = new Uint8Array(1 + 8);
    new DataView(buf.buffer).setFloat32(1, 1.5, true);
    new DataView(buf.buffer).setFloat32(5, -2, true);
    const t = tensorFromBytes('FP32', [2], buf.subarray(1));
    expect(Array.from(t.data as Float32Array)).toEqual([1.5, -2]);
    expect(() => tensorFromBytes('FP32', [3], buf.subarray(1))).toThrow(/needs 12 bytes, got 8/);
  });

  it('a wrong shape is a 400 naming the tensor, surfaced with the model name and not retried', async () => {
    const c = await KServeTensorModel.connect(server.url, 'mlp', { retry: fastRetry });
    // caught locally, before any request
    await expect(c.infer({ x: { dtype: 'FP32', shape: [1, 5], data: new Float32Array(5) } })).rejects.toThrow(TensorMismatchError);
    expect(c.stats.requests).toBe(0);

    // a client holding stale metadata (x [-1, 4]) talks to a server now declaring x [-1, 5]: the server must catch it
    const m = await startKServeServer({ mlp: { ...mlp(), inputs: [{ name: 'x', dtype: 'FP32', shape: [-1, 5] }] } }, { port: 0 });
    try {
      const loose = await KServeTensorModel.connect(server.url, 'mlp', { retry: fastRetry });
      Object.defineProperty(loose, 'url', { value: m.url });
      const err = await loose.infer({ x: xOf(2) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KServeHttpError);
      expect((err as KServeHttpError).status).toBe(400);
      expect((err as Error).message).toMatch(/model mlp/);
      expect((err as Error).message).toMatch(/input "x" has shape \[2, 4\]/);
      expect(loose.stats.retries).toBe(0);
    } finally {
      await m.close();
    }

    const raw = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }) });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: string }).error).toMatch(/"x".*shape \[1, 3\]/);
    const bad = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP64', data: [1, 2, 3, 4] }] }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/"x": unsupported datatype "FP64"/);
    const unknown = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'z', shape: [1], datatype: 'FP32', data: [1] }] }) });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/unknown input tensor "z"/);
    expect((await fetch(`${server.url}/v2/models/%E0%A4%A/infer`, { method: 'POST', body: '{}' })).status).toBe(400);
  });

  it('unknown model → 404, oversized body → 413', async () => {
    const r = await fetch(`${server.url}/v2/models/nope/infer`, { method: 'POST', body: '{}' });
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: string }).error).toMatch(/unknown model "nope"/);
    expect((await fetch(`${server.url}/v2/models/nope`)).status).toBe(404);
    await expect(KServeTensorModel.connect(server.url, 'nope', { retry: fastRetry })).rejects.toThrow(/model nope .*404.*unknown model "nope"/);

    const big = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', body: new Uint8Array(1024 * 1024) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: string }).error).toMatch(/exceeds .* 65536 bytes/);
    const c = await KServeTensorModel.connect(server.url, 'mlp', { retry: fastRetry });
    await expect(c.infer({ x: xOf(5000) })).rejects.toThrow(/model mlp .*413/);
    expect(c.stats.retries).toBe(0);
  });

  it('raw binary wire format, independent of the client', async () => {
    const meta = (await (await fetch(`${server.url}/v2/models/mlp`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({ name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }] });
    expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/models/mlp/ready`)).status).toBe(200);

    const x = Float32Array.from([0.5, -1, 2, 0.25]);
    const header = Buffer.from(JSON.stringify({ id: 'req-7', inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }], outputs: [{ name: 'y', parameters: { binary_data: true } }, { name: 'logits' }] }));
    const raw = Buffer.alloc(16);
    x.forEach((v, i) => raw.writeFloatLE(v, i * 4));
    const res = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': String(header.length) }, body: Buffer.concat([header, raw]) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    const body = Buffer.from(await res.arrayBuffer());
    const n = Number(res.headers.get('inference-header-content-length'));
    const h = JSON.parse(body.subarray(0, n).toString()) as { model_name: string; id: string; outputs: { name: string; shape: number[]; datatype: string; data?: number[]; parameters?: { binary_data_size: number } }[] };
    expect(h.model_name).toBe('mlp');
    expect(h.id).toBe('req-7');
    expect(h.outputs[0]).toEqual({ name: 'y', shape: [1, 3], datatype: 'FP32', parameters: { binary_data_size: 12 } });
    expect(body.length).toBe(n + 12);
    const ref = mlpRef(x, 1);
    expectClose([0, 1, 2].map((i) => body.readFloatLE(n + i * 4)), ref.y, 1e-6);
    // an output asked for without binary_data comes back as JSON data in the same response
    expect(h.outputs[1]).toMatchObject({ name: 'logits', shape: [1, 3], datatype: 'FP32' });
    expectClose(h.outputs[1].data!, ref.logits, 1e-6);

    const js = await fetch(`${server.url}/v2/models/mlp/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: Array.from(x) }] }) });
    expect(js.headers.get('content-type')).toBe('application/json');
    const jb = (await js.json()) as typeof h;
    expect(jb.outputs.map((o) => o.name)).toEqual(['y', 'logits']);
    expectClose(jb.outputs[0].data!, ref.y, 1e-6);
  });
});

describe('dynamic batching', () => {
  it('gathers 20 concurrent single-row requests into at most 4 model calls, each caller getting its rows', async () => {
    const m = mlp();
    const s = await startKServeServer({ mlp: m }, { port: 0, maxBatch: 8, maxDelayMs: 200 });
    try {
      const c = await KServeTensorModel.connect(s.url, 'mlp');
      const xs = Array.from({ length: 20 }, (_, i) => xOf(1, i));
      const outs = await Promise.all(xs.map((x) => c.infer({ x })));
      expect(m.calls.length).toBeLessThanOrEqual(4);
      expect(m.calls.every((call) => call.x.shape[0] <= 8)).toBe(true);
      outs.forEach((o, i) => {
        expect(o.y.shape).toEqual([1, OUT]);
        expectClose(o.y.data as Float32Array, mlpRef(xs[i].data as Float32Array, 1).y, 1e-6);
      });
    } finally {
      await s.close();
    }
  });

  it('never merges requests whose non-batch dims differ', async () => {
    const m = rowsum();
    const s = await startKServeServer({ rowsum: m }, { port: 0, maxBatch: 8, maxDelayMs: 100 });
    try {
      const c = await KServeTensorModel.connect(s.url, 'rowsum');
      const xs = [2, 3, 2, 3].map((w, i): Tensor => ({ dtype: 'FP32', shape: [1, w], data: Float32Array.from({ length: w }, (_, k) => i * 10 + k) }));
      const outs = await Promise.all(xs.map((x) => c.infer({ x })));
      outs.forEach((o, i) => expect(o.s.data[0]).toBe((xs[i].data as Float32Array).reduce((a, b) => a + b, 0)));
      expect(m.calls.map((call) => call.x.shape).sort()).toEqual([[2, 2], [2, 3]]);
    } finally {
      await s.close();
    }
  });
});

describe('client retries', () => {
  let server: KServeServer;
  beforeAll(async () => {
    server = await startKServeServer({ mlp: mlp() }, { port: 0 });
  });
  afterAll(() => server.close());
  const x = xOf(3);
  const ref = mlpRef(x.data as Float32Array, 3);

  it('retries 503 and 429 (Retry-After: 0), then succeeds', async () => {
    const p = await proxy(server.url, (_, n) => (n === 0 ? { status: 503, body: '{"error":"overloaded"}' } : n === 1 ? { status: 429, headers: { 'retry-after': '0' }, body: '{"error":"slow down"}' } : 'pass'));
    try {
      const c = await KServeTensorModel.connect(p.url, 'mlp', { retry: fastRetry });
      expectClose((await c.infer({ x })).y.data as Float32Array, ref.y, 1e-6);
      expect(c.stats.retries).toBe(2);
      expect(c.stats.requests).toBe(1);
    } finally {
      await p.close();
    }
  });

  it('retries a connection reset', async () => {
    const p = await proxy(server.url, (_, n) => (n === 0 ? 'reset' : 'pass'));
    try {
      const c = await KServeTensorModel.connect(p.url, 'mlp', { retry: fastRetry });
      expectClose((await c.infer({ x })).y.data as Float32Array, ref.y, 1e-6);
      expect(c.stats.retries).toBe(1);
    } finally {
      await p.close();
    }
  });

  it('retries a response slower than timeoutMs, then fails clearly', async () => {
    const p = await proxy(server.url, () => 'slow');
    try {
      const c = await KServeTensorModel.connect(p.url, 'mlp', { retry: { retries: 2, minDelayMs: 5, maxDelayMs: 20 }, timeoutMs: 300 });
      await expect(c.infer({ x })).rejects.toThrow(/model mlp at .*: infer failed after 3 attempt\(s\): timed out after 300 ms/);
      expect(c.stats.retries).toBe(2);
      expect(p.infers).toBe(3);
    } finally {
      await p.close();
    }
  });

  it('does not retry other 4xx', async () => {
    const p = await proxy(server.url, () => ({ status: 403, body: '{"error":"forbidden"}' }));
    try {
      const c = await KServeTensorModel.connect(p.url, 'mlp', { retry: fastRetry });
      await expect(c.infer({ x })).rejects.toThrow(/model mlp .*403: forbidden/);
      expect(p.infers).toBe(1);
    } finally {
      await p.close();
    }
  });

  it('falls back to JSON once when the server refuses binary data', async () => {
    const p = await proxy(server.url, (req) => (req.headers['inference-header-content-length'] ? { status: 400, body: '{"error":"binary tensor data is not supported"}' } : 'pass'));
    try {
      const c = await KServeTensorModel.connect(p.url, 'mlp', { retry: fastRetry });
      expectClose((await c.infer({ x })).y.data as Float32Array, ref.y, 1e-6);
      expectClose((await c.infer({ x })).y.data as Float32Array, ref.y, 1e-6);
      expect(c.stats.jsonFallbacks).toBe(1);
      expect(p.infers).toBe(3); // one refused binary request, then JSON twice
      expect(c.stats.retries).toBe(0);
    } finally {
      await p.close();
    }
  });
});

describe('serve command', () => {
  it('serves loaded models and stops on SIGINT', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    const loaded: string[] = [];
    try {
      const cmd = serveCommand(async (path, name) => (loaded.push(`${name}:${path}`), { ...mlp(), name }));
      const done = cmd.parseAsync(['--model', 'enc=/models/enc.onnx', '--port', '0', '--max-batch', '4'], { from: 'user' });
      await vi.waitFor(() => expect(lines.join('')).toMatch(/serving enc/), { timeout: 5000 });
      const url = /at (http:\/\/127\.0\.0\.1:\d+)\/v2\/models\/enc/.exec(lines.join(''))![1];
      expect(lines.join('')).toMatch(/serving enc \(x FP32\[\?,4\]\) at http/);
      const c = await KServeTensorModel.connect(url, 'enc');
      expect((await c.infer({ x: xOf(2) })).y.shape).toEqual([2, OUT]);
      process.emit('SIGINT');
      await done;
      expect(loaded).toEqual(['enc:/models/enc.onnx']);
      await expect(fetch(`${url}/v2/health/ready`)).rejects.toThrow();
    } finally {
      spy.mockRestore();
    }
  });
});
