import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { allowedFallbacks, assertModelAllowed } from '../../clients/models.ts';
import { openAiToGemini } from '../../openai/chat-request.ts';
import { geminiToOpenAi } from '../../openai/chat-response.ts';
import { geminiEmbeddingsToOpenAi, openAiEmbeddingsToGemini } from '../../openai/embeddings.ts';
import { errorCodeFor, googleErrorToOpenAi, OpenAiError } from '../../openai/errors.ts';
import { geminiModelsToOpenAi, geminiModelToOpenAi } from '../../openai/models.ts';
import { normalizeModel } from '../../openai/request-schema.ts';
import { ChatStreamTranslator } from '../../openai/stream.ts';
import type { GeminiResponse } from '../../openai/types.ts';
import { estimateInputTokens } from '../../pool/estimate.ts';
import { FALLBACK_HEADER, fallbacksFor, MODEL_HEADER } from '../../pool/fallback.ts';
import type { UnaryAnswer, UpstreamAnswer, UpstreamCall } from '../../upstream/forwarder.ts';
import { relayStream, type StreamFraming } from '../../upstream/stream-relay.ts';
import type { AppDeps } from '../deps.ts';
import { isKnownError, toProblem } from '../errors.ts';
import { HttpProblem } from '../problem.ts';

/** Same base path as Google's own OpenAI-compatible endpoint. */
export const OPENAI_BASE = '/v1beta/openai';

/** Routes of this surface (below OPENAI_BASE) and their methods, for 404 vs 405. */
const ROUTES: ReadonlyArray<{ pattern: RegExp; methods: string[] }> = [
  { pattern: /^\/chat\/completions$/, methods: ['POST'] },
  { pattern: /^\/embeddings$/, methods: ['POST'] },
  { pattern: /^\/models(\/.+)?$/, methods: ['GET', 'HEAD'] },
];

/** Pages of the native model list followed at most (1000 models a page). */
const MAX_MODEL_PAGES = 10;

/**
 * OpenAI-compatible surface: Chat Completions (with streaming and function calling),
 * Embeddings and Models, translated to Gemini's native API and sent through the key pool
 * (deps.forwarder: budgets, retries, failover). Errors take OpenAI's shape
 * `{"error":{"message","type","code","param"}}` so the OpenAI SDKs raise the right class.
 */
export async function openAiRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  await app.register(async (scope) => surface(scope, deps), { prefix: OPENAI_BASE });
}

async function surface(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.setErrorHandler((err, request, reply) => {
    const e = toOpenAiError(err, request);
    if (e.status >= 500) {
      if (isKnownError(err) || err instanceof OpenAiError)
        request.log.warn({ status: e.status, detail: e.message }, 'request failed');
      else request.log.error({ err }, 'unhandled error');
    }
    return sendOpenAiError(reply, e);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split('?')[0] ?? '/').replace(/\/+$/, '');
    const sub = path.slice(OPENAI_BASE.length);
    const allowed = ROUTES.find((r) => r.pattern.test(sub))?.methods;
    if (allowed && !allowed.includes(request.method)) {
      return sendOpenAiError(
        reply,
        new OpenAiError(405, `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`, {
          code: 'method_not_allowed',
          headers: { allow: allowed.join(', ') },
        }),
      );
    }
    return sendOpenAiError(
      reply,
      new OpenAiError(404, `Unknown request URL: ${request.method} ${path}`, { code: 'unknown_url' }),
    );
  });

  const config = { googleErrors: false };
  const tags = ['openai-compatible'];

  app.post(
    '/chat/completions',
    {
      config,
      schema: {
        tags,
        summary:
          'OpenAI Chat Completions (streaming, function calling), answered by Gemini through the key pool',
      },
    },
    async (request, reply) => {
      const call = openAiToGemini(request.body);
      assertModelAllowed(request, call.model);
      const method = call.stream ? 'streamGenerateContent' : 'generateContent';
      const answer = await forward(deps, request, {
        method: 'POST',
        path: `/v1beta/models/${call.model}:${method}`,
        search: call.stream ? '?alt=sse' : '',
        body: JSON.stringify(call.request),
        model: call.model,
        estimatedTokens: estimateInputTokens(call.request),
        stream: call.stream,
        fallbacks: allowedFallbacks(
          request,
          fallbacksFor(
            deps.env.MODEL_FALLBACKS,
            call.model,
            request.headers[FALLBACK_HEADER],
            deps.env.MODEL_FALLBACK_DEFAULT,
          ),
        ),
      });
      // The model that answered (a fallback's, when the pool could not serve the one asked for).
      reply.header(MODEL_HEADER, answer.model);
      if (!call.stream) {
        const res = upstreamJson(answer);
        return reply.code(200).send(geminiToOpenAi(res as GeminiResponse, answer.model));
      }
      const translator = new ChatStreamTranslator(answer.model, { includeUsage: call.includeUsage });
      if (answer.kind === 'unary') {
        // Google's error (before any byte of the stream), or a stream answered in one piece.
        if (answer.status < 200 || answer.status >= 300)
          throw googleErrorToOpenAi(answer.status, answer.body);
        sseHeaders(reply);
        return reply.send(translator.push(answer.body) + translator.end());
      }
      sseHeaders(reply);
      return reply.send(relayStream(answer, reply.raw, chatFraming(translator)));
    },
  );

  app.post(
    '/embeddings',
    { config, schema: { tags, summary: 'OpenAI Embeddings, answered by Gemini batchEmbedContents' } },
    async (request, reply) => {
      const call = openAiEmbeddingsToGemini(request.body);
      assertModelAllowed(request, call.model);
      const estimated = estimateInputTokens(call.request);
      const answer = await forward(deps, request, {
        method: 'POST',
        path: `/v1beta/models/${call.model}:batchEmbedContents`,
        search: '',
        body: JSON.stringify(call.request),
        model: call.model,
        estimatedTokens: estimated,
        stream: false,
      });
      const res = upstreamJson(answer);
      return reply
        .code(200)
        .send(geminiEmbeddingsToOpenAi(res, call.model, call.encoding, estimated, call.inputs.length));
    },
  );

  app.get(
    '/models',
    { config, schema: { tags, summary: 'OpenAI model list (the native Gemini model list)' } },
    async (request, reply) => {
      const pages: unknown[] = [];
      let pageToken = '';
      for (let i = 0; i < MAX_MODEL_PAGES; i++) {
        const answer = await forward(deps, request, {
          method: 'GET',
          path: '/v1beta/models',
          search: `?pageSize=1000${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ''}`,
          model: '',
          estimatedTokens: 0,
          stream: false,
        });
        const page = upstreamJson(answer) as { nextPageToken?: unknown };
        pages.push(page);
        if (typeof page?.nextPageToken !== 'string' || page.nextPageToken === '') break;
        pageToken = page.nextPageToken;
      }
      return reply.code(200).send(geminiModelsToOpenAi(pages));
    },
  );

  app.get(
    '/models/*',
    { config, schema: { tags, summary: 'One model, OpenAI shape' } },
    async (request, reply) => {
      const model = normalizeModel((request.params as { '*': string })['*']);
      const answer = await forward(deps, request, {
        method: 'GET',
        path: `/v1beta/models/${model}`,
        search: '',
        model: '',
        estimatedTokens: 0,
        stream: false,
      });
      const out = geminiModelToOpenAi(upstreamJson(answer));
      if (!out)
        throw new OpenAiError(502, 'the upstream model answer is malformed', {
          code: 'bad_upstream_response',
        });
      return reply.code(200).send(out);
    },
  );
}

