/**
 * Errors of the OpenAI surface: OpenAiError (status, OpenAI error type, code and the offending
 * request parameter), and Google's error answers rendered as one.
 */
import { isObj, safeJson } from './json.ts';

/** An error of the OpenAI surface, rendered as `{"error":{"message","type","code","param"}}`. */
export class OpenAiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    opts: {
      type?: string;
      code?: string | null;
      param?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = opts.type ?? errorTypeFor(status);
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

/** OpenAI's error `type` for an HTTP status (a wrong API key is OpenAI's invalid_request_error, code invalid_api_key). */
export function errorTypeFor(status: number): string {
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** A machine-readable code: OpenAI's own where one fits, else Google's RPC status in lower case. */
export function errorCodeFor(
  status: number,
  googleStatus: string | undefined,
  message: string,
): string | null {
  if (status === 401) return 'invalid_api_key';
  if (status === 429) return 'rate_limit_exceeded';
  if (status === 404 && /\bmodels?\b/i.test(message)) return 'model_not_found';
  if (status === 400 && /(input token count|maximum number of tokens|context length)/i.test(message))
    return 'context_length_exceeded';
  if (status === 504) return 'timeout';
  return googleStatus ? googleStatus.toLowerCase() : null;
}

/**
 * Google's error answer (`{"error":{code,message,status}}`, or the array form of Google's own
 * OpenAI endpoint) as an OpenAI error with the same HTTP status.
 */
export function googleErrorToOpenAi(status: number, body: unknown): OpenAiError {
  const parsed = typeof body === 'string' || body instanceof Uint8Array ? safeJson(body) : body;
  const root = Array.isArray(parsed) ? parsed[0] : parsed;
  const err = isObj(root) && isObj(root.error) ? root.error : undefined;
  const message =
    typeof err?.message === 'string' && err.message !== '' ? err.message : `upstream answered HTTP ${status}`;
  const googleStatus = typeof err?.status === 'string' ? err.status : undefined;
  const httpStatus = status >= 400 && status <= 599 ? status : 502;
  return new OpenAiError(httpStatus, message, { code: errorCodeFor(httpStatus, googleStatus, message) });
}

/** A 400 naming the request parameter at fault (`param: message`). */
export function invalidParam(param: string, message: string, code: string | null = null): OpenAiError {
  return new OpenAiError(400, `${param}: ${message}`, { param, code });
}
