import type { FastifyInstance } from 'fastify';
import { stateOf } from '../../observability/metrics.ts';
import type { VerifySummary } from '../../pool/verify.ts';
import { FailoverStore } from '../../store/failover.ts';
import type { KeyState } from '../../store/types.ts';
import { within } from '../../util/within.ts';
import type { AppDeps } from '../deps.ts';

export interface Readiness {
  ready: boolean;
  body: {
    status: 'ready' | 'not_ready';
    store: {
      kind: 'memory' | 'redis';
      /** Redis answers (memory: always). */
      reachable: boolean;
      latency_ms: number | null;
      /**
       * STORE_FAILURE_MODE=local only: true while Redis is unreachable and this instance serves
       * alone from its share (1/instances) of every budget. Still ready: it serves.
       */
      degraded?: boolean;
      failure_mode?: 'local';
      instances?: number;
      degraded_since?: string | null;
    };
    keys: { configured: number; usable: number; resting: number; disabled: number; circuit_open: number };
    circuits: { closed: number; open: number; half_open: number };
    queue_length: number;
    /** This instance's key verification (VERIFY_KEYS): keys by status; null when off. */
    verification: VerifySummary | null;
  };
  states: KeyState[];
}

/** What a readiness check waits for the store beyond REDIS_COMMAND_TIMEOUT_MS before calling it down. */
const STORE_CHECK_MARGIN_MS = 250;

/** Readiness: the store answers and at least one key can serve now. Shared with /internal/health. */
export async function readiness(deps: AppDeps): Promise<Readiness> {
  const now = Date.now();
  let storeOk = true;
  // Each store call answers within the Redis command timeout (redis-client.ts); this bound holds
  // whatever the store does, so readiness always answers, with the store down.
  const boundMs = (deps.env.REDIS_COMMAND_TIMEOUT_MS ?? 1000) + STORE_CHECK_MARGIN_MS;
  const started = performance.now();
  try {
    await within(deps.store.ping(), boundMs, 'the state store');
  } catch {
    storeOk = false;
  }
  let latency = storeOk ? Math.round((performance.now() - started) * 10) / 10 : null;
  let states: KeyState[] = [];
  if (storeOk) {
    try {
      states = await within(
        deps.store.keyStates(now, deps.pool.calendarAt(now).day),
        boundMs,
        'the state store',
      );
    } catch {
      storeOk = false;
      latency = null;
    }
  }
  const counts = { available: 0, resting: 0, disabled: 0, circuit_open: 0 };
  for (const s of states) counts[stateOf(s, now)] += 1;
  const circuits = { closed: 0, open: 0, half_open: 0 };
  for (const s of states) circuits[s.circuit] += 1;
  const ready = storeOk && counts.available > 0;
  return {
    ready,
    states,
    body: {
      status: ready ? 'ready' : 'not_ready',
      store: { kind: deps.store.kind, reachable: storeOk, latency_ms: latency, ...degradation(deps.store) },
      keys: {
        configured: deps.pool.keys.length,
        usable: counts.available,
        resting: counts.resting,
        disabled: counts.disabled,
        circuit_open: counts.circuit_open,
      },
      circuits,
      queue_length: deps.pool.queueLength,
      verification: deps.verifier?.summary() ?? null,
    },
  };
}

/** A FailoverStore's state (read after the checks above, which may have switched it). */
function degradation(store: AppDeps['store']): Partial<Readiness['body']['store']> {
  if (!(store instanceof FailoverStore)) return {};
  const s = store.status();
  const alone = s.mode === 'local';
  return {
    ...(alone ? { reachable: false, latency_ms: null } : {}),
    degraded: alone,
    failure_mode: 'local',
    instances: s.instances,
    degraded_since: s.degradedSinceMs === null ? null : new Date(s.degradedSinceMs).toISOString(),
  };
}

/** Liveness (no I/O) and readiness (store reachable, usable keys). Exempt from auth and rate limits. */
export async function healthRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const config = { clientAuth: false, rateLimit: false };
  app.get(
    '/health',
    {
      config,
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process answers (no I/O)',
        security: [],
        response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } } },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/health/detailed',
    {
      config,
      schema: {
        tags: ['health'],
        summary: 'Readiness: state store reachable and at least one usable key (503 otherwise)',
        description:
          'A key is usable when it is enabled, not resting after a rate limit and its circuit is not open.',
        security: [],
      },
    },
    async (_request, reply) => {
      const r = await readiness(deps);
      reply.code(r.ready ? 200 : 503);
      return r.body;
    },
  );
}
