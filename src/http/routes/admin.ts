import type { FastifyInstance } from 'fastify';
import { type ManagedKey, maskKey } from '../../config/keys-store.ts';
import { stateOf } from '../../observability/metrics.ts';
import type { KeyState } from '../../store/types.ts';
import { installTokenGuard } from '../auth.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

/** A pool key as the admin API shows it: masked, with its state and usage. Never the key itself. */
export function keyView(
  deps: AppDeps,
  state: KeyState | undefined,
  managed: ManagedKey | undefined,
  id: string,
) {
  const config = managed?.config;
  const latency = deps.metrics?.keyLatency(id);
  return {
    id,
    api_key: config ? maskKey(config.apiKey) : null,
    /** file: API_KEYS_FILE; env: GEMINI_API_KEYS; admin: added at runtime; other_instance: known only from the shared store. */
    origin: managed?.origin ?? 'other_instance',
    project: state?.project ?? config?.project ?? id,
    models: config?.models ?? [],
    state: state ? stateOf(state) : config?.enabled === false ? 'disabled' : 'unknown',
    enabled: state?.enabled ?? config?.enabled ?? false,
    reason: state ? (state.disabledReason ?? state.restReason ?? null) : null,
    disabled_at: iso(state?.disabledAtMs),
    rest_until: iso(state?.restUntilMs),
    circuit: state?.circuit ?? null,
    consecutive_failures: state?.consecutiveFailures ?? 0,
    usage: {
      requests_this_minute: state?.requestsThisMinute ?? 0,
      requests_today: state?.requestsToday ?? 0,
      tokens_this_minute: state?.tokensThisMinute ?? 0,
    },
    limits: config
      ? {
          requests_per_minute: config.limits.requestsPerMinute,
          requests_per_day: config.limits.requestsPerDay,
          tokens_per_minute: config.limits.tokensPerMinute,
        }
      : null,
    last_error: state?.lastError ?? null,
    last_error_at: iso(state?.lastErrorAtMs),
    latency_ms: latency ? { last: Math.round(latency.lastMs), avg: Math.round(latency.avgMs) } : null,
  };
}

async function states(deps: AppDeps): Promise<KeyState[]> {
  const now = Date.now();
  try {
    return await deps.store.keyStates(now, deps.pool.calendarAt(now).day);
  } catch {
    throw new HttpProblem(503, 'the state store is unreachable');
  }
}

const keyIdParams = {
  type: 'object',
  properties: { id: { type: 'string', description: 'Key id' } },
  required: ['id'],
} as const;

const keyEntryBody = {
  type: 'object',
  description: 'A keys-file entry. `id` defaults to key_<hash of the key>.',
  properties: {
    id: { type: 'string', pattern: '^[A-Za-z0-9_.:-]+$', maxLength: 100 },
    api_key: { type: 'string', minLength: 1 },
    project: { type: 'string', description: 'Keys of one Google Cloud project share one budget.' },
    models: { type: 'array', items: { type: 'string' } },
    enabled: { type: 'boolean' },
    limits: {
      type: 'object',
      properties: {
        requests_per_minute: { type: 'integer', minimum: 1 },
        requests_per_day: { type: 'integer', minimum: 1 },
        tokens_per_minute: { type: 'integer', minimum: 1 },
      },
    },
  },
  required: ['api_key'],
} as const;

/**
 * The admin API (ADMIN_TOKEN as Bearer or X-Admin-Token; not registered without ADMIN_TOKEN).
 * Changes go to the state store (seen by every instance on the same Redis) and, for keys of
 * API_KEYS_FILE, to the file (rewritten atomically).
 */
