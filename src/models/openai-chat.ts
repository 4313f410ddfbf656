import { ModelResponseError, OpenAIEndpoint, type ClientStats, type ModelErrorCode, type OpenAIClientOptions } from './openai-endpoint.js';

export class ChatResponseError extends ModelResponseError {
  /** For 'truncated': the answer that did not end with finish_reason 'stop'. */
  result?: ChatResult;
  constructor(code: ModelErrorCode, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, status, options);
    this.name = 'ChatResponseError';
  }
}

export type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

export type ResponseFormat = { type: 'json_schema'; json_schema: { name: string; schema: object; strict?: boolean } } | { type: 'json_object' };

export interface ChatRequest {
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  responseFormat?: ResponseFormat;
  /** Extra top-level fields vLLM accepts (top_p, repetition_penalty, …); the typed fields above win. */
  extra?: Record<string, unknown>;
  /** Throw ChatResponseError 'truncated' unless finish_reason is 'stop'. Not retried: the caller decides (e.g. new seed). */
  requireStop?: boolean;
  signal?: AbortSignal;
}

export interface ChatResult {
  text: string;
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number };
  raw: unknown;
}

/** An image as a base64 data-URL content part (pre-resize first: Qwen2.5-VL pays tokens per pixel). */
export function imagePart(bytes: Uint8Array, mime = 'image/jpeg'): ContentPart {
  const b64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  return { type: 'image_url', image_url: { url: `data:${mime};base64,${b64}` } };
}

/**
 * Client for vLLM's OpenAI-compatible `/chat/completions`. Retried: 408/429 (honouring
 * Retry-After)/5xx, resets, timeouts, and malformed 200 bodies (at most `malformedRetries` times).
 * Not retried: other 4xx, and finish_reason ≠ 'stop' under `requireStop`.
 */
export class ChatClient {
  private readonly http: OpenAIEndpoint;

  constructor(private readonly opts: OpenAIClientOptions) {
    this.http = new OpenAIEndpoint(opts, (code, msg, status, cause) => new ChatResponseError(code, msg, status, { cause }));
  }

  get stats(): ClientStats {
    return this.http.stats;
  }

  /** Closes idle keep-alive sockets (they do not keep the process alive); the client stays usable. */
  close(): void {
    this.http.close();
  }

  async complete(req: ChatRequest): Promise<ChatResult> {
    const result = await this.http.post('/chat/completions', chatCompletionBody(this.opts.model, req), (json) => this.parse(json), req.signal);
    if (req.requireStop && result.finishReason !== 'stop') {
      const err = this.http.error('truncated', `chat completion ended with finish_reason '${result.finishReason}'`) as ChatResponseError;
      err.result = result;
      this.http.count(this.stats.failures, 'truncated');
      throw err;
    }
    return result;
  }

  private parse(json: unknown): ChatResult {
    let result: ChatResult;
    try {
      result = parseChatCompletion(json);
    } catch (err) {
      throw this.http.error('malformed_response', `POST /chat/completions: ${(err as Error).message}`);
    }
    this.stats.promptTokens += result.usage.promptTokens;
    this.stats.completionTokens += result.usage.completionTokens;
    return result;
  }
}

/** The JSON body of a chat completion request, as ChatClient sends it and as `vllm run-batch` reads it. */
export function chatCompletionBody(model: string, req: ChatRequest): Record<string, unknown> {
  return {
    ...req.extra,
    model,
    messages: req.messages,
    max_tokens: req.maxTokens,
    temperature: req.temperature,
    seed: req.seed,
    response_format: req.responseFormat,
  };
}

/** Reads a chat completion response body; throws (with what is wrong) when it has no usable message. */
export function parseChatCompletion(json: unknown): ChatResult {
  const j = json as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[]; usage?: { prompt_tokens?: number; completion_tokens?: number } } | null;
  const choice = Array.isArray(j?.choices) ? j.choices[0] : undefined;
  const content = choice?.message && typeof choice.message === 'object' ? choice.message.content : undefined;
  // null content is legal (e.g. cut off before any text); a missing message is not.
  if (!choice?.message || (content != null && typeof content !== 'string')) {
    throw new Error('response has no choices[0].message with string content');
  }
  const usage = { promptTokens: Number(j?.usage?.prompt_tokens ?? 0), completionTokens: Number(j?.usage?.completion_tokens ?? 0) };
  return { text: (content as string | null) ?? '', finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : 'unknown', usage, raw: json };
}
