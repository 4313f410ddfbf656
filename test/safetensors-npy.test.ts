import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy, NpyFile, parseNpyHeader, readNpy, writeNpy } from '../src/formats/npy.js';
import { encodeSafetensors, parseSafetensors, readSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { tempDir } from './helpers/temp-dir.js';

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** A safetensors file assembled by hand from the spec, independent of encodeSafetensors. */
function handMade(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips F32, F64, F16 and BF16 tensors with metadata, in order', async () => {
    const dir = await tempDir('st');
    const path = join(dir, 'm.safetensors');
    const f32 = Float32Array.from([1.5, -2.25, 3.1415927, 1e-8, -0, 65504]);
    // Values exactly representable in half and bfloat16, so the round trip is exact.
    const halves = [0, 1, -1.5, 0.000060975551605224609375, 65504, -0.333251953125];
    const bf = [0, 1, -1.5, 3.140625, 2 ** 100, 0.0078125];
    await writeSafetensors(path, {
      'layers.0.weight': { dtype: 'F32', shape: [2, 3], data: f32 },
      'layers.0.bias': { dtype: 'F64', shape: [2], data: [0.1, -0.2] },
      half: { dtype: 'F16', shape: [6], data: halves },
      brain: { dtype: 'BF16', shape: [3, 2], data: bf },
      empty: { dtype: 'F32', shape: [0, 4], data: [] },
    }, { format: 'pt', note: 'test' });
    const bytes = await readFile(path);
    const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);

    const st = await readSafetensors(path);
    expect(st.metadata).toEqual({ format: 'pt', note: 'test' });
    expect(st.names).toEqual(['layers.0.weight', 'layers.0.bias', 'half', 'brain', 'empty']);
    expect(st.get('layers.0.weight')).toEqual({ dtype: 'F32', shape: [2, 3], data: f32 });
    expect(Array.from(st.get('layers.0.bias').data)).toEqual([Math.fround(0.1), Math.fround(-0.2)]);
    expect(Array.from(st.get('half').data)).toEqual(halves.map(Math.fround));
    expect(st.get('brain').shape).toEqual([3, 2]);
    expect(Array.from(st.get('brain').data)).toEqual(bf.map(Math.fround));
    expect(st.get('empty').data.length).toBe(0);
  });

  it('rounds to F16 and BF16 to nearest', () => {
    const st = parseSafetensors(encodeSafetensors({
      h: { dtype: 'F16', shape: [3], data: [1 + 2 ** -11, 1 + 3 * 2 ** -11, 0.1] },
      b: { dtype: 'BF16', shape: [2], data: [1 + 2 ** -8, 1 + 3 * 2 ** -8] },
    }));
    // Ties go to even.
    expect(Array.from(st.get('h').data)).toEqual([1, 1 + 2 ** -9, 0.0999755859375]);
    expect(Array.from(st.get('b').data)).toEqual([1, 1 + 2 ** -6]);
  });

  it('reads a file assembled by hand from the spec (unpadded header, unaligned data)', () => {
    const data = new Uint8Array(14);
    const v = new DataView(data.buffer);
    v.setUint16(0, 0x3c00, true); // F16 1.0
    v.setUint16(2, 0xc000, true); // F16 -2.0
    v.setFloat32(4, 0.5, true);
    v.setFloat32(8, -4, true);
    v.setUint16(12, 0x3f80, true); // BF16 1.0
    const bytes = handMade({ a: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, __metadata__: { k: 'v' }, b: { dtype: 'F32', shape: [1, 2], data_offsets: [4, 12] }, c: { dtype: 'BF16', shape: [], data_offsets: [12, 14] } }, data);
    const st = parseSafetensors(bytes, 'hand.safetensors');
    expect(Array.from(st.get('a').data)).toEqual([1, -2]);
    expect(Array.from(st.get('b').data)).toEqual([0.5, -4]);
    expect(st.get('c')).toEqual({ dtype: 'BF16', shape: [], data: Float32Array.from([1]) });
    expect(st.metadata).toEqual({ k: 'v' });
  });

  it('reports corrupt files with the file name and the tensor', async () => {
    const dir = await tempDir('st-bad');
    const good = encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: [1, 2] } });

    const corrupt = join(dir, 'corrupt.safetensors');
    const c = good.slice();
    c[8] = 0x5b; // '{' → '[': no longer an object… and not valid JSON either
    c[9] = 0x7b;
    await writeFile(corrupt, c);
    await expect(readSafetensors(corrupt)).rejects.toThrow(new RegExp(`safetensors ${corrupt}: header is not valid UTF-8 JSON`));

    const huge = join(dir, 'huge.safetensors');
    const h = good.slice();
    new DataView(h.buffer).setBigUint64(0, 1n << 40n, true);
    await writeFile(huge, h);
    await expect(readSafetensors(huge)).rejects.toThrow(/huge\.safetensors: header length 1099511627776 exceeds the file/);

    const short = join(dir, 'short.safetensors');
    await writeFile(short, new Uint8Array([1, 2, 3]));
    await expect(readSafetensors(short)).rejects.toThrow(/short\.safetensors: file is 3 bytes/);

    const truncated = join(dir, 'truncated.safetensors');
    await writeFile(truncated, good.subarray(0, good.length - 1));
    await expect(readSafetensors(truncated)).rejects.toThrow(/truncated\.safetensors: tensor "w" data_offsets \[0, 8\] lie outside the 7-byte data buffer/);

    expect(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), 'size.st')).toThrow('safetensors size.st: tensor "w" holds 8 bytes but F32 [3] needs 12');
    expect(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)), 'rev.st')).toThrow(/rev\.st: tensor "w" has bad data_offsets \[8,0\]/);
    expect(() => parseSafetensors(handMade({ w: { dtype: 'Q4', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)), 'q.st')).toThrow('safetensors q.st: tensor "w" has unknown dtype Q4');
    expect(() => parseSafetensors(handMade([1, 2], new Uint8Array(0)), 'arr.st')).toThrow('safetensors arr.st: header is not a JSON object');

    const ints = parseSafetensors(handMade({ i: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), 'ints.st');
    expect(ints.names).toEqual(['i']);
    expect(() => ints.get('i')).toThrow('safetensors ints.st: tensor "i" has dtype I64; only F64, F32, F16 and BF16 are read');
    expect(() => ints.get('nope')).toThrow('safetensors ints.st: no tensor "nope" (has i)');
  });
});

