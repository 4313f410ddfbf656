import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import sharp from 'sharp';

/**
 * The demo's STAND-IN model server, so recaption and diffusiondb-synth run offline: it speaks
 * vLLM's OpenAI-compatible `/v1/chat/completions` (image parts, json_schema response_format)
 * and `/v1/images/generations` (b64_json), but there is no model behind it. Its "captions"
 * describe measured colour statistics; its "generations" are seeded abstract drawings. The
 * plumbing the demo shows (requests, validation, retries, cache, shards) is real; the content is not.
 */
export interface DemoModelServer {
  /** Up to and including /v1. */
  baseUrl: string;
  requests: { chat: number; images: number };
  close(): Promise<void>;
}

const COLOURS: [string, [number, number, number]][] = [
  ['red', [200, 40, 40]], ['orange', [230, 140, 40]], ['yellow', [220, 210, 60]], ['green', [60, 160, 70]],
  ['teal', [40, 150, 150]], ['blue', [50, 90, 200]], ['purple', [130, 60, 170]], ['pink', [230, 130, 180]],
  ['brown', [120, 80, 50]], ['grey', [128, 128, 128]], ['black', [20, 20, 20]], ['white', [240, 240, 240]],
];

function colourName(rgb: number[]): string {
  let best = COLOURS[0];
  let d = Infinity;
  for (const c of COLOURS) {
    const e = c[1].reduce((a, v, i) => a + (v - rgb[i]) ** 2, 0);
    if (e < d) [best, d] = [c, e];
  }
  return best[0];
}

async function describe(dataUrl: string): Promise<{ long: string; short: string }> {
  const m = /^data:image\/[a-z]+;base64,(.+)$/s.exec(dataUrl);
  if (!m) throw new Error('image_url is not a base64 data URL');
  const img = sharp(Buffer.from(m[1], 'base64'));
  const meta = await img.metadata();
  const st = await img.stats();
  const mean = st.channels.slice(0, 3).map((c) => c.mean);
  const spread = st.channels.slice(0, 3).reduce((a, c) => a + c.stdev, 0) / 3;
  const dom = st.dominant ? [st.dominant.r, st.dominant.g, st.dominant.b] : mean;
  const light = mean.reduce((a, b) => a + b, 0) / 3;
  const tone = light > 170 ? 'bright' : light < 80 ? 'dark' : 'mid-toned';
  const texture = spread > 60 ? 'busy, high-contrast' : spread > 30 ? 'moderately varied' : 'smooth, nearly uniform';
  const shape = meta.width === meta.height ? 'square' : (meta.width ?? 0) > (meta.height ?? 0) ? 'landscape' : 'portrait';
  const long =
    `A ${tone} ${shape} picture whose most common colour is ${colourName(dom)}, with an overall ${colourName(mean)} cast. ` +
    `The surface looks ${texture}, with a brightness spread of about ${Math.round(spread)} levels across the frame. ` +
    `This description comes from a stand-in server that measures colour statistics and does not look at content.`;
  const short = `A ${tone} ${colourName(dom)} ${shape} picture with ${texture.split(',')[0]} texture.`;
  return { long, short };
}

/** Abstract shapes whose layout and colours follow from (prompt, seed): equal requests give equal images. */
async function draw(prompt: string, seed: number, width: number, height: number): Promise<Buffer> {
  const h = createHash('sha256').update(`${seed}\0${prompt}`).digest();
  let i = 0;
  const byte = () => h[i++ % h.length];
  const colour = () => `rgb(${byte()},${byte()},${byte()})`;
  const shapes: string[] = [];
  for (let k = 0; k < 6; k++) {
    const x = Math.round((byte() / 255) * width);
    const y = Math.round((byte() / 255) * height);
    const r = Math.round(((byte() / 255) * Math.min(width, height)) / 3) + 4;
    shapes.push(k % 2 ? `<circle cx="${x}" cy="${y}" r="${r}" fill="${colour()}" opacity="0.85"/>` : `<rect x="${x - r}" y="${y - r / 2}" width="${2 * r}" height="${r}" fill="${colour()}" opacity="0.85"/>`);
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><linearGradient id="g" x2="1" y2="1"><stop offset="0" stop-color="${colour()}"/><stop offset="1" stop-color="${colour()}"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/>${shapes.join('')}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** Starts the stand-in on 127.0.0.1; it answers any model name in `models`. */
export async function startDemoModelServer(models: string[]): Promise<DemoModelServer> {
  const requests = { chat: 0, images: 0 };
  const known = new Set(models);
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'POST') return send(res, 404, { object: 'error', message: `no route ${req.method} ${req.url}`, code: 404 });
      const body = await readJson(req);
      if (!known.has(body?.model)) return send(res, 404, { object: 'error', message: `The model \`${body?.model}\` does not exist.`, type: 'NotFoundError', code: 404 });
      if (req.url === '/v1/chat/completions') {
        requests.chat++;
        const parts = body.messages?.find((m: any) => m.role === 'user')?.content ?? [];
        const image = parts.find?.((p: any) => p.type === 'image_url')?.image_url?.url;
        const text = String(parts.find?.((p: any) => p.type === 'text')?.text ?? '');
        const d = await describe(String(image));
        const content = body.response_format ? JSON.stringify({ long_caption: d.long, short_caption: d.short }) : /one sentence/i.test(text) ? d.short : d.long;
        return send(res, 200, { id: `chatcmpl-demo-${requests.chat}`, object: 'chat.completion', model: body.model, choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage: { prompt_tokens: 250, completion_tokens: Math.ceil(content.length / 4), total_tokens: 250 + Math.ceil(content.length / 4) } });
      }
      if (req.url === '/v1/images/generations') {
        requests.images++;
        const [w, h] = String(body.size ?? '512x512').split('x').map(Number);
        const n = Number(body.n ?? 1);
        const data = await Promise.all(Array.from({ length: n }, async (_, k) => ({ b64_json: (await draw(String(body.prompt), Number(body.seed ?? 0) + k, w, h)).toString('base64') })));
        return send(res, 200, { created: 0, data });
      }
      send(res, 404, { object: 'error', message: `no route ${req.url}`, code: 404 });
    })().catch((err: unknown) => send(res, 400, { object: 'error', message: (err as Error).message, code: 400 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('demo model server has no address');
  return {
    baseUrl: `http://127.0.0.1:${addr.port}/v1`,
    requests,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
