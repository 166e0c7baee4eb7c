import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClientGone,
  Conflict,
  DeadlineExceeded,
  EgressRefused,
  type ErrorKind,
  type GatewayError,
  InternalFailure,
  InvalidArgument,
  InvalidInput,
  NotFound,
  PayloadTooLarge,
  PermissionDenied,
  PoolExhausted,
  PromptInjectionRefused,
  ProviderFailed,
  RateLimited,
  StoreUnavailable,
  Unauthenticated,
  Unavailable,
  UnsupportedMediaType,
  UpstreamFailed,
  UpstreamRejected,
  UpstreamUnreachable,
} from '../../src/errors/gateway-errors.ts';
import { installErrorHandling, isKnownError, toProblem } from '../../src/http/errors.ts';
import { HttpProblem } from '../../src/http/problem.ts';

interface Expected {
  status: number;
  title: string;
  /** undefined: none set (the OpenAI surface then gives no error code). */
  googleStatus: string | undefined;
  headers: Record<string, string>;
  extra: Record<string, unknown> | undefined;
}

/** One error of every kind and what the client is answered for it. */
const CASES: Record<ErrorKind, { error: GatewayError; expected: Expected }> = {
  invalid_argument: {
    error: new InvalidArgument('the URL is not valid'),
    expected: {
      status: 400,
      title: 'Bad Request',
      googleStatus: 'INVALID_ARGUMENT',
      headers: {},
      extra: undefined,
    },
  },
  invalid_input: {
    error: new InvalidInput('a: bad; b: worse', {
      errors: [
        { field: 'a', message: 'bad' },
        { field: 'b', message: 'worse' },
      ],
    }),
    expected: {
      status: 422,
      title: 'Unprocessable Entity',
      googleStatus: undefined,
      headers: {},
      extra: {
        errors: [
          { field: 'a', message: 'bad' },
          { field: 'b', message: 'worse' },
        ],
      },
    },
  },
  unauthenticated: {
    error: new Unauthenticated('invalid user_id or api_key'),
    expected: { status: 401, title: 'Unauthorized', googleStatus: undefined, headers: {}, extra: undefined },
  },
  permission_denied: {
    error: new PermissionDenied('no credits left'),
    expected: {
      status: 403,
      title: 'Forbidden',
      googleStatus: 'PERMISSION_DENIED',
      headers: {},
      extra: undefined,
    },
  },
  not_found: {
    error: new NotFound('no key with id "k"'),
    expected: { status: 404, title: 'Not Found', googleStatus: 'NOT_FOUND', headers: {}, extra: undefined },
  },
  conflict: {
    error: new Conflict('this api_key is in the pool already'),
    expected: { status: 409, title: 'Conflict', googleStatus: undefined, headers: {}, extra: undefined },
  },
  payload_too_large: {
    error: new PayloadTooLarge('text is 9 characters; the limit is 5'),
    expected: {
      status: 413,
      title: 'Payload Too Large',
      googleStatus: undefined,
      headers: {},
      extra: undefined,
    },
  },
  unsupported_media_type: {
    error: new UnsupportedMediaType('the file is not a supported image'),
    expected: {
      status: 415,
      title: 'Unsupported Media Type',
      googleStatus: undefined,
      headers: {},
      extra: undefined,
    },
  },
  rate_limited: {
    error: new RateLimited('client "c" is over its own budget', {
      retryAfterSeconds: 42,
      requestLimit: 10,
      extra: { budget: 'client', client: 'c', limit: 'requests_per_minute' },
    }),
    expected: {
      status: 429,
      title: 'Too Many Requests',
      googleStatus: 'RESOURCE_EXHAUSTED',
      headers: {
        'retry-after': '42',
        'ratelimit-limit': '10',
        'ratelimit-remaining': '0',
        'ratelimit-reset': '42',
      },
      extra: { budget: 'client', client: 'c', limit: 'requests_per_minute' },
    },
  },
  pool_exhausted: {
    error: new PoolExhausted('every key is at its limit; retry in 7s', 7),
    expected: {
      status: 429,
      title: 'Too Many Requests',
      googleStatus: 'RESOURCE_EXHAUSTED',
      headers: { 'retry-after': '7' },
      extra: { retry_after_seconds: 7 },
    },
  },
  client_gone: {
    error: new ClientGone(),
    expected: { status: 499, title: 'Client Error', googleStatus: undefined, headers: {}, extra: undefined },
  },
  internal: {
    error: new InternalFailure('the keys file could not be written; nothing was changed'),
    expected: {
      status: 500,
      title: 'Internal Server Error',
      googleStatus: undefined,
      headers: {},
      extra: undefined,
    },
  },
  upstream_unreachable: {
    error: new UpstreamUnreachable('no key could complete the request (timeout)'),
    expected: {
      status: 502,
      title: 'Bad Gateway',
      googleStatus: 'UNAVAILABLE',
      headers: {},
      extra: undefined,
    },
  },
  upstream_failed: {
    error: new UpstreamFailed('upstream answered with invalid JSON'),
    expected: { status: 502, title: 'Bad Gateway', googleStatus: undefined, headers: {}, extra: undefined },
  },
  upstream_rejected: {
    error: new UpstreamRejected(404, 'models/x is not found'),
    expected: { status: 404, title: 'Not Found', googleStatus: undefined, headers: {}, extra: undefined },
  },
  provider_failed: {
    error: new ProviderFailed('gemini', new Unavailable('no enabled key can serve model "m"')),
    expected: { status: 502, title: 'Bad Gateway', googleStatus: undefined, headers: {}, extra: undefined },
  },
  unavailable: {
    error: new StoreUnavailable(),
    expected: {
      status: 503,
      title: 'Service Unavailable',
      googleStatus: 'UNAVAILABLE',
      headers: { 'retry-after': '1' },
      extra: undefined,
    },
  },
  deadline_exceeded: {
    error: new DeadlineExceeded('the upstream did not answer within the request deadline'),
    expected: {
      status: 504,
      title: 'Gateway Timeout',
      googleStatus: 'DEADLINE_EXCEEDED',
      headers: {},
      extra: undefined,
    },
  },
  egress_refused: {
    error: new EgressRefused(),
    expected: {
      status: 400,
      title: 'Egress Location Refused',
      googleStatus: 'FAILED_PRECONDITION',
      headers: {},
      extra: undefined,
    },
  },
  prompt_injection: {
    error: new PromptInjectionRefused(
      'text was refused: it contains chat-template role markers',
      'role_injection',
    ),
    expected: {
      status: 400,
      title: 'Prompt injection refused',
      googleStatus: undefined,
      headers: {},
      extra: { reason: 'prompt_injection', category: 'role_injection' },
    },
  },
};