export async function adminRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const token = deps.env.ADMIN_TOKEN;
  const keys = deps.keys;
  if (!token || !keys) return;
  installTokenGuard(app, token, 'admin');
  const config = { clientAuth: false };
  const base = { tags: ['admin'], security: [{ adminToken: [] }] };

  const view = async (id: string) => {
    const st = (await states(deps)).find((s) => s.id === id);
    return keyView(deps, st, keys.get(id), id);
  };

  app.get(
    '/admin/keys',
    {
      config,
      schema: { ...base, summary: 'List the pool keys (masked) with state, usage, last error, latency' },
    },
    async () => {
      const all = await states(deps);
      const byId = new Map(all.map((s) => [s.id, s]));
      const local = keys.list();
      const ids = [...local.map((k) => k.config.id), ...all.map((s) => s.id).filter((id) => !keys.get(id))];
      return { keys: ids.map((id) => keyView(deps, byId.get(id), keys.get(id), id)) };
    },
  );

  app.get(
    '/admin/keys/:id',
    { config, schema: { ...base, summary: 'One pool key (masked)', params: keyIdParams } },
    async (request) => {
      const { id } = request.params as { id: string };
      if (!keys.get(id) && !(await states(deps)).some((s) => s.id === id))
        throw new HttpProblem(404, `no key with id "${id}"`);
      return view(id);
    },
  );

  app.post(
    '/admin/keys',
    {
      config,
      schema: {
        ...base,
        summary: 'Add a key to the pool',
        description:
          '409 when the id or the key is in the pool already. Persisted to API_KEYS_FILE when set.',
        body: keyEntryBody,
      },
    },
    async (request, reply) => {
      const key = await keys.add(request.body);
      request.log.info({ action: 'key_added', key_id: key.config.id }, 'admin: key added');
      reply.code(201);
      return view(key.config.id);
    },
  );

  app.delete(
    '/admin/keys/:id',
    { config, schema: { ...base, summary: 'Remove a key from the pool', params: keyIdParams } },
    async (request) => {
      const { id } = request.params as { id: string };
      const key = await keys.remove(id);
      request.log.info({ action: 'key_removed', key_id: id }, 'admin: key removed');
      return { removed: id, origin: key.origin };
    },
  );

  app.post(
    '/admin/keys/:id/enable',
    {
      config,
      schema: { ...base, summary: 'Enable a key (also clears an automatic disable)', params: keyIdParams },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      await keys.setEnabled(id, true, null);
      request.log.info({ action: 'key_enabled', key_id: id }, 'admin: key enabled');
      return view(id);
    },
  );

  app.post(
    '/admin/keys/:id/disable',
    {
      config,
      schema: {
        ...base,
        summary: 'Disable a key on every instance',
        description: 'Optional JSON body {"reason": "..."} (at most 200 characters).',
        params: keyIdParams,
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const given = (request.body as { reason?: unknown } | undefined)?.reason;
      const reason = typeof given === 'string' ? given.slice(0, 200) : undefined;
      await keys.setEnabled(id, false, reason ? `disabled by admin: ${reason}` : 'disabled by admin');
      request.log.info({ action: 'key_disabled', key_id: id }, 'admin: key disabled');
      return view(id);
    },
  );

  app.post(
    '/admin/keys/:id/reset',
    {
      config,
      schema: { ...base, summary: 'End a rest and close an open circuit', params: keyIdParams },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      await keys.reset(id);
      request.log.info({ action: 'key_reset', key_id: id }, 'admin: key reset');
      return view(id);
    },
  );

  app.post(
    '/admin/reload',
    {
      config,
      schema: {
        ...base,
        summary: 'Re-read API_KEYS_FILE and CONFIG_FILE',
        description:
          'Validated in full first: an invalid file changes nothing and the answer is a 422 saying why.',
      },
    },
    async (request) => {
      const reloader = deps.reloader;
      if (!reloader) throw new HttpProblem(503, 'reload is not available');
      const outcome = await reloader.reloadAll('admin');
      request.log.info({ action: 'reload', ok: outcome.ok }, 'admin: configuration reload');
      if (!outcome.ok)
        throw new HttpProblem(422, outcome.error ?? 'invalid configuration', {
          title: 'Invalid Configuration',
        });
      return { reloaded: true, keys: outcome.keys, config: outcome.config, total_keys: keys.list().length };
    },
  );

  app.get(
    '/admin/config',
    {
      config,
      schema: { ...base, summary: 'Settings that can change at runtime, as in force, and the reload status' },
    },
    async () => {
      const s = deps.reloader?.settings;
      return {
        settings: s
          ? {
              GLOBAL_RATE_LIMIT: s.GLOBAL_RATE_LIMIT,
              BURST_RATE_LIMIT: s.BURST_RATE_LIMIT,
              CLIENT_RATE_LIMIT: s.CLIENT_RATE_LIMIT,
              CLIENT_RATE_LIMITS: Object.fromEntries(s.CLIENT_RATE_LIMITS),
              LOG_LEVEL: s.LOG_LEVEL,
            }
          : null,
        reload: deps.reloader?.status ?? null,
        keys_file: deps.env.API_KEYS_FILE ? 'set' : 'unset',
        config_file: deps.env.CONFIG_FILE ? 'set' : 'unset',
      };
    },
  );
}
