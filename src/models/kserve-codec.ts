import { floatToHalf, halfToFloat } from '../formats/half-float.js';
import { BYTES_PER_ELEMENT, elementCount, type DType, type NamedTensors, type Tensor, type TensorData } from './tensor.js';

/**
 * KServe v2 (Open Inference Protocol) bodies, JSON and with Triton's binary tensor extension:
 * the JSON header, then raw little-endian tensor bytes in header order, with the header's length
 * in `Inference-Header-Content-Length`. Shared by client and server; pure functions.
 */

export const HEADER_LENGTH = 'inference-header-content-length';

export const DTYPES: readonly DType[] = ['FP32', 'FP16', 'UINT8', 'INT32', 'INT64', 'BOOL'];
export const isDType = (s: unknown): s is DType => typeof s === 'string' && (DTYPES as readonly string[]).includes(s);

/** A malformed body or header; servers answer it with 400. */
export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

export interface WireTensor {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: { binary_data_size?: number; [k: string]: unknown };
  data?: unknown[];
}
export interface WireOutputRequest {
  name: string;
  parameters?: { binary_data?: boolean; [k: string]: unknown };
}
export interface InferRequestHeader {
  id?: string;
  parameters?: { binary_data_output?: boolean; [k: string]: unknown };
  inputs: WireTensor[];
  outputs?: WireOutputRequest[];
}
export interface InferResponseHeader {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: WireTensor[];
}

export interface EncodedBody {
  body: Uint8Array<ArrayBuffer>;
  headers: Record<string, string>;
}

// Typed-array views below assume host order is the wire order.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('kserve-codec: big-endian hosts are not supported');

const CTORS = { FP32: Float32Array, FP16: Uint16Array, UINT8: Uint8Array, INT32: Int32Array, INT64: BigInt64Array, BOOL: Uint8Array } as const;

export function allocTensorData(dtype: DType, length: number): TensorData {
  return new CTORS[dtype](length);
}

/** The tensor's bytes, without copying. */
export function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** A tensor over `bytes`; copies when the offset is not a multiple of the element size, as typed arrays require. */
export function tensorFromBytes(dtype: DType, shape: number[], bytes: Uint8Array): Tensor {
  const bpe = BYTES_PER_ELEMENT[dtype];
  if (bytes.byteLength !== elementCount(shape) * bpe) throw new CodecError(`${dtype} [${shape.join(', ')}] needs ${elementCount(shape) * bpe} bytes, got ${bytes.byteLength}`);
  // Not bytes.slice(): on a Buffer that is a view at the same, unaligned offset.
  const src = bytes.byteOffset % bpe === 0 ? bytes : new Uint8Array(bytes);
  return { dtype, shape, data: new CTORS[dtype](src.buffer as ArrayBuffer, src.byteOffset, src.byteLength / bpe) } as Tensor;
}

function toJsonData(name: string, t: Tensor): unknown[] {
  switch (t.dtype) {
    case 'BOOL':
      return Array.from(t.data as Uint8Array, (v) => v !== 0);
    case 'FP16':
      return Array.from(t.data as Uint16Array, halfToFloat);
    case 'INT64':
      return Array.from(t.data as BigInt64Array, (v) => {
        const n = Number(v);
        // JSON.parse on the other side would round silently; binary mode is exact.
        if (!Number.isSafeInteger(n)) throw new CodecError(`tensor "${name}": INT64 value ${v} is beyond 2^53 and cannot travel as JSON; use binary data`);
        return n;
      });
    default:
      return Array.from(t.data as Float32Array | Int32Array | Uint8Array);
  }
}

function fromJsonData(name: string, dtype: DType, shape: number[], raw: unknown): Tensor {
  if (!Array.isArray(raw)) throw new CodecError(`tensor "${name}": "data" must be an array`);
  const flat = raw.flat(Infinity) as unknown[];
  const n = elementCount(shape);
  if (flat.length !== n) throw new CodecError(`tensor "${name}": "data" holds ${flat.length} elements but shape [${shape.join(', ')}] needs ${n}`);
  const data = allocTensorData(dtype, n);
  for (let i = 0; i < n; i++) {
    const v = flat[i];
    if (dtype === 'BOOL') {
      if (typeof v !== 'boolean' && v !== 0 && v !== 1) throw new CodecError(`tensor "${name}": BOOL data must be true/false`);
      data[i] = v ? 1 : 0;
      continue;
    }
    if (typeof v !== 'number') throw new CodecError(`tensor "${name}": ${dtype} data must be numbers`);
    if (dtype === 'FP16') data[i] = floatToHalf(v);
    else if (dtype === 'INT64') {
      if (!Number.isSafeInteger(v)) throw new CodecError(`tensor "${name}": INT64 value ${v} is not an integer within 2^53; use binary data`);
      data[i] = BigInt(v);
    } else data[i] = v;
  }
  return { dtype, shape, data } as Tensor;
}

/** Tensors to wire entries: binary ones as byte chunks (in entry order), others with JSON `data`. */
export function encodeTensors(tensors: NamedTensors, binary: (name: string) => boolean): { entries: WireTensor[]; chunks: Uint8Array[] } {
  const entries: WireTensor[] = [];
  const chunks: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (binary(name)) {
      const bytes = tensorBytes(t);
      entries.push({ name, shape: t.shape, datatype: t.dtype, parameters: { binary_data_size: bytes.byteLength } });
      chunks.push(bytes);
    } else entries.push({ name, shape: t.shape, datatype: t.dtype, data: toJsonData(name, t) });
  }
  return { entries, chunks };
}

