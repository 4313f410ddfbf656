import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeNpy, readNpy } from '../src/formats/npy.js';
import { writeParquet } from '../src/formats/parquet-write.js';
import { encodeSafetensors, parseSafetensors } from '../src/formats/safetensors.js';
import { OnnxTensorModel } from '../src/models/onnx-model.js';
import { ReplicaPool } from '../src/models/replica-pool.js';
import type { TensorModel } from '../src/models/tensor.js';
import { silentLogger } from '../src/log.js';
import { drop, newSample, type RawImage, type Sample } from '../src/sample.js';
import type { Stage, StageContext } from '../src/stage.js';
import { seededRandom } from '../src/seeded-random.js';
import { StatsCollector } from '../src/stats.js';
import { aestheticFilter, checkClipModel, checkEmbeddingPairs, clipAestheticStage, embeddingAestheticStage } from '../stages/aesthetic.js';
import { AestheticHead, aestheticHeadTensors, collapseLinearLayers, encodeAestheticHead, randomAestheticLayers, writeAestheticHead, type LinearLayer } from '../stages/aesthetic-head.js';
import { clipGeometry, clipPreprocess, clipResizeCrop } from '../stages/clip-preprocess.js';
import { buildClipStandinModel } from '../stages/clip-standin.js';
import { planTableUnits, tableSource } from '../stages/sources/table-source.js';
import { tempDir } from './helpers/temp-dir.js';

const context = (): StageContext => ({ unitId: 'u', stats: new StatsCollector(), log: silentLogger });

async function* from(samples: Sample[]): AsyncGenerator<Sample> {
  yield* samples;
}

async function run(stage: Stage, samples: Sample[] | AsyncIterable<Sample>, ctx = context()): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of stage(Array.isArray(samples) ? from(samples) : samples, ctx)) out.push(s);
  return out;
}

/** The head as LAION runs it: normalise, then the five Linear layers one after another (float64). */
function referenceScore(layers: LinearLayer[], x: ArrayLike<number>): number {
  const norm = Math.sqrt(Array.from(x).reduce((a, v) => a + v * v, 0));
  let h = Array.from(x, (v) => v / norm);
  for (const l of layers) {
    const y: number[] = [];
    for (let o = 0; o < l.out; o++) {
      let s = l.bias[o];
      for (let i = 0; i < l.in; i++) s += l.weight[o * l.in + i] * h[i];
      y.push(s);
    }
    h = y;
  }
  return h[0];
}

const randomVector = (rand: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);

