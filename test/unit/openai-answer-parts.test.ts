import { describe, expect, it } from 'vitest';
import { finishReason, usageFrom } from '../../src/openai/answer-parts.ts';

describe('finishReason', () => {
  it.each([
    ['STOP', false, 'stop'],
    ['STOP', true, 'tool_calls'],
    ['MAX_TOKENS', false, 'length'],
    ['MAX_TOKENS', true, 'length'],
    ['SAFETY', false, 'content_filter'],
    ['RECITATION', false, 'content_filter'],
    ['PROHIBITED_CONTENT', false, 'content_filter'],
    ['BLOCKLIST', false, 'content_filter'],
    ['OTHER', false, 'stop'],
    [undefined, false, 'stop'],
  ] as const)('%s (tool calls: %s) → %s', (reason, tools, expected) => {
    expect(finishReason(reason, tools)).toBe(expected);
  });

  it.each(['SPII', 'IMAGE_SAFETY', 'IMAGE_PROHIBITED_CONTENT', 'IMAGE_RECITATION'])(
    'Gemini %s is OpenAI content_filter',
    (reason) => {
      expect(finishReason(reason)).toBe('content_filter');
    },
  );
});

describe('usageFrom', () => {
  it('without totalTokenCount, total_tokens is prompt + completion (thinking included)', () => {
    expect(usageFrom({ promptTokenCount: 7, candidatesTokenCount: 3, thoughtsTokenCount: 2 })).toEqual({
      prompt_tokens: 7,
      completion_tokens: 5,
      total_tokens: 12,
      completion_tokens_details: { reasoning_tokens: 2 },
    });
  });
});
