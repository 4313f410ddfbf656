/**
 * NumPy .npy files of little-endian floats (`<f2`, `<f4`, `<f8`), format versions 1.0, 2.0 and
 * 3.0: magic "\x93NUMPY", version, header length (2 bytes in v1, 4 in v2/v3), a Python dict
 * literal {descr, fortran_order, shape}, then the data in C order.
 *
 * Written for LAION's CLIP embedding parts (`img_emb_XXXX.npy`, ~1M × 768 float16, ~1.5 GB):
 * NpyFile reads any row range with positional reads on an open handle, so a lookup costs one
 * row, never the file. npyjs (the npm reader) fetches the whole file into memory, so it does not fit.
 */
import { open, writeFile, type FileHandle } from 'node:fs/promises';
import { floatToHalf, halfToFloat } from './half-float.js';

export type NpyDType = 'f2' | 'f4' | 'f8';

const ITEM_BYTES: Record<NpyDType, number> = { f2: 2, f4: 4, f8: 8 };
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** numpy refuses headers above this unless told otherwise; anything bigger is not an array header. */
const MAX_HEADER_BYTES = 1 << 20;

export class NpyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NpyError';
  }
}

export interface NpyHeader {
  version: [number, number];
  dtype: NpyDType;
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
}

/** Bytes before the header text: the header length's position and width depend on the version. */
function prefix(bytes: Uint8Array, name: string): { version: [number, number]; headerStart: number; headerLen: number } {
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) throw new NpyError(`npy ${name}: not a .npy file (no \\x93NUMPY magic)`);
  const version: [number, number] = [bytes[6], bytes[7]];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (version[0] === 1) return { version, headerStart: 10, headerLen: view.getUint16(8, true) };
  if (version[0] === 2 || version[0] === 3) {
    if (bytes.length < 12) throw new NpyError(`npy ${name}: file ends inside the header`);
    return { version, headerStart: 12, headerLen: view.getUint32(8, true) };
  }
  throw new NpyError(`npy ${name}: unsupported format version ${version[0]}.${version[1]} (1.0, 2.0 and 3.0 are read)`);
}

/** Parses the header from the first bytes of a file (at least up to the end of the header). */
export function parseNpyHeader(bytes: Uint8Array, name = 'npy'): NpyHeader {
  const { version, headerStart, headerLen } = prefix(bytes, name);
  if (headerLen > MAX_HEADER_BYTES) throw new NpyError(`npy ${name}: header length ${headerLen} is implausible (corrupt file?)`);
  if (bytes.length < headerStart + headerLen) throw new NpyError(`npy ${name}: file ends inside the header (${bytes.length} < ${headerStart + headerLen} bytes)`);
  // v1/v2 headers are latin-1 (ASCII in practice); v3 allows UTF-8.
  const text = new TextDecoder(version[0] === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new NpyError(`npy ${name}: cannot parse header ${JSON.stringify(text.trim())}`);
  const dtype = ({ '<f2': 'f2', '<f4': 'f4', '<f8': 'f8' } as Record<string, NpyDType>)[descr];
  if (!dtype) throw new NpyError(`npy ${name}: dtype ${descr} is not supported (little-endian float16/32/64 only: <f2, <f4, <f8)`);
  if (fortran === 'True') throw new NpyError(`npy ${name}: fortran_order arrays are not supported; rewrite it with numpy.save(path, numpy.ascontiguousarray(a))`);
  // Python 2 wrote longs as "768L".
  const dims = shapeText.split(',').map((d) => d.trim()).filter((d) => d !== '').map((d) => Number(d.replace(/L$/, '')));
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new NpyError(`npy ${name}: bad shape (${shapeText})`);
  return { version, dtype, shape: dims, dataOffset: headerStart + headerLen };
}

// A table beats halfToFloat's arithmetic when whole files of halves are decoded.
let halfTable: Float32Array | undefined;
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

function decode(bytes: Uint8Array, dtype: NpyDType, n: number, out: Float32Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'f2') {
    const t = halves();
    for (let i = 0; i < n; i++) out[i] = t[view.getUint16(i * 2, true)];
  } else if (dtype === 'f4') for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  else for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}

async function readFully(fh: FileHandle, buf: Uint8Array, position: number, name: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) throw new NpyError(`npy ${name}: file ends at byte ${position + off}, expected at least ${position + buf.length}`);
    off += bytesRead;
  }
}

/**
 * An open .npy file read by rows (the first axis). Keep one per file and close() it; reads may
 * run concurrently.
 */
export class NpyFile {
  /** Rows along the first axis. */
  readonly rows: number;
  /** Elements per row: the product of the other axes. */
  readonly rowLength: number;

  private constructor(readonly path: string, readonly header: NpyHeader, private readonly fh: FileHandle) {
    const [first, ...rest] = header.shape;
    this.rows = first ?? 1;
    this.rowLength = rest.reduce((a, b) => a * b, 1);
  }

