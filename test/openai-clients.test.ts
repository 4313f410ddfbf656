import sharp from 'sharp';
import { OutageError } from '../src/outage.js';
import { afterEach, describe, expect, it } from 'vitest';
import { ChatClient, ChatResponseError, imagePart } from '../src/models/openai-chat.js';
import type { OpenAIClientOptions } from '../src/models/openai-endpoint.js';
import { ImageClient, ImageResponseError } from '../src/models/openai-images.js';
import { FakeOpenAIServer, type Fault, type FakeServerOptions } from './helpers/fake-openai-server.js';

const FAST_RETRY = { retries: 4, minDelayMs: 5, maxDelayMs: 50 };
const KEY = 'sk-test-3f9a1c7e5b2d';

let servers: FakeOpenAIServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function setup(server: FakeServerOptions = {}, client: Partial<OpenAIClientOptions> = {}) {
  const srv = await FakeOpenAIServer.start(server);
  servers.push(srv);
  const opts = { baseUrl: srv.baseUrl, model: 'qwen', maxInFlight: 8, timeoutMs: 2000, retry: FAST_RETRY, ...client };
  return { srv, chat: new ChatClient(opts), images: new ImageClient({ ...opts, model: 'flux' }) };
}

const ask = (chat: ChatClient, id: string | number, extra: { requireStop?: boolean } = {}) =>
  chat.complete({ messages: [{ role: 'user', content: `caption id=${id}` }], maxTokens: 32, ...extra });

async function failure<E>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (err) {
    return err as E;
  }
  throw new Error('expected a rejection');
}

