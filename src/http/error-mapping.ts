import {
  type GatewayError,
  InvalidInput,
  PoolExhausted,
  PromptInjectionRefused,
  ProviderFailed,
  RateLimited,
  Unavailable,
  UpstreamRejected,
} from '../errors/gateway-errors.ts';
import { HttpProblem } from './problem.ts';

/**
 * The one place a domain error becomes an HTTP answer: its status, title, Google status,
 * headers and extra members. A Google status is set only where the kind names one: the OpenAI
 * surface turns a set one into its error `code`, so leaving it out is part of the answer too.
 */
export function problemFor(err: GatewayError): HttpProblem {
  const { detail, title } = err;
  switch (err.kind) {
    case 'invalid_argument':
      return new HttpProblem(400, detail, { title, googleStatus: 'INVALID_ARGUMENT' });
    case 'invalid_input': {
      const errors = err instanceof InvalidInput ? err.errors : undefined;
      return new HttpProblem(422, detail, { title, extra: errors ? { errors } : undefined });
    }
    case 'unauthenticated':
      return new HttpProblem(401, detail, { title });
    case 'permission_denied':
      return new HttpProblem(403, detail, { title, googleStatus: 'PERMISSION_DENIED' });
    case 'not_found':
      return new HttpProblem(404, detail, { title, googleStatus: 'NOT_FOUND' });
    case 'conflict':
      return new HttpProblem(409, detail, { title });
    case 'payload_too_large':
      return new HttpProblem(413, detail, { title });
    case 'unsupported_media_type':
      return new HttpProblem(415, detail, { title });
    case 'rate_limited':
      return rateLimited(err);
    case 'pool_exhausted': {
      const seconds = err instanceof PoolExhausted ? err.retryAfterSeconds : 1;
      return new HttpProblem(429, detail, {
        title,
        headers: { 'retry-after': String(seconds) },
        googleStatus: 'RESOURCE_EXHAUSTED',
        extra: { retry_after_seconds: seconds },
      });
    }
    case 'client_gone':
      return new HttpProblem(499, detail, { title });
    case 'internal':
      return new HttpProblem(500, detail, { title });
    case 'upstream_unreachable':
      return new HttpProblem(502, detail, { title, googleStatus: 'UNAVAILABLE' });
    case 'upstream_failed':
      return new HttpProblem(502, detail, { title });
    case 'upstream_rejected':
      return new HttpProblem(err instanceof UpstreamRejected ? err.upstreamStatus : 502, detail, { title });
    case 'provider_failed':
      return new HttpProblem(502, providerDetail(err), { title });
    case 'unavailable': {
      const seconds = err instanceof Unavailable ? err.retryAfterSeconds : undefined;
      return new HttpProblem(503, detail, {
        title,
        headers: seconds === undefined ? undefined : { 'retry-after': String(seconds) },
        googleStatus: 'UNAVAILABLE',
      });
    }
    case 'deadline_exceeded':
      return new HttpProblem(504, detail, { title, googleStatus: 'DEADLINE_EXCEEDED' });
    case 'egress_refused':
      return new HttpProblem(400, detail, {
        title: title ?? 'Egress Location Refused',
        googleStatus: 'FAILED_PRECONDITION',
      });
    case 'prompt_injection':
      return new HttpProblem(400, detail, {
        title: title ?? 'Prompt injection refused',
        extra: {
          reason: 'prompt_injection',
          category: err instanceof PromptInjectionRefused ? err.category : undefined,
        },
      });
  }
}

/** A caller's limit: Retry-After, and the RateLimit-* fields when a request limit was reached. */
function rateLimited(err: GatewayError): HttpProblem {
  const limited = err instanceof RateLimited ? err : undefined;
  const seconds = limited?.retryAfterSeconds ?? 1;
  const headers: Record<string, string> = { 'retry-after': String(seconds) };
  if (limited?.requestLimit !== undefined) {
    headers['ratelimit-limit'] = String(limited.requestLimit);
    headers['ratelimit-remaining'] = '0';
    headers['ratelimit-reset'] = String(seconds);
  }
  return new HttpProblem(429, err.detail, {
    title: err.title,
    headers,
    googleStatus: 'RESOURCE_EXHAUSTED',
    extra: err.extra,
  });
}

/** A provider's failure through its Gemini call says what that call was answered, status first. */
function providerDetail(err: GatewayError): string {
  if (!(err instanceof ProviderFailed) || !err.callFailure) return err.detail;
  const answered = problemFor(err.callFailure);
  return `image provider ${err.provider} failed: ${answered.status} ${answered.detail}`;
}
