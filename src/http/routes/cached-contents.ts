/**
 * Cached contents (context caching) through the pool, on Google's paths:
 *
 * - `POST /v1beta/cachedContents`: sent with a key of the project of the files it references
 *   (another client's file is refused, nothing sent), else with any key; the cache is recorded
 *   (`cachedContents/<id>` → project, key, client) until its `expireTime`.
 * - `GET / PATCH / DELETE /v1beta/cachedContents/{id}`: the owner client only (or an admin), with
 *   a key of the cache's project; a PATCH that moves `expireTime` moves the record's end too.
 * - `GET /v1beta/cachedContents`: the caller's caches, merged over the projects that hold them.
 *
 * generateContent with `cachedContent` is pinned to the cache's project by the native route
 * (affinity.ts). Budget: every call here spends the budget of calls for no model (`''`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { affinityPin, authorizeResource, callerOf, recordResource } from '../../upstream/affinity.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';
import { byProject, listOwned, listUpstream, page, sendAnswer } from './files.ts';

interface JsonBody {
  raw: Buffer;
  json: unknown;
}

const CACHE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const CACHE_NAME = /^cachedContents\/[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** A cache whose answer names no expireTime lives an hour (Google's default TTL). */
const DEFAULT_TTL_MS = 3600 * 1000;

export async function cachedContentsRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, {
        raw: body as Buffer,
        json: JSON.parse((body as Buffer).toString('utf8')),
      } satisfies JsonBody);
    } catch {
      done(
        new HttpProblem(400, 'Invalid JSON payload received.', { googleStatus: 'INVALID_ARGUMENT' }),
        undefined,
      );
    }
  });
  const config = { googleErrors: true };

  app.post('/v1beta/cachedContents', { config }, async (request, reply) => {
    const body = objectBody(request);
    // The cache must live in the project of the files it holds (and they must be the caller's).
    const pin = await affinityPin(deps, request, body.json, { raw: body.raw });
    const answer = await deps.forwarder.forward({
      method: 'POST',
      path: '/v1beta/cachedContents',
      search: forwardedQuery(request),
      body: body.raw,
      model: '',
      estimatedTokens: 0,
      stream: false,
      pin,
      signal: request.cancellation ?? undefined,
      deadlineMs: request.deadlineMs,
    });
    if (answer.kind === 'unary' && answer.status < 300 && answer.keyId) {
      const cache = cacheOf(answer.body);
      if (cache)
        await recordResource(
          deps,
          cache.name,
          answer.keyId,
          callerOf(request, deps).client,
          cache.expiresAtMs,
        );
    }
    return sendAnswer(request, reply, answer);
  });

  app.get('/v1beta/cachedContents', { config }, async (request, reply) => {
    const caller = callerOf(request, deps);
    const q = request.query as Record<string, unknown>;
    const mine = await listOwned(deps, 'cachedContents', caller.admin ? null : caller.client);
    const found: Record<string, unknown>[] = [];
    for (const [project, names] of byProject(mine)) {
      const failed = await listUpstream(
        deps,
        request,
        '/v1beta/cachedContents',
        'cachedContents',
        project,
        names,
        found,
      );
      if (failed) return sendAnswer(request, reply, failed);
    }
    found.sort((a, b) => String(b.createTime ?? '').localeCompare(String(a.createTime ?? '')));
    return reply
      .type('application/json; charset=UTF-8')
      .send(page(found, 'cachedContents', q.pageSize, q.pageToken, 100, 1000));
  });

  const one =
    (method: 'GET' | 'PATCH' | 'DELETE') =>
    async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
      const id = (request.params as { id: string }).id;
      if (!CACHE_ID.test(id)) throw new HttpProblem(404, 'Method not found.', { googleStatus: 'NOT_FOUND' });
      const name = `cachedContents/${id}`;
      const owner = await authorizeResource(deps, request, name);
      const body = method === 'PATCH' ? objectBody(request) : undefined;
      const answer = await deps.forwarder.forward({
        method,
        path: `/v1beta/${name}`,
        search: forwardedQuery(request),
        body: body?.raw,
        model: '',
        estimatedTokens: 0,
        stream: false,
        pin: { project: owner.project },
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
      });
      if (method === 'DELETE' && (answer.status < 300 || answer.status === 403 || answer.status === 404))
        await deps.store.deleteResource(name).catch(() => {});
      if (method === 'PATCH' && answer.kind === 'unary' && answer.status < 300) {
        const cache = cacheOf(answer.body);
        if (cache) await recordResource(deps, name, owner.keyId, owner.client, cache.expiresAtMs);
      }
      return sendAnswer(request, reply, answer);
    };
  app.get('/v1beta/cachedContents/:id', { config }, one('GET'));
  app.patch('/v1beta/cachedContents/:id', { config }, one('PATCH'));
  app.delete('/v1beta/cachedContents/:id', { config }, one('DELETE'));
}

function objectBody(request: FastifyRequest): JsonBody {
  const body = request.body as JsonBody | undefined;
  if (!body || typeof body.json !== 'object' || body.json === null || Array.isArray(body.json))
    throw new HttpProblem(400, 'request body must be a JSON object', { googleStatus: 'INVALID_ARGUMENT' });
  return body;
}

/** The cache an answer describes: its name and when it expires. */
function cacheOf(body: Buffer): { name: string; expiresAtMs: number } | null {
  try {
    const json = JSON.parse(body.toString('utf8')) as { name?: unknown; expireTime?: unknown };
    if (typeof json.name !== 'string' || !CACHE_NAME.test(json.name)) return null;
    const at = Date.parse(String(json.expireTime ?? ''));
    return { name: json.name, expiresAtMs: Number.isFinite(at) ? at : Date.now() + DEFAULT_TTL_MS };
  } catch {
    return null;
  }
}

/** The client's query string minus its token (`key`). */
function forwardedQuery(request: FastifyRequest): string {
  const q = request.url.indexOf('?');
  if (q < 0) return '';
  const params = new URLSearchParams(request.url.slice(q + 1));
  params.delete('key');
  const s = params.toString();
  return s ? `?${s}` : '';
}
