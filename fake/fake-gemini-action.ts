/**
 * A call to a model's action (generateContent, countTokens, embedContent, ...) and what serving
 * one needs of the fake: its replies, the tokens it bills, and the checks before a call spends
 * (the project's limits, and the files or caches it may use).
 */
import type { ServerResponse } from 'node:http';
import type { TokenCount } from './fake-gemini-content.ts';
import { err429 } from './fake-gemini-errors.ts';
import type { LimitTracker, QuotaFamily } from './fake-gemini-limits.ts';
import type { FakeReplier } from './fake-gemini-reply.ts';
import type { FakeStatsRecorder } from './fake-gemini-stats.ts';
import type { StreamAnswer } from './fake-gemini-stream.ts';
import type { FakeSurface } from './fake-surface.ts';

/** A call whose key was admitted, to a model that serves the action, with a JSON object body. */
export interface ModelCall {
  res: ServerResponse;
  project: string;
  model: string;
  body: Record<string, unknown>;
  /** streamGenerateContent with alt=sse. */
  sse: boolean;
}

export interface ActionContext {
  reply: FakeReplier;
  stream: StreamAnswer;
  /** How many chunks a stream's text is cut in. */
  streamChunks: number;
  /** The tokens Google bills for a generate request (its prompt, and its thinking). */
  billedTokens(req: Record<string, unknown>): TokenCount;
  /** A file or cache (a surface's resource) the project may not use: answered, true. */
  refusedUse(call: ModelCall, body: Record<string, unknown>): boolean;
  /** Applies the limits; answers the 429 itself and returns false when refused. */
  admit(call: ModelCall, tokens: number, family: QuotaFamily): boolean;
}

export function actionContext(deps: {
  reply: FakeReplier;
  stream: StreamAnswer;
  streamChunks: number;
  billedTokens(req: Record<string, unknown>): TokenCount;
  recorder: FakeStatsRecorder;
  limits: LimitTracker;
  surfaces: readonly FakeSurface[];
}): ActionContext {
  const { reply, recorder, limits, surfaces } = deps;
  return {
    reply,
    stream: deps.stream,
    streamChunks: deps.streamChunks,
    billedTokens: deps.billedTokens,
    refusedUse(call, body) {
      for (const s of surfaces) {
        const refusal = s.refuseUse?.(call.project, call.model, body);
        if (!refusal) continue;
        if (refusal.permission) recorder.stats.permissionDenied++;
        reply.sendError(call.res, refusal.reply);
        return true;
      }
      return false;
    },
    admit(call, tokens, family) {
      const refusal = limits.admit(call.project, call.model, tokens, family);
      if (refusal === null) return true;
      recorder.stats.rateLimited++;
      reply.sendError(call.res, err429(refusal.violations, refusal.retryDelayMs));
      return false;
    },
  };
}
