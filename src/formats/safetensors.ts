/**
 * Safetensors files (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
 * mapping tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
 * byte buffer that follows) plus an optional `__metadata__` map of strings, then the buffer.
 *
 * Own code rather than a dependency: the npm package `safetensors` is a 0.0.1 placeholder and
 * nothing else on npm reads the format without pulling in a tensor framework. Only the float
 * dtypes a model head needs are decoded (F64, F32, F16, BF16, all into Float32Array); other
 * dtypes are listed and fail only when asked for.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { floatToHalf, halfToFloat } from './half-float.js';

/** Values in a tensor of this shape. */
const valuesOf = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

export type SafetensorsFloatDType = 'F64' | 'F32' | 'F16' | 'BF16';

const FLOAT_BYTES: Record<SafetensorsFloatDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };
// Sizes of the other dtypes the format defines, so their byte ranges can still be checked.
const OTHER_BYTES: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, I16: 2, U32: 4, I32: 4, U64: 8, I64: 8 };

/** The format's own bound: a larger header is a corrupt or hostile file, not a model. */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** Byte range in the file's data buffer. */
  begin: number;
  end: number;
}

export interface SafetensorsTensor {
  dtype: SafetensorsFloatDType;
  shape: number[];
  data: Float32Array;
}

/** A parsed file: header checked up front, tensors decoded on request. */
export class Safetensors {
  constructor(
    /** What errors name: the path, or a label for bytes. */
    readonly name: string,
    readonly metadata: Record<string, string>,
    readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    private readonly buffer: Uint8Array,
  ) {}

  get names(): string[] {
    return [...this.entries.keys()];
  }

  has(tensor: string): boolean {
    return this.entries.has(tensor);
  }

  /** Decodes a float tensor to Float32Array (F64 is rounded to float32). */
  get(tensor: string): SafetensorsTensor {
    const e = this.entries.get(tensor);
    if (!e) throw new SafetensorsError(`safetensors ${this.name}: no tensor "${tensor}" (has ${this.names.join(', ') || 'none'})`);
    if (!(e.dtype in FLOAT_BYTES)) throw new SafetensorsError(`safetensors ${this.name}: tensor "${tensor}" has dtype ${e.dtype}; only F64, F32, F16 and BF16 are read`);
    const dtype = e.dtype as SafetensorsFloatDType;
    const n = valuesOf(e.shape);
    const view = new DataView(this.buffer.buffer, this.buffer.byteOffset + e.begin, e.end - e.begin);
    const data = new Float32Array(n);
    if (dtype === 'F32') for (let i = 0; i < n; i++) data[i] = view.getFloat32(i * 4, true);
    else if (dtype === 'F64') for (let i = 0; i < n; i++) data[i] = view.getFloat64(i * 8, true);
    else if (dtype === 'F16') for (let i = 0; i < n; i++) data[i] = halfToFloat(view.getUint16(i * 2, true));
    else {
      // bfloat16 is the top half of a float32.
      const u = new Uint32Array(data.buffer);
      for (let i = 0; i < n; i++) u[i] = view.getUint16(i * 2, true) << 16;
    }
    return { dtype, shape: [...e.shape], data };
  }
}


/** Parses a whole file held in memory; `name` is what errors report. */
export function parseSafetensors(bytes: Uint8Array, name = 'safetensors'): Safetensors {
  const bad = (why: string) => new SafetensorsError(`safetensors ${name}: ${why}`);
  if (bytes.length < 8) throw bad(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) throw bad(`header length ${n} exceeds the file (${bytes.length} bytes) or the format's ${MAX_HEADER_BYTES}-byte limit: not a safetensors file, or truncated`);
  const headerLen = Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw bad(`header is not valid UTF-8 JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
  const buffer = bytes.subarray(8 + headerLen);
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [key, v] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('__metadata__ is not an object');
      for (const [mk, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') throw bad(`__metadata__ value "${mk}" is not a string`);
        metadata[mk] = mv;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const where = `tensor "${key}"`;
    if (t === null || typeof t !== 'object') throw bad(`${where} is not an object`);
    if (typeof t.dtype !== 'string') throw bad(`${where} has no dtype`);
    const size = FLOAT_BYTES[t.dtype as SafetensorsFloatDType] ?? OTHER_BYTES[t.dtype];
    if (size === undefined) throw bad(`${where} has unknown dtype ${t.dtype}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`${where} has a bad shape ${JSON.stringify(t.shape)}`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) throw bad(`${where} has bad data_offsets ${JSON.stringify(off)}`);
    const [begin, end] = off as [number, number];
    if (end > buffer.length) throw bad(`${where} data_offsets [${begin}, ${end}] lie outside the ${buffer.length}-byte data buffer (truncated file?)`);
    const shape = t.shape as number[];
    const want = valuesOf(shape) * size;
    if (end - begin !== want) throw bad(`${where} holds ${end - begin} bytes but ${t.dtype} [${shape.join(', ')}] needs ${want}`);
    entries.set(key, { dtype: t.dtype, shape, begin, end });
  }
  return new Safetensors(name, metadata, entries, buffer);
}

/** Reads and parses a file; errors name the path. */
export async function readSafetensors(path: string): Promise<Safetensors> {
  return parseSafetensors(await readFile(path), path);
}

export interface SafetensorsInput {
  dtype: SafetensorsFloatDType;
  shape: number[];
  data: ArrayLike<number>;
}

/** Serialises tensors (in the given order) and optional string metadata. */
export function encodeSafetensors(tensors: Record<string, SafetensorsInput>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new SafetensorsError('"__metadata__" cannot name a tensor');
    if (!(t.dtype in FLOAT_BYTES)) throw new SafetensorsError(`tensor "${name}": unsupported dtype ${String(t.dtype)}`);
    if (t.data.length !== valuesOf(t.shape)) throw new SafetensorsError(`tensor "${name}": ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const bytes = t.data.length * FLOAT_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // Padding the header with spaces to a multiple of 8 keeps the data aligned, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let p = 8 + head.length;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const t of Object.values(tensors)) {
    for (let i = 0; i < t.data.length; i++) {
      const v = t.data[i];
      if (t.dtype === 'F32') view.setFloat32(p, v, true);
      else if (t.dtype === 'F64') view.setFloat64(p, v, true);
      else if (t.dtype === 'F16') view.setUint16(p, floatToHalf(v), true);
      else {
        // Round to nearest even on the 16 dropped bits, as torch does; NaN stays NaN.
        f32[0] = v;
        const x = u32[0];
        view.setUint16(p, Number.isNaN(v) ? 0x7fc0 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff, true);
      }
      p += FLOAT_BYTES[t.dtype];
    }
  }
  return out;
}

export async function writeSafetensors(path: string, tensors: Record<string, SafetensorsInput>, metadata?: Record<string, string>): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}
