import type { GenerateContentRequest, GenerateContentResponse } from './gemini-types.ts';

export interface CallContext {
  requestId: string;
  clientName?: string;
  signal?: AbortSignal;
}

/**
 * What application services use to reach Gemini: every call goes through the key pool
 * (budget reservation, retries on another key, error classification).
 * Failures are thrown as HttpProblem (e.g. 429 pool exhausted with Retry-After, 502 upstream
 * failure, or the upstream's own 4xx for a request Google refused as malformed).
 */
export interface GeminiCaller {
  generateContent(
    model: string,
    request: GenerateContentRequest,
    ctx: CallContext,
  ): Promise<GenerateContentResponse>;
}
