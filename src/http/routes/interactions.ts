import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { assertModelAllowed } from '../../clients/models.ts';
import { estimateInputTokens } from '../../pool/estimate.ts';
import { OPERATION_POLL_BUDGET } from '../../pool/job-budgets.ts';
import type { Pin, ResourceOwner } from '../../store/types.ts';
import { affinityPin, authorizeResource, callerOf, recordResource } from '../../upstream/affinity.ts';
import type { StreamAnswer, UpstreamAnswer } from '../../upstream/forwarder.ts';
import { MODEL_NAME } from '../../upstream/gemini-types.ts';
import { passThroughFraming, relayStream } from '../../upstream/stream-relay.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';
import { answerJson, forwardedQuery, keepRawJson, objectBody, sendUpstream } from './job-http.ts';

/**
 * Google's Interactions API through the pool (what `ai.interactions.*` sends):
 *
 * - `POST /v1beta/interactions` creates an interaction: whole, streamed (`stream: true`, SSE
 *   events with `event_id`s) or in the `background`. It spends the model's (or agent's) budget,
 *   like generateContent. The new interaction is recorded as the caller's, with the key's
 *   project, for INTERACTION_OWNERSHIP_MS (unless `store: false`: Google keeps nothing then). A
 *   create that continues a chain (`previous_interaction_id`), or uses a file or cache, goes to
 *   a key of the project that owns them (affinity.ts); another client's gets Google's 404.
 * - `GET /v1beta/interactions/{id}` (whole, or the stream again with `stream=true` and
 *   `last_event_id` to resume after an event), `POST /v1beta/interactions/{id}/cancel` (the SDK's
 *   form; `{id}:cancel` too) and `DELETE /v1beta/interactions/{id}` go to a key of the owning
 *   project, for its client only: another client, or an interaction the gateway does not know,
 *   gets Google's 404 and nothing is sent upstream. They spend the project's `operations:poll`
 *   budget (reading or stopping a job is no generation).
 */

/** How long the gateway remembers an interaction: Google stores them up to 55 days (paid tier). */
export const INTERACTION_OWNERSHIP_MS = 55 * 24 * 3600 * 1000;
/** Interaction ids are opaque (`v1_ChdX…`): letters, digits, `_` and `-`. */
const INTERACTION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$/;
/** How far into a created stream its interaction id is looked for. */
const ID_SCAN_LIMIT = 256 * 1024;

export async function interactionRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  keepRawJson(app);
  const config = { googleErrors: true };
  const bodyLimit = deps.env.NATIVE_MAX_BODY_SIZE;
  /** Pins are dropped with AFFINITY=off (a test switch); client privacy stays. */
  const pinOf = (owner: ResourceOwner): Pin | undefined =>
    deps.env.AFFINITY === 'off' ? undefined : { project: owner.project };

  for (const version of ['v1beta', 'v1']) {
    app.post(`/${version}/interactions`, { config, bodyLimit, compress: false }, async (request, reply) => {
      const body = objectBody(request);
      const json = body.json;
      const named =
        typeof json.model === 'string' ? json.model : typeof json.agent === 'string' ? json.agent : '';
      const model = named.replace(/^models\//, '');
      if (model === '') {
        throw new HttpProblem(400, 'model or agent is required', { googleStatus: 'INVALID_ARGUMENT' });
      }
      if (!MODEL_NAME.test(model)) {
        throw new HttpProblem(404, `models/${model} is not found`, { googleStatus: 'NOT_FOUND' });
      }
      assertModelAllowed(request, model);
      // A chain (previous_interaction_id), a file or a cache decides the project.
      const pin = await affinityPin(deps, request, json, { raw: body.raw });
      const stored = json.store !== false;
      const client = callerOf(request, deps).client;
      const record = (id: string, keyId: string | null) =>
        stored && keyId !== null && INTERACTION_ID.test(id)
          ? recordResource(deps, `interactions/${id}`, keyId, client, Date.now() + INTERACTION_OWNERSHIP_MS)
          : Promise.resolve();
      const answer = await deps.forwarder.forward({
        method: 'POST',
        path: `/${version}/interactions`,
        search: forwardedQuery(request),
        body: body.raw,
        model,
        estimatedTokens: estimateInputTokens(json),
        stream: json.stream === true,
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
        pin,
        client,
      });
      if (answer.kind === 'unary') {
        if (answer.status >= 200 && answer.status < 300) {
          const id = answerJson(answer)?.id;
          if (typeof id === 'string') await record(id, answer.keyId);
        }
        return sendUpstream(request, reply, answer);
      }
      // A stream names its interaction in its first event: recorded before that event goes out,
      // so the client cannot use the id before the gateway knows whose it is.
      return sendStream(request, reply, await recordingStream(answer, (id) => record(id, answer.keyId)));
    });

    /** The caller's interaction `id` (refused otherwise: nothing goes upstream) and its project's pin. */
    const owned = async (request: FastifyRequest): Promise<{ id: string; pin: Pin | undefined }> => {
      const id = (request.params as { id: string }).id;
      if (!INTERACTION_ID.test(id)) {
        throw new HttpProblem(404, 'Requested entity was not found.', { googleStatus: 'NOT_FOUND' });
      }
      const owner = await authorizeResource(deps, request, `interactions/${id}`);
      return { id, pin: pinOf(owner) };
    };
    const call = (
      request: FastifyRequest,
      method: 'GET' | 'POST' | 'DELETE',
      path: string,
      pin: Pin | undefined,
      stream = false,
    ): Promise<UpstreamAnswer> =>
      deps.forwarder.forward({
        method,
        path,
        search: forwardedQuery(request),
        model: OPERATION_POLL_BUDGET,
        estimatedTokens: 0,
        stream,
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
        pin,
      });

    app.get(`/${version}/interactions/:id`, { config, compress: false }, async (request, reply) => {
      const { id, pin } = await owned(request);
      // `stream=true` replays the events (from after `last_event_id`, which passes through).
      const stream = (request.query as Record<string, unknown>).stream === 'true';
      const answer = await call(request, 'GET', `/${version}/interactions/${id}`, pin, stream);
      return answer.kind === 'unary'
        ? sendUpstream(request, reply, answer)
        : sendStream(request, reply, answer);
    });

    const cancel = (form: '/cancel' | ':cancel') => async (request: FastifyRequest, reply: FastifyReply) => {
      const { id, pin } = await owned(request);
      const answer = await call(request, 'POST', `/${version}/interactions/${id}${form}`, pin);
      return answer.kind === 'unary'
        ? sendUpstream(request, reply, answer)
        : sendStream(request, reply, answer);
    };
    app.post(`/${version}/interactions/:id/cancel`, { config }, cancel('/cancel'));
    app.post(`/${version}/interactions/:id(^[A-Za-z0-9_-]+)::cancel`, { config }, cancel(':cancel'));

    app.delete(`/${version}/interactions/:id`, { config }, async (request, reply) => {
      const { id, pin } = await owned(request);
      const answer = await call(request, 'DELETE', `/${version}/interactions/${id}`, pin);
      if (answer.kind !== 'unary') return sendStream(request, reply, answer);
      if (answer.status >= 200 && answer.status < 300) {
        // Gone at Google: forgotten here too (a store failure only leaves the record to expire).
        await deps.store.deleteResource(`interactions/${id}`).catch(() => {});
      }
      return sendUpstream(request, reply, answer);
    });
  }
}