describe('domain error -> problem (the one mapping)', () => {
  it.each(Object.entries(CASES))('%s', (kind, { error, expected }) => {
    expect(error.kind).toBe(kind);
    expect(isKnownError(error)).toBe(true);
    const p = toProblem(error);
    expect(p).toBeInstanceOf(HttpProblem);
    expect({
      status: p.status,
      title: p.title,
      googleStatus: p.googleStatus,
      headers: p.headers,
      extra: p.extra,
    }).toEqual(expected);
    if (kind !== 'provider_failed') expect(p.detail).toBe(error.detail);
  });

  it('variants within a kind keep what they carry today', () => {
    // A caller's limit without a request limit has only Retry-After.
    const throttle = toProblem(new RateLimited('too many image requests', { retryAfterSeconds: 5 }));
    expect(throttle.headers).toEqual({ 'retry-after': '5' });
    expect(throttle.extra).toBeUndefined();
    // Unavailable without a retry time sends no Retry-After.
    expect(toProblem(new Unavailable('the state store is unreachable')).headers).toEqual({});
    // A validation failure may name its own title; with no per-field errors there are no extras.
    const invalid = toProblem(new InvalidInput('id: bad', { title: 'Validation Failed' }));
    expect([invalid.status, invalid.title, invalid.extra]).toEqual([422, 'Validation Failed', undefined]);
    // Google's own refusal keeps Google's status.
    expect(toProblem(new UpstreamRejected(400, 'bad')).status).toBe(400);
    expect(toProblem(new UpstreamRejected(429, 'slow')).status).toBe(429);
  });

  it('a provider failure through its Gemini call says what that call was answered, status first', () => {
    expect(toProblem(new ProviderFailed('openai', 'answered HTTP 500')).detail).toBe(
      'image provider openai failed: answered HTTP 500',
    );
    expect(toProblem(CASES.provider_failed.error).detail).toBe(
      'image provider gemini failed: 503 no enabled key can serve model "m"',
    );
    expect(toProblem(new ProviderFailed('gemini', new UpstreamRejected(400, 'bad image'))).detail).toBe(
      'image provider gemini failed: 400 bad image',
    );
  });
});

describe('domain errors on the wire', () => {
  const app = Fastify({ logger: false });
  beforeAll(async () => {
    installErrorHandling(app);
    const fail = async (request: { params: unknown }) => {
      throw CASES[(request.params as { kind: ErrorKind }).kind].error;
    };
    app.get('/problem/:kind', fail);
    app.get('/google/:kind', { config: { googleErrors: true } }, fail);
    await app.ready();
  });
  afterAll(() => app.close());

  it.each(Object.entries(CASES))('%s as problem details', async (kind, { error, expected }) => {
    const res = await app.inject({ method: 'GET', url: `/problem/${kind}?x=1` });
    expect(res.statusCode).toBe(expected.status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    for (const [name, value] of Object.entries(expected.headers)) expect(res.headers[name]).toBe(value);
    expect(res.json()).toEqual({
      type: 'about:blank',
      title: expected.title,
      status: expected.status,
      detail: toProblem(error).detail,
      instance: `/problem/${kind}`,
      request_id: expect.any(String),
      ...expected.extra,
    });
  });

  it.each(Object.entries(CASES))("%s in Google's shape", async (kind, { error, expected }) => {
    const res = await app.inject({ method: 'GET', url: `/google/${kind}` });
    expect(res.statusCode).toBe(expected.status);
    for (const [name, value] of Object.entries(expected.headers)) expect(res.headers[name]).toBe(value);
    const fallback: Record<number, string> = {
      401: 'UNAUTHENTICATED',
      409: 'FAILED_PRECONDITION',
      413: 'INVALID_ARGUMENT',
      415: 'INVALID_ARGUMENT',
      422: 'INVALID_ARGUMENT',
      400: 'INVALID_ARGUMENT',
      404: 'NOT_FOUND',
      499: 'CANCELLED',
      500: 'INTERNAL',
      502: 'INTERNAL',
    };
    expect(res.json()).toEqual({
      error: {
        code: expected.status,
        message: toProblem(error).detail,
        status: expected.googleStatus ?? fallback[expected.status],
        request_id: expect.any(String),
      },
    });
  });
});
