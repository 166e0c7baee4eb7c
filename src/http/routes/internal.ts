import type { FastifyInstance } from 'fastify';
import { installTokenGuard } from '../auth.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';
import { readiness } from './health.ts';

/**
 * Monitoring endpoints for operators, behind ADMIN_TOKEN like /admin (not registered without it):
 * detailed health, response cache status and invalidation, circuit breakers.
 */
export async function internalRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const token = deps.env.ADMIN_TOKEN;
  if (!token) return;
  installTokenGuard(app, token, 'admin');
  const config = { clientAuth: false };
  const base = { tags: ['internal'], security: [{ adminToken: [] }] };
  const cache = app.responseCache;

  app.get(
    '/internal/health',
    {
      config,
      schema: {
        ...base,
        summary: 'Readiness with details: store, keys, circuits, queue, reload status, limits',
      },
    },
    async (_request, reply) => {
      const r = await readiness(deps);
      const limits = deps.rateLimiter?.current;
      reply.code(r.ready ? 200 : 503);
      return {
        ...r.body,
        uptime_s: Math.round(process.uptime()),
        memory_rss_bytes: process.memoryUsage.rss(),
        reload: deps.reloader?.status ?? null,
        rate_limits: limits
          ? {
              ip_per_minute: limits.ipPerMinute,
              ip_burst_per_second: limits.ipBurst,
              client_per_minute: limits.clientPerMinute,
              per_client: Object.fromEntries(limits.perClient),
            }
          : null,
      };
    },
  );

  app.get(
    '/internal/cache',
    { config, schema: { ...base, summary: 'Response cache status: backend, hits, misses, entries, bytes' } },
    async () => cache.stats(),
  );

  app.delete(
    '/internal/cache',
    {
      config,
      schema: {
        ...base,
        summary: 'Invalidate cached answers',
        description:
          'Without `prefix` everything; with it, the entries whose key starts with it (e.g. `translate:` for one endpoint, `translate:gemini-2.5-flash:` for one model of it).',
        querystring: { type: 'object', properties: { prefix: { type: 'string', maxLength: 200 } } },
      },
    },
    async (request) => {
      const { prefix } = request.query as { prefix?: string };
      const removed = await cache.invalidate(prefix || undefined);
      request.log.info(
        { action: 'cache_invalidated', prefix: prefix ?? null, removed },
        'admin: cache invalidated',
      );
      return { removed, prefix: prefix ?? null };
    },
  );

  app.get(
    '/internal/circuits',
    {
      config,
      schema: { ...base, summary: 'Circuit breaker of every key: state, consecutive failures, last error' },
    },
    async () => {
      const now = Date.now();
      let states: Awaited<ReturnType<typeof deps.store.keyStates>>;
      try {
        states = await deps.store.keyStates(now, deps.pool.calendarAt(now).day);
      } catch {
        throw new HttpProblem(503, 'the state store is unreachable');
      }
      return {
        threshold: deps.env.CIRCUIT_FAILURE_THRESHOLD,
        cooldown_ms: deps.env.CIRCUIT_COOLDOWN_MS,
        circuits: states.map((s) => ({
          key_id: s.id,
          state: s.circuit,
          consecutive_failures: s.consecutiveFailures,
          last_error: s.lastError,
          last_error_at: s.lastErrorAtMs ? new Date(s.lastErrorAtMs).toISOString() : null,
        })),
      };
    },
  );

  app.post(
    '/internal/circuits/:id/reset',
    {
      config,
      schema: {
        ...base,
        summary: 'Close a key’s circuit (and end its rest)',
        params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      if (!deps.keys) throw new HttpProblem(503, 'key management is not available');
      await deps.keys.reset(id);
      return { reset: id };
    },
  );
}
