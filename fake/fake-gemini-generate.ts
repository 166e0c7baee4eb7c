/** generateContent and streamGenerateContent: the deterministic answer, whole or streamed. */
import type { ActionContext, ModelCall } from './fake-gemini-action.ts';
import { buildAnswer, IMAGE_OUTPUT_TOKENS, textTokens } from './fake-gemini-content.ts';
import { ERR_NO_CONTENTS } from './fake-gemini-errors.ts';
import { responseId, responseJson } from './fake-gemini-response.ts';

export function generateContent(ctx: ActionContext, call: ModelCall, streaming: boolean) {
  const { reply } = ctx;
  const { res, body, model } = call;
  if (!Array.isArray(body.contents) || body.contents.length === 0)
    return reply.sendError(res, ERR_NO_CONTENTS);
  if (ctx.refusedUse(call, body)) return;
  const prompt = ctx.billedTokens(body);
  if (!ctx.admit(call, prompt.total, 'generate')) return;
  const answer = buildAnswer(model, body, streaming ? ctx.streamChunks : 1);
  if (streaming) return ctx.stream(res, call.sse, answer, prompt, model, 'none');
  const text = answer.textPieces.join('');
  const parts: unknown[] = [];
  if (answer.textPieces.length > 0) parts.push({ text });
  if (answer.image !== null) parts.push({ inlineData: { mimeType: 'image/png', data: answer.image } });
  if (answer.calls !== undefined) parts.push(...answer.calls.parts);
  const candidates =
    (answer.image !== null ? IMAGE_OUTPUT_TOKENS : textTokens(text)) + (answer.calls?.tokens ?? 0);
  reply.send(res, 200, responseJson(parts, true, prompt, candidates, model, responseId()));
}
