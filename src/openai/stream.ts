/**
 * Upstream Gemini SSE (`streamGenerateContent?alt=sse`) → OpenAI chat.completion.chunk SSE,
 * chunk by chunk as bytes arrive. No I/O: the route feeds bytes in and writes what comes out.
 */
import { googleErrorToOpenAi, OpenAiError } from './errors.ts';
import { type ChunkState, finishChunks, geminiChunkToOpenAi, newChunkState } from './stream-chunks.ts';
import type { GeminiResponse, ResponseIds } from './types.ts';

/**
 * Incremental Server-Sent Events parser: feed it bytes in any split (an event may span chunks,
 * one chunk may hold several events; multi-byte characters may be cut) and get back the `data`
 * of each complete event. Lines end in \n, \r\n or \r; `data:` lines of one event are joined
 * with \n; comments and other fields are ignored.
 */
export class SseDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  private buffer = '';
  private data: string[] = [];

  push(bytes: Uint8Array | string): string[] {
    this.buffer += typeof bytes === 'string' ? bytes : this.decoder.decode(bytes, { stream: true });
    return this.drain(false);
  }

  /** The upstream ended: a last event without its blank line still counts. */
  end(): string[] {
    this.buffer += this.decoder.decode();
    const events = this.drain(true);
    if (this.buffer !== '') {
      this.line(this.buffer, events);
      this.buffer = '';
    }
    if (this.data.length > 0) {
      events.push(this.data.join('\n'));
      this.data = [];
    }
    return events;
  }

  private drain(final: boolean): string[] {
    const events: string[] = [];
    let start = 0;
    const buf = this.buffer;
    while (start < buf.length) {
      let i = start;
      while (i < buf.length && buf[i] !== '\n' && buf[i] !== '\r') i++;
      if (i >= buf.length) break;
      // A \r at the very end may be the first half of \r\n: wait for the next byte.
      if (buf[i] === '\r' && i === buf.length - 1 && !final) break;
      this.line(buf.slice(start, i), events);
      start = buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1;
    }
    this.buffer = buf.slice(start);
    return events;
  }

  private line(line: string, events: string[]): void {
    if (line === '') {
      if (this.data.length > 0) events.push(this.data.join('\n'));
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.data.push(value);
  }
}

/** One SSE frame as OpenAI sends it. */
export function sseFrame(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

export const DONE_FRAME = 'data: [DONE]\n\n';

/**
 * Translates one chat completion stream. push() for every upstream chunk, then end() when the
 * upstream ended (final chunks, usage, [DONE]) or fail() when it broke off. After an upstream
 * error event (or fail) the stream is over: an error frame went out, and no [DONE] follows.
 */
export class ChatStreamTranslator {
  private readonly sse = new SseDecoder();
  private readonly state: ChunkState;
  private over = false;
  /** True once an error frame was produced. */
  failed = false;

  constructor(model: string, opts: ResponseIds & { includeUsage?: boolean } = {}) {
    this.state = newChunkState(model, opts);
  }

  push(bytes: Uint8Array | string): string {
    if (this.over) return '';
    return this.events(this.sse.push(bytes));
  }

  end(): string {
    if (this.over) return '';
    let out = this.events(this.sse.end());
    if (this.over) return out;
    for (const c of finishChunks(this.state)) out += sseFrame(c);
    this.over = true;
    return out + DONE_FRAME;
  }

  /** The upstream broke off: an error frame ends the stream. */
  fail(message = 'upstream stream broke off; the answer is incomplete'): string {
    if (this.over) return '';
    return this.error(new OpenAiError(502, message, { code: 'upstream_stream_error' }));
  }

  private events(events: string[]): string {
    let out = '';
    for (const data of events) {
      if (this.over) break;
      if (data === '[DONE]') continue;
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch {
        out += this.error(
          new OpenAiError(502, 'the upstream sent an unreadable stream event', {
            code: 'bad_upstream_response',
          }),
        );
        break;
      }
      if (typeof json === 'object' && json !== null && 'error' in json) {
        const e = (json as { error: { code?: unknown } }).error;
        const status = typeof e?.code === 'number' ? e.code : 500;
        out += this.error(googleErrorToOpenAi(status, json));
        break;
      }
      for (const c of geminiChunkToOpenAi(json as GeminiResponse, this.state)) out += sseFrame(c);
    }
    return out;
  }

  private error(err: OpenAiError): string {
    this.over = true;
    this.failed = true;
    return sseFrame(err.body());
  }
}
