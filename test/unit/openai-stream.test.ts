import { describe, expect, it } from 'vitest';
import { ChatStreamTranslator, DONE_FRAME, SseDecoder } from '../../src/openai/stream.ts';
import type { GeminiResponse } from '../../src/openai/types.ts';
import { MODEL } from '../helpers/openai.ts';

const text = (t: string, extra: Record<string, unknown> = {}): GeminiResponse =>
  ({
    candidates: [{ content: { role: 'model', parts: [{ text: t }] }, index: 0, ...extra }],
  }) as GeminiResponse;

describe('SseDecoder', () => {
  const events = ['data: {"a":1}', 'data: {"b":"é ü 日本"}', ': comment', 'event: x\ndata: {"c":3}'];
  const wire = `${events.join('\r\n\r\n')}\r\n\r\n`;

  it('gives the same events however the bytes are split (even inside CRLF and multi-byte characters)', () => {
    const bytes = Buffer.from(wire, 'utf8');
    const expected = ['{"a":1}', '{"b":"é ü 日本"}', '{"c":3}'];
    for (const size of [1, 2, 3, 5, 7, bytes.length]) {
      const d = new SseDecoder();
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...d.push(bytes.subarray(i, i + size)));
      got.push(...d.end());
      expect(got, `split every ${size}`).toEqual(expected);
    }
  });

  it('handles \\n and \\r framings, several events per chunk, multi-line data, and a last event without blank line', () => {
    const d = new SseDecoder();
    expect(d.push('data: 1\n\ndata: 2\r\rdata:3\ndata: 4\n\ndata: 5')).toEqual(['1', '2', '3\n4']);
    expect(d.end()).toEqual(['5']);
  });

  it('waits for the end of an event', () => {
    const d = new SseDecoder();
    expect(d.push('data: {"par')).toEqual([]);
    expect(d.push('tial":true}\r\n')).toEqual([]);
    expect(d.push('\r\n')).toEqual(['{"partial":true}']);
  });

  it('a CRLF split between its \\r and \\n does not end a multi-line event early', () => {
    const d = new SseDecoder();
    const got = [...d.push('data: a\r'), ...d.push('\ndata: b\r\n\r\n'), ...d.end()];
    expect(got).toEqual(['a\nb']);
  });
});

describe('ChatStreamTranslator', () => {
  const frame = (obj: unknown) => `data: ${JSON.stringify(obj)}\r\n\r\n`;
  const g = (text: string, last = false) => ({
    candidates: [
      { content: { role: 'model', parts: [{ text }] }, index: 0, ...(last ? { finishReason: 'STOP' } : {}) },
    ],
    usageMetadata: { promptTokenCount: 2, candidatesTokenCount: 1, totalTokenCount: 3 },
  });
  const parse = (out: string) =>
    out
      .split('\n\n')
      .filter(Boolean)
      .map((f) => f.replace(/^data: /, ''))
      .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));

  it('translates as chunks arrive, split anywhere, and ends with finish, usage, [DONE]', () => {
    const t = new ChatStreamTranslator(MODEL, { id: 'chatcmpl-1', created: 5, includeUsage: true });
    const wire = frame(g('Hel')) + frame(g('lo', true));
    const cut = wire.indexOf('lo"') + 1;
    const first = t.push(Buffer.from(wire.slice(0, cut)));
    expect(parse(first).map((c) => c.choices[0].delta)).toEqual([{ role: 'assistant', content: 'Hel' }]);
    const rest = t.push(Buffer.from(wire.slice(cut)));
    expect(parse(rest).map((c) => [c.choices[0].delta, c.choices[0].finish_reason])).toEqual([
      [{ content: 'lo' }, null],
      [{}, 'stop'],
    ]);
    const end = t.end();
    expect(end.endsWith(DONE_FRAME)).toBe(true);
    const tail = parse(end);
    expect(tail[0]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
    });
    expect(tail[1]).toBe('[DONE]');
    expect(t.end()).toBe('');
  });

  it('an upstream error event becomes an OpenAI error frame and ends the stream (no [DONE])', () => {
    const t = new ChatStreamTranslator(MODEL);
    const out = t.push(
      frame(g('Hi')) +
        frame({ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } }),
    );
    const frames = parse(out);
    expect(frames[0].choices[0].delta.content).toBe('Hi');
    expect(frames[1]).toEqual({
      error: { message: 'The model is overloaded.', type: 'server_error', code: 'unavailable', param: null },
    });
    expect(t.failed).toBe(true);
    expect(t.push(frame(g('more')))).toBe('');
    expect(t.end()).toBe('');
  });

  it('fail() after a break gives one error frame; unreadable events are errors too', () => {
    const t = new ChatStreamTranslator(MODEL);
    t.push(frame(g('Hi')));
    expect(parse(t.fail())).toEqual([
      {
        error: {
          message: 'upstream stream broke off; the answer is incomplete',
          type: 'server_error',
          code: 'upstream_stream_error',
          param: null,
        },
      },
    ]);
    expect(t.fail()).toBe('');
    const u = new ChatStreamTranslator(MODEL);
    expect(parse(u.push('data: {not json\n\n'))[0].error.code).toBe('bad_upstream_response');
  });
});

describe('ChatStreamTranslator: upstream events', () => {
  /** SSE output of the translator → its frames (JSON objects, or the string [DONE]). */
  const frames = (out: string) =>
    out
      .split('\n\n')
      .filter(Boolean)
      .map((f) => f.replace(/^data: /, ''))
      .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
  const sse = (obj: unknown) => `data: ${JSON.stringify(obj)}\r\n\r\n`;

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
});
