/** embedContent and batchEmbedContents: deterministic vectors, under the embed quotas. */
import type { ActionContext, ModelCall } from './fake-gemini-action.ts';
import { contentText, DEFAULT_EMBEDDING_DIMENSIONS, embedText, textTokens } from './fake-gemini-content.ts';
import { ERR_EMPTY_EMBED, errorBody } from './fake-gemini-errors.ts';
import { isObject } from './fake-surface.ts';

export function embedContent(ctx: ActionContext, call: ModelCall) {
  const { res, body } = call;
  if (!isObject(body.content)) return ctx.reply.sendError(res, ERR_EMPTY_EMBED);
  const text = contentText(body.content);
  if (!ctx.admit(call, textTokens(text), 'embed')) return;
  const dims =
    typeof body.outputDimensionality === 'number' ? body.outputDimensionality : DEFAULT_EMBEDDING_DIMENSIONS;
  ctx.reply.send(res, 200, JSON.stringify({ embedding: { values: embedText(text, dims) } }));
}

export function batchEmbedContents(ctx: ActionContext, call: ModelCall) {
  const { res } = call;
  const requests = call.body.requests;
  if (!Array.isArray(requests) || requests.length === 0) {
    return ctx.reply.sendError(res, {
      status: 400,
      body: errorBody(
        400,
        'INVALID_ARGUMENT',
        '* BatchEmbedContentsRequest.requests: requests is not specified\n',
      ),
    });
  }
  let tokens = 0;
  const texts: string[] = [];
  for (const r of requests) {
    const text = isObject(r) ? contentText(r.content) : '';
    texts.push(text);
    tokens += textTokens(text);
  }
  if (!ctx.admit(call, tokens, 'embed')) return;
  const embeddings = texts.map((text, i) => {
    const r = requests[i];
    const dims =
      isObject(r) && typeof r.outputDimensionality === 'number'
        ? r.outputDimensionality
        : DEFAULT_EMBEDDING_DIMENSIONS;
    return { values: embedText(text, dims) };
  });
  ctx.reply.send(res, 200, JSON.stringify({ embeddings }));
}

/** A malformed answer (FakeFailure missing_embedding): one embedding fewer than asked for. */
export function embeddingsMissingOne(body: unknown): string {
  const asked = isObject(body) && Array.isArray(body.requests) ? body.requests.length : 1;
  const embeddings = Array.from({ length: Math.max(0, asked - 1) }, () => ({
    values: embedText('', DEFAULT_EMBEDDING_DIMENSIONS),
  }));
  return JSON.stringify({ embeddings });
}
