import { describe, expect, it } from 'vitest';
import { finishChunks, geminiChunkToOpenAi, newChunkState } from '../../src/openai/stream-chunks.ts';
import type { GeminiResponse } from '../../src/openai/types.ts';
import { MODEL } from '../helpers/openai.ts';

const text = (t: string, extra: Record<string, unknown> = {}): GeminiResponse =>
  ({
    candidates: [{ content: { role: 'model', parts: [{ text: t }] }, index: 0, ...extra }],
  }) as GeminiResponse;

describe('geminiChunkToOpenAi / finishChunks', () => {
  const chunkOf = (parts: unknown[], extra: Record<string, unknown> = {}): GeminiResponse =>
    ({ candidates: [{ content: { role: 'model', parts }, index: 0, ...extra }] }) as GeminiResponse;

  it('role on the first delta, content deltas after, a finish chunk, usage from the last chunk', () => {
    const state = newChunkState(MODEL, { id: 'chatcmpl-s', created: 1, includeUsage: true });
    const usage1 = { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 };
    const usage2 = { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 };
    const a = geminiChunkToOpenAi({ ...chunkOf([{ text: 'Hel' }]), usageMetadata: usage1 }, state);
    expect(a).toEqual([
      {
        id: 'chatcmpl-s',
        object: 'chat.completion.chunk',
        created: 1,
        model: MODEL,
        choices: [
          { index: 0, delta: { role: 'assistant', content: 'Hel' }, logprobs: null, finish_reason: null },
        ],
        usage: null,
      },
    ]);
    const b = geminiChunkToOpenAi(
      {
        candidates: [{ content: { parts: [{ text: 'lo' }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: usage2,
      },
      state,
    );
    expect(b.map((c) => c.choices[0])).toEqual([
      { index: 0, delta: { content: 'lo' }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' },
    ]);
    const end = finishChunks(state);
    expect(end).toEqual([
      {
        id: 'chatcmpl-s',
        object: 'chat.completion.chunk',
        created: 1,
        model: MODEL,
        choices: [],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      },
    ]);
  });

  it('tool calls: numbered across chunks, finish_reason tool_calls', () => {
    const state = newChunkState(MODEL, { id: 'x', created: 1 });
    const a = geminiChunkToOpenAi(chunkOf([{ functionCall: { name: 'f', args: { a: 1 } } }]), state);
    expect(a[0]!.choices[0]!.delta).toMatchObject({
      role: 'assistant',
      tool_calls: [{ index: 0, type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
    });
    expect(a[0]!.choices[0]!.delta).not.toHaveProperty('content');
    expect(a[0]).not.toHaveProperty('usage');
    const b = geminiChunkToOpenAi(
      chunkOf([{ functionCall: { name: 'g', args: {} } }], { finishReason: 'STOP' }),
      state,
    );
    expect(b[0]!.choices[0]!.delta.tool_calls![0]).toMatchObject({ index: 1, function: { name: 'g' } });
    expect(b[0]!.choices[0]!.delta.tool_calls![0]!.id).not.toBe(a[0]!.choices[0]!.delta.tool_calls![0]!.id);
    expect(b[1]!.choices[0]!.finish_reason).toBe('tool_calls');
    expect(finishChunks(state)).toEqual([]);
  });

  it('a choice the upstream left open is finished with stop at the end', () => {
    const state = newChunkState(MODEL, { id: 'x', created: 1 });
    geminiChunkToOpenAi(chunkOf([{ text: 'partial' }]), state);
    expect(finishChunks(state).map((c) => c.choices[0]!.finish_reason)).toEqual(['stop']);
  });

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
