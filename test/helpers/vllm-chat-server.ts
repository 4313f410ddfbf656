import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

/** What the test's model "says" to one request, or the fault it injects. */
export type VllmReply =
  | { text: string; finish_reason?: string; prompt_tokens?: number; completion_tokens?: number }
  | { status: number; message?: string }
  /** 200 with a body that is not JSON. */
  | { malformed: true };

export interface VllmRequestInfo {
  seq: number;
  /** Centre pixel of the decoded image (the test paints each image a known colour); absent when decodeImages is false. */
  rgb?: [number, number, number];
  /** Size of the image as sent. */
  width?: number;
  height?: number;
  /** The text part of the user message. */
  prompt: string;
  seed: number;
  /** Whether the request asked for the captions JSON schema. */
  schema: boolean;
  body: any;
}

export interface VllmServerOptions {
  /** The served model name; any other gets vLLM's 404. */
  model: string;
  /** Without it, a request with response_format is refused (servers without guided decoding). */
  structuredOutput?: boolean;
  /** Images whose longer side is above this are refused: the client must pre-resize. */
  maxImageSide?: number;
  /** Decode each image (default true); benchmarks turn it off to measure the client, not sharp. */
  decodeImages?: boolean;
  /** Fixed time per request before answering. */
  latencyMs?: number;
  reply(req: VllmRequestInfo): VllmReply | Promise<VllmReply>;
}

