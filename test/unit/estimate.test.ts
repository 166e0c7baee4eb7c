import { describe, expect, it } from 'vitest';
import {
  bodyPromptTokenCount,
  estimateInputTokens,
  lastPromptTokenCount,
  TOKENS_PER_MEDIA_PART,
} from '../../src/pool/estimate.ts';

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
  it('reads the same count from the bytes of an answer body as from its text', () => {
    const bodies = [
      '{"candidates":[],"usageMetadata":{"promptTokenCount":42,"totalTokenCount":50}}',
      '{"usageMetadata":{"promptTokenCount" :\n 7}}',
      '[{"usageMetadata":{"promptTokenCount":3}},\r\n{"usageMetadata":{"promptTokenCount":9}}]',
      // The model's text quotes the field name: escaped, so it is not a match.
      '{"candidates":[{"content":{"parts":[{"text":"say \\"promptTokenCount\\": 5"}]}}],"usageMetadata":{"promptTokenCount":11}}',
      // The last occurrence is not followed by a count: the earlier, well-formed one wins.
      '{"usageMetadata":{"promptTokenCount":4},"note":{"promptTokenCount":null}}',
      '{"candidates":[]}',
      '{"usageMetadata":{"promptTokenCount":12345678901234567000}}',
      '{"text":"é ü 😀","usageMetadata":{"promptTokenCount":8}}',
    ];
    const expected = [42, 7, 9, 11, 4, undefined, 12345678901234567000, 8];
    bodies.forEach((text, i) => {
      expect(bodyPromptTokenCount(Buffer.from(text)), text).toBe(expected[i]);
      expect(bodyPromptTokenCount(Buffer.from(text)), text).toBe(lastPromptTokenCount(text));
    });
  });
});

describe('token estimate, less common shapes', () => {
  it('rounds a partial token up', () => {
    expect(estimateInputTokens({ contents: [{ parts: [{ text: 'abc' }] }] })).toBe(1);
    expect(estimateInputTokens({ contents: [{ parts: [{ text: 'abcde' }] }] })).toBe(2);
  });

  it('counts fileData parts, in either case style, as media', () => {
    const body = {
      contents: [
        { parts: [{ fileData: { mimeType: 'image/png', fileUri: 'https://example.com/a.png' } }] },
        { parts: [{ file_data: { mime_type: 'image/png', file_uri: 'https://example.com/b.png' } }] },
      ],
    };
    expect(estimateInputTokens(body)).toBe(2 * TOKENS_PER_MEDIA_PART);
  });

  it('reads promptTokenCount from pretty-printed JSON (Google’s unary answers)', () => {
    const unary = JSON.stringify({ usageMetadata: { promptTokenCount: 42, totalTokenCount: 50 } }, null, 2);
    expect(lastPromptTokenCount(unary)).toBe(42);
  });
});
