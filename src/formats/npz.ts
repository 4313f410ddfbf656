/**
 * NumPy .npz archives: a zip whose members are .npy files named `<key>.npy`. numpy.savez stores
 * them (method 0), numpy.savez_compressed deflates them (method 8); both force zip64 extra fields
 * into the local headers (numpy gh-10776), which is why sizes and offsets are read from the
 * central directory, with its zip64 fields where a value is 0xFFFFFFFF.
 *
 * Members are decoded on demand (`get`), so an archive holding members of dtypes this reader does
 * not support (ints, objects) still yields its float members. Values come back as float64,
 * which holds every f2/f4/f8 value exactly; `dtype` says what the file stored.
 *
 * Written for FID statistics files (clean-fid, pytorch-fid, TTUR: `mu` [2048] and `sigma`
 * [2048, 2048]; float64, sometimes float32, clean-fid's own `mu` is float32).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { inflateRawSync } from 'node:zlib';
import { halfToFloat } from './half-float.js';
import { encodeNpy, NpyError, parseNpyHeader, type NpyDType } from './npy.js';

const ITEM_BYTES: Record<NpyDType, number> = { f2: 2, f4: 4, f8: 8 };
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_END = 0x06054b50;
const SIG_END64 = 0x06064b50;
const SIG_END64_LOCATOR = 0x07064b50;
const U32_MAX = 0xffffffff;
/** The end record is 22 bytes plus a comment of at most 65,535. */
const MAX_END_SEARCH = 22 + 0xffff;

/** One decoded member. */
export interface NpzArray {
  /** What the file stored; `data` is float64 whatever it is. */
  dtype: NpyDType;
  shape: number[];
  data: Float64Array;
}

interface Entry {
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

let crcTable: Int32Array | undefined;

/** CRC-32 (IEEE, as zip uses), table-driven; node:zlib's crc32 needs Node ≥ 20.15. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const t = crcTable;
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function u64(view: DataView, at: number): number {
  const v = Number(view.getBigUint64(at, true));
  if (!Number.isSafeInteger(v)) throw new NpyError(`npz: 64-bit size ${v} is beyond what this reader addresses`);
  return v;
}

/**
 * An opened .npz archive (the whole file in memory: stats files are tens of MB). Member names
 * are the keys numpy.savez was given, without `.npy`.
 */
export class NpzArchive {
  private readonly entries = new Map<string, Entry>();
  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(bytes: Uint8Array, readonly name = 'npz') {
    // A plain view: Buffer's slice() shares memory where Uint8Array's copies.
    this.bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.readDirectory();
  }

