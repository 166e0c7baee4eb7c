import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../deps.ts';

/** Liveness (no I/O) and readiness (store reachable, usable keys). */
export async function healthRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const config = { clientAuth: false };
  app.get('/health', { config, schema: { hide: false } }, async () => ({ status: 'ok' }));

  app.get('/health/detailed', { config }, async (_request, reply) => {
    const now = Date.now();
    let storeOk = true;
    try {
      await deps.store.ping();
    } catch {
      storeOk = false;
    }
    const states = storeOk
      ? await deps.store.keyStates(now, deps.pool.calendarAt(now).day).catch(() => [])
      : [];
    const usable = states.filter((s) => s.enabled && s.circuit !== 'open' && s.restUntilMs === null).length;
    const circuits = { closed: 0, open: 0, half_open: 0 };
    for (const s of states) circuits[s.circuit] += 1;
    const ready = storeOk && usable > 0;
    reply.code(ready ? 200 : 503);
    return {
      status: ready ? 'ready' : 'not_ready',
      store: { kind: deps.store.kind, reachable: storeOk },
      keys: { configured: deps.pool.keys.length, usable, disabled: states.filter((s) => !s.enabled).length },
      circuits,
      queue_length: deps.pool.queueLength,
    };
  });
}