// Written by numpy 1.24 (np.lib.format.write_array) when this test was made.
const NUMPY = {
  /** [[0, 1.5, -2], [65504, 6.1035e-05, -0.25]] as <f2 */
  f2: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGYyJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAA+AMD/ewAEALQ=',
  /** arange(6)/7 as <f4, shape (2, 3) */
  f4: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAJUkSPiVJkj63bds+JUkSP27bNj8=',
  /** arange(4)/3 as <f8, shape (4, 1), format version 2.0 */
  f8v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjgnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoNCwgMSksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAFVVVVVVVdU/VVVVVVVV5T8AAAAAAADwPw==',
  /** asfortranarray(arange(6).reshape(2, 3)) as <f4 */
  fortran: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAABAQAAAgD8AAIBAAAAAQAAAoEA=',
  /** arange(3) as >f4 */
  bigEndian: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAP4AAAEAAAAA=',
};

describe('npy', () => {
  it('reads files numpy wrote, and writes the same bytes numpy does', async () => {
    const dir = await tempDir('npy-numpy');
    const cases = [
      { key: 'f2', dtype: 'f2', shape: [2, 3], values: [0, 1.5, -2, 65504, 0.00006103515625, -0.25], version: 1 },
      { key: 'f4', dtype: 'f4', shape: [2, 3], values: [0, 1, 2, 3, 4, 5].map((i) => Math.fround(i / 7)), version: 1 },
      { key: 'f8v2', dtype: 'f8', shape: [4, 1], values: [0, 1, 2, 3].map((i) => Math.fround(i / 3)), version: 2 },
    ] as const;
    for (const c of cases) {
      const path = join(dir, `${c.key}.npy`);
      await writeFile(path, b64(NUMPY[c.key]));
      const got = await readNpy(path);
      expect(got.dtype).toBe(c.dtype);
      expect(got.shape).toEqual(c.shape);
      expect(Array.from(got.data)).toEqual(c.values);
    }
    expect(encodeNpy([0, 1.5, -2, 65504, 0.00006103515625, -0.25], [2, 3], { dtype: 'f2' })).toEqual(b64(NUMPY.f2));
    expect(encodeNpy([0, 1, 2, 3, 4, 5].map((i) => i / 7), [2, 3])).toEqual(b64(NUMPY.f4));
    expect(encodeNpy([0, 1, 2, 3].map((i) => i / 3), [4, 1], { dtype: 'f8', version: 2 })).toEqual(b64(NUMPY.f8v2));
  });

  it('round-trips f2/f4/f8 and reads row ranges without reading the file', async () => {
    const dir = await tempDir('npy');
    const rows = 37;
    const cols = 5;
    const values = Array.from({ length: rows * cols }, (_, i) => (i % 13) * 0.25 - 1.5); // exact in half
    for (const dtype of ['f2', 'f4', 'f8'] as const) {
      for (const version of [1, 2, 3] as const) {
        const path = join(dir, `a-${dtype}-v${version}.npy`);
        await writeNpy(path, values, [rows, cols], { dtype, version });
        const bytes = await readFile(path);
        const h = parseNpyHeader(bytes, path);
        expect(h).toEqual({ version: [version, 0], dtype, shape: [rows, cols], dataOffset: h.dataOffset });
        expect(h.dataOffset % 64).toBe(0);
        const f = await NpyFile.open(path);
        try {
          expect([f.rows, f.rowLength, f.dtype]).toEqual([rows, cols, dtype]);
          expect(Array.from(await f.readRows(0, rows))).toEqual(values);
          expect(Array.from(await f.readRows(10, 13))).toEqual(values.slice(50, 65));
          expect(Array.from(await f.readRows(36, 37))).toEqual(values.slice(180));
          expect((await f.readRows(5, 5)).length).toBe(0);
          // Concurrent positional reads on one handle.
          const many = await Promise.all(Array.from({ length: rows }, (_, r) => f.readRows(r, r + 1)));
          expect(many.flatMap((a) => Array.from(a))).toEqual(values);
          await expect(f.readRows(30, 38)).rejects.toThrow(`npy ${path}: rows [30, 38) out of range (37 rows)`);
        } finally {
          await f.close();
        }
      }
    }
    // 1-d, 3-d and 0-d shapes.
    const p1 = join(dir, 'one.npy');
    await writeNpy(p1, [1, 2, 3], [3]);
    expect(await readNpy(p1)).toEqual({ dtype: 'f4', shape: [3], data: Float32Array.from([1, 2, 3]) });
    const p3 = join(dir, 'three.npy');
    await writeNpy(p3, Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
    const f3 = await NpyFile.open(p3);
    expect([f3.rows, f3.rowLength]).toEqual([2, 12]);
    expect(Array.from(await f3.readRows(1, 2))).toEqual(Array.from({ length: 12 }, (_, i) => 12 + i));
    await f3.close();
    const p0 = join(dir, 'zero.npy');
    await writeNpy(p0, [7], []);
    expect(await readNpy(p0)).toEqual({ dtype: 'f4', shape: [], data: Float32Array.from([7]) });
  });

  it('refuses what it cannot read, naming the file', async () => {
    const dir = await tempDir('npy-bad');
    const put = async (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      await writeFile(p, bytes);
      return p;
    };
    const fortran = await put('fortran.npy', b64(NUMPY.fortran));
    await expect(NpyFile.open(fortran)).rejects.toThrow(`npy ${fortran}: fortran_order arrays are not supported`);
    const be = await put('be.npy', b64(NUMPY.bigEndian));
    await expect(readNpy(be)).rejects.toThrow(`npy ${be}: dtype >f4 is not supported`);
    const notNpy = await put('not.npy', new TextEncoder().encode('hello, world'));
    await expect(readNpy(notNpy)).rejects.toThrow(`npy ${notNpy}: not a .npy file`);
    const good = encodeNpy([1, 2, 3, 4], [2, 2]);
    const truncated = await put('truncated.npy', good.subarray(0, good.length - 2));
    await expect(NpyFile.open(truncated)).rejects.toThrow(/truncated\.npy: file is 142 bytes but shape \(2, 2\) of f4 needs 144: truncated/);
    const cut = await put('cut.npy', good.subarray(0, 40));
    await expect(NpyFile.open(cut)).rejects.toThrow(/cut\.npy: file ends inside the header/);
    const v9 = good.slice();
    v9[6] = 9;
    await expect(readNpy(await put('v9.npy', v9))).rejects.toThrow(/v9\.npy: unsupported format version 9\.0/);
  });
});
