import sharp from 'sharp';
import { ModelResponseError, OpenAIEndpoint, type ClientStats, type ModelErrorCode, type OpenAIClientOptions } from './openai-endpoint.js';

export class ImageResponseError extends ModelResponseError {
  constructor(code: ModelErrorCode, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, status, options);
    this.name = 'ImageResponseError';
  }
}

export interface ImageRequest {
  prompt: string;
  /** "WIDTHxHEIGHT"; every returned image is checked to have exactly this size. */
  size: string;
  n?: number;
  seed?: number;
  /** Server-specific top-level fields (steps, guidance_scale, negative_prompt, …); the typed fields win. */
  extra?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface ImageResult {
  /** Encoded images as the server sent them (PNG, JPEG, …), one per requested image. */
  images: Uint8Array[];
  raw: unknown;
}

/** Longest wait for one generation request: a queue on a busy server counts too. */
export const IMAGE_REQUEST_TIMEOUT_MS = 300_000;

/**
 * Client for OpenAI-compatible `/images/generations` with `response_format: 'b64_json'`.
 * Same retry policy as ChatClient. A payload that is not an image ('not_an_image') or has the
 * wrong size ('wrong_size') fails at once: a server that answers like that will do it again.
 * A wrong number of images or a missing `data` array is 'malformed_response' (limited retries).
 */
export class ImageClient {
  private readonly http: OpenAIEndpoint;

  constructor(private readonly opts: OpenAIClientOptions) {
    this.http = new OpenAIEndpoint(opts, (code, msg, status, cause) => new ImageResponseError(code, msg, status, { cause }), IMAGE_REQUEST_TIMEOUT_MS);
  }

  get stats(): ClientStats {
    return this.http.stats;
  }

  /** Closes idle keep-alive sockets (they do not keep the process alive); the client stays usable. */
  close(): void {
    this.http.close();
  }

  async generate(req: ImageRequest): Promise<ImageResult> {
    const m = /^(\d+)x(\d+)$/.exec(req.size);
    if (!m) throw new TypeError(`size must be WIDTHxHEIGHT, got ${JSON.stringify(req.size)}`);
    const [width, height] = [Number(m[1]), Number(m[2])];
    const n = req.n ?? 1;
    const body = { ...req.extra, model: this.opts.model, prompt: req.prompt, size: req.size, n, seed: req.seed, response_format: 'b64_json' };
    return this.http.post('/images/generations', body, (json) => this.parse(json, n, width, height), req.signal);
  }

  private async parse(json: unknown, n: number, width: number, height: number): Promise<ImageResult> {
    const data = (json as { data?: { b64_json?: unknown }[] } | null)?.data;
    if (!Array.isArray(data) || data.length !== n || !data.every((d) => typeof d?.b64_json === 'string')) {
      const got = Array.isArray(data) ? `${data.length} entries` : 'no data array';
      throw this.http.error('malformed_response', `POST /images/generations: expected ${n} b64_json images, got ${got}`);
    }
    const images = data.map((d) => Buffer.from(d.b64_json as string, 'base64'));
    await Promise.all(images.map((buf, i) => this.check(buf, i, width, height)));
    return { images, raw: json };
  }

  /** Header check only (cheap): a truncated body with an intact header passes; decoding is the caller's job. */
  private async check(buf: Buffer, i: number, width: number, height: number): Promise<void> {
    const meta = await sharp(buf)
      .metadata()
      .catch((err: unknown) => {
        throw this.http.error('not_an_image', `image ${i}: payload (${buf.length} bytes) is not a decodable image`, undefined, err);
      });
    if (meta.width !== width || meta.height !== height) {
      throw this.http.error('wrong_size', `image ${i}: got ${meta.width}x${meta.height}, asked ${width}x${height}`);
    }
  }
}