/** Top-level request fields vLLM's chat endpoint takes that bitprep may send. */
const KNOWN_FIELDS = new Set(['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'seed', 'response_format', 'top_p', 'top_k', 'repetition_penalty', 'stop', 'n']);

class BadRequest extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * A chat-completions server that refuses, with vLLM's error bodies, any request whose shape
 * differs from what vLLM serving Qwen2.5-VL accepts: the model name, a user message whose
 * content is a list holding one `image_url` part with a base64 data URL of a decodable image
 * and a text part, numeric sampling fields, and (when asked for) a `json_schema`
 * response_format. Answers and faults come from the test's `reply`.
 */
export class VllmChatServer {
  requests = 0;
  /** Requests refused for their shape, with the reason. */
  readonly rejected: string[] = [];
  readonly log: VllmRequestInfo[] = [];
  open = 0;
  maxOpen = 0;

  private constructor(
    private readonly server: Server,
    readonly baseUrl: string,
    private readonly opts: VllmServerOptions,
  ) {}

  static async start(opts: VllmServerOptions): Promise<VllmChatServer> {
    let self: VllmChatServer | undefined;
    const server = createServer((req, res) => void self!.handle(req, res).catch(() => res.destroy()));
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new VllmChatServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, opts);
    return self;
  }

  async close(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    await closed;
  }

  /** Checks a request body as vLLM would; returns what the test's reply function sees. */
  async validate(body: any, seq = -1): Promise<VllmRequestInfo> {
    if (!body || typeof body !== 'object') throw new BadRequest(400, 'request body must be a JSON object');
    if (body.model !== this.opts.model) throw new BadRequest(404, `The model \`${body.model}\` does not exist.`);
    for (const k of Object.keys(body)) if (!KNOWN_FIELDS.has(k)) throw new BadRequest(400, `unexpected field ${k}`);
    for (const k of ['max_tokens', 'seed']) if (body[k] !== undefined && !Number.isInteger(body[k])) throw new BadRequest(400, `${k} must be an integer`);
    if (body.temperature !== undefined && typeof body.temperature !== 'number') throw new BadRequest(400, 'temperature must be a number');
    if (!Number.isInteger(body.seed)) throw new BadRequest(400, 'bitprep always sends a seed; this one has none');
    if (!Array.isArray(body.messages) || body.messages.length === 0) throw new BadRequest(400, 'messages must be a non-empty list');
    const user = body.messages.filter((m: any) => m?.role === 'user');
    if (user.length !== 1 || !Array.isArray(user[0].content)) throw new BadRequest(400, 'expected one user message with a list of content parts');
    const parts: any[] = user[0].content;
    const images = parts.filter((p) => p?.type === 'image_url');
    const texts = parts.filter((p) => p?.type === 'text');
    if (images.length !== 1 || texts.length !== 1 || parts.length !== 2) throw new BadRequest(400, 'expected exactly one image_url part and one text part');
    if (typeof texts[0].text !== 'string' || texts[0].text === '') throw new BadRequest(400, 'text part is empty');
    const url = images[0].image_url?.url;
    const m = typeof url === 'string' ? /^data:image\/(jpeg|png|webp);base64,([A-Za-z0-9+/]+=*)$/.exec(url) : null;
    if (!m) throw new BadRequest(400, 'image_url.url must be a base64 data URL of an image');
    let schema = false;
    if (body.response_format !== undefined) {
      if (!this.opts.structuredOutput) throw new BadRequest(400, 'response_format is not supported by this server');
      const rf = body.response_format;
      const props = rf?.json_schema?.schema?.properties;
      if (rf?.type !== 'json_schema' || typeof rf.json_schema?.name !== 'string' || props?.long_caption?.type !== 'string' || props?.short_caption?.type !== 'string') {
        throw new BadRequest(400, 'response_format must be a json_schema with string long_caption and short_caption');
      }
      schema = true;
    }
    const info: VllmRequestInfo = { seq, prompt: texts[0].text, seed: body.seed, schema, body };
    if (this.opts.decodeImages !== false) {
      try {
        const img = sharp(Buffer.from(m[2], 'base64'));
        const meta = await img.metadata();
        info.width = meta.width;
        info.height = meta.height;
        const { data } = await img.extract({ left: Math.floor(meta.width! / 2), top: Math.floor(meta.height! / 2), width: 1, height: 1 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        info.rgb = [data[0], data[1], data[2]];
      } catch {
        throw new BadRequest(400, 'image_url does not decode to an image');
      }
      const side = Math.max(info.width!, info.height!);
      if (this.opts.maxImageSide && side > this.opts.maxImageSide) throw new BadRequest(400, `image is ${info.width}x${info.height}, above ${this.opts.maxImageSide} px`);
    }
    return info;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests++;
    this.maxOpen = Math.max(this.maxOpen, ++this.open);
    res.on('close', () => this.open--);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return this.error(res, 404, `no route ${req.method} ${req.url}`);
    let info: VllmRequestInfo;
    try {
      info = await this.validate(JSON.parse(Buffer.concat(chunks).toString('utf8')), this.requests - 1);
    } catch (err) {
      const e = err instanceof BadRequest ? err : new BadRequest(400, 'body is not JSON');
      this.rejected.push(e.message);
      return this.error(res, e.status, e.message);
    }
    this.log.push(info);
    if (this.opts.latencyMs) await new Promise((r) => setTimeout(r, this.opts.latencyMs));
    const reply = await this.opts.reply(info);
    if ('malformed' in reply) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"id": "cmpl-1", "choices": [');
    }
    if ('status' in reply) return this.error(res, reply.status, reply.message ?? 'injected fault');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(chatCompletion(this.opts.model, info.seq, reply)));
  }

  private error(res: ServerResponse, status: number, message: string): void {
    const type = status === 404 ? 'NotFoundError' : status >= 500 ? 'InternalServerError' : 'BadRequestError';
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'error', message, type, param: null, code: status }));
  }
}

/** A chat.completion body as vLLM writes it. */
export function chatCompletion(model: string, seq: number, r: { text: string; finish_reason?: string; prompt_tokens?: number; completion_tokens?: number }): object {
  const completion = r.completion_tokens ?? Math.ceil(r.text.length / 4);
  const prompt = r.prompt_tokens ?? 300;
  return {
    id: `chatcmpl-${seq}`,
    object: 'chat.completion',
    created: 1_700_000_000,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: r.text, tool_calls: [] }, logprobs: null, finish_reason: r.finish_reason ?? 'stop', stop_reason: null }],
    usage: { prompt_tokens: prompt, total_tokens: prompt + completion, completion_tokens: completion },
  };
}
