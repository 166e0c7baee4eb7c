/**
 * Pieces of a Gemini answer in OpenAI terms (finish reason, usage, a candidate's text and tool
 * calls), shared by the whole-answer and the stream converters.
 */
import type { Part } from '../upstream/gemini-types.ts';
import { isObj, type Obj } from './json.ts';
import type { FinishReason, GeminiUsage, ToolCall, Usage } from './types.ts';

const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

/** Gemini's finishReason → OpenAI's. STOP after a function call is `tool_calls`. */
export function finishReason(reason: string | undefined | null, hasToolCalls = false): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length';
  if (reason && FILTERED.has(reason)) return 'content_filter';
  return hasToolCalls ? 'tool_calls' : 'stop';
}

/** Gemini usageMetadata → OpenAI usage (thinking tokens count as completion tokens, as OpenAI's reasoning tokens do). */
export function usageFrom(meta: GeminiUsage | undefined): Usage {
  const prompt = meta?.promptTokenCount ?? 0;
  const thoughts = meta?.thoughtsTokenCount ?? 0;
  const completion = (meta?.candidatesTokenCount ?? 0) + thoughts;
  const usage: Usage = {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: meta?.totalTokenCount ?? prompt + completion,
  };
  if (meta?.cachedContentTokenCount)
    usage.prompt_tokens_details = { cached_tokens: meta.cachedContentTokenCount };
  if (thoughts > 0) usage.completion_tokens_details = { reasoning_tokens: thoughts };
  return usage;
}

/** Text (thoughts excluded) and function calls of one candidate's parts. */
export function readParts(
  parts: ReadonlyArray<Part> | undefined,
  callId: (n: number, fc: Obj) => string,
  firstCall = 0,
): { text: string; hasText: boolean; toolCalls: ToolCall[] } {
  let text = '';
  let hasText = false;
  const toolCalls: ToolCall[] = [];
  for (const p of parts ?? []) {
    if (typeof p.text === 'string' && p.thought !== true) {
      text += p.text;
      hasText = true;
    } else if (isObj(p.functionCall) && typeof p.functionCall.name === 'string') {
      const fc = p.functionCall;
      const call: ToolCall = {
        id: callId(firstCall + toolCalls.length, fc),
        type: 'function',
        function: { name: fc.name as string, arguments: JSON.stringify(isObj(fc.args) ? fc.args : {}) },
      };
      if (typeof p.thoughtSignature === 'string')
        call.extra_content = { google: { thought_signature: p.thoughtSignature } };
      toolCalls.push(call);
    }
  }
  return { text, hasText, toolCalls };
}

/** Tool-call ids: Gemini's own when it gave one, else built from the answer, candidate and position. */
export function callIds(base: string, candidate: number): (n: number, fc: Obj) => string {
  return (n, fc) => (typeof fc.id === 'string' && fc.id !== '' ? fc.id : `call_${base}_${candidate}_${n}`);
}
