import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GatewayError } from '../errors/gateway-errors.ts';
import { problemFor } from './error-mapping.ts';
import { defaultTitle, googleStatusFor, HttpProblem } from './problem.ts';
import { routeOf } from './route.ts';

/**
 * The one error handler. Gateway-made errors are RFC 7807 problem+json; on the native Gemini
 * routes (route config googleErrors, or any path under /v1beta/models, /v1/models) they take
 * Google's shape so the SDKs parse them. Unknown errors become a 500 whose body says nothing
 * about the cause (the log has it). A known path asked with the wrong method is a 405 with Allow.
 */
export function installErrorHandling(app: FastifyInstance): void {
  const routes = new RouteIndex();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    routes.add(route.url, methods);
  });

  app.setErrorHandler((err: FastifyError | HttpProblem | GatewayError | Error, request, reply) => {
    // Past the deadline, whatever the aborted handler threw is the timeout's doing.
    const problem = timedOut.has(request) ? timeoutProblem() : toProblem(err);
    if (problem.status >= 500 && !isKnownError(err) && problem.status !== 504)
      request.log.error({ err }, 'unhandled error');
    else if (problem.status >= 500)
      request.log.warn({ status: problem.status, detail: problem.detail }, 'request failed');
    return sendProblem(request, reply, problem);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = routes.methodsFor(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      return sendProblem(
        request,
        reply,
        new HttpProblem(405, `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`, {
          headers: { allow: allowed.join(', ') },
        }),
        isGooglePath(path),
      );
    }
    return sendProblem(
      request,
      reply,
      new HttpProblem(404, `no route for ${request.method} ${path}`),
      isGooglePath(path),
    );
  });
}

const timedOut = new WeakSet<FastifyRequest>();

/** The request passed REQUEST_TIMEOUT: its error, whatever it is, is answered as a 504. */
export function markTimedOut(request: FastifyRequest): void {
  timedOut.add(request);
}

export function timeoutProblem(): HttpProblem {
  return new HttpProblem(504, 'the request took longer than REQUEST_TIMEOUT', {
    googleStatus: 'DEADLINE_EXCEEDED',
  });
}

/** Errors Fastify raises before a route is found (bad URL encoding, overlong parameters). */
export function frameworkErrorHandler(
  err: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const status = typeof err.statusCode === 'number' && err.statusCode < 500 ? err.statusCode : 400;
  // The onRequest hooks did not run for this request.
  reply.header('x-request-id', request.id);
  return sendProblem(request, reply, new HttpProblem(status, 'malformed request URL'), false);
}

/**
 * Errors Node's HTTP parser raises before Fastify sees a request (oversized headers, a request
 * that took too long to arrive, garbage on the socket): answered as problem+json, then closed.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const title = status === 431 ? 'Request Header Fields Too Large' : defaultTitle(status);
  const detail =
    status === 431
      ? 'request headers are larger than the server accepts'
      : status === 408
        ? 'the request did not arrive in time'
        : 'malformed HTTP request';
  const body = JSON.stringify({ type: 'about:blank', title, status, detail });
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const GOOGLE_PATH = /^\/(v1beta|v1)\/(models|openai)(\/|$)/;
export function isGooglePath(path: string | undefined): boolean {
  return GOOGLE_PATH.test(path ?? '');
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  problem: HttpProblem,
  googleShape = routeOf(request).config?.googleErrors === true,
): FastifyReply {
  reply.code(problem.status);
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  if (googleShape) {
    reply.type('application/json; charset=UTF-8');
    return reply.send({
      error: {
        code: problem.status,
        message: problem.detail,
        status: problem.googleStatus ?? googleStatusFor(problem.status),
        request_id: request.id,
      },
    });
  }
  reply.type('application/problem+json');
  return reply.send({
    type: problem.type,
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    instance: (request.url.split('?')[0] ?? '/').slice(0, 512),
    request_id: request.id,
    ...problem.extra,
  });
}

/** Whether the error is one the gateway made on purpose (its detail may be shown), not a bug. */
export function isKnownError(err: unknown): err is HttpProblem | GatewayError {
  return err instanceof HttpProblem || err instanceof GatewayError;
}

/** Maps domain errors (src/errors), Fastify's and plugins' errors to problems with the right status. */
export function toProblem(err: FastifyError | HttpProblem | GatewayError | Error): HttpProblem {
  if (err instanceof HttpProblem) return err;
  if (err instanceof GatewayError) return problemFor(err);
  const e = err as FastifyError;
  if (e.validation)
    return new HttpProblem(422, `invalid request: ${e.message}`, { title: 'Validation Failed' });
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new HttpProblem(413, 'request body is larger than the configured limit (MAX_UPLOAD_SIZE)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new HttpProblem(415, 'unsupported content type');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(400, 'request body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpProblem(400, 'request body is not valid JSON');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpProblem(400, 'Content-Length does not match the body');
    case 'FST_ERR_HANDLER_TIMEOUT':
      return timeoutProblem();
  }
  if (e instanceof SyntaxError || e.statusCode === 400) return new HttpProblem(400, 'malformed request');
  const status =
    typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
  return new HttpProblem(status, status === 500 ? 'internal error' : 'request refused');
}

/**
 * The registered route patterns, to tell "no such path" (404) from "no such method on this
 * path" (405). Catch-all routes ('*', e.g. the CORS preflight) are left out.
 */
export class RouteIndex {
  private readonly entries: Array<{ pattern: RegExp; methods: Set<string> }> = [];
  private readonly byUrl = new Map<string, Set<string>>();

  add(url: string, methods: readonly string[]): void {
    if (url === '*' || url === '/*') return;
    let set = this.byUrl.get(url);
    if (!set) {
      set = new Set();
      this.byUrl.set(url, set);
      this.entries.push({ pattern: patternOf(url), methods: set });
    }
    for (const m of methods) set.add(m.toUpperCase());
  }

  /** Methods registered for routes matching a concrete path (empty when none matches). */
  methodsFor(path: string): string[] {
    const p = path.length > 1 ? path.replace(/\/+$/, '') : path;
    const found = new Set<string>();
    for (const e of this.entries) if (e.pattern.test(p)) for (const m of e.methods) found.add(m);
    return [...found].sort();
  }
}

function patternOf(url: string): RegExp {
  const trimmed = url.length > 1 ? url.replace(/\/+$/, '') : url;
  let re = '';
  for (const part of trimmed.split(/(:[A-Za-z0-9_]+|\*)/)) {
    if (part === '*') re += '.*';
    else if (part.startsWith(':')) re += '[^/]+';
    else re += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}/?$`);
}
