import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';
import type { Logger } from 'pino';
import { decorateResponseCache } from '../cache/plugin.ts';
import { AccessLog } from '../observability/access-log.ts';
import {
  LazyRequestLogger,
  type RequestContext,
  redactUrl,
  requestContext,
} from '../observability/logger.ts';
import { Cancellation } from '../util/cancel.ts';
import type { ClientAuth } from './auth.ts';
import type { AppDeps } from './deps.ts';
import {
  clientErrorHandler,
  frameworkErrorHandler,
  installErrorHandling,
  markTimedOut,
  sendProblem,
  timeoutProblem,
} from './errors.ts';
import { lingerIfBodyPending } from './linger.ts';
import { HttpProblem } from './problem.ts';
import { installCallerGate } from './rate-limit.ts';
import { routeOf } from './route.ts';
import { registerRoutes } from './routes/index.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Tags for routes registered without a schema, so the OpenAPI document lists every public route. */
function defaultDocs(url: string): { tags: string[]; summary: string } | null {
  if (/^\/(v1beta|v1)\/models/.test(url))
    return {
      tags: ['gemini (native)'],
      summary:
        'Gemini API, proxied through the key pool (same paths and bodies as Google; errors in Google’s shape)',
    };
  if (url.startsWith('/docs')) return null;
  return { tags: ['other'], summary: url };
}

/**
 * The status recorded (access line, http_requests_total) for a request whose connection closed
 * before its answer was complete: nginx's "client closed request". Fastify's onResponse runs on
 * the response's 'finish', which never comes then.
 */
export const CLIENT_CLOSED_REQUEST = 499;

/** After the deadline, how long the handler has to end on its own (its upstream call aborted) before we answer. */
const DEADLINE_GRACE_MS = 100;

/**
 * REQUEST_TIMEOUT. request.cancellation (and request.abortSignal, the same as an AbortSignal)
 * fires at the deadline or when the client goes away; routes and services pass it on so the
 * upstream call is aborted with the request. At the
 * deadline the answer is a 504 (the handler's own error, if it ends within a short grace, is
 * rendered as that 504). A stream whose headers are out by then is left to finish: its
 * upstream has its own stall timeout. (Fastify's request.signal is not used: it fires as soon
 * as a request body has been read.)
 */
function startDeadline(
  request: FastifyRequest,
  reply: FastifyReply,
  timeoutMs: number,
  onClientGone: (request: FastifyRequest, reply: FastifyReply) => void,
): void {
  const cancellation = new Cancellation();
  request.cancellation = cancellation;
  request.deadlineMs = Date.now() + timeoutMs;
  const timer = setTimeout(() => {
    if (reply.sent || reply.raw.headersSent) return;
    markTimedOut(request);
    cancellation.abort(timeoutProblem());
    const grace = setTimeout(() => {
      if (!reply.sent && !reply.raw.headersSent) sendProblem(request, reply, timeoutProblem());
    }, DEADLINE_GRACE_MS);
    grace.unref();
  }, timeoutMs);
  timer.unref();
  reply.raw.once('close', () => {
    clearTimeout(timer);
    if (!reply.raw.writableFinished) {
      cancellation.abort(new Error('client closed the connection'));
      onClientGone(request, reply);
    }
  });
}

const HSTS = { maxAge: 31_536_000, includeSubDomains: true };

/** Pages a browser renders (Swagger UI, the admin dashboard): helmet's full set. */
const PAGE_HELMET: HelmetOptions = {
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      // Swagger UI's page needs its inline styles and scripts.
      scriptSrc: ["'self'", "'unsafe-inline'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
      imgSrc: ["'self'", 'data:'],
      frameAncestors: ["'none'"],
    },
  },
  hsts: HSTS,
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
};

/**
 * API answers (JSON, streams): the set OWASP's REST Security Cheat Sheet lists for APIs. Helmet's
 * other headers only act on HTML documents; each header costs every answer a little to write and
 * every client a little to parse.
 */
const API_HELMET: HelmetOptions = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  },
  hsts: HSTS,
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  crossOriginOpenerPolicy: false,
  crossOriginResourcePolicy: false,
  originAgentCluster: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false,
};

/** The header set helmet would write, captured once from its middleware. */
function computeSecurityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const response = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, () => {});
  return headers;
}

