import type { FastifyInstance } from 'fastify';
import type { KeyConfig } from '../../config/keys.ts';
import { type ManagedKey, maskKey } from '../../config/keys-store.ts';
import { TIERS } from '../../config/tiers.ts';
import { stateOf } from '../../observability/metrics.ts';
import { type BudgetUse, computeCapacity, type ModelCapacity } from '../../pool/capacity.ts';
import type { BudgetLimits, BudgetState, KeyState } from '../../store/types.ts';
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
    /** The budget of every model not named in model_limits. */
    limits: config
      ? {
          requests_per_minute: config.limits.requestsPerMinute,
          requests_per_day: config.limits.requestsPerDay,
          tokens_per_minute: config.limits.tokensPerMinute,
        }
      : null,
    /** Budgets of named models, as resolved (model_limits, defaults, tier). */
    model_limits: config ? modelLimitsView(config) : null,
    last_error: state?.lastError ?? null,
    last_error_at: iso(state?.lastErrorAtMs),
    latency_ms: latency ? { last: Math.round(latency.lastMs), avg: Math.round(latency.avgMs) } : null,
  };
}

function modelLimitsView(config: KeyConfig) {
  return Object.fromEntries(
    Object.entries(config.modelLimits).map(([model, l]) => [
      model,
      {
        requests_per_minute: l.requestsPerMinute,
        requests_per_day: l.requestsPerDay,
        tokens_per_minute: l.tokensPerMinute,
      },
    ]),
  );
}

const limitsView = (l: BudgetLimits) => ({
  requests_per_minute: l.rpm,
  requests_per_day: l.rpd,
  tokens_per_minute: l.tpm,
});

const useView = (u: BudgetUse) => ({
  requests_this_minute: u.requestsThisMinute,
  requests_today: u.requestsToday,
  tokens_this_minute: u.tokensThisMinute,
});

/** One (project, model) budget as GET /admin/budgets shows it. */
export function budgetView(b: BudgetState, nowMs: number) {
  const resting = b.restUntilMs !== null && b.restUntilMs > nowMs;
  return {
    project: b.project,
    model: b.model,
    limits: limitsView(b),
    usage: useView(b),
    left: useView({
      requestsThisMinute: Math.max(0, b.rpm - b.requestsThisMinute),
      requestsToday: Math.max(0, b.rpd - b.requestsToday),
      tokensThisMinute: Math.max(0, b.tpm - b.tokensThisMinute),
    }),
    resting,
    rest_until: resting ? iso(b.restUntilMs) : null,
    rest_reason: resting ? b.restReason : null,
  };
}

/** One model's capacity as GET /admin/capacity shows it. */
export function capacityView(c: ModelCapacity) {
  return {
    model: c.model,
    total: limitsView(c.total),
    used: useView(c.used),
    left: useView(c.left),
    available: useView(c.available),
    resting: c.resting.map((r) => ({ project: r.project, until: iso(r.untilMs), reason: r.reason })),
    projects: c.projects.map((p) => ({
      project: p.project,
      keys: p.keys,
      limits: limitsView(p.limits),
      used: useView(p.used),
      left: useView(p.left),
      resting: p.resting,
      rest_until: iso(p.restUntilMs),
      rest_reason: p.restReason,
    })),
  };
}

/** Key states and (project, model) budget states, read at one instant; 503 when the store fails. */
async function budgetSnapshot(deps: AppDeps) {
  const now = Date.now();
  const day = deps.pool.calendarAt(now).day;
  try {
    const [keyStates, budgets] = await Promise.all([
      deps.store.keyStates(now, day),
      deps.store.budgetStates(now, day),
    ]);
    return { now, day, keyStates, budgets };
  } catch {
    throw new HttpProblem(503, 'the state store is unreachable');
  }
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

const limitsSchema = {
  type: 'object',
  properties: {
    requests_per_minute: { type: 'integer' },
    requests_per_day: { type: 'integer' },
    tokens_per_minute: { type: 'integer' },
  },
  required: ['requests_per_minute', 'requests_per_day', 'tokens_per_minute'],
} as const;

const useSchema = {
  type: 'object',
  properties: {
    requests_this_minute: { type: 'integer' },
    requests_today: { type: 'integer', description: 'In the current Pacific day (`day`).' },
    tokens_this_minute: { type: 'integer', description: 'Input tokens in the last 60 seconds.' },
  },
  required: ['requests_this_minute', 'requests_today', 'tokens_this_minute'],
} as const;

const nullableString = { type: 'string', nullable: true } as const;

const capacityResponse = {
  type: 'object',
  properties: {
    at: { type: 'string', format: 'date-time' },
    day: { type: 'string', description: 'The Pacific calendar day `requests_today` counts (YYYY-MM-DD).' },
    models: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          model: { type: 'string' },
          total: {
            ...limitsSchema,
            description: 'Sum of the limits of the projects that can serve the model.',
          },
          used: { ...useSchema, description: "Those projects' use." },
          left: { ...useSchema, description: 'Sum of max(0, limit − used) per project, rests or not.' },
          available: { ...useSchema, description: '`left` of the projects not resting on the model now.' },
          resting: {
            type: 'array',
            items: {
              type: 'object',
              properties: { project: { type: 'string' }, until: nullableString, reason: nullableString },
            },
          },
          projects: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                project: { type: 'string' },
                keys: { type: 'integer', description: 'Keys of the project that can serve the model now.' },
                limits: limitsSchema,
                used: useSchema,
                left: useSchema,
                resting: { type: 'boolean' },
                rest_until: nullableString,
                rest_reason: nullableString,
              },
            },
          },
        },
      },
    },
  },
} as const;