/** One upstream call through the key pool, bounded by the request's deadline and client. */
async function forward(
  deps: AppDeps,
  request: FastifyRequest,
  call: Omit<UpstreamCall, 'signal' | 'deadlineMs'>,
): Promise<UpstreamAnswer> {
  const timeoutMs = deps.env.REQUEST_TIMEOUT * 1000;
  const answer = await deps.forwarder.forward({
    ...call,
    client: request.clientName,
    signal: request.cancellation ?? undefined,
    deadlineMs: request.deadlineMs || Date.now() + timeoutMs,
  });
  const prev = request.upstream;
  request.upstream = {
    keyId: answer.keyId,
    ms: (prev?.ms ?? 0) + answer.upstreamMs,
    attempts: (prev?.attempts ?? 0) + answer.attempts,
    queuedMs: (prev?.queuedMs ?? 0) + answer.queuedMs,
  };
  return answer;
}

/** The upstream's JSON answer; Google's error statuses become OpenAI errors with the same status. */
function upstreamJson(answer: UpstreamAnswer): unknown {
  if (answer.kind === 'stream') {
    answer.finish('broken');
    throw new OpenAiError(502, 'the upstream answered with a stream where JSON was expected');
  }
  if (answer.status < 200 || answer.status >= 300) throw googleErrorToOpenAi(answer.status, answer.body);
  try {
    return JSON.parse((answer as UnaryAnswer).body.toString('utf8'));
  } catch {
    throw new OpenAiError(502, 'the upstream answer is not valid JSON', { code: 'bad_upstream_response' });
  }
}

function sseHeaders(reply: FastifyReply): void {
  reply
    .code(200)
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no');
}

/**
 * Upstream SSE → OpenAI SSE, translated as each upstream chunk arrives (see relayStream). A
 * break after bytes went out ends the stream with an error frame (the OpenAI SDK raises it)
 * instead of a silent cut; an upstream error event ends the translation with its error frame.
 */
function chatFraming(translator: ChatStreamTranslator): StreamFraming {
  return {
    push: (chunk) => translator.push(chunk),
    end: () => translator.end(),
    fail: () => translator.fail(),
    get over() {
      return translator.failed;
    },
  };
}

/** Any error of this surface as an OpenAI error. Past REQUEST_TIMEOUT, whatever was thrown is the timeout's doing. */
export function toOpenAiError(err: unknown, request: FastifyRequest): OpenAiError {
  const cancellation = request.cancellation;
  const reason: unknown = cancellation?.aborted ? cancellation.reason : undefined;
  const cause = reason instanceof HttpProblem && reason.status === 504 ? reason : err;
  if (cause instanceof OpenAiError) return cause;
  const problem = cause instanceof HttpProblem ? cause : toProblem(cause as Error);
  return new OpenAiError(problem.status, problem.detail, {
    code: errorCodeFor(problem.status, problem.googleStatus, problem.detail),
    headers: problem.headers,
  });
}

function sendOpenAiError(reply: FastifyReply, err: OpenAiError): FastifyReply {
  reply.code(err.status);
  for (const [name, value] of Object.entries(err.headers)) reply.header(name, value);
  reply.type('application/json; charset=utf-8');
  return reply.send(err.body());
}