describe('aesthetic head', () => {
  const layers = randomAestheticLayers(5);

  it('collapses the five Linear layers into one affine map that matches the layer-by-layer head within 1e-5', async () => {
    const dir = await tempDir('aes-head');
    const path = join(dir, 'head.safetensors');
    await writeAestheticHead(path, layers);
    const head = await AestheticHead.load(path);
    expect(head.dim).toBe(768);
    const rand = seededRandom(9);
    const scores: number[] = [];
    for (let k = 0; k < 20; k++) {
      // Unnormalised inputs of different magnitudes: the head normalises them.
      const x = randomVector(rand, 768, 0.01 + k);
      const ref = referenceScore(layers, x);
      expect(Math.abs(head.score(x) - ref)).toBeLessThan(1e-5);
      scores.push(ref);
    }
    // The fixture is not degenerate: scores spread around the real head's range.
    expect(Math.max(...scores) - Math.min(...scores)).toBeGreaterThan(0.2);
    expect(Math.abs(scores.reduce((a, b) => a + b) / scores.length - 5.5)).toBeLessThan(1);

    // Scaling an embedding does not change its score (up to float32 rounding of the scaled copy).
    const x = randomVector(rand, 768);
    expect(head.score(x.map((v) => v * 37))).toBeCloseTo(head.score(x), 6);
    expect(() => head.score(new Float32Array(768))).toThrow(/embedding norm is 0/);
    expect(() => head.score(new Float32Array(512).fill(1))).toThrow('embedding has 512 values, the aesthetic head takes 768');
  });

  it('collapseLinearLayers is exact on a small chain', () => {
    // y = [1 2] · ([[1, 0, 2], [0, 1, -1]] x + [1, -1]) + 0.5 = [1, 2, 0] · x - 0.5
    const { w, b } = collapseLinearLayers([
      { in: 3, out: 2, weight: [1, 0, 2, 0, 1, -1], bias: [1, -1] },
      { in: 2, out: 1, weight: [1, 2], bias: [0.5] },
    ]);
    expect(Array.from(w)).toEqual([1, 2, 0]);
    expect(b).toBe(-0.5);
    expect(() => collapseLinearLayers([{ in: 3, out: 2, weight: [1, 0, 2, 0, 1, -1], bias: [1, -1] }])).toThrow('the last layer has 2 outputs, expected 1');
  });

  it('loads F16 heads, and names the key when a tensor is missing or misshapen', () => {
    const f16 = AestheticHead.fromSafetensors(parseSafetensors(encodeAestheticHead(layers, 'F16'), 'half.safetensors'));
    const x = randomVector(seededRandom(3), 768);
    expect(Math.abs(f16.score(x) - referenceScore(layers, x))).toBeLessThan(0.05);

    const tensors = aestheticHeadTensors(layers);
    const without = { ...tensors };
    delete without['layers.4.bias'];
    expect(() => AestheticHead.fromSafetensors(parseSafetensors(encodeSafetensors(without), 'h.safetensors'))).toThrow(/aesthetic head h\.safetensors: missing tensor "layers\.4\.bias" \(expected \[64\]/);
    const transposed = { ...tensors, 'layers.2.weight': { ...tensors['layers.2.weight'], shape: [1024, 128] } };
    expect(() => AestheticHead.fromSafetensors(parseSafetensors(encodeSafetensors(transposed), 'h.safetensors'))).toThrow('aesthetic head h.safetensors: tensor "layers.2.weight" has shape [1024, 128], expected [128, 1024] (PyTorch Linear weights are [out, in])');
  });
});

// ---- CLIP preprocessing against PIL ----

/** The synthetic test image, also generated by the Python reference below. */
function pattern(w: number, h: number, mode: 'RGB' | 'RGBA' | 'L' | 'LA'): RawImage {
  const channels = { L: 1, LA: 2, RGB: 3, RGBA: 4 }[mode] as RawImage['channels'];
  const data = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const r = Math.floor((x * 255) / (w - 1));
      const g = Math.floor((y * 255) / (h - 1));
      const b = ((x >> 3) + (y >> 3)) % 2 ? 255 : 0;
      const a = (x * 7 + y * 13) % 256;
      const l = (r + b) >> 1;
      const px = { RGB: [r, g, b], RGBA: [r, g, b, a], L: [l], LA: [l, a] }[mode];
      data.set(px, (y * w + x) * channels);
    }
  }
  return { data, width: w, height: h, channels };
}

/*
 * Expected values computed once with Debian's python3-pil 9.4 and numpy 1.24, doing what CLIP's
 * torchvision transform does to a PIL image (torchvision itself is not installed here, so its
 * arithmetic is spelled out; it is the documented behaviour of Resize(224, BICUBIC),
 * CenterCrop(224), convert('RGB'), ToTensor, Normalize):
 *
 *   def clip(img, n=224):
 *       w, h = img.size
 *       ow, oh = (n, int(n * h / w)) if w <= h else (int(n * w / h), n)
 *       if (ow, oh) != (w, h): img = img.resize((ow, oh), Image.BICUBIC)
 *       top, left = int(round((oh - n) / 2.0)), int(round((ow - n) / 2.0))
 *       u8 = np.asarray(img.crop((left, top, left + n, top + n)).convert('RGB'), dtype=np.uint8)
 *       x = (u8.astype(np.float32) / np.float32(255)).transpose(2, 0, 1)
 *       return (x - MEAN[:, None, None]) / STD[:, None, None]        # float32 mean/std
 *
 * sha256 is of the 224×224×3 uint8 crop; points are [channel, y, x, value]; sum is over all
 * 150,528 normalised values. Tolerance: the bytes must be identical (sha256) and the floats equal
 * within 1e-6 (both sides do the same float32 operations; the sum allows for summation order).
 */
