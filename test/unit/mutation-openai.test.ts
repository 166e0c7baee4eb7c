import { describe, expect, it } from 'vitest';
import { ChatStreamTranslator, DONE_FRAME, SseDecoder } from '../../src/openai/stream.ts';
import {
  finishChunks,
  finishReason,
  type GeminiResponse,
  geminiChunkToOpenAi,
  geminiToOpenAi,
  googleErrorToOpenAi,
  newChunkState,
  openAiToGemini,
  parseDataUrl,
  usageFrom,
} from '../../src/openai/translate.ts';

/**
 * Behaviours of the OpenAI translation that mutation testing showed no test pinned down: each
 * test here fails when the behaviour it names is changed in src/openai.
 */

const MODEL = 'gemini-2.5-flash-lite';
const user = (content: unknown) => ({ role: 'user', content });
const text = (t: string, extra: Record<string, unknown> = {}): GeminiResponse =>
  ({
    candidates: [{ content: { role: 'model', parts: [{ text: t }] }, index: 0, ...extra }],
  }) as GeminiResponse;

/** SSE output of the translator → its frames (JSON objects, or the string [DONE]). */
const frames = (out: string) =>
  out
    .split('\n\n')
    .filter(Boolean)
    .map((f) => f.replace(/^data: /, ''))
    .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
const sse = (obj: unknown) => `data: ${JSON.stringify(obj)}\r\n\r\n`;

