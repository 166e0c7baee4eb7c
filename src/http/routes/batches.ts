import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BATCH_MANAGE_BUDGET, batchBudget } from '../../pool/job-budgets.ts';
import type { OwnedResource, Pin, ResourceOwner } from '../../store/types.ts';
import {
  affinityPin,
  authorizeResource,
  callerOf,
  FILE_LIFETIME_MS,
  recordResource,
  resourceRefusal,
} from '../../upstream/affinity.ts';
import type { UnaryAnswer } from '../../upstream/forwarder.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';
import {
  answerJson,
  checkedId,
  checkedModel,
  forwardedQuery,
  keepRawJson,
  objectBody,
  sendUpstream,
  unary,
} from './job-http.ts';

/**
 * Google's Batch API through the pool (what `ai.batches.*` sends):
 *
 * - `POST /v1beta/models/{m}:batchGenerateContent` and `:asyncBatchEmbedContent` (inline
 *   requests, or an input file `files/…` of the caller's: the batch goes to that file's project)
 *   create a batch `batches/{id}`, recorded as the caller's, with the key's project, for
 *   BATCH_OWNERSHIP_MS or until it is deleted;
 * - `GET /v1beta/batches/{id}`, `POST /v1beta/batches/{id}:cancel`, `DELETE /v1beta/batches/{id}`
 *   are sent with a key of the batch's project, for its client only (another client, or a batch
 *   the gateway does not know, gets Google's 404; nothing goes upstream);
 * - `GET /v1beta/batches` lists the caller's batches only, merged over the projects they live in.
 *
 * Budgets (pool/job-budgets.ts): creating spends `batch:<model>` of the project, never the
 * model's interactive budget; the other calls spend `batch:manage`. A finished batch whose
 * results are a file (`responsesFile`) makes that file the batch client's, so the Files routes
 * serve its download with a key of the batch's project.
 */

/** How long the gateway remembers a batch it did not see deleted: 48 h to run, then weeks to read. */
export const BATCH_OWNERSHIP_MS = 30 * 24 * 3600 * 1000;
/** Pages of Google's batch list read per project when listing (100 batches each). */
const LIST_PAGES_PER_PROJECT = 20;
const UPSTREAM_PAGE_SIZE = 100;
/** The gateway's own page size for the merged list, when the client names none. */
const DEFAULT_PAGE_SIZE = 50;

const CREATE_METHODS = ['batchGenerateContent', 'asyncBatchEmbedContent'] as const;

export async function batchRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  keepRawJson(app);
  const config = { googleErrors: true };
  const bodyLimit = deps.env.NATIVE_MAX_BODY_SIZE;
  /** Pins are dropped with AFFINITY=off (a test switch); client privacy stays. */
  const pinOf = (owner: ResourceOwner): Pin | undefined =>
    deps.env.AFFINITY === 'off' ? undefined : { project: owner.project };

  for (const version of ['v1beta', 'v1']) {
    for (const method of CREATE_METHODS) {
      app.post(
        `/${version}/models/:model(^[^/:]+)::${method}`,
        { config, bodyLimit },
        async (request, reply) => {
          const model = checkedModel((request.params as { model: string }).model, method);
          const body = objectBody(request);
          // An input file (or a file or cache an inline request uses) decides the project.
          const pin = await affinityPin(deps, request, body.json, { raw: body.raw });
          const answer = unary(
            await deps.forwarder.forward({
              method: 'POST',
              path: `/${version}/models/${model}:${method}`,
              search: forwardedQuery(request),
              body: body.raw,
              model: batchBudget(model),
              // Google counts a batch's tokens as enqueued tokens, not tokens per minute.
              estimatedTokens: 0,
              stream: false,
              signal: request.cancellation ?? undefined,
              deadlineMs: request.deadlineMs,
              pin,
            }),
          );
          const name = answer.status === 200 ? answerJson(answer)?.name : undefined;
          if (typeof name === 'string' && name.startsWith('batches/') && answer.keyId !== null) {
            await recordResource(
              deps,
              name,
              answer.keyId,
              callerOf(request, deps).client,
              Date.now() + BATCH_OWNERSHIP_MS,
            );
          }
          return sendUpstream(request, reply, answer);
        },
      );
    }

    const named = async (request: FastifyRequest): Promise<{ name: string; owner: ResourceOwner }> => {
      const raw = (request.params as { id: string }).id;
      const id = checkedId(raw, () => resourceRefusal(`batches/${raw}`));
      const name = `batches/${id}`;
      return { name, owner: await authorizeResource(deps, request, name) };
    };
    const manage = (
      request: FastifyRequest,
      method: 'GET' | 'POST' | 'DELETE',
      path: string,
      owner: ResourceOwner,
      search = '',
    ) =>
      deps.forwarder
        .forward({
          method,
          path,
          search,
          body: method === 'POST' ? '{}' : undefined,
          model: BATCH_MANAGE_BUDGET,
          estimatedTokens: 0,
          stream: false,
          signal: request.cancellation ?? undefined,
          deadlineMs: request.deadlineMs,
          pin: pinOf(owner),
        })
        .then(unary);

    app.get(`/${version}/batches/:id`, { config }, async (request, reply) => {
      const { name, owner } = await named(request);
      const answer = await manage(request, 'GET', `/${version}/${name}`, owner, forwardedQuery(request));
      if (answer.status === 200) await recordResultsFile(deps, answer, owner);
      return sendUpstream(request, reply, answer);
    });

    app.post(`/${version}/batches/:id(^[^/:]+)::cancel`, { config }, async (request, reply) => {
      const { name, owner } = await named(request);
      return sendUpstream(request, reply, await manage(request, 'POST', `/${version}/${name}:cancel`, owner));
    });

    app.delete(`/${version}/batches/:id`, { config }, async (request, reply) => {
      const { name, owner } = await named(request);
      const answer = await manage(request, 'DELETE', `/${version}/${name}`, owner);
      // Gone at Google (or already gone): the gateway forgets it too.
      if (answer.status === 200 || answer.status === 404)
        await deps.store.deleteResource(name).catch(() => {});
      return sendUpstream(request, reply, answer);
    });

    app.get(`/${version}/batches`, { config }, (request, reply) =>
      listBatches(deps, version, request, reply, pinOf),
    );
  }
}

