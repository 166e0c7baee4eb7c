import { randomUUID } from 'node:crypto';
import compress from '@fastify/compress';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { redactUrl } from '../observability/logger.ts';
import { type ClientAuth, installClientAuth } from './auth.ts';
import type { AppDeps } from './deps.ts';
import { installErrorHandling } from './errors.ts';
import { registerRoutes } from './routes/index.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the HTTP layer: middleware stack, error handling, auth, and every route. */
export async function buildHttpApp(deps: AppDeps, auth: ClientAuth): Promise<FastifyInstance> {
  const { env } = deps;
  const app = Fastify({
    loggerInstance: deps.logger,
    // Our own one-line-per-request log (onResponse below) replaces Fastify's two lines.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: env.MAX_UPLOAD_SIZE,
    requestTimeout: env.REQUEST_TIMEOUT * 1000 + 5_000,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    trustProxy: env.TRUSTED_PROXIES.length > 0 ? env.TRUSTED_PROXIES : false,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true },
  }) as unknown as FastifyInstance; // pino's Logger vs Fastify's base logger type

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    const up = request.upstream;
    request.log.info(
      {
        request_id: request.id,
        method: request.method,
        route: request.routeOptions.url ?? 'not_found',
        url: redactUrl(request.url),
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 10) / 10,
        upstream_ms: up ? Math.round(up.ms * 10) / 10 : undefined,
        attempts: up?.attempts,
        key_id: up?.keyId ?? undefined,
        client: request.clientName,
      },
      'request',
    );
  });

  installErrorHandling(app);
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        // Swagger UI's page needs its inline styles and scripts.
        scriptSrc: ["'self'", "'unsafe-inline'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
      },
    },
    hsts: { maxAge: 31_536_000, includeSubDomains: true },
  });
  await app.register(cors, {
    origin: env.CORS_ORIGINS.length > 0 ? env.CORS_ORIGINS : false,
    credentials: env.CORS_ALLOW_CREDENTIALS,
    exposedHeaders: [
      'x-request-id',
      'retry-after',
      'x-cache',
      'ratelimit-limit',
      'ratelimit-remaining',
      'ratelimit-reset',
    ],
  });
  await app.register(compress, {
    threshold: env.COMPRESSION_THRESHOLD,
    encodings: ['br', 'gzip'],
    customTypes: /^(application\/(?:problem\+)?json|text\/(?:plain|html|css))/,
  });
  await app.register(multipart, { limits: { fileSize: env.MAX_UPLOAD_SIZE, files: 1, fields: 20 } });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'gemini-gateway',
        version: '0.1.0',
        description: 'A pool of Gemini API keys behind one endpoint.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          googApiKey: { type: 'apiKey', in: 'header', name: 'x-goog-api-key' },
        },
      },
      security: [{ bearer: [] }, { googApiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  installClientAuth(app, auth);
  await registerRoutes(app, deps);
  return app;
}
