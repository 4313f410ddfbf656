import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KServeTensorModel } from '../src/models/kserve-client.js';
import { tinyMlpModel } from '../src/models/onnx-builder.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import type { Tensor } from '../src/models/tensor.js';
import { startCli } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

const IN = 6;
const OUT = 3;

/** y = sigmoid(x·W + b), computed in float64 as the reference. */
function reference(x: Float32Array, rows: number, w: Float32Array, b: Float32Array): number[] {
  const y: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < OUT; o++) {
      let acc = b[o];
      for (let i = 0; i < IN; i++) acc += x[r * IN + i] * w[i * OUT + o];
      y.push(1 / (1 + Math.exp(-acc)));
    }
  }
  return y;
}

describe('a tiny ONNX model in process and through `bitprep serve`', () => {
  const model = tinyMlpModel(IN, OUT, 7);
  let path: string;
  let served: ReturnType<typeof startCli>;
  let url: string;
  const rows = 5;
  const x = Float32Array.from({ length: rows * IN }, (_, i) => Math.sin(i * 1.7) * 2);
  const input: Tensor = { dtype: 'FP32', shape: [rows, IN], data: x };
  const expected = reference(x, rows, model.weights.w, model.weights.b);

  beforeAll(async () => {
    const dir = await tempDir('serve');
    path = join(dir, 'mlp.onnx');
    await writeFile(path, model.bytes);
    served = startCli(['serve', '--model', `mlp=${path}`, '--port', '0', '--max-batch', '8']);
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      served.child.stdout!.on('data', (d) => {
        out += d;
        const m = /at (http:\/\/[^/\s]+)\/v2\/models\/mlp/.exec(out);
        if (m) resolve(m[1]);
      });
      served.done.then((r) => reject(new Error(`serve exited: ${r.stderr}`)));
    });
  });
  afterAll(async () => {
    served?.child.kill('SIGTERM');
    const r = await served?.done;
    expect(r?.stdout).toContain('SIGTERM: stopping');
  });

  it('in process matches the JavaScript reference within 1e-5', async () => {
    const m = await OnnxTensorModel.load(path, { name: 'mlp' });
    const out = await m.infer({ x: input });
    expect(out.y.shape).toEqual([rows, OUT]);
    [...out.y.data].forEach((v, i) => expect(Math.abs(Number(v) - expected[i])).toBeLessThan(1e-5));
    await m.close();
  });

  for (const binary of [true, false]) {
    it(`over HTTP (${binary ? 'binary tensor extension' : 'JSON'}) matches the reference within 1e-5`, async () => {
      const client = await KServeTensorModel.connect(url, 'mlp', { binary });
      expect(client.inputs).toEqual([{ name: 'x', dtype: 'FP32', shape: [-1, IN] }]);
      const out = await client.infer({ x: input });
      [...out.y.data].forEach((v, i) => expect(Math.abs(Number(v) - expected[i])).toBeLessThan(1e-5));
      expect(client.stats.retries).toBe(0);
      await client.close();
    });
  }

  it('answers a wrong shape with 400 and a message naming the tensor', async () => {
    const res = await fetch(`${url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2, IN + 1], data: new Array(2 * (IN + 1)).fill(0) }] }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toMatch(/"x".*shape \[2, 7\].*expected \[\?, 6\]/);
  });
});