const PIL_CASES = [
  { w: 300, h: 250, mode: 'RGB', resized: [268, 224], top: 0, left: 22, sha256: 'd109e26073db463fab2b15b5325229c9e2b4d8a4e539f6d852ff1e6637f694fb', sum: 27553.600805341848,
    points: [[0, 0, 0, -1.4856956005096436],[1, 0, 223, -1.7520971298217773],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.6091707944869995],[1, 111, 112, 0.13888166844844818],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.4273018836975098],[1, 5, 100, -1.662050485610962],[2, 200, 150, 1.1789326667785645],[0, 64, 64, -0.6097899675369263],[1, 17, 203, -1.466949462890625],[2, 150, 31, 0.45370930433273315]] },
  { w: 301, h: 250, mode: 'RGB', resized: [269, 224], top: 0, left: 22, sha256: '66f6bcf3067c89ef928db3f6ae74f9e68c972b3c0748d3cb3a1a6c6e295eb650', sum: 27227.193257731968,
    points: [[0, 0, 0, -1.4856956005096436],[1, 0, 223, -1.7520971298217773],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.5945723056793213],[1, 111, 112, 0.13888166844844818],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.4273018836975098],[1, 5, 100, -1.662050485610962],[2, 200, 150, 1.1789326667785645],[0, 64, 64, -0.6097899675369263],[1, 17, 203, -1.466949462890625],[2, 150, 31, 0.45370930433273315]] },
  { w: 250, h: 333, mode: 'RGB', resized: [224, 298], top: 37, left: 0, sha256: 'c21a246440154e874a6f7b3133474de219c057d0c51db0b843eaf2ca1b279bb4', sum: 27545.552266220096,
    points: [[0, 0, 0, -1.7922625541687012],[1, 0, 223, -1.2868562936782837],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.9303361177444458],[1, 111, 112, 0.13888166844844818],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.7046719789505005],[1, 5, 100, -1.2118175029754639],[2, 200, 150, 0.45370930433273315],[0, 64, 64, -0.7411757707595825],[1, 17, 203, -1.0617398023605347],[2, 150, 31, -1.480219841003418]] },
  { w: 150, h: 120, mode: 'RGB', resized: [280, 224], top: 0, left: 28, sha256: '3fa04bd1f242fd570b98313b10144e76be77553919e2c05d2be10538786735eb', sum: 27273.16555007547,
    points: [[0, 0, 0, -1.4273018836975098],[1, 0, 223, -1.7520971298217773],[2, 223, 0, 2.1458969116210938],[0, 223, 223, 1.5507770776748657],[1, 111, 112, 0.13888166844844818],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.368908166885376],[1, 5, 100, -1.677058219909668],[2, 200, 150, -1.181598424911499],[0, 64, 64, -0.5805931091308594],[1, 17, 203, -1.466949462890625],[2, 150, 31, 0.9514116048812866]] },
  { w: 224, h: 300, mode: 'RGB', resized: [224, 300], top: 38, left: 0, sha256: '10e3d7a0e1ca2b4bc124f33aa70a0b13d2507e147c0279c9f3542285094a6105', sum: 27523.0820998922,
    points: [[0, 0, 0, -1.7922625541687012],[1, 0, 223, -1.2718485593795776],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.9303361177444458],[1, 111, 112, 0.15388943254947662],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.7192703485488892],[1, 5, 100, -1.2118175029754639],[2, 200, 150, 2.1458969116210938],[0, 64, 64, -0.7265773415565491],[1, 17, 203, -1.0617398023605347],[2, 150, 31, -1.480219841003418]] },
  { w: 300, h: 250, mode: 'L', resized: [268, 224], top: 0, left: 22, sha256: '094984022b970ef3c09be79d579bc3f0561c4bd8ad5f3e84a6b20fb7f29cf48c', sum: 27216.31505076727,
    points: [[0, 0, 0, 0.3245093822479248],[1, 0, 223, -0.01119600422680378],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.8135486841201782],[1, 111, 112, 1.1594098806381226],[2, 37, 190, -0.043993089348077774],[0, 100, 5, -0.3178214430809021],[1, 5, 100, 1.1444021463394165],[2, 200, 150, 1.0651720762252808],[0, 64, 64, -0.30322301387786865],[1, 17, 203, 1.7597205638885498],[2, 150, 31, -0.1577536165714264]] },
  { w: 300, h: 250, mode: 'RGBA', resized: [268, 224], top: 0, left: 22, sha256: '351ad2519742a737f5c8a798c6888b526e839383c8964e37fb1caa56c821f578', sum: 23005.36557536258,
    points: [[0, 0, 0, -1.5002939701080322],[1, 0, 223, -1.7520971298217773],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.6091707944869995],[1, 111, 112, 0.13888166844844818],[2, 37, 190, -1.480219841003418],[0, 100, 5, -1.4273018836975098],[1, 5, 100, -1.587011694908142],[2, 200, 150, 1.2926931381225586],[0, 64, 64, -0.5805931091308594],[1, 17, 203, -1.4819573163986206],[2, 150, 31, 0.15508782863616943]] },
  { w: 300, h: 250, mode: 'LA', resized: [268, 224], top: 0, left: 22, sha256: 'f01709f1cad6373550c20764a770a80be5afa42e81453e7fff7b357a2011fa80', sum: 22370.620397751918,
    points: [[0, 0, 0, 0.2953125238418579],[1, 0, 223, -0.04121153801679611],[2, 223, 0, -1.480219841003418],[0, 223, 223, 1.7113597393035889],[1, 111, 112, 1.1594098806381226],[2, 37, 190, -0.043993089348077774],[0, 100, 5, -0.2886245846748352],[1, 5, 100, 2.0748836994171143],[2, 200, 150, 1.0367319583892822],[0, 64, 64, -0.24482932686805725],[1, 17, 203, 1.7597205638885498],[2, 150, 31, -0.2715141475200653]] },
] as const;