describe('ChatClient', () => {
  it('sends the vLLM request shape and parses the answer', async () => {
    const bodies: any[] = [];
    const { srv, chat } = await setup({ apiKey: KEY, fault: (r) => void bodies.push(r.body) }, { apiKey: KEY });
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#fff' } }).png().toBuffer();
    const schema = { type: 'object', properties: { caption: { type: 'string' } } };
    const res = await chat.complete({
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [imagePart(png, 'image/png'), { type: 'text', text: 'describe id=7' }] },
      ],
      maxTokens: 64,
      temperature: 0.2,
      seed: 3,
      responseFormat: { type: 'json_schema', json_schema: { name: 'c', schema, strict: true } },
      extra: { top_p: 0.9, repetition_penalty: 1.05, model: 'ignored' },
    });
    expect(res.text).toBe('echo: be brief\ndescribe id=7');
    expect(res.finishReason).toBe('stop');
    expect(res.usage.promptTokens).toBeGreaterThan(0);
    expect(chat.stats).toMatchObject({ requests: 1, retries: 0, succeeded: 1, promptTokens: res.usage.promptTokens, completionTokens: res.usage.completionTokens });
    const b = bodies[0];
    expect(b).toMatchObject({ model: 'qwen', max_tokens: 64, temperature: 0.2, seed: 3, top_p: 0.9, repetition_penalty: 1.05, response_format: { type: 'json_schema', json_schema: { name: 'c', schema, strict: true } } });
    expect(b.messages[1].content[0].image_url.url).toBe(`data:image/png;base64,${png.toString('base64')}`);
    expect(srv.counters.okIds).toEqual(['7']);
  });

  it.each<[string, Fault[]]>([
    ['500', [{ kind: 'status', status: 500 }]],
    ['503 twice', [{ kind: 'status', status: 503 }, { kind: 'status', status: 503 }]],
    ['connection reset', [{ kind: 'reset' }]],
    ['timeout', [{ kind: 'delay', ms: 1500 }]],
    ['malformed JSON', [{ kind: 'malformed' }]],
    ['missing choices[0].message', [{ kind: 'empty' }, { kind: 'malformed' }]],
  ])('retries %s', async (_, faults) => {
    const { srv, chat } = await setup({ faults }, { timeoutMs: 300 });
    const res = await ask(chat, 'a');
    expect(res.text).toBe('echo: caption id=a');
    expect(chat.stats).toMatchObject({ requests: faults.length + 1, retries: faults.length, succeeded: 1, failures: {} });
    expect(srv.counters.okIds).toEqual(['a']);
  });

  it('honours Retry-After on 429', async () => {
    const { chat } = await setup({ faults: [{ kind: 'status', status: 429, retryAfter: '1' }] }, { retry: { retries: 2, minDelayMs: 1, maxDelayMs: 5000 } });
    const t0 = Date.now();
    await ask(chat, 'r');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(chat.stats.retries).toBe(1);
  });

  it('limits retries of malformed answers and reports malformed_response', async () => {
    const { chat } = await setup({ fault: () => ({ kind: 'malformed' }) }, { malformedRetries: 2 });
    const err = await failure<ChatResponseError>(ask(chat, 'm'));
    expect(err).toBeInstanceOf(ChatResponseError);
    expect(err.code).toBe('malformed_response');
    expect(chat.stats.requests).toBe(3);
    expect(chat.stats.failures).toEqual({ malformed_response: 1 });
  });

  it('gives up on persistent 5xx after retry.retries and does not retry 400', async () => {
    const { chat } = await setup({ fault: (r) => ({ kind: 'status', status: r.id === 'bad' ? 400 : 502 }) });
    const e502 = await failure<ChatResponseError>(ask(chat, 'x'));
    expect([e502.code, e502.status, chat.stats.requests]).toEqual(['http_status', 502, 5]);
    const e400 = await failure<ChatResponseError>(ask(chat, 'bad'));
    expect([e400.code, e400.status, chat.stats.requests]).toEqual(['http_status', 400, 6]);
    expect(chat.stats.failures).toEqual({ http_status: 2 });
  });

  it("returns finish_reason 'length', and with requireStop throws 'truncated' without retrying", async () => {
    const { chat } = await setup({ fault: () => ({ kind: 'finish', reason: 'length' }) });
    expect((await ask(chat, 'l')).finishReason).toBe('length');
    const err = await failure<ChatResponseError>(ask(chat, 'l', { requireStop: true }));
    expect(err.code).toBe('truncated');
    expect(err.result?.text).toBe('echo: caption id=l');
    expect(chat.stats.requests).toBe(2);
    expect(chat.stats.failures).toEqual({ truncated: 1 });
  });

  it('stops at once when the caller aborts', async () => {
    const { chat } = await setup({ latencyMs: 1000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await failure<ChatResponseError>(chat.complete({ messages: [{ role: 'user', content: 'id=z' }], signal: ac.signal }));
    expect(err.code).toBe('aborted');
    expect(chat.stats).toMatchObject({ requests: 1, retries: 0, inFlight: 0 });
  });

  it('reports a refused connection after retries as an outage of the endpoint, not a failed request', async () => {
    const { srv } = await setup();
    const baseUrl = srv.baseUrl;
    await srv.close();
    servers = [];
    const chat = new ChatClient({ baseUrl, model: 'm', retry: { retries: 1, minDelayMs: 1, maxDelayMs: 1 } });
    const err = await failure<OutageError>(ask(chat, 'n'));
    expect(err).toBeInstanceOf(OutageError);
    expect(err.reason).toBe('connection_refused');
    expect(err.target).toContain(baseUrl);
    expect((err.cause as ChatResponseError).code).toBe('network');
    expect(chat.stats.requests).toBe(2);
  });

  it('takes 401, 403, 404 and 413 as outages of the endpoint, and a 400 as the request\'s failure', async () => {
    for (const status of [401, 403, 404, 413]) {
      const { chat } = await setup({ fault: () => ({ kind: 'status', status }) });
      const err = await failure<OutageError>(ask(chat, 's'));
      expect(err, `HTTP ${status}`).toBeInstanceOf(OutageError);
      expect(err.reason).toMatch(new RegExp(`^http_${status}_`));
    }
    const { chat } = await setup({ fault: () => ({ kind: 'status', status: 400 }) });
    const err = await failure<ChatResponseError>(ask(chat, 's'));
    expect(err).not.toBeInstanceOf(OutageError);
    expect(err.status).toBe(400);
  });

  it('opens its breaker after N calls in a row fail with one 5xx and none succeeds; a success resets it', async () => {
    let healthy = false;
    const { chat } = await setup({ fault: () => (healthy ? undefined : { kind: 'status', status: 503 }) }, { retry: { retries: 0, minDelayMs: 1, maxDelayMs: 1 }, breaker: { failures: 3 } });
    for (let i = 0; i < 2; i++) expect(await failure<Error>(ask(chat, 'b'))).not.toBeInstanceOf(OutageError);
    healthy = true;
    await ask(chat, 'ok');
    healthy = false;
    for (let i = 0; i < 2; i++) expect(await failure<Error>(ask(chat, 'b'))).not.toBeInstanceOf(OutageError);
    const tripped = await failure<OutageError>(ask(chat, 'b'));
    expect(tripped).toBeInstanceOf(OutageError);
    expect(tripped.reason).toBe('breaker:http_503');
    expect(tripped.message).toMatch(/last 3 requests/);
  });

  it('never puts the API key in error messages, even when the server echoes it', async () => {
    const { chat: wrong } = await setup({ apiKey: 'other' }, { apiKey: KEY });
    const e401 = await failure<Error>(ask(wrong, 'k'));
    const { chat } = await setup({ fault: () => ({ kind: 'status', status: 500 }) }, { apiKey: KEY, retry: { retries: 1, minDelayMs: 1, maxDelayMs: 1 } });
    const e500 = await failure<Error>(ask(chat, 'k'));
    for (const e of [e401, e500]) {
      expect(e.message).toMatch(/\[redacted\]/); // proves the server did echo it
      expect(`${String(e)} ${e.stack} ${String(e.cause)}`).not.toContain(KEY);
    }
  });

  it('50 concurrent completes through faults: each answered once, in order, never more than 8 in flight', async () => {
    const fault = (r: { seq: number }): Fault | undefined => {
      const s = r.seq;
      if (s % 7 === 1) return { kind: 'status', status: 500 };
      if (s % 11 === 2) return { kind: 'reset' };
      if (s % 13 === 3) return { kind: 'status', status: 429, retryAfter: '0' };
      if (s % 17 === 4) return { kind: 'malformed' };
      return undefined;
    };
    const { srv, chat } = await setup({ latencyMs: 10, fault });
    const ids = Array.from({ length: 50 }, (_, i) => `r${i}`);
    const results = await Promise.all(ids.map((id) => ask(chat, id)));
    results.forEach((r, i) => expect(r.text).toBe(`echo: caption id=${ids[i]}`));
    expect([...srv.counters.okIds].sort()).toEqual([...ids].sort());
    expect(srv.counters.maxOpen).toBeLessThanOrEqual(8);
    expect(chat.stats.inFlightPeak).toBe(8);
    expect(chat.stats.retries).toBeGreaterThan(5);
    expect(chat.stats.requests).toBe(srv.counters.requests);
    expect(chat.stats.requests).toBe(50 + chat.stats.retries);
  });
});

