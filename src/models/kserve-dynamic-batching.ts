import { allocTensorData } from './kserve-codec.js';
import { elementCount, type NamedTensors, type Tensor, type TensorModel } from './tensor.js';

/**
 * Dynamic batching for one model: concurrent requests whose inputs agree on every dim but the
 * first are run as one `infer` with inputs concatenated on dim 0, and outputs split back by row
 * counts. A group is run when it reaches `maxBatch` rows or `maxDelayMs` after its first request.
 */

interface Pending {
  inputs: NamedTensors;
  rows: number;
  outputs?: string[];
  resolve(v: NamedTensors): void;
  reject(e: unknown): void;
}
interface Group {
  items: Pending[];
  rows: number;
  timer?: NodeJS.Timeout;
}

/** True when batching is safe for the model: every input and output is batch-major (first dim dynamic). */
export function batchable(model: TensorModel): boolean {
  return model.inputs.length > 0 && [...model.inputs, ...model.outputs].every((s) => s.shape.length > 0 && s.shape[0] < 0);
}

export class Batcher {
  private readonly groups = new Map<string, Group>();
  modelCalls = 0;

  constructor(private readonly model: TensorModel, private readonly maxBatch: number, private readonly maxDelayMs: number) {}

  infer(inputs: NamedTensors, outputs?: string[]): Promise<NamedTensors> {
    const tensors = Object.values(inputs);
    const rows = tensors[0]?.shape[0] ?? 0;
    // Requests that cannot share a batch (ragged first dims, or too big on their own) run alone.
    if (rows === 0 || rows >= this.maxBatch || tensors.some((t) => t.shape[0] !== rows)) return this.call(inputs, outputs);
    const key = Object.keys(inputs)
      .sort()
      .map((n) => `${n}:${inputs[n].dtype}:${inputs[n].shape.slice(1).join('x')}`)
      .join('|');
    return new Promise<NamedTensors>((resolve, reject) => {
      let g = this.groups.get(key);
      if (g && g.rows + rows > this.maxBatch) {
        this.flush(key);
        g = undefined;
      }
      if (!g) {
        g = { items: [], rows: 0 };
        this.groups.set(key, g);
        g.timer = setTimeout(() => this.flush(key), this.maxDelayMs);
      }
      g.items.push({ inputs, rows, outputs, resolve, reject });
      g.rows += rows;
      if (g.rows >= this.maxBatch) this.flush(key);
    });
  }

  /** Rejects requests still waiting for their group; the model is not called for them. */
  cancelAll(reason: Error): void {
    for (const key of [...this.groups.keys()]) {
      const g = this.groups.get(key)!;
      clearTimeout(g.timer);
      this.groups.delete(key);
      for (const it of g.items) it.reject(reason);
    }
  }

  private call(inputs: NamedTensors, outputs?: string[]): Promise<NamedTensors> {
    this.modelCalls++;
    return this.model.infer(inputs, outputs ? { outputs } : undefined);
  }

  private flush(key: string): void {
    const g = this.groups.get(key);
    if (!g) return;
    clearTimeout(g.timer);
    this.groups.delete(key);
    void this.run(g.items);
  }

  private async run(items: Pending[]): Promise<void> {
    if (items.length === 1) {
      const it = items[0];
      return this.call(it.inputs, it.outputs).then(it.resolve, it.reject);
    }
    try {
      const names = Object.keys(items[0].inputs);
      const merged: NamedTensors = {};
      for (const n of names) merged[n] = concat(items.map((it) => it.inputs[n]));
      const wanted = items.some((it) => !it.outputs) ? undefined : [...new Set(items.flatMap((it) => it.outputs!))];
      const out = await this.call(merged, wanted);
      const total = items.reduce((a, it) => a + it.rows, 0);
      for (const [n, t] of Object.entries(out)) {
        if (t.shape[0] !== total) throw new Error(`model ${this.model.name}: output "${n}" has ${t.shape[0]} rows for a batch of ${total}; cannot split it`);
      }
      let row = 0;
      for (const it of items) {
        const mine: NamedTensors = {};
        for (const [n, t] of Object.entries(out)) if (!it.outputs || it.outputs.includes(n)) mine[n] = sliceRows(t, row, it.rows);
        row += it.rows;
        it.resolve(mine);
      }
    } catch (err) {
      for (const it of items) it.reject(err);
    }
  }
}

function concat(ts: Tensor[]): Tensor {
  const rows = ts.reduce((a, t) => a + t.shape[0], 0);
  const shape = [rows, ...ts[0].shape.slice(1)];
  const data = allocTensorData(ts[0].dtype, elementCount(shape));
  let at = 0;
  for (const t of ts) {
    (data as Float32Array).set(t.data as Float32Array, at);
    at += t.data.length;
  }
  return { dtype: ts[0].dtype, shape, data } as Tensor;
}

function sliceRows(t: Tensor, start: number, rows: number): Tensor {
  const per = elementCount(t.shape.slice(1));
  return { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data: t.data.slice(start * per, (start + rows) * per) } as Tensor;
}
