import { chatCompletionBody, parseChatCompletion, type ChatRequest, type ChatResult } from '../../src/models/openai-chat.js';
import type { CaptionPart } from './caption-request.js';

/**
 * vLLM `run-batch` JSONL, OpenAI batch style. Input lines:
 * `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {…}}`; output lines:
 * `{"id", "custom_id", "response": {"status_code", "request_id", "body": {…}} | null, "error": … | null}`.
 * bitprep's custom_id is `<part>:<attempt>:<cache key>`: the answer alone says which caption of
 * which image it is and which seed made it, whatever order the batch runner writes lines in.
 */
export interface BatchRequestLine {
  custom_id: string;
  method: 'POST';
  url: '/v1/chat/completions';
  body: Record<string, unknown>;
}

export function batchCustomId(part: CaptionPart, attempt: number, cacheKey: string): string {
  return `${part}:${attempt}:${cacheKey}`;
}

export function parseBatchCustomId(id: string): { part: CaptionPart; attempt: number; cacheKey: string } | undefined {
  const m = /^(both|long|short):(\d+):([0-9a-f]{64})$/.exec(id);
  return m ? { part: m[1] as CaptionPart, attempt: Number(m[2]), cacheKey: m[3] } : undefined;
}

export function batchRequestLine(model: string, customId: string, req: ChatRequest): string {
  const line: BatchRequestLine = { custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: chatCompletionBody(model, req) };
  return JSON.stringify(line);
}

/** One output line read back: the answer, or why there is none. */
export type BatchAnswer = { customId: string; ok: true; result: ChatResult } | { customId: string; ok: false; problem: 'batch_error' | 'malformed_response'; detail: string };

/** Reads one output line; throws only when the line is not JSON or has no custom_id (the file is not a batch output). */
export function parseBatchOutputLine(line: string, where: string): BatchAnswer {
  let j: { custom_id?: unknown; response?: { status_code?: unknown; body?: unknown } | null; error?: unknown };
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`${where}: not a JSON line`);
  }
  if (typeof j?.custom_id !== 'string') throw new Error(`${where}: no custom_id (is this a run-batch output file?)`);
  const customId = j.custom_id;
  const status = j.response?.status_code;
  if (j.error != null || !j.response || status !== 200) {
    const err = j.error == null ? '' : typeof j.error === 'string' ? j.error : JSON.stringify(j.error);
    return { customId, ok: false, problem: 'batch_error', detail: `batch request failed (status ${String(status ?? 'none')})${err ? `: ${err.slice(0, 200)}` : ''}` };
  }
  try {
    return { customId, ok: true, result: parseChatCompletion(j.response.body) };
  } catch (err) {
    return { customId, ok: false, problem: 'malformed_response', detail: (err as Error).message };
  }
}
