/**
 * Pieces the batch and long-running-operation routes share: the JSON body kept with its bytes,
 * the forwarded query, answering an upstream answer, and reading one as JSON.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { UnaryAnswer, UpstreamAnswer } from '../../upstream/forwarder.ts';
import { MODEL_NAME } from '../../upstream/gemini-types.ts';
import { HttpProblem } from '../problem.ts';

export interface JsonBody {
  raw: Buffer;
  json: unknown;
}

/** JSON bodies are forwarded as sent (their bytes), parsed only to read references and estimates. */
export function keepRawJson(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    const raw = body as Buffer;
    if (raw.length === 0) return done(null, { raw, json: {} } satisfies JsonBody);
    try {
      done(null, { raw, json: JSON.parse(raw.toString('utf8')) } satisfies JsonBody);
    } catch {
      done(
        new HttpProblem(400, 'Invalid JSON payload received.', { googleStatus: 'INVALID_ARGUMENT' }),
        undefined,
      );
    }
  });
}

/** The request's JSON object body (400 otherwise). */
export function objectBody(request: FastifyRequest): JsonBody & { json: Record<string, unknown> } {
  const body = request.body as JsonBody | undefined;
  if (!body || typeof body.json !== 'object' || body.json === null || Array.isArray(body.json)) {
    throw new HttpProblem(400, 'request body must be a JSON object', { googleStatus: 'INVALID_ARGUMENT' });
  }
  return body as JsonBody & { json: Record<string, unknown> };
}

/** The model of a path (`gemini-2.5-flash`), or Google's 404. */
export function checkedModel(model: string, method: string): string {
  if (!MODEL_NAME.test(model)) {
    throw new HttpProblem(404, `models/${model} is not found or is not supported for ${method}`, {
      googleStatus: 'NOT_FOUND',
    });
  }
  return model;
}

/** A resource id of a path (`batches/{id}`, `…/operations/{id}`), or the refusal for a name that cannot exist. */
export function checkedId(id: string, refusal: () => Error): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$/.test(id)) throw refusal();
  return id;
}

/** The client's query string minus its token (`key`). */
export function forwardedQuery(request: FastifyRequest, drop: readonly string[] = []): string {
  const q = request.url.indexOf('?');
  if (q < 0) return '';
  const params = new URLSearchParams(request.url.slice(q + 1));
  params.delete('key');
  for (const name of drop) params.delete(name);
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** The answer of a call that never streams. */
export function unary(answer: UpstreamAnswer): UnaryAnswer {
  if (answer.kind !== 'unary') {
    answer.finish('complete');
    throw new HttpProblem(502, 'the upstream answered a stream where a whole answer was expected', {
      googleStatus: 'UNAVAILABLE',
    });
  }
  return answer;
}

/** Google's answer as JSON (undefined when it is none). */
export function answerJson(answer: UnaryAnswer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(answer.body.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Sends an upstream answer (or `body` in its place) and notes the upstream call for the access log. */
export function sendUpstream(
  request: FastifyRequest,
  reply: FastifyReply,
  answer: UnaryAnswer,
  body: Buffer | string = answer.body,
): FastifyReply {
  request.upstream = {
    keyId: answer.keyId,
    ms: answer.upstreamMs,
    attempts: answer.attempts,
    queuedMs: answer.queuedMs,
  };
  return reply.code(answer.status).header('content-type', answer.contentType).send(body);
}