const budgetsResponse = {
  type: 'object',
  properties: {
    at: { type: 'string', format: 'date-time' },
    day: { type: 'string', description: 'The Pacific calendar day `requests_today` counts (YYYY-MM-DD).' },
    budgets: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          project: { type: 'string' },
          model: {
            type: 'string',
            description: "Normalized model name; '' = requests for no model (model listing).",
          },
          limits: limitsSchema,
          usage: useSchema,
          left: { ...useSchema, description: 'max(0, limit − usage), rest or not.' },
          resting: { type: 'boolean' },
          rest_until: nullableString,
          rest_reason: nullableString,
        },
      },
    },
  },
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
      description: 'The budget of every model not named in model_limits.',
      properties: {
        requests_per_minute: { type: 'integer', minimum: 1 },
        requests_per_day: { type: 'integer', minimum: 1 },
        tokens_per_minute: { type: 'integer', minimum: 1 },
      },
    },
    model_limits: {
      type: 'object',
      description:
        "Budgets of named models ({model: limits}); the project's first key's are the ones counted.",
      additionalProperties: {
        type: 'object',
        properties: {
          requests_per_minute: { type: 'integer', minimum: 1 },
          requests_per_day: { type: 'integer', minimum: 1 },
          tokens_per_minute: { type: 'integer', minimum: 1 },
        },
      },
    },
    tier: {
      type: 'string',
      enum: [...TIERS],
      description: "Fills per-model limits from Google's published table for this usage tier.",
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

  app.get(
    '/admin/capacity',
    {
      config,
      schema: {
        ...base,
        summary: "The pool's capacity per model: total, used, left, and each project's budget, use and rest",
        description:
          'Google counts quota per (project, model). Per model: `total` sums the limits of every project with ' +
          'at least one key that can serve the model (enabled, not disabled, `models` allowing it), each project ' +
          "once, with its first key's limits (configuration order); `used` is those projects' use this minute and " +
          'today (Pacific day); `left` sums max(0, limit − used); `available` is `left` without the projects ' +
          'resting on the model now. Models: every model named in a `model_limits` (or the tier table) and every ' +
          "model used. Counts this instance's configured keys.",
        response: { 200: capacityResponse },
      },
    },
    async () => {
      const snap = await budgetSnapshot(deps);
      const capacity = computeCapacity({
        configs: deps.pool.keys,
        keyStates: snap.keyStates,
        budgets: snap.budgets,
        nowMs: snap.now,
      });
      return { at: iso(snap.now), day: snap.day, models: capacity.map(capacityView) };
    },
  );

  app.get(
    '/admin/budgets',
    {
      config,
      schema: {
        ...base,
        summary: 'Every (project, model) budget: limits, use this minute and today, what is left, rest',
        description:
          "Every budget configured (a model named in a key's `model_limits` or tier) or used, as the state " +
          'store counts it (shared by every instance on one Redis). Projects in configuration order, then models ' +
          'by name.',
        response: { 200: budgetsResponse },
      },
    },
    async () => {
      const snap = await budgetSnapshot(deps);
      const order = new Map<string, number>();
      for (const k of deps.pool.keys) if (!order.has(k.project)) order.set(k.project, order.size);
      const rank = (p: string) => order.get(p) ?? order.size;
      const budgets = [...snap.budgets].sort(
        (a, b) =>
          rank(a.project) - rank(b.project) ||
          (a.project < b.project ? -1 : a.project > b.project ? 1 : 0) ||
          (a.model < b.model ? -1 : a.model > b.model ? 1 : 0),
      );
      return { at: iso(snap.now), day: snap.day, budgets: budgets.map((b) => budgetView(b, snap.now)) };
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
