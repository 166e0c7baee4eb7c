/**
 * An error answer of the HTTP layer: what routes throw for HTTP-level refusals (auth headers,
 * unknown routes, body limits) and what domain errors (src/errors) become in
 * src/http/error-mapping.ts. The error handler renders it as RFC 7807 problem details (or
 * Google's error shape on the native Gemini routes).
 * `detail` must never contain a secret: callers pass only what a client may see.
 */
export class HttpProblem extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly type: string;
  readonly headers: Record<string, string>;
  /** Google RPC status name used when rendered in Google's error shape (e.g. RESOURCE_EXHAUSTED). */
  readonly googleStatus?: string;
  /** Extra members merged into the problem body (e.g. per-item errors). */
  readonly extra?: Record<string, unknown>;

  constructor(
    status: number,
    detail: string,
    opts: {
      title?: string;
      type?: string;
      headers?: Record<string, string>;
      googleStatus?: string;
      extra?: Record<string, unknown>;
    } = {},
  ) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.title = opts.title ?? defaultTitle(status);
    this.type = opts.type ?? 'about:blank';
    this.headers = opts.headers ?? {};
    this.googleStatus = opts.googleStatus;
    this.extra = opts.extra;
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function defaultTitle(status: number): string {
  return TITLES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error');
}

/** Google RPC status for an HTTP status, used when we answer in Google's error shape. */
export function googleStatusFor(status: number): string {
  switch (status) {
    case 400:
    case 413:
    case 415:
    case 422:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELLED';
    case 503:
      return 'UNAVAILABLE';
    case 504:
      return 'DEADLINE_EXCEEDED';
    default:
      return status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION';
  }
}
