import type { FastifyInstance, FastifyRequest } from 'fastify';
import { installTokenGuard } from '../auth.ts';
import type { AppDeps } from '../deps.ts';

function bearer(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth))
    return auth.replace(/^Bearer\s+/i, '').trim() || undefined;
  return undefined;
}

/**
 * Prometheus metrics (text exposition format). Open unless METRICS_TOKEN is set, then
 * `Authorization: Bearer <METRICS_TOKEN>` is required. Exempt from client auth and rate limits.
 */
export async function metricsRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const metrics = deps.metrics;
  if (!metrics) return;
  if (deps.env.METRICS_TOKEN) installTokenGuard(app, deps.env.METRICS_TOKEN, 'metrics', bearer);
  app.get(
    '/metrics',
    {
      config: { clientAuth: false, rateLimit: false },
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        description:
          'HTTP requests and durations by route and status, upstream attempts by key id, model and outcome, ' +
          'key states and remaining budgets, caller rate-limit refusals, cache lookups, queue wait, gateway ' +
          'overhead, Node.js process metrics. Bearer METRICS_TOKEN when configured.',
        security: deps.env.METRICS_TOKEN ? [{ bearer: [] }] : [],
      },
    },
    async (_request, reply) => {
      reply.header('content-type', metrics.contentType);
      reply.header('cache-control', 'no-store');
      return metrics.render();
    },
  );
}
