import type { FastifyInstance, FastifyRequest } from 'fastify';
import { addDays, HOURLY_RETENTION_HOURS } from '../../usage/store.ts';
import { installTokenGuard } from '../auth.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

/** Longest span one usage query may cover, in days. */
export const MAX_USAGE_SPAN_DAYS = 400;
/** Days shown when a query names no `from`. */
const DEFAULT_SPAN_DAYS = 30;

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

function validDay(value: string): boolean {
  const m = DAY.exec(value);
  if (!m) return false;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.toISOString().slice(0, 10) === value;
}

interface UsageQuery {
  from: string;
  to: string;
  client?: string;
  model?: string;
}

function text(q: Record<string, unknown>, name: string): string | undefined {
  const v = q[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '')
    throw new HttpProblem(400, `${name} must be a single non-empty value`);
  return v;
}

/** from/to (Pacific days, YYYY-MM-DD, both included; default: the last 30 days), client, model. */
function usageQuery(request: FastifyRequest, today: string): UsageQuery {
  const q = (request.query ?? {}) as Record<string, unknown>;
  const to = text(q, 'to') ?? today;
  const from = text(q, 'from') ?? addDays(to, -(DEFAULT_SPAN_DAYS - 1));
  for (const [name, value] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (!validDay(value))
      throw new HttpProblem(
        400,
        `${name} must be a calendar date as YYYY-MM-DD (got "${value.slice(0, 40)}")`,
      );
  }
  if (from > to) throw new HttpProblem(400, `from (${from}) is after to (${to})`);
  if (addDays(from, MAX_USAGE_SPAN_DAYS - 1) < to)
    throw new HttpProblem(400, `from..to spans more than ${MAX_USAGE_SPAN_DAYS} days`);
  return { from, to, client: text(q, 'client'), model: text(q, 'model') };
}

function hoursQuery(request: FastifyRequest): number {
  const raw = text((request.query ?? {}) as Record<string, unknown>, 'hours') ?? '24';
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > HOURLY_RETENTION_HOURS)
    throw new HttpProblem(400, `hours must be a whole number from 1 to ${HOURLY_RETENTION_HOURS}`);
  return n;
}

const rowProperties = {
  client: { type: 'string' },
  model: { type: 'string' },
  requests: { type: 'integer', description: 'Calls that reached the key pool (answered or failed).' },
  prompt_tokens: { type: 'integer', description: 'usageMetadata.promptTokenCount (cached tokens included).' },
  output_tokens: { type: 'integer', description: 'usageMetadata.candidatesTokenCount.' },
  cached_tokens: { type: 'integer', description: 'usageMetadata.cachedContentTokenCount.' },
  thought_tokens: { type: 'integer', description: 'usageMetadata.thoughtsTokenCount.' },
  errors: { type: 'integer', description: 'Calls answered with an error (4xx/5xx) or streams that broke.' },
  cost_usd: {
    type: ['number', 'null'],
    description: 'From the price table (GET /admin/usage/prices); null when it has no price for the model.',
  },
} as const;
const rowsResponse = (key: 'day' | 'hour', withClient = false) =>
  ({
    type: 'object',
    properties: {
      ...(withClient ? { client: { type: 'string' } } : {}),
      rows: {
        type: 'array',
        items: {
          type: 'object',
          properties: { [key]: { type: 'string' }, ...rowProperties },
        },
      },
    },
  }) as const;
const usageQuerySchema = {
  type: 'object',
  properties: {
    from: { type: 'string', description: 'First Pacific day, YYYY-MM-DD (default: 29 days before `to`).' },
    to: { type: 'string', description: 'Last Pacific day, YYYY-MM-DD (default: today).' },
    client: { type: 'string' },
    model: { type: 'string' },
  },
} as const;

/**
 * Usage and cost (src/usage): GET /admin/usage (every client; ADMIN_TOKEN), GET
 * /admin/usage/hourly, GET /admin/usage/prices, and GET /v1/usage (a client's own rows, with its
 * own token). Days are Pacific days, as Google counts daily quotas.
 */
export async function usageRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const usage = deps.usage;
  if (!usage) return;
  const today = () => usage.dayOf(Date.now());
  const read = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof HttpProblem) throw err;
      deps.logger.warn({ err: (err as Error).message }, 'usage: read failed');
      throw new HttpProblem(503, 'the usage store is unreachable; retry shortly', {
        headers: { 'retry-after': '1' },
      });
    }
  };

  app.get(
    '/v1/usage',
    {
      schema: {
        tags: ['usage'],
        summary: "The calling client's own usage and cost per day and model",
        description:
          'Authenticated with the client token (as for any other route): rows of this client only. ' +
          '`from`/`to` are Pacific days (default: the last 30 days); `model` filters.',
        querystring: usageQuerySchema,
        response: { 200: rowsResponse('day', true) },
      },
    },
    async (request) => {
      const q = usageQuery(request, today());
      const client = request.clientName;
      if (client === undefined) throw new HttpProblem(401, 'a client token is required');
      return { client, rows: await read(() => usage.daily(q.from, q.to, { client, model: q.model })) };
    },
  );

  const token = deps.env.ADMIN_TOKEN;
  if (!token) return;
  await app.register(async (admin) => {
    installTokenGuard(admin, token, 'admin');
    const config = { clientAuth: false };
    const base = { tags: ['admin'], security: [{ adminToken: [] }] };

    admin.get(
      '/admin/usage',
      {
        config,
        schema: {
          ...base,
          summary: 'Usage and cost per Pacific day, client and model',
          description:
            "Counts are what Google reported in each answer's usageMetadata (streams: the last cumulative " +
            'usage), summed per client, model and Pacific day; shared by every instance on one Redis. ' +
            '`from`/`to` default to the last 30 days; at most 400 days; `client` and `model` filter.',
          querystring: usageQuerySchema,
          response: { 200: rowsResponse('day') },
        },
      },
      async (request) => {
        const q = usageQuery(request, today());
        return { rows: await read(() => usage.daily(q.from, q.to, { client: q.client, model: q.model })) };
      },
    );

    admin.get(
      '/admin/usage/hourly',
      {
        config,
        schema: {
          ...base,
          summary: 'Usage and cost per UTC hour, client and model (the last `hours` hours, default 24)',
          querystring: {
            type: 'object',
            properties: {
              hours: { type: 'string', description: `1 to ${HOURLY_RETENTION_HOURS} (default 24).` },
              client: { type: 'string' },
              model: { type: 'string' },
            },
          },
          response: { 200: rowsResponse('hour') },
        },
      },
      async (request) => {
        const hours = hoursQuery(request);
        const q = (request.query ?? {}) as Record<string, unknown>;
        const filter = { client: text(q, 'client'), model: text(q, 'model') };
        return { rows: await read(() => usage.hourly(hours, filter)) };
      },
    );

    admin.get(
      '/admin/usage/prices',
      {
        config,
        schema: {
          ...base,
          summary: 'The price table in effect (USD per million tokens), its source and the date it was read',
        },
      },
      async () => {
        const p = usage.prices;
        return {
          source: p.source,
          page_updated: p.pageUpdated,
          read: p.read,
          currency: 'USD',
          unit: 'per 1,000,000 tokens',
          long_context_threshold: p.longThreshold,
          overridden: p.overridden,
          models: Object.fromEntries(p.models),
        };
      },
    );
  });
}