  /** Member keys in archive order. */
  get names(): string[] {
    return [...this.entries.keys()];
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Decodes member `key` (CRC-checked; float16/32/64 little-endian, C order). */
  get(key: string): NpzArray {
    const entry = this.entries.get(key);
    if (!entry) throw new NpyError(`npz ${this.name}: no member '${key}' (members: ${this.names.join(', ') || 'none'})`);
    const raw = this.memberBytes(key, entry);
    const header = parseNpyHeader(raw, `${this.name}:${key}.npy`);
    const count = header.shape.reduce((a, b) => a * b, 1);
    const item = ITEM_BYTES[header.dtype];
    const end = header.dataOffset + count * item;
    if (raw.length < end) throw new NpyError(`npz ${this.name}:${key}.npy: ${raw.length} bytes, shape (${header.shape.join(', ')}) of ${header.dtype} needs ${end}`);
    return { dtype: header.dtype, shape: header.shape, data: decodeFloats(raw, header.dataOffset, count, header.dtype) };
  }

  private readDirectory(): void {
    const { view, bytes, name } = this;
    let end = -1;
    for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - MAX_END_SEARCH); at--) {
      if (view.getUint32(at, true) === SIG_END) {
        end = at;
        break;
      }
    }
    if (end < 0) throw new NpyError(`npz ${name}: not a zip archive (no end of central directory record)`);
    let count = view.getUint16(end + 10, true);
    let cdSize = view.getUint32(end + 12, true);
    let cdOffset = view.getUint32(end + 16, true);
    if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
      const loc = end - 20;
      if (loc < 0 || view.getUint32(loc, true) !== SIG_END64_LOCATOR) throw new NpyError(`npz ${name}: zip64 archive without its end-of-directory locator`);
      const end64 = u64(view, loc + 8);
      if (end64 + 56 > bytes.length || view.getUint32(end64, true) !== SIG_END64) throw new NpyError(`npz ${name}: bad zip64 end of central directory record`);
      count = u64(view, end64 + 32);
      cdSize = u64(view, end64 + 40);
      cdOffset = u64(view, end64 + 48);
    }
    if (cdOffset + cdSize > bytes.length) throw new NpyError(`npz ${name}: central directory runs past the end of the file (truncated?)`);
    let at = cdOffset;
    for (let i = 0; i < count; i++) {
      if (at + 46 > bytes.length || view.getUint32(at, true) !== SIG_CENTRAL) throw new NpyError(`npz ${name}: bad central directory entry ${i}`);
      const flags = view.getUint16(at + 8, true);
      const method = view.getUint16(at + 10, true);
      const crc = view.getUint32(at + 16, true);
      let compressedSize = view.getUint32(at + 20, true);
      let size = view.getUint32(at + 24, true);
      const nameLen = view.getUint16(at + 28, true);
      const extraLen = view.getUint16(at + 30, true);
      const commentLen = view.getUint16(at + 32, true);
      let localOffset = view.getUint32(at + 42, true);
      // Bit 11: UTF-8 name; otherwise CP437, which numpy's ASCII keys never leave.
      const fileName = new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(bytes.subarray(at + 46, at + 46 + nameLen));
      // Zip64 extra field (id 1): the 64-bit values, only for the fields that hold 0xFFFFFFFF, in this order.
      let x = at + 46 + nameLen;
      const xEnd = x + extraLen;
      while (x + 4 <= xEnd) {
        const id = view.getUint16(x, true);
        const len = view.getUint16(x + 2, true);
        if (id === 1) {
          let f = x + 4;
          if (size === U32_MAX) {
            size = u64(view, f);
            f += 8;
          }
          if (compressedSize === U32_MAX) {
            compressedSize = u64(view, f);
            f += 8;
          }
          if (localOffset === U32_MAX) localOffset = u64(view, f);
        }
        x += 4 + len;
      }
      at = xEnd + commentLen;
      if (flags & 1) throw new NpyError(`npz ${name}: member ${fileName} is encrypted`);
      if (fileName.endsWith('/')) continue;
      const key = fileName.endsWith('.npy') ? fileName.slice(0, -4) : fileName;
      this.entries.set(key, { method, crc, compressedSize, size, localOffset });
    }
  }

  private memberBytes(key: string, e: Entry): Uint8Array {
    const { view, bytes, name } = this;
    if (e.localOffset + 30 > bytes.length || view.getUint32(e.localOffset, true) !== SIG_LOCAL) throw new NpyError(`npz ${name}: bad local header for member ${key}`);
    // The local header's own name and extra lengths can differ from the central directory's.
    const start = e.localOffset + 30 + view.getUint16(e.localOffset + 26, true) + view.getUint16(e.localOffset + 28, true);
    if (start + e.compressedSize > bytes.length) throw new NpyError(`npz ${name}: member ${key} runs past the end of the file (truncated?)`);
    const stored = bytes.subarray(start, start + e.compressedSize);
    let raw: Uint8Array;
    if (e.method === 0) raw = stored;
    else if (e.method === 8) {
      try {
        // The declared size bounds the output, so a forged entry cannot inflate without limit.
        raw = inflateRawSync(stored, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        throw new NpyError(`npz ${name}: member ${key} does not inflate: ${(err as Error).message}`);
      }
    } else throw new NpyError(`npz ${name}: member ${key} uses zip method ${e.method}; numpy writes only stored (0) and deflate (8)`);
    if (raw.length !== e.size) throw new NpyError(`npz ${name}: member ${key} is ${raw.length} bytes, its directory entry says ${e.size}`);
    if (crc32(raw) !== e.crc) throw new NpyError(`npz ${name}: member ${key} fails its CRC-32 check (corrupt file)`);
    return raw;
  }
}