function sendStream(request: FastifyRequest, reply: FastifyReply, answer: StreamAnswer): FastifyReply {
  request.upstream = {
    keyId: answer.keyId,
    ms: answer.upstreamMs,
    attempts: answer.attempts,
    queuedMs: answer.queuedMs,
  };
  reply.code(answer.status).header('content-type', answer.contentType).header('cache-control', 'no-cache');
  return reply.send(relayStream(answer, reply.raw, passThroughFraming(answer.contentType)));
}

/**
 * The stream with `onId` awaited before the chunk that names its interaction goes on (its first
 * `interaction` event: `interaction.id`, or `interaction_id`). A failure to record ends the
 * stream (before its first byte: the request answers the error).
 */
export async function recordingStream(
  answer: StreamAnswer,
  onId: (id: string) => Promise<void>,
): Promise<StreamAnswer> {
  const scan = new InteractionIdScan();
  const look = async (chunk: Buffer): Promise<void> => {
    if (scan.done) return;
    const id = scan.push(chunk);
    if (id !== undefined) await onId(id);
  };
  try {
    await look(answer.first);
  } catch (err) {
    answer.finish('client_gone');
    throw err;
  }
  const rest: AsyncIterator<Buffer> = {
    next: async () => {
      const r = await answer.rest.next();
      if (!r.done) await look(r.value);
      return r;
    },
  };
  return { ...answer, rest };
}

/** Finds the interaction id in an Interactions SSE stream, event by event, across chunk boundaries. */
export class InteractionIdScan {
  done = false;
  private text = '';
  private seen = 0;

  /** The id, once the event naming it is complete; undefined before (and after: done). */
  push(chunk: Buffer): string | undefined {
    if (this.done) return undefined;
    this.seen += chunk.length;
    this.text += chunk.toString('utf8');
    for (;;) {
      const end = /\r?\n\r?\n|\r\r/.exec(this.text);
      if (end === null) break;
      const event = this.text.slice(0, end.index);
      this.text = this.text.slice(end.index + end[0].length);
      const id = idOfEvent(event);
      if (id !== undefined) {
        this.done = true;
        this.text = '';
        return id;
      }
    }
    if (this.seen > ID_SCAN_LIMIT) {
      this.done = true;
      this.text = '';
    }
    return undefined;
  }
}

function idOfEvent(event: string): string | undefined {
  let data = '';
  for (const line of event.split(/\r?\n|\r/)) {
    if (line.startsWith('data:')) data += line.slice(line[5] === ' ' ? 6 : 5);
  }
  if (data === '' || data === '[DONE]') return undefined;
  try {
    const e = JSON.parse(data) as { interaction?: { id?: unknown }; interaction_id?: unknown };
    const id = e.interaction?.id ?? e.interaction_id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