/**
 * The caller's batches (every client's for an admin), merged over the projects they live in:
 * each project's list is read (with its keys, on `batch:manage`) until every batch the gateway
 * knows there was seen, newest first; `pageSize` and `pageToken` page the merged list.
 */
async function listBatches(
  deps: AppDeps,
  version: string,
  request: FastifyRequest,
  reply: FastifyReply,
  pinOf: (owner: ResourceOwner) => Pin | undefined,
): Promise<FastifyReply> {
  const caller = callerOf(request, deps);
  let known: OwnedResource[];
  try {
    known = await deps.store.listResources('batches', caller.admin ? null : caller.client, Date.now());
  } catch {
    throw new HttpProblem(503, 'the gateway cannot reach its state store; retry shortly', {
      headers: { 'retry-after': '1' },
      googleStatus: 'UNAVAILABLE',
    });
  }
  const byProject = new Map<string, { owner: ResourceOwner; names: Set<string> }>();
  for (const r of known) {
    const entry = byProject.get(r.owner.project) ?? { owner: r.owner, names: new Set<string>() };
    entry.names.add(r.name);
    byProject.set(r.owner.project, entry);
  }
  const found: Array<Record<string, unknown>> = [];
  let last: UnaryAnswer | undefined;
  for (const { owner, names } of byProject.values()) {
    let pageToken: string | undefined;
    for (let page = 0; page < LIST_PAGES_PER_PROJECT && names.size > 0; page++) {
      const q = new URLSearchParams({ pageSize: String(UPSTREAM_PAGE_SIZE) });
      if (pageToken) q.set('pageToken', pageToken);
      const answer = unary(
        await deps.forwarder.forward({
          method: 'GET',
          path: `/${version}/batches`,
          search: `?${q}`,
          model: BATCH_MANAGE_BUDGET,
          estimatedTokens: 0,
          stream: false,
          signal: request.cancellation ?? undefined,
          deadlineMs: request.deadlineMs,
          pin: pinOf(owner),
        }),
      );
      last = answer;
      // A project's refusal (its keys at their limit, Google's error) is the answer: a partial
      // list would look whole.
      if (answer.status !== 200) return sendUpstream(request, reply, answer);
      const json = answerJson(answer) ?? {};
      const operations = Array.isArray(json.operations) ? json.operations : [];
      for (const op of operations) {
        const name = (op as { name?: unknown } | null)?.name;
        if (typeof name === 'string' && names.delete(name)) found.push(op as Record<string, unknown>);
      }
      pageToken =
        typeof json.nextPageToken === 'string' && json.nextPageToken ? json.nextPageToken : undefined;
      if (!pageToken) break;
    }
  }
  found.sort((a, b) => createTime(b).localeCompare(createTime(a)));
  const query = request.query as { pageSize?: string; pageToken?: string };
  const size = Math.max(1, Math.min(1000, Number(query.pageSize) || DEFAULT_PAGE_SIZE));
  const from = Math.max(0, Number(query.pageToken) || 0);
  const page = found.slice(from, from + size);
  const body: Record<string, unknown> = { operations: page };
  if (from + size < found.length) body.nextPageToken = String(from + size);
  if (last) {
    request.upstream = {
      keyId: last.keyId,
      ms: last.upstreamMs,
      attempts: last.attempts,
      queuedMs: last.queuedMs,
    };
  }
  return reply.code(200).header('content-type', 'application/json; charset=UTF-8').send(JSON.stringify(body));
}

function createTime(op: Record<string, unknown>): string {
  const t = (op.metadata as { createTime?: unknown } | undefined)?.createTime;
  return typeof t === 'string' ? t : '';
}

/**
 * A finished batch whose results are a file (`metadata.output.responsesFile`, or the same in
 * `response`): the file is recorded as the batch client's, in the batch's project.
 */
async function recordResultsFile(deps: AppDeps, answer: UnaryAnswer, owner: ResourceOwner): Promise<void> {
  const json = answerJson(answer);
  if (json?.done !== true) return;
  const files = new Set<string>();
  for (const holder of [(json.metadata as Record<string, unknown> | undefined)?.output, json.response]) {
    const file = (holder as { responsesFile?: unknown } | undefined)?.responsesFile;
    if (typeof file === 'string' && /^files\/[A-Za-z0-9_-]+$/.test(file)) files.add(file);
  }
  for (const name of files) {
    await deps.store
      .putResource({ name, owner: { ...owner }, expiresAtMs: Date.now() + FILE_LIFETIME_MS })
      .catch(() => {});
  }
}
