import { UpstreamFailed, UpstreamRejected } from '../errors/gateway-errors.ts';
import { googleError } from '../pool/classify.ts';
import { estimateInputTokens } from '../pool/estimate.ts';
import type { Forwarder } from './forwarder.ts';
import type { CallContext, GeminiCaller } from './gemini-caller.ts';
import type { GenerateContentRequest, GenerateContentResponse } from './gemini-types.ts';

/** GeminiCaller for application services: generateContent through the key pool. */
export class PoolCaller implements GeminiCaller {
  private readonly forwarder: Forwarder;
  private readonly timeoutMs: number;

  constructor(forwarder: Forwarder, timeoutMs: number) {
    this.forwarder = forwarder;
    this.timeoutMs = timeoutMs;
  }

  async generateContent(
    model: string,
    request: GenerateContentRequest,
    ctx: CallContext,
  ): Promise<GenerateContentResponse> {
    const answer = await this.forwarder.forward({
      method: 'POST',
      path: `/v1beta/models/${encodeURIComponent(model)}:generateContent`,
      search: '',
      body: JSON.stringify(request),
      model,
      estimatedTokens: estimateInputTokens(request),
      stream: false,
      signal: ctx.signal,
      deadlineMs: Date.now() + this.timeoutMs,
      client: ctx.clientName,
    });
    if (answer.kind !== 'unary') throw new UpstreamFailed('unexpected streamed answer');
    let json: unknown;
    try {
      json = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new UpstreamFailed('upstream answered with invalid JSON');
    }
    if (answer.status >= 200 && answer.status < 300) return json as GenerateContentResponse;
    const message = googleError(json)?.message ?? `upstream answered ${answer.status}`;
    // Google's 4xx for a request it finds malformed is the caller's to fix; anything else is ours.
    if (answer.status >= 400 && answer.status < 500) throw new UpstreamRejected(answer.status, message);
    throw new UpstreamFailed(`upstream error: ${message}`);
  }
}