/** Builds the HTTP layer: middleware stack, error handling, auth, limits, and every route. */
export async function buildHttpApp(deps: AppDeps, auth: ClientAuth): Promise<FastifyInstance> {
  const { env } = deps;
  const timeoutMs = Math.max(1, Math.round(env.REQUEST_TIMEOUT * 1000));
  const checkEvery = Math.min(1000, Math.max(100, Math.floor(env.HEADERS_TIMEOUT_MS / 4)));
  let closing = false;

  const app = Fastify({
    loggerInstance: deps.logger,
    // Our own one line per request (onResponse below) replaces Fastify's two; every line
    // written through request.log carries request_id.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    childLoggerFactory(logger, bindings, opts) {
      return new LazyRequestLogger(logger as unknown as Logger, bindings, opts) as unknown as typeof logger;
    },
    bodyLimit: env.MAX_UPLOAD_SIZE,
    // Slow or half-open connections: headers must arrive within HEADERS_TIMEOUT_MS, the whole
    // request within REQUEST_READ_TIMEOUT_MS (Node answers 408 and closes the socket).
    requestTimeout: env.REQUEST_READ_TIMEOUT_MS,
    http: {
      headersTimeout: env.HEADERS_TIMEOUT_MS,
      requestTimeout: env.REQUEST_READ_TIMEOUT_MS,
      connectionsCheckingInterval: checkEvery,
    },
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    return503OnClosing: false,
    trustProxy: env.TRUSTED_PROXIES.length > 0 ? env.TRUSTED_PROXIES : false,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
    routerOptions: { ignoreTrailingSlash: true },
  }) as unknown as FastifyInstance; // pino's Logger vs Fastify's base logger type
  // Node closes a connection that sends nothing at all after HEADERS_TIMEOUT_MS (tested), but
  // at shutdown closeIdleConnections() does not see a socket that never started a request, and
  // close() would wait for that timeout: such silent sockets are closed here. A socket leaves
  // the set with its first request (onRequest below), not through a 'data' listener: one would
  // switch Node's HTTP parser from reading the socket natively to a JS callback per chunk.
  const silent = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    silent.add(socket);
    socket.once('close', () => silent.delete(socket));
  });
  app.addHook('preClose', (done) => {
    for (const socket of silent) socket.destroy();
    done();
  });
  app.decorateRequest('cancellation', null);
  // Set for every request that reaches a handler (onRequest below).
  app.decorateRequest('abortSignal', {
    getter(this: FastifyRequest) {
      return this.cancellation?.signal as AbortSignal;
    },
  });
  app.decorateRequest('deadlineMs', 0);
  app.decorateRequest('clientGone', false);
  app.decorateRequest('routeInfo', null);
  app.decorateRequest('context', null);

  // Security headers from helmet, computed once: @fastify/helmet rebuilds helmet's middleware on
  // every request, although the headers it sets never change from one request to the next.
  const apiHeaders = computeSecurityHeaders(API_HELMET);
  const pageHeaders = computeSecurityHeaders(PAGE_HELMET);
  app.addHook('onRequest', (request, reply, done) => {
    silent.delete(request.raw.socket);
    reply.headers(routeOf(request).config?.page ? pageHeaders : apiHeaders);
    reply.header('x-request-id', request.id);
    if (closing) {
      reply.header('connection', 'close');
      done(
        new HttpProblem(503, 'the gateway is shutting down; retry on another instance', {
          headers: { 'retry-after': '1' },
        }),
      );
      return;
    }
    startDeadline(request, reply, timeoutMs, recordClientGone);
    const ctx: RequestContext = { requestId: request.id, upstreamMs: 0, upstreamAttempts: 0, keyId: null };
    request.context = ctx;
    done();
  });
  // The request's context is entered once, for the handler and what it calls (services and
  // stores logging through deps.logger, the forwarder's attempt metrics). Not before: body
  // parsing runs in the socket's async context anyway, errors before the handler are logged
  // through request.log, which carries request_id itself, and the earlier hooks (auth, caller
  // limits) write no line about the request. (Entering it earlier too would cost every request a
  // second entry into the async context that nothing before the handler uses.)
  app.addHook('preValidation', (request, _reply, done) => {
    const ctx = request.context;
    if (ctx) requestContext.run(ctx, done);
    else done();
  });
  // One onSend hook for both (each hook is a step of every answer): at shutdown the answer
  // closes its connection; an answer sent before its request's body arrived (413, 401 before an
  // upload) closes it after reading and dropping the rest of the body, so the client reads the
  // answer (src/http/linger.ts).
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    lingerIfBodyPending(request, reply);
    done(null, payload);
  });
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // The access line: scalar fields only (the URL with its key= values masked), so it needs no
  // path redaction; the secret scrubber still runs on it like on every line.
  const accessLog = new AccessLog(deps.logger);
  // One record per request: at 'finish' (onResponse), or at 'close' when the client left first.
  const record = (request: FastifyRequest, reply: FastifyReply, status: number): void => {
    const ctx = request.context;
    const up =
      request.upstream ??
      (ctx && ctx.upstreamAttempts > 0
        ? { keyId: ctx.keyId, ms: ctx.upstreamMs, attempts: ctx.upstreamAttempts, queuedMs: 0 }
        : undefined);
    const route = routeOf(request).url ?? 'not_found';
    const durationMs = reply.elapsedTime;
    if (accessLog.enabled)
      accessLog.write({
        request_id: request.id,
        method: request.method,
        route,
        url: redactUrl(request.url),
        status,
        duration_ms: Math.round(durationMs * 10) / 10,
        upstream_ms: up ? Math.round(up.ms * 10) / 10 : undefined,
        queued_ms: up?.queuedMs ? Math.round(up.queuedMs) : undefined,
        attempts: up?.attempts,
        key_id: up?.keyId ?? undefined,
        client: request.clientName,
        ip: request.ip,
      });
    const m = deps.metrics;
    if (m) {
      m.request(request.method, route, status, durationMs);
      if (status === CLIENT_CLOSED_REQUEST) return;
      // Overhead only for answers sent whole: a stream's duration is the model's, not ours.
      const streamed =
        request.url.includes('streamGenerateContent') ||
        String(reply.getHeader('content-type') ?? '').includes('event-stream');
      if (up && !streamed) m.observeOverhead(route, Math.max(0, durationMs - up.ms - up.queuedMs));
    }
  };
  function recordClientGone(request: FastifyRequest, reply: FastifyReply): void {
    request.clientGone = true;
    record(request, reply, CLIENT_CLOSED_REQUEST);
  }
  app.addHook('onResponse', (request, reply, done) => {
    if (!request.clientGone) record(request, reply, reply.statusCode);
    done();
  });
  // Every route without a schema still gets a description in the OpenAPI document.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) {
      route.config = { ...(route.config ?? {}), clientAuth: false, rateLimit: false, page: true };
      return;
    }
    const docs = defaultDocs(route.url);
    if (!docs) return;
    const schema = (route.schema ?? {}) as Record<string, unknown>;
    if (!schema.tags) schema.tags = docs.tags;
    if (!schema.summary && !schema.description) schema.summary = docs.summary;
    route.schema = schema;
  });

  installErrorHandling(app);
  // Closed unless CORS_ORIGINS lists origins ("*" allows any): closed, the plugin is not even
  // registered, so no CORS header is ever written and a preflight finds no route.
  if (env.CORS_ORIGINS.length > 0)
    await app.register(cors, {
      origin: env.CORS_ORIGINS.includes('*') ? '*' : env.CORS_ORIGINS,
      credentials: env.CORS_ALLOW_CREDENTIALS,
      exposedHeaders: [
        'x-request-id',
        'retry-after',
        'x-cache',
        'ratelimit-limit',
        'ratelimit-remaining',
        'ratelimit-reset',
        // Resumable uploads (the SDK reads these; routes/files.ts).
        'x-goog-upload-url',
        'x-goog-upload-status',
        'x-goog-upload-size-received',
      ],
    });
  await app.register(compress, {
    threshold: env.COMPRESSION_THRESHOLD,
    encodings: ['br', 'gzip'],
    // JSON and text answers; never text/event-stream (SSE must reach the client event by event).
    customTypes: /^(application\/(?:problem\+)?json|text\/(?:plain|html|css))/,
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'gemini-gateway',
        version: '0.1.0',
        description:
          'A pool of Gemini API keys behind one endpoint. Gateway errors are RFC 7807 problem details; ' +
          'the native Gemini routes (/v1beta/models, /v1/models) answer errors in Google’s shape.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          googApiKey: { type: 'apiKey', in: 'header', name: 'x-goog-api-key' },
          adminToken: {
            type: 'http',
            scheme: 'bearer',
            description: 'ADMIN_TOKEN (or the X-Admin-Token header)',
          },
        },
      },
      security: [{ bearer: [] }, { googApiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  // Client authentication, per-IP limits (IP_LIMIT_SCOPE) and the client's own budget: one hook.
  installCallerGate(app, {
    auth,
    limiter: deps.rateLimiter,
    budget: deps.clientBudget,
    ipScope: env.IP_LIMIT_SCOPE,
  });
  // Before the routes: they reach the cache as app.responseCache.
  decorateResponseCache(app, deps);
  await registerRoutes(app, deps);
  return app;
}
