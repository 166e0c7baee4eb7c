import type { GenerateContentRequest, GenerateContentResponse } from './gemini-types.ts';

export interface CallContext {
  requestId: string;
  clientName?: string;
  signal?: AbortSignal;
}

/**
 * What application services use to reach Gemini: every call goes through the key pool
 * (budget reservation, retries on another key, error classification).
 * Failures are thrown as domain errors (src/errors: e.g. PoolExhausted with its retry time,
 * UpstreamFailed, or UpstreamRejected with Google's own 4xx for a request it found malformed).
 */
export interface GeminiCaller {
  generateContent(
    model: string,
    request: GenerateContentRequest,
    ctx: CallContext,
  ): Promise<GenerateContentResponse>;
}
