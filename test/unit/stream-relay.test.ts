import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { StreamAnswer, StreamEnd } from '../../src/upstream/forwarder.ts';
import { passThroughFraming, relayStream, type StreamFraming } from '../../src/upstream/stream-relay.ts';

interface FakeAnswer {
  answer: StreamAnswer;
  /** Every finish() call, in order (the first one settles the lease). */
  ends: StreamEnd[];
  /** Lets the pending read of chunk i go on. */
  release(): void;
}

/** A stream answer of `chunks` (the first already received); `breakAfter`: the read after that many chunks throws. */
function fakeAnswer(chunks: string[], opts: { breakAfter?: number; gated?: boolean } = {}): FakeAnswer {
  const ends: StreamEnd[] = [];
  let i = 1;
  let gate: (() => void) | null = null;
  const answer = {
    kind: 'stream',
    status: 200,
    contentType: 'text/event-stream',
    keyId: 'k1',
    attempts: 1,
    upstreamMs: 0,
    queuedMs: 0,
    first: Buffer.from(chunks[0]!),
    rest: {
      next: async (): Promise<IteratorResult<Buffer>> => {
        if (opts.gated) await new Promise<void>((r) => (gate = r));
        if (opts.breakAfter !== undefined && i >= opts.breakAfter) throw new Error('upstream broke');
        if (i >= chunks.length) return { done: true, value: undefined };
        return { done: false, value: Buffer.from(chunks[i++]!) };
      },
    },
    finish: (end: StreamEnd) => ends.push(end),
    abort: () => ends.push('client_gone'),
  } as unknown as StreamAnswer;
  return { answer, ends, release: () => gate?.() };
}

class FakeResponse extends EventEmitter {
  destroyed = false;
  /** The client goes away. */
  leave(): void {
    this.destroyed = true;
    this.emit('close');
  }
}

async function readAll(body: Readable): Promise<string> {
  let out = '';
  for await (const c of body) out += Buffer.from(c).toString();
  return out;
}

const SSE = ['data: {"a":1}\r\n\r\n', 'data: {"a":2}\r\n\r\n', 'data: {"a":3}\r\n\r\n'];

describe('relayStream', () => {
  it('passes the chunks on and ends the stream as complete', async () => {
    const { answer, ends } = fakeAnswer(SSE);
    const res = new FakeResponse();
    const body = relayStream(
      answer,
      res as unknown as ServerResponse,
      passThroughFraming(answer.contentType),
    );
    expect(await readAll(body)).toBe(SSE.join(''));
    expect(ends[0]).toBe('complete');
    // The reply's close after a normal end changes nothing (finish is idempotent in the forwarder).
    res.emit('close');
    expect(ends[0]).toBe('complete');
  });

  it('settles the stream when the client leaves before the body was ever read', () => {
    const { answer, ends } = fakeAnswer(SSE);
    const res = new FakeResponse();
    relayStream(answer, res as unknown as ServerResponse, passThroughFraming(answer.contentType));
    expect(ends).toEqual([]);
    res.leave();
    expect(ends).toEqual(['client_gone']);
  });

  it('settles the stream at once when the client had left already', () => {
    const { answer, ends } = fakeAnswer(SSE);
    const res = new FakeResponse();
    res.destroyed = true;
    relayStream(answer, res as unknown as ServerResponse, passThroughFraming(answer.contentType));
    expect(ends).toEqual(['client_gone']);
  });

  it('settles the stream when the client leaves while a chunk is awaited', async () => {
    const fake = fakeAnswer(SSE, { gated: true });
    const res = new FakeResponse();
    const body = relayStream(
      fake.answer,
      res as unknown as ServerResponse,
      passThroughFraming('text/event-stream'),
    );
    const first = await new Promise<Buffer>((r) => body.once('data', r));
    expect(first.toString()).toBe(SSE[0]);
    res.leave();
    body.destroy();
    fake.release();
    expect(fake.ends[0]).toBe('client_gone');
  });

  it('ends a broken stream with an error in its own framing (SSE and JSON array)', async () => {
    const sse = fakeAnswer(SSE, { breakAfter: 2 });
    const out = await readAll(
      relayStream(
        sse.answer,
        new FakeResponse() as unknown as ServerResponse,
        passThroughFraming('text/event-stream'),
      ),
    );
    expect(out.startsWith(SSE[0]! + SSE[1]!)).toBe(true);
    expect(out.slice((SSE[0]! + SSE[1]!).length)).toMatch(/^data: \{"error":\{"code":502,.*\}\r\n\r\n$/);
    expect(sse.ends[0]).toBe('broken');

    const array = fakeAnswer(['[{"a":1}', '\r\n,{"a":2}'], { breakAfter: 1 });
    const text = await readAll(
      relayStream(
        array.answer,
        new FakeResponse() as unknown as ServerResponse,
        passThroughFraming('application/json'),
      ),
    );
    expect(JSON.parse(text)[1].error.code).toBe(502);
  });

  it('stops reading when the framing is over (an upstream error event) and ends as complete', async () => {
    const { answer, ends } = fakeAnswer(SSE);
    const pushed: string[] = [];
    const framing: StreamFraming = {
      push: (c) => {
        pushed.push(c.toString());
        return c;
      },
      end: () => 'END',
      fail: () => 'FAIL',
      get over() {
        return pushed.length >= 2;
      },
    };
    const out = await readAll(relayStream(answer, new FakeResponse() as unknown as ServerResponse, framing));
    expect(out).toBe(`${SSE[0]}${SSE[1]}END`);
    expect(ends[0]).toBe('complete');
  });
});