describe('ImageClient', () => {
  it('returns n images of the asked size and sends b64_json', async () => {
    const bodies: any[] = [];
    const { images } = await setup({ fault: (r) => void bodies.push(r.body) });
    const res = await images.generate({ prompt: 'a cat id=1', size: '64x48', n: 2, seed: 5, extra: { num_inference_steps: 4, guidance_scale: 0 } });
    expect(res.images).toHaveLength(2);
    for (const img of res.images) expect(await sharp(img).metadata()).toMatchObject({ width: 64, height: 48, format: 'png' });
    expect(bodies[0]).toEqual({ model: 'flux', prompt: 'a cat id=1', size: '64x48', n: 2, seed: 5, response_format: 'b64_json', num_inference_steps: 4, guidance_scale: 0 });
  });

  it('retries transient faults and malformed answers', async () => {
    const faults: Fault[] = [{ kind: 'status', status: 500 }, { kind: 'reset' }, { kind: 'empty' }];
    const { images } = await setup({ faults });
    expect((await images.generate({ prompt: 'p', size: '32x32' })).images).toHaveLength(1);
    expect(images.stats).toMatchObject({ requests: 4, retries: 3, succeeded: 1 });
  });

  it.each([
    ['not_image', 'not_an_image'],
    ['wrong_size', 'wrong_size'],
  ] as const)('rejects %s payloads without retrying', async (kind, code) => {
    const { images } = await setup({ faults: [{ kind }] });
    const err = await failure<ImageResponseError>(images.generate({ prompt: 'p', size: '32x32' }));
    expect(err).toBeInstanceOf(ImageResponseError);
    expect(err.code).toBe(code);
    expect(images.stats.requests).toBe(1);
    expect(images.stats.failures).toEqual({ [code]: 1 });
  });
});
