import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Lingering close, as nginx does it (`lingering_close`): an answer sent before the request's
 * body has arrived (413 for a body over the limit, 401 before an upload, 503 at shutdown) is
 * followed by reading and discarding the rest of the body before the connection closes.
 *
 * Without it the connection closes right after the answer while the client is still sending:
 * the kernel answers the bytes that keep coming with a reset, and a client that has not yet
 * read the answer gets ECONNRESET / EPIPE instead ("fetch failed" from an SDK, 502 from nginx
 * in front), never the 413 and its message.
 *
 * Bounded: the discarded bytes are counted, never kept; the connection is closed once the body
 * has ended, or after LINGER_MAX_BYTES (1 GiB), LINGER_MAX_MS (30 s, nginx's lingering_time) in
 * all, or LINGER_IDLE_MS (5 s, nginx's lingering_timeout) without a byte.
 */
export const LINGER_MAX_BYTES = 1024 * 1024 * 1024;
export const LINGER_MAX_MS = 30_000;
export const LINGER_IDLE_MS = 5_000;

const ARMED = Symbol('gg.linger');

export interface LingerLimits {
  maxBytes: number;
  maxMs: number;
  idleMs: number;
}

const DEFAULTS: LingerLimits = { maxBytes: LINGER_MAX_BYTES, maxMs: LINGER_MAX_MS, idleMs: LINGER_IDLE_MS };

/**
 * For an answer about to be sent (an onSend hook): if its request's body has not all arrived,
 * the answer closes the connection, after a linger.
 */
export function lingerIfBodyPending(request: FastifyRequest, reply: FastifyReply): void {
  const req = request.raw;
  if (!req.complete && !req.destroyed && hasBody(req)) {
    reply.header('connection', 'close');
    linger(req);
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * Defers the close Node makes after an answer with `Connection: close` (socket.destroySoon,
 * called when the answer is finished) until the request's body has been read to its end or a
 * limit is reached; meanwhile the body's bytes are read and dropped.
 */
export function linger(req: IncomingMessage, limits: LingerLimits = DEFAULTS): void {
  const socket = req.socket as Socket & { [ARMED]?: boolean };
  if (!socket || socket[ARMED]) return;
  socket[ARMED] = true;
  let bytes = 0;
  let idle: NodeJS.Timeout | null = null;
  let total: NodeJS.Timeout | null = null;
  let answered = false;
  let ended = false;
  const stopTimers = () => {
    if (idle) clearTimeout(idle);
    if (total) clearTimeout(total);
    idle = total = null;
  };
  // A limit reached: the connection goes now.
  const close = () => {
    stopTimers();
    req.removeListener('data', onData);
    socket.destroy();
  };
  // The body ended: the connection goes once the answer has left (or, if the client reads
  // nothing, after the idle limit).
  const closeAfterAnswer = () => {
    stopTimers();
    req.removeListener('data', onData);
    if (socket.writable) socket.end();
    if (socket.writableFinished) {
      socket.destroy();
      return;
    }
    socket.once('finish', () => socket.destroy());
    idle = setTimeout(close, limits.idleMs);
    idle.unref();
  };
  const bump = () => {
    if (!answered) return;
    if (idle) clearTimeout(idle);
    idle = setTimeout(close, limits.idleMs);
    idle.unref();
  };
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > limits.maxBytes) close();
    else bump();
  };
  // A listener puts the body in flowing mode: its chunks are counted and dropped (and Node no
  // longer dumps it itself).
  req.on('data', onData);
  req.once('end', () => {
    ended = true;
    if (answered) closeAfterAnswer();
  });
  // Node calls destroySoon once the answer is written (Connection: close): instead, the
  // connection stays open (the client reads the answer by its length, and a client that stops
  // sending when the server half-closes, as Node's net sockets do, keeps sending) until the
  // body ends or a limit is reached.
  socket.destroySoon = function destroySoonAfterLinger(this: Socket) {
    answered = true;
    if (ended) {
      closeAfterAnswer();
      return;
    }
    total = setTimeout(close, limits.maxMs);
    total.unref();
    bump();
  };
}