  static async open(path: string): Promise<NpyFile> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = new Uint8Array(Math.min(size, 12));
      await readFully(fh, start, 0, path);
      const { headerStart, headerLen } = prefix(start, path);
      if (headerLen > MAX_HEADER_BYTES) throw new NpyError(`npy ${path}: header length ${headerLen} is implausible (corrupt file?)`);
      const head = new Uint8Array(Math.min(size, headerStart + headerLen));
      await readFully(fh, head, 0, path);
      const header = parseNpyHeader(head, path);
      const need = header.dataOffset + header.shape.reduce((a, b) => a * b, 1) * ITEM_BYTES[header.dtype];
      if (size < need) throw new NpyError(`npy ${path}: file is ${size} bytes but shape (${header.shape.join(', ')}) of ${header.dtype} needs ${need}: truncated`);
      return new NpyFile(path, header, fh);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get shape(): number[] {
    return [...this.header.shape];
  }

  get dtype(): NpyDType {
    return this.header.dtype;
  }

  /** Rows [start, end) as float32, row-major: (end - start) × rowLength values. */
  async readRows(start: number, end: number, out?: Float32Array): Promise<Float32Array> {
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= this.rows)) {
      throw new NpyError(`npy ${this.path}: rows [${start}, ${end}) out of range (${this.rows} rows)`);
    }
    const n = (end - start) * this.rowLength;
    const dst = out ?? new Float32Array(n);
    if (dst.length < n) throw new NpyError(`npy ${this.path}: output holds ${dst.length} values, rows [${start}, ${end}) need ${n}`);
    const item = ITEM_BYTES[this.header.dtype];
    const bytes = new Uint8Array(n * item);
    await readFully(this.fh, bytes, this.header.dataOffset + start * this.rowLength * item, this.path);
    return decode(bytes, this.header.dtype, n, dst);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** A whole .npy held in memory (an object read from a store), as float32 row-major values. */
export function decodeNpy(bytes: Uint8Array, name = 'npy'): { dtype: NpyDType; shape: number[]; data: Float32Array } {
  const header = parseNpyHeader(bytes, name);
  const n = header.shape.reduce((a, b) => a * b, 1);
  const need = header.dataOffset + n * ITEM_BYTES[header.dtype];
  if (bytes.length < need) throw new NpyError(`npy ${name}: ${bytes.length} bytes but shape (${header.shape.join(', ')}) of ${header.dtype} needs ${need}: truncated`);
  return { dtype: header.dtype, shape: header.shape, data: decode(bytes.subarray(header.dataOffset, need), header.dtype, n, new Float32Array(n)) };
}

/** Reads a whole file (small files; use NpyFile for row ranges of big ones). */
export async function readNpy(path: string): Promise<{ dtype: NpyDType; shape: number[]; data: Float32Array }> {
  const f = await NpyFile.open(path);
  try {
    const data = await f.readRows(0, f.rows);
    return { dtype: f.dtype, shape: f.shape, data };
  } finally {
    await f.close();
  }
}

export interface EncodeNpyOptions {
  /** Default f4. */
  dtype?: NpyDType;
  /** Default: 1 when the header fits in 65,535 bytes, else 2 (as numpy chooses). */
  version?: 1 | 2 | 3;
}

/** Serialises a C-order float array as numpy.save would. */
export function encodeNpy(data: ArrayLike<number>, shape: number[], opts: EncodeNpyOptions = {}): Uint8Array {
  const dtype = opts.dtype ?? 'f4';
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new NpyError(`encodeNpy: ${data.length} values for shape (${shape.join(', ')})`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '<${dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const version = opts.version ?? (dict.length + 11 <= 0xffff ? 1 : 2);
  const start = version === 1 ? 10 : 12;
  // numpy pads with spaces and ends with a newline so the data starts 64-byte aligned.
  const total = Math.ceil((start + dict.length + 1) / 64) * 64;
  const headerText = dict.padEnd(total - start - 1, ' ') + '\n';
  const item = ITEM_BYTES[dtype];
  const out = new Uint8Array(total + n * item);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  if (version === 1) view.setUint16(8, headerText.length, true);
  else view.setUint32(8, headerText.length, true);
  out.set(new TextEncoder().encode(headerText), start);
  for (let i = 0; i < n; i++) {
    const p = total + i * item;
    if (dtype === 'f2') view.setUint16(p, floatToHalf(data[i]), true);
    else if (dtype === 'f4') view.setFloat32(p, data[i], true);
    else view.setFloat64(p, data[i], true);
  }
  return out;
}

export async function writeNpy(path: string, data: ArrayLike<number>, shape: number[], opts: EncodeNpyOptions = {}): Promise<void> {
  await writeFile(path, encodeNpy(data, shape, opts));
}