describe('CLIP preprocessing', () => {
  it('computes torchvision Resize + CenterCrop geometry, with Python rounding (half to even)', () => {
    expect(clipGeometry(300, 250)).toEqual({ resizedWidth: 268, resizedHeight: 224, top: 0, left: 22 });
    // 224·301/250 = 269.70 → 269; (269 − 224)/2 = 22.5 → 22 (round half to even), not 23.
    expect(clipGeometry(301, 250)).toEqual({ resizedWidth: 269, resizedHeight: 224, top: 0, left: 22 });
    // 224·303/250 = 271.49 → 271; 23.5 → 24.
    expect(clipGeometry(303, 250)).toEqual({ resizedWidth: 271, resizedHeight: 224, top: 0, left: 24 });
    expect(clipGeometry(250, 333)).toEqual({ resizedWidth: 224, resizedHeight: 298, top: 37, left: 0 });
    expect(clipGeometry(150, 120)).toEqual({ resizedWidth: 280, resizedHeight: 224, top: 0, left: 28 });
    expect(clipGeometry(500, 500)).toEqual({ resizedWidth: 224, resizedHeight: 224, top: 0, left: 0 });
    expect(clipGeometry(1000, 10, 336)).toEqual({ resizedWidth: 33600, resizedHeight: 336, top: 0, left: 16632 });
  });

  it('crops a non-square image exactly where torchvision does', () => {
    // Width already 224: no resize, so the crop must be rows 38..261 of the input, untouched.
    const tall = pattern(224, 300, 'RGB');
    const out = clipResizeCrop(tall);
    expect([out.width, out.height, out.channels]).toEqual([224, 224, 3]);
    expect(Buffer.from(out.data).equals(Buffer.from(tall.data.subarray(38 * 224 * 3, (38 + 224) * 224 * 3)))).toBe(true);
    // Height 224, width 301: columns 38..261 (round(38.5) = 38).
    const wide = pattern(301, 224, 'RGB');
    const o2 = clipResizeCrop(wide);
    const cols = new Uint8Array(224 * 224 * 3);
    for (let y = 0; y < 224; y++) cols.set(wide.data.subarray((y * 301 + 38) * 3, (y * 301 + 38 + 224) * 3), y * 672);
    expect(Buffer.from(o2.data).equals(Buffer.from(cols))).toBe(true);
  });

  for (const c of PIL_CASES) {
    it(`matches PIL + torchvision on a ${c.w}×${c.h} ${c.mode} image (bytes exact, floats within 1e-6)`, async () => {
      const img = pattern(c.w, c.h, c.mode);
      expect(clipGeometry(c.w, c.h)).toEqual({ resizedWidth: c.resized[0], resizedHeight: c.resized[1], top: c.top, left: c.left });
      const crop = clipResizeCrop(img);
      expect(createHash('sha256').update(crop.data).digest('hex')).toBe(c.sha256);
      // From raw pixels and from a lossless PNG of them: decoding must not change anything.
      const png = await sharp(img.data, { raw: { width: c.w, height: c.h, channels: img.channels } }).png().toBuffer();
      for (const x of [await clipPreprocess(img), await clipPreprocess(new Uint8Array(png))]) {
        expect(x.length).toBe(3 * 224 * 224);
        for (const [ch, y, xx, v] of c.points) expect(Math.abs(x[(ch * 224 + y) * 224 + xx] - v)).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(x.reduce((a, v) => a + v, 0) - c.sum)).toBeLessThan(1e-6 * x.length);
      }
    });
  }
});

