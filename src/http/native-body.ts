import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { errorCodes, type FastifyInstance } from 'fastify';
import { HttpProblem } from './problem.ts';

/** A native request's body: the bytes as sent (forwarded as they are) and their JSON. */
export interface NativeJsonBody {
  raw: Buffer;
  /**
   * The parsed JSON, for the token estimate and the checks before sending. In a body above
   * BIG_BODY_BYTES, inline data (`data` strings over INLINE_KEEP_CHARS) is left out of it: the
   * bytes are in `raw`, and a parsed copy of 100 MB of base64 would be held for the whole request.
   */
  json: unknown;
}

export const BIG_BODY_BYTES = 1024 * 1024;
const INLINE_KEEP_CHARS = 1024;

/** Google's words for a body over its limit (it answers 400; the gateway answers 413). */
export function tooLarge(limit: number): HttpProblem {
  return new HttpProblem(413, `Request payload size exceeds the limit: ${limit} bytes.`, {
    googleStatus: 'INVALID_ARGUMENT',
  });
}

/**
 * The native proxy's JSON parser (NATIVE_MAX_BODY_SIZE, default 100 MiB as Google's inline
 * limit): the body is read into one buffer of its declared length (no list of chunks joined
 * into a second copy), refused with 413 as soon as it is known to be too large (its
 * Content-Length, or the bytes that arrived), and parsed without keeping inline data twice.
 */
export function installNativeJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', (request, payload, done) => {
    const limit = request.routeOptions.bodyLimit ?? BIG_BODY_BYTES;
    readBody(request.raw, payload, limit, (err, raw) => {
      if (err || !raw) {
        done(err ?? new Error('no body'), undefined);
        return;
      }
      try {
        done(null, { raw, json: parseNativeJson(raw) } satisfies NativeJsonBody);
      } catch {
        done(
          new HttpProblem(400, 'Invalid JSON payload received.', { googleStatus: 'INVALID_ARGUMENT' }),
          undefined,
        );
      }
    });
  });
}

export function parseNativeJson(raw: Buffer): unknown {
  const text = raw.toString('utf8');
  if (raw.length <= BIG_BODY_BYTES) return JSON.parse(text);
  return JSON.parse(text, (key, value) =>
    key === 'data' && typeof value === 'string' && value.length > INLINE_KEEP_CHARS ? '' : value,
  );
}

/**
 * Reads a request body of at most `limit` bytes into one Buffer. With a Content-Length, the
 * buffer is allocated once at that size and filled as chunks arrive; without one (chunked),
 * the chunks are joined at the end.
 */
export function readBody(
  req: IncomingMessage,
  payload: Readable,
  limit: number,
  done: (err: Error | null, body?: Buffer) => void,
): void {
  const header = req.headers['content-length'];
  const declared = header === undefined ? Number.NaN : Number(header);
  if (declared > limit) {
    done(tooLarge(limit));
    return;
  }
  const sized = Number.isInteger(declared) && declared >= 0;
  const whole = sized ? Buffer.allocUnsafe(declared) : null;
  const chunks: Buffer[] = [];
  let received = 0;
  const finish = (err: Error | null, body?: Buffer) => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    done(err, body);
  };
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (received + bytes.length > limit) {
      finish(tooLarge(limit));
      return;
    }
    if (whole) {
      if (received + bytes.length > whole.length) {
        finish(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
        return;
      }
      bytes.copy(whole, received);
    } else chunks.push(bytes);
    received += bytes.length;
  };
  const onEnd = () => {
    if (whole && received !== whole.length) finish(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
    else finish(null, whole ?? Buffer.concat(chunks, received));
  };
  const onError = (err: Error) => finish(err);
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}
