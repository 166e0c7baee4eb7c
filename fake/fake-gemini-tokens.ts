/** The tokens the fake Gemini bills for a request (usageMetadata, limits), and countTokens. */
import type { ActionContext, ModelCall } from './fake-gemini-action.ts';
import { countRequestTokens, type TokenCount } from './fake-gemini-content.ts';
import { isObject } from './fake-surface.ts';

/**
 * Thinking tokens the fake reports (thoughtsTokenCount, every chunk of a stream alike): a request
 * whose generationConfig.thinkingConfig.thinkingBudget is above 0 "thinks" 7 + prompt % 29 tokens,
 * at most the budget. Others report none (as Google omits the field).
 */
function thinkingTokens(req: Record<string, unknown>, promptTokens: number): number {
  const cfg = (req.generationConfig ?? req.generation_config) as Record<string, unknown> | undefined;
  const thinking = (cfg?.thinkingConfig ?? cfg?.thinking_config) as Record<string, unknown> | undefined;
  const budget = thinking?.thinkingBudget ?? thinking?.thinking_budget;
  if (typeof budget !== 'number' || budget <= 0) return 0;
  return Math.min(Math.floor(budget), 7 + (promptTokens % 29));
}

/**
 * Counts a request's tokens as Google bills them: its text tokens are the fake's count times
 * `textTokenRatio` (Google's tokenizer is not the gateway's estimate), plus its images and thinking.
 */
export function tokenBiller(textTokenRatio: number): (req: Record<string, unknown>) => TokenCount {
  return (req) => {
    const count = countRequestTokens(req);
    const thoughts = thinkingTokens(req, count.total);
    if (textTokenRatio === 1) return thoughts > 0 ? { ...count, thoughts } : count;
    const text = Math.ceil(count.text * textTokenRatio);
    return { total: text + count.images, text, images: count.images, ...(thoughts > 0 ? { thoughts } : {}) };
  };
}

/** countTokens: of the body, or of the generateContentRequest it wraps; per-modality details. */
export function countTokens(ctx: ActionContext, call: ModelCall): void {
  const inner = isObject(call.body.generateContentRequest) ? call.body.generateContentRequest : call.body;
  if (ctx.refusedUse(call, inner)) return;
  const t = ctx.billedTokens(inner);
  const details: unknown[] = [{ modality: 'TEXT', tokenCount: t.text }];
  if (t.images > 0) details.push({ modality: 'IMAGE', tokenCount: t.images });
  ctx.reply.send(call.res, 200, JSON.stringify({ totalTokens: t.total, promptTokensDetails: details }));
}
