/**
 * A Gemini generateContent answer → an OpenAI chat.completion. Pure, but for the clock and a
 * random id when the caller gives no time or id.
 */
import { randomUUID } from 'node:crypto';
import { callIds, finishReason, readParts, usageFrom } from './answer-parts.ts';
import type { ChatCompletion, ChatMessage, GeminiResponse, ResponseIds } from './types.ts';

function baseId(res: GeminiResponse): string {
  return typeof res.responseId === 'string' && /^[A-Za-z0-9_-]{1,100}$/.test(res.responseId)
    ? res.responseId
    : randomUUID().replace(/-/g, '');
}

/** A Gemini generateContent answer → an OpenAI chat.completion. `model` is the id the client asked for. */
export function geminiToOpenAi(res: GeminiResponse, model: string, ids: ResponseIds = {}): ChatCompletion {
  const base = baseId(res);
  const candidates = [...(res.candidates ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  const choices: ChatCompletion['choices'] = candidates.map((c, position) => {
    const index = c.index ?? position;
    const { text, hasText, toolCalls } = readParts(c.content?.parts, callIds(base, index));
    const reason = finishReason(c.finishReason, toolCalls.length > 0);
    const message: ChatMessage = {
      role: 'assistant',
      content: hasText ? text : toolCalls.length > 0 || reason === 'content_filter' ? null : '',
      refusal: null,
    };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    return { index, message, logprobs: null, finish_reason: reason };
  });
  if (choices.length === 0) {
    // The prompt itself was blocked (promptFeedback.blockReason), or nothing came back.
    const blocked = res.promptFeedback?.blockReason !== undefined;
    choices.push({
      index: 0,
      message: { role: 'assistant', content: blocked ? null : '', refusal: null },
      logprobs: null,
      finish_reason: blocked ? 'content_filter' : 'stop',
    });
  }
  return {
    id: ids.id ?? `chatcmpl-${base}`,
    object: 'chat.completion',
    created: ids.created ?? Math.floor(Date.now() / 1000),
    model,
    choices,
    usage: usageFrom(res.usageMetadata),
  };
}
