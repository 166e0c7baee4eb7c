import type {} from '@fastify/compress';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ResponseCache, setCacheHeader, wantsBypass } from '../../cache/index.ts';
import { allowedFallbacks, assertModelAllowed } from '../../clients/models.ts';
import { estimateInputTokens } from '../../pool/estimate.ts';
import { FALLBACK_HEADER, fallbacksFor, MODEL_HEADER } from '../../pool/fallback.ts';
import { affinityPin } from '../../upstream/affinity.ts';
import type { UpstreamAnswer } from '../../upstream/forwarder.ts';
import { MODEL_NAME } from '../../upstream/gemini-types.ts';
import { passThroughFraming, relayStream } from '../../upstream/stream-relay.ts';
import type { AppDeps } from '../deps.ts';
import { installNativeJsonParser } from '../native-body.ts';
import { HttpProblem } from '../problem.ts';

/** Gemini methods the proxy forwards, and whether each streams. */
const METHODS: Record<string, { stream: boolean }> = {
  generateContent: { stream: false },
  streamGenerateContent: { stream: true },
  countTokens: { stream: false },
  embedContent: { stream: false },
  batchEmbedContents: { stream: false },
};
/** A native answer as the response cache keeps it. */
interface CachedAnswer {
  contentType: string;
  body: string;
}

interface JsonBody {
  raw: Buffer;
  json: unknown;
}

/**
 * The transparent Gemini proxy: same paths as Google under /v1beta and /v1, so the official
 * SDKs work by changing only their base URL and key. The client's token never goes upstream;
 * the pool key travels only in the x-goog-api-key header.
 */
export async function nativeRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  // Keep the raw bytes: the body is forwarded as sent, parsed only to estimate tokens
  // (bodies up to NATIVE_MAX_BODY_SIZE, memory bounded: src/http/native-body.ts).
  installNativeJsonParser(app);

  const config = { googleErrors: true };
  const postOptions = { config, compress: false as const, bodyLimit: deps.env.NATIVE_MAX_BODY_SIZE };
  const cache = app.responseCache;

  for (const version of ['v1beta', 'v1']) {
    app.post(`/${version}/models/*`, postOptions, async (request, reply) => {
      const target = (request.params as { '*': string })['*'];
      const colon = target.lastIndexOf(':');
      const model = colon > 0 ? target.slice(0, colon) : '';
      const method = colon > 0 ? target.slice(colon + 1) : '';
      const spec = METHODS[method];
      if (!spec || !MODEL_NAME.test(model)) {
        throw new HttpProblem(404, `method ${target} is not supported by this gateway`, {
          googleStatus: 'NOT_FOUND',
        });
      }
      // A client limited to some models: 403 for the others, before anything is sent.
      assertModelAllowed(request, model);
      const body = request.body as JsonBody | undefined;
      if (!body || typeof body.json !== 'object' || body.json === null || Array.isArray(body.json)) {
        throw new HttpProblem(400, 'request body must be a JSON object', {
          googleStatus: 'INVALID_ARGUMENT',
        });
      }
      // A request that uses a file or cache goes to a key of the project that owns it (and only
      // its client may use it: refused here otherwise, nothing sent upstream).
      const pin = await affinityPin(deps, request, body.json, { raw: body.raw });
      const search = forwardedQuery(request);
      const forward = () =>
        deps.forwarder.forward({
          method: 'POST',
          path: `/${version}/models/${model}:${method}`,
          search,
          body: body.raw,
          model,
          estimatedTokens: estimateInputTokens(body.json),
          stream: spec.stream,
          signal: request.cancellation ?? undefined,
          deadlineMs: request.deadlineMs,
          pin,
          client: request.clientName,
          fallbacks: allowedFallbacks(
            request,
            fallbacksFor(
              deps.env.MODEL_FALLBACKS,
              model,
              request.headers[FALLBACK_HEADER],
              deps.env.MODEL_FALLBACK_DEFAULT,
            ),
          ),
        });
      // Off unless CACHE_NATIVE_PROXY=true or the request asks (X-Gateway-Cache: on); never streams.
      const cacheWanted = deps.env.CACHE_NATIVE_PROXY || request.headers['x-gateway-cache'] === 'on';
      if (spec.stream || !cacheWanted || !cache.enabled) return sendAnswer(request, reply, await forward());

      const key = ResponseCache.key('native', model, { version, method, search }, [body.raw]);
      const bypass = wantsBypass(request);
      const hit = bypass ? undefined : await cache.get<CachedAnswer>(key);
      if (hit) {
        setCacheHeader(reply, 'HIT');
        return reply.code(200).header('content-type', hit.contentType).send(hit.body);
      }
      const answer = await forward();
      // A fallback's answer is not the asked model's: not cached under its key.
      if (answer.kind === 'unary' && answer.status === 200 && answer.model === model) {
        await cache.set(key, { contentType: answer.contentType, body: answer.body.toString('utf8') });
      }
      setCacheHeader(reply, bypass ? 'BYPASS' : 'MISS');
      return sendAnswer(request, reply, answer);
    });

    const list = async (request: FastifyRequest, reply: FastifyReply) => {
      const model = (request.params as { '*'?: string })['*'];
      if (model !== undefined && !MODEL_NAME.test(model)) {
        throw new HttpProblem(404, `model ${model} is not found`, { googleStatus: 'NOT_FOUND' });
      }
      const answer = await deps.forwarder.forward({
        method: 'GET',
        path: model === undefined ? `/${version}/models` : `/${version}/models/${model}`,
        search: forwardedQuery(request),
        model: '',
        estimatedTokens: 0,
        stream: false,
        signal: request.cancellation ?? undefined,
        deadlineMs: request.deadlineMs,
      });
      return sendAnswer(request, reply, answer);
    };
    app.get(`/${version}/models`, { config }, list);
    app.get(`/${version}/models/*`, { config }, list);
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

function sendAnswer(request: FastifyRequest, reply: FastifyReply, answer: UpstreamAnswer): FastifyReply {
  request.upstream = {
    keyId: answer.keyId,
    ms: answer.upstreamMs,
    attempts: answer.attempts,
    queuedMs: answer.queuedMs,
  };
  reply.code(answer.status).header('content-type', answer.contentType);
  // The model that answered (a fallback's, when the pool could not serve the one asked for).
  if (answer.model) reply.header(MODEL_HEADER, answer.model);
  if (answer.kind === 'unary') return reply.send(answer.body);
  // no-cache, and X-Accel-Buffering for nginx (and proxies that honour it): chunk by chunk.
  reply.header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
  return reply.send(relayStream(answer, reply.raw, passThroughFraming(answer.contentType)));
}
