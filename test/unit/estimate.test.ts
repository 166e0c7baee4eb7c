import { describe, expect, it } from 'vitest';
import { estimateInputTokens, lastPromptTokenCount, TOKENS_PER_MEDIA_PART } from '../../src/pool/estimate.ts';

describe('token estimate', () => {
  it('counts text at 4 chars a token and a tile per media part, in either case style', () => {
    const body = {
      systemInstruction: { parts: [{ text: 'abcd' }] },
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'x'.repeat(40) },
            { inlineData: { mimeType: 'image/png', data: 'A'.repeat(9999) } },
          ],
        },
        { role: 'user', parts: [{ inline_data: { mime_type: 'image/jpeg', data: 'B'.repeat(10) } }] },
      ],
    };
    expect(estimateInputTokens(body)).toBe(1 + 10 + 2 * TOKENS_PER_MEDIA_PART);
  });
  it('finds the last cumulative promptTokenCount in a stream chunk', () => {
    const chunk =
      'data: {"usageMetadata":{"promptTokenCount": 12}}\r\n\r\ndata: {"usageMetadata":{"promptTokenCount":15}}\r\n\r\n';
    expect(lastPromptTokenCount(chunk)).toBe(15);
    expect(lastPromptTokenCount('data: {"candidates":[]}')).toBeUndefined();
  });
});
