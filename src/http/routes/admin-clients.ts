import type { FastifyInstance, FastifyReply } from 'fastify';
import type { z } from 'zod';
import { type Client, clientView, createBodySchema, patchBodySchema } from '../../clients/client.ts';
import { ConfigError } from '../../config/env.ts';
import { installTokenGuard } from '../auth.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

const nameParams = {
  type: 'object',
  properties: { name: { type: 'string', description: 'Client name' } },
  required: ['name'],
} as const;

/** A request body checked against `schema`; 422 naming the field at fault (never a value). */
function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue?.path.join('.') || 'body';
  throw new HttpProblem(422, `${field}: ${issue?.message ?? 'invalid'}`, { title: 'Validation Failed' });
}

/** An answer that carries a token: shown once, never stored by a cache on the way. */
function withToken(reply: FastifyReply, client: Client, token: string, nowMs: number) {
  reply.header('cache-control', 'no-store');
  return { client: clientView(client, nowMs), token };
}

/**
 * The clients' admin API (ADMIN_TOKEN as Bearer or X-Admin-Token; not registered without it).
 * Admin-made clients live in the state store, so every instance on one Redis sees a change at
 * once (a deleted or rotated token is refused everywhere from the moment the call returns);
 * in embedded mode they are also written to DATA_DIR/clients.json. Clients of
 * CLIENT_API_KEYS_MAP and CLIENTS_FILE are listed but changed where they are defined (409 here).
 * A token is shown once, in the answer that made it; no answer ever holds a token's digest.
 */
export async function adminClientRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const token = deps.env.ADMIN_TOKEN;
  const clients = deps.clients;
  if (!token || !clients) return;
  installTokenGuard(app, token, 'admin');
  const config = { clientAuth: false };
  const base = { tags: ['admin'], security: [{ adminToken: [] }] };

  const fresh = async () => {
    try {
      await clients.refresh();
    } catch {
      throw new HttpProblem(503, 'the state store is unreachable');
    }
  };
  const withUsage = async (c: Client, now: number) => {
    let today: { requests: number | null; tokens: number | null } = { requests: null, tokens: null };
    try {
      if (deps.clientBudget && c.source !== 'anonymous') today = await deps.clientBudget.today(c, now);
    } catch {
      /* counters unavailable: shown as unknown */
    }
    return { ...clientView(c, now), today };
  };

  app.get(
    '/admin/clients',
    {
      config,
      schema: {
        ...base,
        summary: 'List the clients (never a token): source, state, limits, models, expiry',
        description:
          '`source`: env (CLIENT_API_KEYS_MAP), file (CLIENTS_FILE) or admin (made here). `today`: requests and ' +
          'tokens of the Pacific day, where a requests_per_day or tokens_per_day limit makes them counted.',
      },
    },
    async () => {
      await fresh();
      const now = Date.now();
      return { clients: await Promise.all(clients.list().map((c) => withUsage(c, now))) };
    },
  );

  app.get(
    '/admin/clients/:name',
    { config, schema: { ...base, summary: 'One client (never its token)', params: nameParams } },
    async (request) => {
      const { name } = request.params as { name: string };
      await fresh();
      const c = clients.get(name);
      if (!c) throw new HttpProblem(404, `no client named "${name}"`);
      return withUsage(c, Date.now());
    },
  );

  app.post(
    '/admin/clients',
    {
      config,
      schema: {
        ...base,
        summary: 'Create a client; the answer holds its token, shown this once',
        description:
          'Body: {"name", "limits"?: {"requests_per_minute"?, "requests_per_day"?, "tokens_per_day"?}, ' +
          '"models"?: ["gemini-2.5-flash", "gemini-2.5-*"], "expires_at"?: ISO 8601, "enabled"?}. 201 ' +
          '{"client", "token"}; 409 when the name is taken.',
      },
    },
    async (request, reply) => {
      const body = parseBody(createBodySchema, request.body);
      const { client, token: minted } = await clients.create(body);
      request.log.info({ action: 'client_created', client: client.name }, 'admin: client created');
      reply.code(201);
      return withToken(reply, client, minted, Date.now());
    },
  );

  app.patch(
    '/admin/clients/:name',
    {
      config,
      schema: {
        ...base,
        summary: 'Change a client made here: limits, models, expires_at, enabled (null clears)',
        params: nameParams,
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      const patch = parseBody(patchBodySchema, request.body);
      const client = await clients.update(name, patch);
      request.log.info(
        { action: 'client_updated', client: name, fields: Object.keys(patch) },
        'admin: client updated',
      );
      return clientView(client, Date.now());
    },
  );

  app.delete(
    '/admin/clients/:name',
    {
      config,
      schema: {
        ...base,
        summary: 'Delete a client made here: its token is refused at once, on every instance',
        params: nameParams,
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      await clients.remove(name);
      request.log.info({ action: 'client_deleted', client: name }, 'admin: client deleted');
      return { deleted: name };
    },
  );

  app.post(
    '/admin/clients/:name/rotate',
    {
      config,
      schema: {
        ...base,
        summary: 'A new token for a client made here (shown this once); the old one is refused at once',
        params: nameParams,
      },
    },
    async (request, reply) => {
      const { name } = request.params as { name: string };
      const { client, token: minted } = await clients.rotate(name);
      request.log.info({ action: 'client_rotated', client: name }, 'admin: client token rotated');
      return withToken(reply, client, minted, Date.now());
    },
  );

  app.post(
    '/admin/clients/reload',
    {
      config,
      schema: {
        ...base,
        summary: 'Re-read CLIENTS_FILE',
        description:
          'Validated in full first: an invalid file changes nothing and the answer is a 422 saying why.',
      },
    },
    async (request) => {
      if (!deps.env.CLIENTS_FILE) throw new HttpProblem(409, 'CLIENTS_FILE is not set');
      try {
        const r = await clients.reloadFile({ force: true });
        request.log.info({ action: 'clients_reload', total: r.total }, 'admin: clients file reloaded');
        return { reloaded: true, total: r.total };
      } catch (err) {
        if (err instanceof ConfigError)
          throw new HttpProblem(422, err.message, { title: 'Invalid Configuration' });
        throw err;
      }
    },
  );
}
