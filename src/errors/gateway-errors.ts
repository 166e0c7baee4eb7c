/**
 * What went wrong, said without HTTP: the core (upstream, pool callers, services, stores,
 * clients) throws these; the HTTP layer maps each kind to a status, title, Google status and
 * headers in one place (src/http/error-mapping.ts). `detail` is shown to the client, so it must
 * never contain a secret.
 */
export type ErrorKind =
  /** The request cannot be served as asked (a refused URL, resources of two projects, an empty file). */
  | 'invalid_argument'
  /** A field of the request does not pass validation. */
  | 'invalid_input'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  /** The change contradicts what exists (a name taken, the last key). */
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  /** A limit of the caller (a client budget, a user throttle) refused the request. */
  | 'rate_limited'
  /** Every key that could serve the request is at its limit. */
  | 'pool_exhausted'
  /** The client went away before its answer. */
  | 'client_gone'
  /** The gateway failed at something of its own (a file it could not write). */
  | 'internal'
  /** No upstream answer could be had (network failures, every key refused). */
  | 'upstream_unreachable'
  /** The upstream answered, but not with anything usable. */
  | 'upstream_failed'
  /** The upstream refused the request itself: its status is passed on. */
  | 'upstream_rejected'
  /** An image provider failed, on its own or through the Gemini call it made. */
  | 'provider_failed'
  /** Something the gateway depends on (its state store, a backend, the keys) cannot serve now. */
  | 'unavailable'
  | 'deadline_exceeded'
  /** Google refuses the gateway's egress location: no key can be used from there. */
  | 'egress_refused'
  | 'prompt_injection';

export interface GatewayErrorOptions {
  /** A summary where the kind's usual one does not say it. */
  title?: string;
  /** Members added to the problem body (e.g. a client budget's name and limit). */
  extra?: Record<string, unknown>;
}

export class GatewayError extends Error {
  readonly kind: ErrorKind;
  readonly detail: string;
  readonly title?: string;
  readonly extra?: Record<string, unknown>;

  protected constructor(kind: ErrorKind, detail: string, opts: GatewayErrorOptions = {}) {
    super(detail);
    this.name = new.target.name;
    this.kind = kind;
    this.detail = detail;
    this.title = opts.title;
    this.extra = opts.extra;
  }
}

export class InvalidArgument extends GatewayError {
  declare readonly kind: 'invalid_argument';
  constructor(detail: string) {
    super('invalid_argument', detail);
  }
}

/** One field's failure, listed in the problem body when a request has several. */
export interface FieldError {
  field: string;
  message: string;
}

export class InvalidInput extends GatewayError {
  declare readonly kind: 'invalid_input';
  readonly errors?: readonly FieldError[];
  constructor(detail: string, opts: { errors?: readonly FieldError[]; title?: string } = {}) {
    super('invalid_input', detail, { title: opts.title });
    this.errors = opts.errors;
  }
}

export class Unauthenticated extends GatewayError {
  declare readonly kind: 'unauthenticated';
  constructor(detail: string) {
    super('unauthenticated', detail);
  }
}

export class PermissionDenied extends GatewayError {
  declare readonly kind: 'permission_denied';
  constructor(detail: string) {
    super('permission_denied', detail);
  }
}

export class NotFound extends GatewayError {
  declare readonly kind: 'not_found';
  constructor(detail: string) {
    super('not_found', detail);
  }
}

export class Conflict extends GatewayError {
  declare readonly kind: 'conflict';
  constructor(detail: string) {
    super('conflict', detail);
  }
}

export class PayloadTooLarge extends GatewayError {
  declare readonly kind: 'payload_too_large';
  constructor(detail: string) {
    super('payload_too_large', detail);
  }
}

export class UnsupportedMediaType extends GatewayError {
  declare readonly kind: 'unsupported_media_type';
  constructor(detail: string) {
    super('unsupported_media_type', detail);
  }
}

export class RateLimited extends GatewayError {
  declare readonly kind: 'rate_limited';
  readonly retryAfterSeconds: number;
  /** The request limit that was reached, when it is one (reported as RateLimit-* fields). */
  readonly requestLimit?: number;
  constructor(
    detail: string,
    opts: { retryAfterSeconds: number; requestLimit?: number; extra?: Record<string, unknown> },
  ) {
    super('rate_limited', detail, { extra: opts.extra });
    this.retryAfterSeconds = opts.retryAfterSeconds;
    this.requestLimit = opts.requestLimit;
  }
}

export class PoolExhausted extends GatewayError {
  declare readonly kind: 'pool_exhausted';
  readonly retryAfterSeconds: number;
  constructor(detail: string, retryAfterSeconds: number) {
    super('pool_exhausted', detail);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export class ClientGone extends GatewayError {
  declare readonly kind: 'client_gone';
  constructor() {
    super('client_gone', 'client closed the request');
  }
}

export class InternalFailure extends GatewayError {
  declare readonly kind: 'internal';
  constructor(detail: string) {
    super('internal', detail);
  }
}

export class UpstreamUnreachable extends GatewayError {
  declare readonly kind: 'upstream_unreachable';
  constructor(detail: string) {
    super('upstream_unreachable', detail);
  }
}

export class UpstreamFailed extends GatewayError {
  declare readonly kind: 'upstream_failed';
  constructor(detail: string) {
    super('upstream_failed', detail);
  }
}

export class UpstreamRejected extends GatewayError {
  declare readonly kind: 'upstream_rejected';
  /** The upstream's own 4xx status. */
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number, detail: string) {
    super('upstream_rejected', detail);
    this.upstreamStatus = upstreamStatus;
  }
}

/**
 * An image provider failed. When the failure is the Gemini call's (`callFailure`), the client is told
 * what that call was answered, which the HTTP layer renders.
 */
export class ProviderFailed extends GatewayError {
  declare readonly kind: 'provider_failed';
  readonly provider: string;
  readonly callFailure?: GatewayError;
  constructor(provider: string, what: string | GatewayError) {
    const callFailure = typeof what === 'string' ? undefined : what;
    super('provider_failed', `image provider ${provider} failed: ${callFailure ? callFailure.detail : what}`);
    this.provider = provider;
    this.callFailure = callFailure;
  }
}

export class Unavailable extends GatewayError {
  declare readonly kind: 'unavailable';
  readonly retryAfterSeconds?: number;
  constructor(detail: string, opts: { retryAfterSeconds?: number } = {}) {
    super('unavailable', detail);
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

/** The state store (Redis) failed: nothing that needs it can be decided safely. */
export class StoreUnavailable extends Unavailable {
  constructor() {
    super('the gateway cannot reach its state store; retry shortly', { retryAfterSeconds: 1 });
  }
}

export class DeadlineExceeded extends GatewayError {
  declare readonly kind: 'deadline_exceeded';
  constructor(detail: string) {
    super('deadline_exceeded', detail);
  }
}

export class EgressRefused extends GatewayError {
  declare readonly kind: 'egress_refused';
  constructor() {
    super(
      'egress_refused',
      'Google refuses requests from the gateway\'s network location ("User location is not supported for the API use."); no pool key can be used from there: the gateway\'s egress must be moved to a supported region',
    );
  }
}

export class PromptInjectionRefused extends GatewayError {
  declare readonly kind: 'prompt_injection';
  readonly category: string;
  constructor(detail: string, category: string) {
    super('prompt_injection', detail);
    this.category = category;
  }
}