/** Wire entries back to tensors; `binary` is the body after the JSON header. */
export function decodeTensors(entries: unknown, binary: Uint8Array, what: string): NamedTensors {
  if (!Array.isArray(entries)) throw new CodecError(`"${what}" must be an array`);
  const out: NamedTensors = {};
  let offset = 0;
  for (const e of entries as WireTensor[]) {
    if (!e || typeof e.name !== 'string') throw new CodecError(`each of "${what}" needs a string "name"`);
    if (!isDType(e.datatype)) throw new CodecError(`tensor "${e.name}": unsupported datatype ${JSON.stringify(e.datatype)} (supported: ${DTYPES.join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new CodecError(`tensor "${e.name}": "shape" must be an array of non-negative integers`);
    if (e.name in out) throw new CodecError(`tensor "${e.name}" appears twice`);
    const size = e.parameters?.binary_data_size;
    if (size !== undefined) {
      if (!Number.isInteger(size) || size < 0 || offset + size > binary.byteLength) throw new CodecError(`tensor "${e.name}": binary_data_size ${size} runs past the ${binary.byteLength} binary bytes`);
      out[e.name] = tensorFromBytes(e.datatype, e.shape, binary.subarray(offset, offset + size));
      offset += size;
    } else out[e.name] = fromJsonData(e.name, e.datatype, e.shape, e.data);
  }
  if (offset !== binary.byteLength) throw new CodecError(`${binary.byteLength - offset} binary bytes follow the header that no tensor's binary_data_size claims`);
  return out;
}

/** JSON header, then binary chunks; a plain JSON body when there are none. */
export function packBody(header: object, chunks: Uint8Array[]): EncodedBody {
  const json = new TextEncoder().encode(JSON.stringify(header));
  if (chunks.length === 0) return { body: json, headers: { 'content-type': 'application/json' } };
  const total = chunks.reduce((n, c) => n + c.byteLength, json.byteLength);
  const body = new Uint8Array(total);
  body.set(json, 0);
  let at = json.byteLength;
  for (const c of chunks) {
    body.set(c, at);
    at += c.byteLength;
  }
  return { body, headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(json.byteLength) } };
}

/** Splits a body into its parsed JSON header and the binary bytes after it. */
export function unpackBody(body: Uint8Array, headerLength: string | null | undefined): { header: Record<string, unknown>; binary: Uint8Array } {
  let n = body.byteLength;
  if (headerLength !== null && headerLength !== undefined && headerLength !== '') {
    n = Number(headerLength);
    if (!Number.isInteger(n) || n < 0 || n > body.byteLength) throw new CodecError(`Inference-Header-Content-Length ${JSON.stringify(headerLength)} does not fit a ${body.byteLength}-byte body`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(body.subarray(0, n)));
  } catch (err) {
    throw new CodecError(`body is not valid JSON${n < body.byteLength ? '' : ' (binary data needs the Inference-Header-Content-Length header)'}: ${(err as Error).message}`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new CodecError('body must be a JSON object');
  return { header: header as Record<string, unknown>, binary: body.subarray(n) };
}

export interface InferRequest {
  id?: string;
  inputs: NamedTensors;
  /** Requested outputs and whether each comes back binary; undefined = all, in the request-level form. */
  outputs?: { name: string; binary: boolean }[];
  binaryOutputDefault: boolean;
}

export function encodeInferRequest(inputs: NamedTensors, opts: { binary: boolean; outputs?: string[]; id?: string }): EncodedBody {
  const { entries, chunks } = encodeTensors(inputs, () => opts.binary);
  const header: InferRequestHeader = { ...(opts.id !== undefined && { id: opts.id }), inputs: entries };
  if (opts.outputs) header.outputs = opts.outputs.map((name) => ({ name, parameters: { binary_data: opts.binary } }));
  else if (opts.binary) header.parameters = { binary_data_output: true };
  return packBody(header, chunks);
}

export function decodeInferRequest(body: Uint8Array, headerLength: string | null | undefined): InferRequest {
  const { header, binary } = unpackBody(body, headerLength);
  const inputs = decodeTensors(header.inputs, binary, 'inputs');
  const params = header.parameters as InferRequestHeader['parameters'];
  const binaryOutputDefault = params?.binary_data_output === true;
  let outputs: InferRequest['outputs'];
  if (header.outputs !== undefined) {
    if (!Array.isArray(header.outputs)) throw new CodecError('"outputs" must be an array');
    outputs = (header.outputs as WireOutputRequest[]).map((o) => {
      if (!o || typeof o.name !== 'string') throw new CodecError('each of "outputs" needs a string "name"');
      return { name: o.name, binary: o.parameters?.binary_data ?? binaryOutputDefault };
    });
  }
  const id = typeof header.id === 'string' ? header.id : undefined;
  return { id, inputs, outputs, binaryOutputDefault };
}

export function encodeInferResponse(model: string, outputs: NamedTensors, binary: (name: string) => boolean, id?: string): EncodedBody {
  const { entries, chunks } = encodeTensors(outputs, binary);
  const header: InferResponseHeader = { model_name: model, ...(id !== undefined && { id }), outputs: entries };
  return packBody(header, chunks);
}

export function decodeInferResponse(body: Uint8Array, headerLength: string | null | undefined): { model_name?: string; id?: string; outputs: NamedTensors } {
  const { header, binary } = unpackBody(body, headerLength);
  return { model_name: header.model_name as string | undefined, id: header.id as string | undefined, outputs: decodeTensors(header.outputs, binary, 'outputs') };
}
