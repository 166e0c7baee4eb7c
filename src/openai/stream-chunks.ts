/**
 * Gemini streamGenerateContent chunks → OpenAI chat.completion.chunk objects, one upstream chunk
 * at a time, with the state a stream carries from one chunk to the next. Pure, but for the clock
 * and a random id when the caller gives no time or id.
 */
import { randomUUID } from 'node:crypto';
import { callIds, finishReason, readParts, usageFrom } from './answer-parts.ts';
import type { ChatCompletionChunk, ChunkDelta, GeminiResponse, GeminiUsage, ResponseIds } from './types.ts';

/** What a stream's translation carries from one upstream chunk to the next. */
export interface ChunkState {
  id: string;
  /** Base of generated tool-call ids. */
  base: string;
  created: number;
  model: string;
  includeUsage: boolean;
  choices: Map<number, { roleSent: boolean; toolCalls: number; finished: boolean }>;
  /** Usage of the latest upstream chunk (Gemini's usage is cumulative). */
  usage: GeminiUsage | undefined;
}

export function newChunkState(
  model: string,
  opts: ResponseIds & { includeUsage?: boolean } = {},
): ChunkState {
  const base = randomUUID().replace(/-/g, '');
  return {
    id: opts.id ?? `chatcmpl-${base}`,
    base,
    created: opts.created ?? Math.floor(Date.now() / 1000),
    model,
    includeUsage: opts.includeUsage === true,
    choices: new Map(),
    usage: undefined,
  };
}

function chunk(state: ChunkState, choice: ChatCompletionChunk['choices'][number]): ChatCompletionChunk {
  const c: ChatCompletionChunk = {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [choice],
  };
  if (state.includeUsage) c.usage = null;
  return c;
}

function choiceState(state: ChunkState, index: number) {
  let s = state.choices.get(index);
  if (!s) {
    s = { roleSent: false, toolCalls: 0, finished: false };
    state.choices.set(index, s);
  }
  return s;
}

/**
 * One upstream streamGenerateContent chunk → OpenAI chunks (one per choice with new content,
 * then one per choice that finished in it). Updates `state`.
 */
export function geminiChunkToOpenAi(res: GeminiResponse, state: ChunkState): ChatCompletionChunk[] {
  if (res.usageMetadata) state.usage = res.usageMetadata;
  const out: ChatCompletionChunk[] = [];
  const finished: ChatCompletionChunk[] = [];
  const candidates = res.candidates ?? [];
  candidates.forEach((c, position) => {
    const index = c.index ?? position;
    const s = choiceState(state, index);
    if (s.finished) return;
    const { text, toolCalls } = readParts(c.content?.parts, callIds(state.base, index), s.toolCalls);
    const delta: ChunkDelta = {};
    if (!s.roleSent) {
      delta.role = 'assistant';
      s.roleSent = true;
    }
    if (text !== '' || (delta.role !== undefined && toolCalls.length === 0)) delta.content = text;
    if (toolCalls.length > 0) {
      delta.tool_calls = toolCalls.map((t, k) => ({ index: s.toolCalls + k, ...t }));
      s.toolCalls += toolCalls.length;
    }
    if (Object.keys(delta).length > 0)
      out.push(chunk(state, { index, delta, logprobs: null, finish_reason: null }));
    if (c.finishReason) {
      s.finished = true;
      finished.push(
        chunk(state, {
          index,
          delta: {},
          logprobs: null,
          finish_reason: finishReason(c.finishReason, s.toolCalls > 0),
        }),
      );
    }
  });
  if (candidates.length === 0 && res.promptFeedback?.blockReason !== undefined) {
    const s = choiceState(state, 0);
    if (!s.finished) {
      if (!s.roleSent) {
        s.roleSent = true;
        out.push(emptyOpening(state));
      }
      s.finished = true;
      finished.push(chunk(state, { index: 0, delta: {}, logprobs: null, finish_reason: 'content_filter' }));
    }
  }
  return [...out, ...finished];
}

/** The first chunk of choice 0 when the answer has no content of its own: role, empty text. */
function emptyOpening(state: ChunkState): ChatCompletionChunk {
  return chunk(state, {
    index: 0,
    delta: { role: 'assistant', content: '' },
    logprobs: null,
    finish_reason: null,
  });
}

/**
 * The chunks that end a stream: a finish chunk for any choice the upstream left open (or an
 * empty answer when nothing came), then the usage chunk when include_usage was asked for.
 */
export function finishChunks(state: ChunkState): ChatCompletionChunk[] {
  const out: ChatCompletionChunk[] = [];
  if (state.choices.size === 0) {
    out.push(emptyOpening(state));
    choiceState(state, 0);
  }
  for (const [index, s] of state.choices) {
    if (s.finished) continue;
    s.finished = true;
    out.push(
      chunk(state, {
        index,
        delta: {},
        logprobs: null,
        finish_reason: finishReason('STOP', s.toolCalls > 0),
      }),
    );
  }
  if (state.includeUsage) {
    out.push({
      id: state.id,
      object: 'chat.completion.chunk',
      created: state.created,
      model: state.model,
      choices: [],
      usage: usageFrom(state.usage),
    });
  }
  return out;
}