// ---- stages ----

/** Distinct synthetic photos: smooth colour fields with a seeded blob, encoded as JPEG. */
async function photo(seed: number, w: number, h: number): Promise<Uint8Array> {
  const rand = seededRandom(seed);
  const [r0, g0, b0, cx, cy] = [rand(), rand(), rand(), rand() * w, rand() * h];
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const blob = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.05 * w * h));
      data.set([255 * (r0 * (1 - blob) + blob), 255 * g0 * (x / w), 255 * (b0 + (1 - b0) * (y / h) * blob)].map(Math.round), (y * w + x) * 3);
    }
  }
  return new Uint8Array(await sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
}

describe('clipAestheticStage', () => {
  it('scores images through the ONNX stand-in tower in batches, in order, as the model run directly does', async () => {
    const head = AestheticHead.fromSafetensors(parseSafetensors(encodeAestheticHead(randomAestheticLayers(2))));
    const bytes = buildClipStandinModel(1);
    const models = [await OnnxTensorModel.load(bytes, { name: 'clip-a', intraOpThreads: 1 }), await OnnxTensorModel.load(bytes, { name: 'clip-b', intraOpThreads: 1 })];
    try {
      for (const m of models) checkClipModel(m, { dim: head.dim, batch_size: 3 });
      const pool = new ReplicaPool<TensorModel>(models.map((m) => ({ name: m.name, client: m })));
      const sizes = [[256, 256], [320, 240], [240, 320], [512, 384], [300, 300], [224, 224], [640, 200]];
      const images = await Promise.all(sizes.map(([w, h], i) => photo(100 + i, w, h)));
      const samples: Sample[] = images.map((image, i) => Object.assign(newSample(`s${i}`), { image, imageExt: 'jpg' }));
      samples.splice(2, 0, drop(newSample('dropped'), 'min_edge', 10));
      samples.splice(5, 0, newSample('noimage'));
      samples.splice(7, 0, Object.assign(newSample('garbage'), { image: new Uint8Array([1, 2, 3, 4]) }));

      const ctx = context();
      const out = await run(clipAestheticStage({ head, pool, batch_size: 3, max_wait_ms: 5 }), samples, ctx);
      expect(out.map((s) => s.key)).toEqual(samples.map((s) => s.key));
      expect(out.find((s) => s.key === 'dropped')!.status).toEqual({ kind: 'dropped', by: 'min_edge', value: 10 });
      expect(out.find((s) => s.key === 'noimage')!.status).toMatchObject({ kind: 'failed', stage: 'aesthetic-clip', code: 'no_image' });
      expect(out.find((s) => s.key === 'garbage')!.status).toMatchObject({ kind: 'failed', stage: 'aesthetic-clip', code: 'decode_error' });

      const scores: number[] = [];
      for (const [i, image] of images.entries()) {
        const s = out.find((x) => x.key === `s${i}`)!;
        expect(s.status).toEqual({ kind: 'ok' });
        const pixels = await clipPreprocess(image);
        const emb = await models[0].infer({ pixel_values: { dtype: 'FP32', shape: [1, 3, 224, 224], data: pixels } });
        expect(emb.image_embeds.shape).toEqual([1, 768]);
        const expected = head.score(emb.image_embeds.data as Float32Array);
        expect(Math.abs((s.fields.aesthetic_score as number) - expected)).toBeLessThan(1e-5);
        expect(s.image).toBe(image); // the image goes on to the sink
        scores.push(expected);
      }
      // Different images score differently, so the comparison above means something.
      expect(new Set(scores.map((v) => v.toFixed(4))).size).toBe(images.length);

      const st = ctx.stats.stage('aesthetic-clip');
      expect([st.in, st.ok, st.failed, st.dropped]).toEqual([9, 7, 2, 0]);
      expect(st.counts.scored).toBe(7);
      expect(st.counts.samples).toBe(7);
      expect(st.counts.batches).toBeGreaterThanOrEqual(3);
      expect(st.counts.model_ms).toBeGreaterThan(0);
    } finally {
      await Promise.all(models.map((m) => m.close()));
    }
  });

  it('refuses a tower that does not fit, naming the model and the tensor', async () => {
    const head = new AestheticHead(new Float64Array(512).fill(0.01), 5);
    const model = await OnnxTensorModel.load(buildClipStandinModel(2), { name: 'standin' });
    try {
      expect(() => checkClipModel(model, { dim: 768, input_name: 'images' })).toThrow('model standin: no input "images" (inputs: pixel_values); set aesthetic input_name');
      expect(() => checkClipModel(model, { dim: 768, output_name: 'embeds' })).toThrow('model standin: no output "embeds" (outputs: image_embeds); set aesthetic output_name');
      expect(() => checkClipModel(model, { dim: 768, image_size: 336 })).toThrow('model standin: input "pixel_values" has shape [-1, 3, 224, 224], expected [N, 3, 336, 336]');
      expect(() => checkClipModel(model, { dim: 512 })).toThrow(/model standin: output "image_embeds" has shape \[-1, 768\], but the aesthetic head takes 512-d embeddings/);
      // In a run, the same check fails the batch (model_error) instead of the whole run.
      const pool = new ReplicaPool<TensorModel>([{ name: 'r', client: model }]);
      const out = await run(clipAestheticStage({ head, pool }), [Object.assign(newSample('a'), { image: await photo(1, 64, 64) })]);
      expect(out[0].status).toMatchObject({ kind: 'failed', code: 'model_error' });
      expect((out[0].status as { error: string }).error).toMatch(/512-d embeddings/);
    } finally {
      await model.close();
    }
  });
});

