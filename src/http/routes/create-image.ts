import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Unauthenticated } from '../../errors/gateway-errors.ts';
import type { UsageWebhook } from '../../services/image-gen/backend.ts';
import { schedulePruning } from '../../services/image-gen/media-store.ts';
import {
  type CreateImageBody,
  claimedUserId,
  parseCreateImageBody,
} from '../../services/image-gen/schema.ts';
import { createImageGenService, type ImageGenService } from '../../services/image-gen/service.ts';
import type { AppDeps } from '../deps.ts';
import { isKnownError, toProblem } from '../errors.ts';
import { mediaRoutes } from './media.ts';

/**
 * POST /api/v1/create-image: virtual try-on. Authenticated by the body's user_id/api_key
 * against the account backend (or the gateway's client tokens in embedded mode), not by the
 * gateway client token. Also registers GET /media/:file, where the results are served.
 */
export async function createImageRoutes(
  app: FastifyInstance,
  deps: AppDeps & { imageGen?: ImageGenService },
): Promise<void> {
  const service =
    deps.imageGen ??
    createImageGenService({ env: deps.env, gemini: deps.gemini, store: deps.store, logger: deps.logger });

  interface RequestState {
    userId?: string;
    catalogId?: string;
    latencyMs?: number;
    error?: string;
    internal?: string;
    webhook?: UsageWebhook;
  }
  const states = new WeakMap<FastifyRequest, RequestState>();

  // After the answer is out: the log line, then the usage webhook (in the background).
  app.addHook('onResponse', async (request, reply) => {
    const s = states.get(request);
    if (!s) return;
    const status = reply.statusCode;
    const line = {
      request_id: request.id,
      user_id: s.userId,
      catalog_id: s.catalogId,
      status,
      outcome: status < 400 ? 'success' : 'error',
      latency_ms: s.latencyMs ?? Math.round(reply.elapsedTime * 10) / 10,
      provider: service.provider.name,
      model: service.provider.model,
      backend: service.backend.mode,
      error: s.error,
      error_internal: s.internal,
    };
    if (status >= 500) deps.logger.error(line, 'create-image');
    else if (status >= 400) deps.logger.warn(line, 'create-image');
    else deps.logger.info(line, 'create-image');
    if (s.webhook) service.backend.reportUsage(s.webhook);
  });
  app.addHook('onClose', async () => {
    await service.backend.drain(5_000);
  });
  if (deps.env.MEDIA_RETENTION_HOURS > 0) {
    const stop = schedulePruning(service.media, deps.env.MEDIA_RETENTION_HOURS * 3600_000, (removed, err) => {
      if (err) deps.logger.warn({ err: String(err) }, 'media retention sweep failed');
      else if (removed > 0) deps.logger.info({ removed }, 'media retention: old images deleted');
    });
    app.addHook('onClose', async () => stop());
  }

  app.post(
    '/api/v1/create-image',
    {
      config: { clientAuth: false },
      schema: {
        summary: 'Virtual try-on: the person of user_image_url wearing the garment of catalog_image_url',
        tags: ['image generation'],
        security: [],
      },
    },
    async (request) => {
      const s: RequestState = {};
      states.set(request, s);
      try {
        // Who the request claims to be, for the log line (not trusted: not yet verified).
        s.userId = claimedUserId(request.body) ?? undefined;
        // The per-user throttle counts only verified requests (onVerified below): counted
        // before, a stranger's wrong api_key would lock the user out. Failures count per IP.
        service.failedAttempts.refuseIfLocked(request.ip);
        let body: CreateImageBody;
        try {
          body = parseCreateImageBody(request.body);
        } catch (err) {
          await service.failedAttempts.record(request.ip);
          throw err;
        }
        s.userId = body.user_id;
        s.catalogId = body.catalog_id;
        const result = await service.run(body, {
          requestId: request.id,
          onVerified: () => service.throttle(body.user_id),
        });
        s.latencyMs = result.latencyMs;
        s.webhook = result.webhook;
        if (!result.ok) {
          s.internal = result.internal;
          if (result.error instanceof Unauthenticated) await service.failedAttempts.record(request.ip);
          const problem = toProblem(result.error);
          // The failed webhook reports what the client was told.
          if (s.webhook?.error !== undefined) s.webhook = { ...s.webhook, error: problem.detail };
          throw problem;
        }
        return { status: 'success', image_url: result.imageUrl, latency_ms: result.latencyMs };
      } catch (err) {
        s.error = isKnownError(err) ? toProblem(err).detail : 'internal error';
        throw err;
      }
    },
  );

  await app.register(mediaRoutes, { ...deps, media: service.media });
}
