import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

/** What the server does with a request instead of answering at once. */
export type GenFault = { kind: 'status'; status: number } | { kind: 'delay'; ms: number };

export interface ImageGenServerOptions {
  /** The served model name every request must carry. */
  model: string;
  /** The size every request must ask for. */
  size: string;
  /** Request fields (name → value) every request must carry, e.g. the preset's steps and guidance. */
  expect: Record<string, unknown>;
  /** Time spent on every request, as a GPU would. */
  latencyMs?: number;
  /** Faults served, in order, to the first requests for a prompt; later requests for it are answered. */
  faults?: Record<string, GenFault[]>;
}

export interface GenRequest {
  seq: number;
  prompt: string;
  seed: unknown;
  /** HTTP status answered (0 when the client hung up first). */
  status: number;
}

/**
 * An OpenAI-compatible `/v1/images/generations` server for one model: it checks the request's
 * shape, answers b64_json PNGs whose pixels depend on (prompt, seed) only, injects the faults it
 * was given, and records every request.
 */
export class ImageGenServer {
  readonly requests: GenRequest[] = [];
  /** Requests that broke the wire format (answered 400). */
  readonly violations: string[] = [];
  private readonly faults: Map<string, GenFault[]>;

  private constructor(private readonly server: ReturnType<typeof createServer>, readonly url: string, private readonly opts: ImageGenServerOptions) {
    this.faults = new Map(Object.entries(opts.faults ?? {}).map(([k, v]) => [k, [...v]]));
  }

  static async start(opts: ImageGenServerOptions): Promise<ImageGenServer> {
    let self: ImageGenServer | undefined;
    const server = createServer((req, res) => void self!.handle(req, res).catch(() => res.destroy()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new ImageGenServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, opts);
    return self;
  }

  /** Prompts of the requests from index `from` on. */
  promptsSince(from: number): string[] {
    return this.requests.slice(from).map((r) => r.prompt);
  }

  async close(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== '/v1/images/generations') return json(res, 404, { error: { message: `no route ${req.method} ${req.url}` } });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return json(res, 400, { error: { message: 'body is not JSON' } });
    }
    const entry: GenRequest = { seq: this.requests.length, prompt: String(body.prompt ?? ''), seed: body.seed, status: 0 };
    this.requests.push(entry);
    const problem = this.check(body);
    if (problem) {
      this.violations.push(problem);
      entry.status = 400;
      return json(res, 400, { error: { message: problem } });
    }
    const fault = this.faults.get(entry.prompt)?.shift();
    if (this.opts.latencyMs) await sleep(this.opts.latencyMs);
    if (fault?.kind === 'delay') await sleep(fault.ms);
    if (res.destroyed) return; // the client timed out; its retry is a new request
    if (fault?.kind === 'status') {
      entry.status = fault.status;
      return json(res, fault.status, { error: { message: `injected ${fault.status}` } });
    }
    const [w, h] = this.opts.size.split('x').map(Number);
    const png = await drawImage(entry.prompt, body.seed as number, w, h);
    entry.status = 200;
    json(res, 200, { created: 0, data: [{ b64_json: png.toString('base64') }] });
  }

  private check(b: Record<string, unknown>): string | undefined {
    if (b.model !== this.opts.model) return `model ${JSON.stringify(b.model)}, expected ${JSON.stringify(this.opts.model)}`;
    if (typeof b.prompt !== 'string' || b.prompt.trim() === '') return 'prompt missing or empty';
    if (b.size !== this.opts.size) return `size ${JSON.stringify(b.size)}, expected ${this.opts.size}`;
    if (b.n !== 1) return `n ${JSON.stringify(b.n)}, expected 1`;
    if (b.response_format !== 'b64_json') return `response_format ${JSON.stringify(b.response_format)}`;
    if (!(Number.isInteger(b.seed) && (b.seed as number) >= 0 && (b.seed as number) <= 2 ** 31 - 1)) return `seed ${JSON.stringify(b.seed)} is not an integer in [0, 2^31-1]`;
    for (const [k, v] of Object.entries(this.opts.expect)) if (b[k] !== v) return `${k} ${JSON.stringify(b[k])}, expected ${JSON.stringify(v)}`;
    return undefined;
  }
}

/** A PNG whose colours and square depend only on (prompt, seed). */
export async function drawImage(prompt: string, seed: number, w: number, h: number): Promise<Buffer> {
  const d = createHash('sha256').update(`${prompt}\0${seed}`).digest();
  const raw = Buffer.alloc(w * h * 3);
  const side = Math.max(2, Math.floor(Math.min(w, h) / 3));
  const x0 = d[6] % (w - side);
  const y0 = d[7] % (h - side);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inSquare = x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
      const o = (y * w + x) * 3;
      raw[o] = inSquare ? d[3] : d[0];
      raw[o + 1] = inSquare ? d[4] : d[1];
      raw[o + 2] = inSquare ? d[5] : d[2];
    }
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
