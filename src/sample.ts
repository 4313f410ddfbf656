/** What happened to a sample. Every input row ends in the records with exactly one of these. */
export type Status =
  | { kind: 'ok' }
  | { kind: 'dropped'; by: string; value?: unknown }
  | { kind: 'failed'; stage: string; error: string; code?: string };

/** Decoded pixels, interleaved, 8 bits per channel. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/**
 * The unit of data that flows between stages. `key` is stable and unique in its dataset and has
 * no dots (WebDataset splits file names at the first dot).
 */
export interface Sample {
  key: string;
  /** Metadata columns: carried from the source and added by stages; written to the records. */
  fields: Record<string, unknown>;
  /** Encoded image bytes (the original, then the re-encoded output). */
  image?: Uint8Array;
  /** File extension of `image` without the dot: jpg, webp, png. */
  imageExt?: string;
  /** The image embedding the aesthetic stage computed or looked up (kept for laion-filter's `embeddings`). */
  embedding?: Float32Array;
  /** The downloaded bytes, kept beside the re-encoded image (decode-resize keep_original: true). */
  original?: { bytes: Uint8Array; ext: string };
  pixels?: RawImage;
  /** Packed 128×64-bit latent, 1024 bytes. */
  latent?: Uint8Array;
  /** pre-encode: the latent of each view (crop) of the image, in view order; view 0 is `latent`. */
  views?: Uint8Array[];
  status: Status;
}

const KEY_RE = /^[^./\\\s]+$/;

/** Throws when a key cannot name WebDataset members. */
export function assertValidKey(key: string): void {
  if (!KEY_RE.test(key)) throw new Error(`invalid sample key ${JSON.stringify(key)}: keys must be non-empty and contain no dots, slashes or spaces`);
}

export function newSample(key: string, fields: Record<string, unknown> = {}): Sample {
  assertValidKey(key);
  return { key, fields, status: { kind: 'ok' } };
}

/** Marks a sample dropped by a filter; payloads are released so dropped samples cost no memory downstream. */
export function drop(s: Sample, by: string, value?: unknown): Sample {
  s.status = value === undefined ? { kind: 'dropped', by } : { kind: 'dropped', by, value };
  releasePayloads(s);
  return s;
}

/** Marks a sample failed with the error that stopped it. */
export function fail(s: Sample, stage: string, err: unknown, code?: string): Sample {
  const error = err instanceof Error ? err.message : String(err);
  s.status = { kind: 'failed', stage, error, code: code ?? errorCode(err) };
  releasePayloads(s);
  return s;
}

function releasePayloads(s: Sample): void {
  s.image = undefined;
  s.original = undefined;
  s.embedding = undefined;
  s.pixels = undefined;
  s.latent = undefined;
  s.views = undefined;
}

/** A short, stable reason for grouping failures in the funnel. */
export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

/** An Error with a stable `code` for the funnel. */
export class SampleError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'SampleError';
  }
}
