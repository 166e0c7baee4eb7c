import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { StreamAnswer } from './forwarder.ts';

/** How a route frames an upstream stream for its client (the native pass-through, OpenAI's SSE). */
export interface StreamFraming {
  /** What goes out for one upstream chunk (may be empty). */
  push(chunk: Buffer): Buffer | string;
  /** The upstream ended: the closing bytes, if any. */
  end(): Buffer | string;
  /** The upstream broke off after bytes went out: an error in the stream's own framing. */
  fail(): Buffer | string;
  /** True once the framing has seen the end (an upstream error event): reading stops. */
  readonly over: boolean;
}

/**
 * The body of a streamed answer, shared by the native and the OpenAI-compatible routes: the
 * upstream's chunks as `framing` renders them, as they arrive. If the upstream breaks after
 * bytes went out, the client gets a final error in the stream's framing instead of a silent cut.
 *
 * The lease settles exactly once however the stream ends: the answer settles itself when the
 * upstream ends or breaks and when the request's signal fires; here, the reply's close also
 * settles it (client gone), also when the client left before the body was ever read.
 */
export function relayStream(answer: StreamAnswer, res: ServerResponse, framing: StreamFraming): Readable {
  const relay = { ended: false };
  const gone = () => {
    if (!relay.ended) answer.abort();
  };
  if (res.destroyed) gone();
  else res.once('close', gone);
  return Readable.from(frames(answer, res, framing, relay), { objectMode: false });
}

async function* frames(
  answer: StreamAnswer,
  res: ServerResponse,
  framing: StreamFraming,
  relay: { ended: boolean },
): AsyncGenerator<Buffer | string> {
  let ok = false;
  try {
    let out = framing.push(answer.first);
    if (out.length > 0) yield out;
    while (!framing.over) {
      const r = await answer.rest.next();
      if (r.done) break;
      out = framing.push(r.value);
      if (out.length > 0) yield out;
    }
    // The upstream ended, or an error event in it ended the framing: the transfer itself was
    // fine either way (an error event still counts against the key: see the forwarder).
    ok = true;
    out = framing.end();
    if (out.length > 0) yield out;
  } catch {
    // The upstream broke off (the answer settled itself), or the client went away.
    if (!res.destroyed) {
      const out = framing.fail();
      if (out.length > 0) yield out;
    }
  } finally {
    // Also when the generator is closed early (the client went away while a chunk was on its way).
    relay.ended = true;
    answer.finish(ok ? 'complete' : res.destroyed ? 'client_gone' : 'broken');
  }
}

/** The native proxy's framing: chunks pass as they came (SSE, or one JSON array). */
export function passThroughFraming(contentType: string): StreamFraming {
  const sse = contentType.includes('text/event-stream');
  return {
    push: (chunk) => chunk,
    end: () => '',
    fail: () => nativeStreamError(sse),
    over: false,
  };
}

function nativeStreamError(sse: boolean): string {
  const error = JSON.stringify({
    error: {
      code: 502,
      message: 'upstream stream broke off; the answer is incomplete',
      status: 'UNAVAILABLE',
    },
  });
  return sse ? `data: ${error}\r\n\r\n` : `,\r\n${error}]`;
}