describe('finish reasons and usage', () => {
  it.each(['SPII', 'IMAGE_SAFETY', 'IMAGE_PROHIBITED_CONTENT', 'IMAGE_RECITATION'])(
    'Gemini %s is OpenAI content_filter',
    (reason) => {
      expect(finishReason(reason)).toBe('content_filter');
    },
  );

  it('without totalTokenCount, total_tokens is prompt + completion (thinking included)', () => {
    expect(usageFrom({ promptTokenCount: 7, candidatesTokenCount: 3, thoughtsTokenCount: 2 })).toEqual({
      prompt_tokens: 7,
      completion_tokens: 5,
      total_tokens: 12,
      completion_tokens_details: { reasoning_tokens: 2 },
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

describe('openAiToGemini details', () => {
  it('reasoning_effort "none" on a Gemini 3 model is thinkingLevel "minimal" (Gemini 3 has no "none")', () => {
    expect(
      openAiToGemini({ model: 'gemini-3-flash-preview', messages: [user('x')], reasoning_effort: 'none' })
        .request.generationConfig,
    ).toEqual({ thinkingConfig: { thinkingLevel: 'minimal' } });
  });

  it.each([
    ['low', 1024],
    ['medium', 8192],
    ['high', 24576],
  ] as const)(
    'reasoning_effort %s on a 2.5 model is a thinking budget of %i (as Google’s own endpoint)',
    (effort, budget) => {
      expect(
        openAiToGemini({ model: 'gemini-2.5-flash', messages: [user('x')], reasoning_effort: effort }).request
          .generationConfig,
      ).toEqual({ thinkingConfig: { thinkingBudget: budget } });
    },
  );

  it('top_p above 1 is refused, as OpenAI does', () => {
    expect(() => openAiToGemini({ model: MODEL, messages: [user('x')], top_p: 1.5 })).toThrow(
      expect.objectContaining({ status: 400, param: 'top_p' }),
    );
  });

  it('a tool result that is a JSON scalar goes up as that value, not as its text', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user('count?'),
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'a', type: 'function', function: { name: 'count', arguments: '{}' } },
            { id: 'b', type: 'function', function: { name: 'check', arguments: '{}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'a', content: '42' },
        { role: 'tool', tool_call_id: 'b', content: 'true' },
      ],
    });
    expect(call.request.contents[2]).toEqual({
      role: 'user',
      parts: [
        { functionResponse: { name: 'count', response: { result: 42 } } },
        { functionResponse: { name: 'check', response: { result: true } } },
      ],
    });
  });

  it('the ;base64 marker of a data: URL is case-insensitive', () => {
    expect(parseDataUrl('data:image/png;BASE64,iVBORw0K')).toEqual({
      mimeType: 'image/png',
      data: 'iVBORw0K',
    });
  });
});

describe('stream chunks', () => {
  it('the first chunk carries role and an empty content even when the upstream chunk has only thoughts', () => {
    const state = newChunkState(MODEL, { id: 'c', created: 1 });
    const out = geminiChunkToOpenAi(
      {
        candidates: [{ content: { role: 'model', parts: [{ text: 'hmm', thought: true }] }, index: 0 }],
      } as GeminiResponse,
      state,
    );
    expect(out.map((c) => c.choices[0]!.delta)).toEqual([{ role: 'assistant', content: '' }]);
  });

  it('a blocked prompt in a stream: an opening chunk, then finish_reason content_filter', () => {
    const state = newChunkState(MODEL, { id: 'c', created: 1 });
    const out = geminiChunkToOpenAi({ promptFeedback: { blockReason: 'SAFETY' } } as GeminiResponse, state);
    expect(out.map((c) => [c.choices[0]!.delta, c.choices[0]!.finish_reason])).toEqual([
      [{ role: 'assistant', content: '' }, null],
      [{}, 'content_filter'],
    ]);
    expect(finishChunks(state)).toEqual([]);
  });

  it('a stream that brought no candidate still opens with the role, then stops, then usage', () => {
    const state = newChunkState(MODEL, { id: 'c', created: 1, includeUsage: true });
    expect(
      geminiChunkToOpenAi(
        { usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 0, totalTokenCount: 4 } },
        state,
      ),
    ).toEqual([]);
    const end = finishChunks(state);
    expect(end.map((c) => c.choices[0] ?? null)).toEqual([
      { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' },
      null,
    ]);
    expect(end[2]!.usage).toEqual({ prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 });
  });

  it('a STOP in a later chunk than the tool call is still finish_reason tool_calls', () => {
    const state = newChunkState(MODEL, { id: 'c', created: 1 });
    geminiChunkToOpenAi(
      {
        candidates: [
          { content: { role: 'model', parts: [{ functionCall: { name: 'f', args: {} } }] }, index: 0 },
        ],
      } as GeminiResponse,
      state,
    );
    const last = geminiChunkToOpenAi(text('', { finishReason: 'STOP' }), state);
    expect(last.map((c) => c.choices[0]!.finish_reason)).toEqual(['tool_calls']);
  });

  it('after its finish chunk a choice gets nothing more, and exactly one finish_reason', () => {
    const state = newChunkState(MODEL, { id: 'c', created: 1 });
    const first = geminiChunkToOpenAi(text('done', { finishReason: 'STOP' }), state);
    expect(first.map((c) => c.choices[0]!.finish_reason)).toEqual([null, 'stop']);
    expect(geminiChunkToOpenAi(text('late', { finishReason: 'STOP' }), state)).toEqual([]);
    expect(finishChunks(state)).toEqual([]);
  });
});

describe('ChatStreamTranslator and SseDecoder', () => {
  it('a [DONE] event from the upstream is ignored, not an error', () => {
    const t = new ChatStreamTranslator(MODEL, { id: 'c', created: 1 });
    const out = t.push(`${sse(text('Hi', { finishReason: 'STOP' }))}data: [DONE]\r\n\r\n`) + t.end();
    expect(t.failed).toBe(false);
    expect(frames(out).map((f) => (f === '[DONE]' ? f : f.choices[0].finish_reason))).toEqual([
      null,
      'stop',
      '[DONE]',
    ]);
  });

  it('a mid-stream 429 error event is a rate_limit_error frame', () => {
    const t = new ChatStreamTranslator(MODEL);
    const out = t.push(
      sse(text('Hi')) +
        sse({ error: { code: 429, message: 'Resource has been exhausted', status: 'RESOURCE_EXHAUSTED' } }),
    );
    expect(frames(out)[1]).toEqual({
      error: {
        message: 'Resource has been exhausted',
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        param: null,
      },
    });
  });

  it('an error event that is the upstream’s very last (no blank line after it) ends the stream without [DONE]', () => {
    const t = new ChatStreamTranslator(MODEL, { includeUsage: true });
    t.push(sse(text('Hi')));
    expect(
      t.push(`data: ${JSON.stringify({ error: { code: 500, message: 'boom', status: 'INTERNAL' } })}`),
    ).toBe('');
    const end = t.end();
    expect(frames(end)).toEqual([
      { error: { message: 'boom', type: 'server_error', code: 'internal', param: null } },
    ]);
    expect(end).not.toContain(DONE_FRAME);
    expect(t.failed).toBe(true);
  });

  it('a CRLF split between its \\r and \\n does not end a multi-line event early', () => {
    const d = new SseDecoder();
    const got = [...d.push('data: a\r'), ...d.push('\ndata: b\r\n\r\n'), ...d.end()];
    expect(got).toEqual(['a\nb']);
  });
});

describe('googleErrorToOpenAi', () => {
  it.each([200, 302, 0])('an upstream status %i that is not an error status becomes 502', (status) => {
    const e = googleErrorToOpenAi(status, { error: { message: 'odd', status: 'UNKNOWN' } });
    expect(e.status).toBe(502);
    expect(e.body().error).toMatchObject({ message: 'odd', type: 'server_error' });
  });
});