describe('embeddingAestheticStage', () => {
  const head = AestheticHead.fromSafetensors(parseSafetensors(encodeAestheticHead(randomAestheticLayers(4))));

  /** Two LAION-style parts (f16 and f32 embeddings) plus their metadata; one URL appears in both. */
  async function fixture() {
    const dir = await tempDir('aes-emb');
    const rand = seededRandom(77);
    const parts = [
      { rows: 5, dtype: 'f2' as const, urls: ['http://a/0.jpg', 'http://a/1.jpg', 'http://a/2.jpg', 'http://a/3.jpg', 'http://a/4.jpg'] },
      { rows: 4, dtype: 'f4' as const, urls: ['http://b/0.jpg', 'http://a/1.jpg', 'http://b/2.jpg', 'http://b/3.jpg'] },
    ];
    const pairs = [];
    for (const [i, p] of parts.entries()) {
      const embeddings = join(dir, `img_emb_000${i}.npy`);
      const metadata = join(dir, `metadata_000${i}.parquet`);
      await writeFile(embeddings, encodeNpy(randomVector(rand, p.rows * 768, 0.05), [p.rows, 768], { dtype: p.dtype }));
      await writeFile(metadata, writeParquet(p.urls.map((url, k) => ({ url, caption: `part ${i} row ${k}`, similarity: 0.3 })), { rowGroupSize: 3 }));
      pairs.push({ embeddings, metadata });
    }
    // Scores of the embeddings as stored (f16-rounded for part 0).
    const expected = await Promise.all(pairs.map(async (p) => {
      const { data } = await readNpy(p.embeddings);
      return Array.from({ length: data.length / 768 }, (_, r) => head.score(data.subarray(r * 768, (r + 1) * 768)));
    }));
    return { dir, pairs, parts, expected };
  }

  it("join 'row': the metadata parquet read as input gives source_file/source_row, which index its npy", async () => {
    const { pairs, expected } = await fixture();
    await checkEmbeddingPairs({ head, pairs, join: 'row' });
    const opts = { paths: pairs.map((p) => p.metadata), url_column: 'url', caption_column: 'caption', unit_rows: 3 };
    const units = await planTableUnits(opts);
    expect(units.length).toBe(4); // 5 rows → 3 + 2, 4 rows → 3 + 1
    const stage = embeddingAestheticStage({ head, pairs, join: 'row' });
    let seen = 0;
    for (const unit of units) {
      const ctx = context();
      const out = await run(stage, tableSource(unit, opts), ctx);
      for (const s of out) {
        const part = pairs.findIndex((p) => p.metadata === s.fields.source_file);
        expect(s.status).toEqual({ kind: 'ok' });
        expect(Math.abs((s.fields.aesthetic_score as number) - expected[part][s.fields.source_row as number])).toBeLessThan(1e-9);
        seen++;
      }
      expect(ctx.stats.stage('aesthetic-embeddings').counts.scored).toBe(out.length);
    }
    expect(seen).toBe(9);

    // By file name when the path differs (e.g. the input was read from s3://), bigint rows, and misses.
    const out = await run(stage, [
      newSample('moved', { source_file: 's3://bucket/laion/metadata_0001.parquet', source_row: 2n }),
      newSample('past', { source_file: pairs[0].metadata, source_row: 5 }),
      newSample('other', { source_file: '/data/metadata_0009.parquet', source_row: 0 }),
      newSample('norow', { url: 'http://a/0.jpg' }),
    ]);
    expect(out[0].fields.aesthetic_score).toBeCloseTo(expected[1][2], 9);
    expect(out[1].status).toEqual({ kind: 'failed', stage: 'aesthetic-embeddings', code: 'no_embedding', error: `no embedding for ${pairs[0].metadata} row 5: ${pairs[0].embeddings} has 5 rows` });
    expect(out[2].status).toEqual({ kind: 'failed', stage: 'aesthetic-embeddings', code: 'no_embedding', error: 'no embedding pair for source file /data/metadata_0009.parquet (row 0)' });
    expect(out[3].status).toMatchObject({ kind: 'failed', code: 'no_embedding', error: "join 'row' needs source_file and source_row (got undefined, undefined)" });

    expect(() => embeddingAestheticStage({ head, pairs: [pairs[0], { embeddings: 'x.npy', metadata: '/elsewhere/metadata_0000.parquet' }], join: 'row' })).toThrow(/share the file name metadata_0000\.parquet/);
  });

  it("join 'url': looks the sample's url up in the metadata; a missing one fails with no_embedding", async () => {
    const { pairs, expected } = await fixture();
    await checkEmbeddingPairs({ head, pairs, join: 'url' });
    const stage = embeddingAestheticStage({ head, pairs, join: 'url' });
    const samples = [
      newSample('a3', { url: 'http://a/3.jpg' }),
      newSample('b2', { url: 'http://b/2.jpg' }),
      newSample('dup', { url: 'http://a/1.jpg' }), // in both parts: the first wins
      drop(newSample('gone', { url: 'http://a/0.jpg' }), 'nsfw', 0.9),
      newSample('miss', { url: 'http://nowhere/x.jpg' }),
      newSample('nourl', { url: null }),
      newSample('b0', { url: 'http://b/0.jpg' }),
    ];
    const ctx = context();
    const out = await run(stage, samples, ctx);
    expect(out.map((s) => s.key)).toEqual(samples.map((s) => s.key));
    expect(out[0].fields.aesthetic_score).toBeCloseTo(expected[0][3], 9);
    expect(out[1].fields.aesthetic_score).toBeCloseTo(expected[1][2], 9);
    expect(out[2].fields.aesthetic_score).toBeCloseTo(expected[0][1], 9);
    expect(out[3].status).toEqual({ kind: 'dropped', by: 'nsfw', value: 0.9 });
    expect(out[3].fields.aesthetic_score).toBeUndefined();
    expect(out[4].status).toEqual({ kind: 'failed', stage: 'aesthetic-embeddings', code: 'no_embedding', error: 'no embedding for url http://nowhere/x.jpg in 2 metadata file(s)' });
    expect(out[5].status).toMatchObject({ kind: 'failed', code: 'no_embedding' });
    expect(out[6].fields.aesthetic_score).toBeCloseTo(expected[1][0], 9);
    const st = ctx.stats.stage('aesthetic-embeddings');
    expect([st.in, st.ok, st.failed, st.counts.scored]).toEqual([6, 4, 2, 4]);
  });

  it('fails samples of a pair whose npy and metadata are not row-aligned, and says so at start-up', async () => {
    const { dir, pairs } = await fixture();
    const short = join(dir, 'img_emb_short.npy');
    await writeFile(short, encodeNpy(new Float32Array(3 * 768).fill(0.1), [3, 768]));
    const bad = [{ embeddings: short, metadata: pairs[1].metadata }];
    await expect(checkEmbeddingPairs({ head, pairs: bad, join: 'url' })).rejects.toThrow(`${short} has 3 rows but ${pairs[1].metadata} has 4; they must be row-aligned`);
    const out = await run(embeddingAestheticStage({ head, pairs: bad, join: 'url' }), [newSample('x', { url: 'http://b/0.jpg' })]);
    expect(out[0].status).toMatchObject({ kind: 'failed', code: 'embedding_mismatch' });

    await expect(checkEmbeddingPairs({ head, pairs, join: 'url', url_column: 'URL' })).rejects.toThrow(`${pairs[0].metadata} has no column "URL" (columns: url, caption, similarity); set url_column`);
    const noColumn = await run(embeddingAestheticStage({ head, pairs, join: 'url', url_column: 'URL' }), [newSample('y', { url: 'http://b/0.jpg' }), newSample('z', { url: 'http://a/0.jpg' })]);
    for (const s of noColumn) expect(s.status).toMatchObject({ kind: 'failed', code: 'embedding_index', error: expect.stringMatching(/no column\(s\) URL/) });
  });
});

