/**
 * streamGenerateContent's body as Google writes it: SSE (`data: {json}\r\n\r\n`, alt=sse) or
 * one progressively written JSON array, and the broken streams scripts ask for.
 */
import type { ServerResponse } from 'node:http';
import type { Answer, TokenCount } from './fake-gemini-content.ts';
import { MIDSTREAM_ERROR_JSON } from './fake-gemini-errors.ts';
import { type FakeReplier, JSON_TYPE } from './fake-gemini-reply.ts';
import { answerChunks, responseId, responseJson } from './fake-gemini-response.ts';

export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
export const ARRAY_STREAM_HEADERS = { 'content-type': JSON_TYPE };
/** Between the two writes of a frame cut in two: long enough for them to arrive as two chunks. */
export const SPLIT_WRITE_GAP_MS = 25;

/** How a stream goes: normally, or broken the way a FakeFailure of that kind asks. */
export type StreamFailure = 'none' | 'midstream_error' | 'midstream_break' | 'empty_stream' | 'split_usage';

export type StreamAnswer = (
  res: ServerResponse,
  sse: boolean,
  answer: Answer,
  prompt: TokenCount,
  model: string,
  failure: StreamFailure,
) => void;

/** A frame cut inside the digits of its promptTokenCount (before them, for a single digit). */
function splitInPromptCount(frame: string): string[] {
  const m = /"promptTokenCount"\s*:\s*(\d+)/.exec(frame);
  if (m === null) return [frame];
  const digitsAt = m.index + m[0].length - m[1]!.length;
  const cut = digitsAt + Math.floor(m[1]!.length / 2);
  return [frame.slice(0, cut), frame.slice(cut)];
}

/** Streams answers through `reply` (its latency first), `chunkDelayMs` between chunks. */
export function streamWriter(reply: FakeReplier, chunkDelayMs: number): StreamAnswer {
  return (res, sse, answer, prompt, model, failure) => {
    const id = responseId();
    let chunks = answerChunks(answer);
    if (failure === 'empty_stream') chunks = [];
    else if (failure !== 'none' && failure !== 'split_usage') chunks = [{ ...chunks[0]!, last: false }];
    let frames: string[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      const json = responseJson(c.parts, c.last, prompt, c.candidatesTokens, model, id);
      frames.push(sse ? `data: ${json}\r\n\r\n` : `${i === 0 ? '[' : '\r\n,'}${json}`);
    }
    // Each frame in two writes, far enough apart to arrive as two chunks.
    if (failure === 'split_usage') frames = frames.flatMap(splitInPromptCount);
    const delayMs = failure === 'split_usage' ? Math.max(chunkDelayMs, SPLIT_WRITE_GAP_MS) : chunkDelayMs;
    if (failure === 'midstream_error')
      frames.push(sse ? `data: ${MIDSTREAM_ERROR_JSON}\r\n\r\n` : `\r\n,${MIDSTREAM_ERROR_JSON}`);
    const tail = failure === 'empty_stream' || sse ? '' : '\r\n]';
    // After the last frame: end the answer, or (midstream_break) let the frames reach the
    // client, then cut the connection.
    const finish = () => {
      if (failure === 'midstream_break') reply.later(() => res.socket?.destroy(), 30);
      else res.end(tail);
    };
    reply.later(() => {
      if (res.destroyed) return;
      reply.countStatus(200);
      res.writeHead(200, sse ? SSE_HEADERS : ARRAY_STREAM_HEADERS);
      if (delayMs === 0 || frames.length === 0) {
        for (const f of frames) res.write(f);
        finish();
        return;
      }
      let i = 0;
      const next = (): void => {
        if (res.destroyed) return;
        res.write(frames[i++]!);
        if (i >= frames.length) finish();
        else reply.later(next, delayMs);
      };
      next();
    });
  };
}
