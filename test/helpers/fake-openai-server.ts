import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

/** What the server does with one request instead of (or before) answering normally. */
export type Fault =
  | { kind: 'ok' }
  /** Error status; the body echoes the Authorization header, as careless proxies do, so tests can prove clients redact it. */
  | { kind: 'status'; status: number; retryAfter?: string }
  /** Destroys the socket after reading the request. */
  | { kind: 'reset' }
  /** Answers normally after `ms` more (on top of the fixed latency). */
  | { kind: 'delay'; ms: number }
  /** 200 with a body that is not JSON. */
  | { kind: 'malformed' }
  /** 200 with valid JSON lacking choices[0].message (chat) or data (images). */
  | { kind: 'empty' }
  /** Chat: answers normally but with this finish_reason (e.g. 'length'). */
  | { kind: 'finish'; reason: string }
  /** Images: b64_json that decodes to text, not an image. */
  | { kind: 'not_image' }
  /** Images: a real PNG one pixel wider than asked. */
  | { kind: 'wrong_size' };

export interface FakeRequest {
  /** Arrival order, from 0. */
  seq: number;
  endpoint: 'chat' | 'images';
  body: any;
  /** `id=…` found in the prompt text, if any. */
  id?: string;
}

export interface FakeServerOptions {
  /** Fixed processing time per request, while holding a concurrency slot. */
  latencyMs?: number;
  /** Requests beyond this many wait for a slot (default unlimited). */
  concurrency?: number;
  /** Consumed one per request, in arrival order; when empty, `fault` (or 'ok') decides. */
  faults?: Fault[];
  fault?: (req: FakeRequest) => Fault | undefined;
  /** When set, requests without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
}

export interface FakeCounters {
  requests: number;
  /** Received and not yet answered (includes those waiting for a slot). */
  open: number;
  maxOpen: number;
  /** Ids in arrival order, retries included. */
  idsSeen: string[];
  /** Ids of requests that got a 200 the client could read. */
  okIds: string[];
  faultsServed: Partial<Record<Fault['kind'], number>>;
}

const ID = /\bid=([\w.-]+)/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function promptText(endpoint: 'chat' | 'images', body: any): string {
  if (endpoint === 'images') return String(body?.prompt ?? '');
  const parts: string[] = [];
  for (const m of body?.messages ?? []) {
    if (typeof m.content === 'string') parts.push(m.content);
    else for (const p of m.content ?? []) if (p?.type === 'text') parts.push(p.text);
  }
  return parts.join('\n');
}

/** A node:http server speaking vLLM-style chat completions and OpenAI images/generations, with injectable faults. */
export class FakeOpenAIServer {
  readonly counters: FakeCounters = { requests: 0, open: 0, maxOpen: 0, idsSeen: [], okIds: [], faultsServed: {} };
  private readonly faults: Fault[];
  private readonly waiting: (() => void)[] = [];
  private active = 0;
  private readonly pngs = new Map<string, Promise<string>>();

  private constructor(
    private readonly server: Server,
    readonly baseUrl: string,
    private readonly opts: FakeServerOptions,
  ) {
    this.faults = [...(opts.faults ?? [])];
  }

  static async start(opts: FakeServerOptions = {}): Promise<FakeOpenAIServer> {
    let self: FakeOpenAIServer | undefined;
    const server = createServer((req, res) => void self!.handle(req, res).catch(() => res.destroy()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new FakeOpenAIServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, opts);
    return self;
  }

  push(...faults: Fault[]): void {
    this.faults.push(...faults);
  }

  async close(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const c = this.counters;
    c.requests++;
    c.maxOpen = Math.max(c.maxOpen, ++c.open);
    res.on('close', () => c.open--);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const endpoint = req.url === '/v1/chat/completions' ? 'chat' : req.url === '/v1/images/generations' ? 'images' : undefined;
    if (req.method !== 'POST' || !endpoint) return this.json(res, 404, { error: { message: `no route ${req.method} ${req.url}` } });
    const auth = req.headers.authorization ?? '';
    if (this.opts.apiKey && auth !== `Bearer ${this.opts.apiKey}`) return this.json(res, 401, { error: { message: `invalid key in '${auth}'` } });
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return this.json(res, 400, { error: { message: 'request body is not JSON' } });
    }
    const info: FakeRequest = { seq: c.requests - 1, endpoint, body, id: ID.exec(promptText(endpoint, body))?.[1] };
    if (info.id !== undefined) c.idsSeen.push(info.id);
    const fault = this.faults.shift() ?? this.opts.fault?.(info) ?? { kind: 'ok' };
    c.faultsServed[fault.kind] = (c.faultsServed[fault.kind] ?? 0) + 1;

    await this.acquire();
    try {
      if (this.opts.latencyMs) await sleep(this.opts.latencyMs);
      if (fault.kind === 'delay') await sleep(fault.ms);
    } finally {
      this.release();
    }
    if (res.destroyed) return; // the client gave up (timeout): its retry is a new request
    switch (fault.kind) {
      case 'status':
        if (fault.retryAfter !== undefined) res.setHeader('retry-after', fault.retryAfter);
        return this.json(res, fault.status, { error: { message: `injected ${fault.status}`, authorization: auth } });
      case 'reset':
        req.socket.destroy();
        return;
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id": "chatcmpl-x", "choices": [');
        return;
      case 'empty':
        return this.json(res, 200, endpoint === 'chat' ? { id: 'chatcmpl-x', object: 'chat.completion', choices: [] } : { created: 0 });
    }
    const answer = endpoint === 'chat' ? this.chat(body, fault) : await this.images(body, fault);
    if (res.destroyed) return;
    this.json(res, 200, answer);
    if (info.id !== undefined) c.okIds.push(info.id);
  }

  private chat(body: any, fault: Fault): object {
    const prompt = promptText('chat', body);
    const content = `echo: ${prompt}`;
    const prompt_tokens = Math.ceil(prompt.length / 4);
    const completion_tokens = Math.ceil(content.length / 4);
    return {
      id: `chatcmpl-${this.counters.requests}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: fault.kind === 'finish' ? fault.reason : 'stop' }],
      usage: { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens },
    };
  }

  private async images(body: any, fault: Fault): Promise<object> {
    const [w, h] = String(body.size ?? '64x64').split('x').map(Number);
    const n = Number(body.n ?? 1);
    const b64 =
      fault.kind === 'not_image' ? Buffer.from('definitely not a PNG').toString('base64') : await this.png(fault.kind === 'wrong_size' ? w + 1 : w, h);
    return { created: Math.floor(Date.now() / 1000), data: Array.from({ length: n }, () => ({ b64_json: b64 })) };
  }

  private png(w: number, h: number): Promise<string> {
    const key = `${w}x${h}`;
    let p = this.pngs.get(key);
    if (!p) {
      p = sharp({ create: { width: w, height: h, channels: 3, background: '#4080c0' } })
        .png()
        .toBuffer()
        .then((b) => b.toString('base64'));
      this.pngs.set(key, p);
    }
    return p;
  }

  private json(res: ServerResponse, status: number, body: object): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private acquire(): Promise<void> {
    const limit = this.opts.concurrency ?? Infinity;
    if (this.active < limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((r) => this.waiting.push(r));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.active--;
  }
}