describe('aestheticFilter', () => {
  it('drops samples below min under "aesthetic", keeping the score in their fields', async () => {
    const samples = [
      newSample('low', { aesthetic_score: 3.2 }),
      newSample('edge', { aesthetic_score: 5 }),
      newSample('high', { aesthetic_score: 6.1 }),
      newSample('unscored'),
      drop(newSample('before', { aesthetic_score: 1 }), 'nsfw', 0.99),
    ];
    const ctx = context();
    const out = await run(aestheticFilter({ min: 5 }), samples, ctx);
    expect(out.map((s) => [s.key, s.status])).toEqual([
      ['low', { kind: 'dropped', by: 'aesthetic', value: 3.2 }],
      ['edge', { kind: 'ok' }],
      ['high', { kind: 'ok' }],
      ['unscored', { kind: 'failed', stage: 'aesthetic-filter', code: 'no_aesthetic_score', error: 'no aesthetic_score to filter on; run an aesthetic stage first' }],
      ['before', { kind: 'dropped', by: 'nsfw', value: 0.99 }],
    ]);
    expect(out[0].fields.aesthetic_score).toBe(3.2);
    const st = ctx.stats.stage('aesthetic-filter');
    expect([st.in, st.ok, st.dropped, st.failed]).toEqual([4, 2, 1, 1]);
    expect(() => aestheticFilter({ min: Number.NaN })).toThrow(/min must be a number/);
  });
});
