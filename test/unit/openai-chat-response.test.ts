import { describe, expect, it } from 'vitest';
import { geminiToOpenAi } from '../../src/openai/chat-response.ts';
import type { GeminiResponse } from '../../src/openai/types.ts';
import { MODEL } from '../helpers/openai.ts';

describe('geminiToOpenAi', () => {
  const ids = { id: 'chatcmpl-test', created: 1700000000 };

  it('builds a chat.completion with text (thoughts left out), finish reason and usage', () => {
    const res: GeminiResponse = {
      candidates: [
        {
          content: {
            role: 'model',
            parts: [{ text: 'thinking…', thought: true }, { text: 'Hello' }, { text: ', world' }],
          },
          finishReason: 'STOP',
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: 10,
        candidatesTokenCount: 5,
        thoughtsTokenCount: 3,
        totalTokenCount: 18,
      },
      responseId: 'abc',
    };
    expect(geminiToOpenAi(res, MODEL, ids)).toEqual({
      id: 'chatcmpl-test',
      object: 'chat.completion',
      created: 1700000000,
      model: MODEL,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello, world', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: 10,
        completion_tokens: 8,
        total_tokens: 18,
        completion_tokens_details: { reasoning_tokens: 3 },
      },
    });
    const dflt = geminiToOpenAi(res, MODEL);
    expect(dflt.id).toBe('chatcmpl-abc');
    expect(Math.abs(dflt.created - Date.now() / 1000)).toBeLessThan(5);
  });

  it('one choice per candidate (n), by candidate index', () => {
    const out = geminiToOpenAi(
      {
        candidates: [
          { content: { parts: [{ text: 'B' }] }, finishReason: 'MAX_TOKENS', index: 1 },
          { content: { parts: [{ text: 'A' }] }, finishReason: 'STOP', index: 0 },
        ],
        usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 2, totalTokenCount: 3 },
      },
      MODEL,
      ids,
    );
    expect(out.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, 'A', 'stop'],
      [1, 'B', 'length'],
    ]);
    expect(out.usage).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
  });

  it('functionCall parts → tool_calls with JSON arguments, finish_reason tool_calls, content null', () => {
    const out = geminiToOpenAi(
      {
        candidates: [
          {
            content: {
              parts: [
                { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'sig-1' },
                { functionCall: { name: 'get_time', id: 'given-id' } },
              ],
            },
            finishReason: 'STOP',
          },
        ],
        responseId: 'r1',
      },
      MODEL,
      ids,
    );
    const choice = out.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toEqual([
      {
        id: 'call_r1_0_0',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        extra_content: { google: { thought_signature: 'sig-1' } },
      },
      { id: 'given-id', type: 'function', function: { name: 'get_time', arguments: '{}' } },
    ]);
  });

  it('a blocked prompt (no candidates) is a content_filter choice; cached tokens are reported', () => {
    const out = geminiToOpenAi(
      {
        promptFeedback: { blockReason: 'SAFETY' },
        usageMetadata: { promptTokenCount: 4, totalTokenCount: 4, cachedContentTokenCount: 2 },
      } as GeminiResponse,
      MODEL,
      ids,
    );
    expect(out.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      },
    ]);
    expect(out.usage).toEqual({
      prompt_tokens: 4,
      completion_tokens: 0,
      total_tokens: 4,
      prompt_tokens_details: { cached_tokens: 2 },
    });
  });

  it('a candidate stopped by the safety filter before any text has content null', () => {
    const out = geminiToOpenAi(
      { candidates: [{ finishReason: 'SAFETY', index: 0 }] } as GeminiResponse,
      MODEL,
      { id: 'chatcmpl-x', created: 1 },
    );
    expect(out.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      },
    ]);
  });
});