function decodeFloats(raw: Uint8Array, offset: number, count: number, dtype: NpyDType): Float64Array {
  if (LITTLE_ENDIAN_HOST && dtype !== 'f2') {
    // Member data sits at any byte offset inside the zip; a copy gives typed arrays an aligned buffer.
    const copy = new Uint8Array(count * ITEM_BYTES[dtype]);
    copy.set(raw.subarray(offset, offset + copy.length));
    return dtype === 'f8' ? new Float64Array(copy.buffer) : Float64Array.from(new Float32Array(copy.buffer));
  }
  const out = new Float64Array(count);
  if (dtype === 'f2') {
    const view = new DataView(raw.buffer, raw.byteOffset + offset, count * 2);
    for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  } else {
    const view = new DataView(raw.buffer, raw.byteOffset + offset, count * ITEM_BYTES[dtype]);
    if (dtype === 'f8') for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
    else for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

/** Opens an archive from its bytes. */
export function parseNpz(bytes: Uint8Array, name = 'npz'): NpzArchive {
  return new NpzArchive(bytes, name);
}

export async function readNpz(path: string): Promise<NpzArchive> {
  return new NpzArchive(await readFile(path), path);
}

/** One member to write: C-order values, their shape, and the dtype to store (default f8). */
export interface NpzMember {
  data: ArrayLike<number>;
  shape: number[];
  dtype?: NpyDType;
}

/**
 * An uncompressed .npz (what numpy.savez writes; numpy.load reads it) of members `<key>.npy`.
 * Timestamps are fixed at 1980-01-01 00:00 so the same arrays give the same bytes.
 */
export function encodeNpz(members: Record<string, NpzMember>): Uint8Array {
  const utf8 = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1;
  const keys = Object.keys(members);
  if (keys.length >= 0xffff) throw new NpyError(`npz: ${keys.length} members need zip64, which this writer does not produce`);
  for (const key of keys) {
    const m = members[key];
    const npy = encodeNpy(m.data, m.shape, { dtype: m.dtype ?? 'f8' });
    const name = utf8.encode(`${key}.npy`);
    const ascii = name.every((b) => b < 0x80);
    const crc = crc32(npy);
    if (npy.length >= U32_MAX || offset >= U32_MAX) throw new NpyError(`npz: member ${key} would lie beyond 4 GiB, which needs zip64; this writer does not produce it`);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, 20, true); // version needed: 2.0
    lv.setUint16(6, ascii ? 0 : 0x800, true);
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(10, 0, true);
    lv.setUint16(12, DOS_DATE_1980_01_01, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, npy.length, true);
    lv.setUint32(22, npy.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 0, true);
    local.set(name, 30);
    const cd = new Uint8Array(46 + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, 20, true); // made by: MS-DOS attributes, 2.0
    cv.setUint16(6, 20, true);
    cv.setUint16(8, ascii ? 0 : 0x800, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, DOS_DATE_1980_01_01, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, npy.length, true);
    cv.setUint32(24, npy.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    cd.set(name, 46);
    parts.push(local, npy);
    central.push(cd);
    offset += local.length + npy.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  if (offset + cdSize >= U32_MAX) throw new NpyError('npz: archive beyond 4 GiB needs zip64, which this writer does not produce');
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, SIG_END, true);
  ev.setUint16(8, keys.length, true);
  ev.setUint16(10, keys.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let at = 0;
  for (const p of [...parts, ...central, end]) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function writeNpz(path: string, members: Record<string, NpzMember>): Promise<void> {
  await writeFile(path, encodeNpz(members));
}
