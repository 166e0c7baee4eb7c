import { describe, expect, it } from 'vitest';
import {
  BARE_429_REST_MS,
  classifyUpstream,
  DEFAULT_REST_MS,
  EGRESS_REFUSED_REASON,
  isHealable,
  parseRetryDelay,
} from '../../src/pool/classify.ts';
import { nextPacificMidnight } from '../../src/util/pacific.ts';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);

function body(code: number, status: string, message: string, details: unknown[] = []) {
  return { error: { code, message, status, details } };
}
const quota = (quotaId: string, model = 'gemini-2.5-flash-lite') => ({
  '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
  violations: [
    {
      quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
      quotaId,
      quotaDimensions: { location: 'global', model },
      quotaValue: '15',
    },
  ],
});
const retry = (d: string) => ({ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: d });
const help = {
  '@type': 'type.googleapis.com/google.rpc.Help',
  links: [{ description: 'Learn more', url: 'https://ai.google.dev' }],
};

describe('classifyUpstream', () => {
  it('per-minute 429 rests the project exactly RetryInfo.retryDelay', () => {
    const v = classifyUpstream(
      429,
      body(429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota...\nPlease retry in 23.4s.', [
        help,
        quota('GenerateRequestsPerMinutePerProjectPerModel-FreeTier'),
        retry('23.4s'),
      ]),
      NOW,
    );
    expect(v).toEqual({
      kind: 'rest',
      untilMs: NOW + 23_400,
      reason: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
      daily: false,
      model: 'gemini-2.5-flash-lite',
    });
  });

  it('per-day 429 rests until the next Pacific midnight whatever retryDelay says', () => {
    const v = classifyUpstream(
      429,
      body(429, 'RESOURCE_EXHAUSTED', 'quota', [
        quota('GenerateRequestsPerDayPerProjectPerModel-FreeTier'),
        retry('31s'),
      ]),
      NOW,
    );
    expect(v).toMatchObject({ kind: 'rest', daily: true, untilMs: nextPacificMidnight(NOW) });
  });

  it('a body with several violations is daily when any violation is per day', () => {
    const details = [
      {
        '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
        violations: [
          { quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier' },
          { quotaId: 'GenerateContentInputTokensPerModelPerDay-FreeTier' },
        ],
      },
      retry('10s'),
    ];
    expect(classifyUpstream(429, body(429, 'RESOURCE_EXHAUSTED', 'q', details), NOW)).toMatchObject({
      daily: true,
    });
  });

  it('token-per-minute 429 rests for retryDelay', () => {
    const v = classifyUpstream(
      429,
      body(429, 'RESOURCE_EXHAUSTED', 'q', [
        quota('GenerateContentPaidTierInputTokensPerModelPerMinute'),
        retry('7s'),
      ]),
      NOW,
    );
    expect(v).toMatchObject({ kind: 'rest', untilMs: NOW + 7000, daily: false });
  });

  it('a bare 429 is a suspected throttle with a short rest', () => {
    const v = classifyUpstream(
      429,
      body(429, 'RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'),
      NOW,
    );
    expect(v).toEqual({ kind: 'throttled', untilMs: NOW + BARE_429_REST_MS, reason: 'RESOURCE_EXHAUSTED' });
  });

  it('API_KEY_INVALID disables the key', () => {
    const v = classifyUpstream(
      400,
      body(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'API_KEY_INVALID',
          domain: 'googleapis.com',
        },
      ]),
      NOW,
    );
    expect(v).toEqual({ kind: 'disable', reason: 'API_KEY_INVALID' });
  });

  it('403 leaked / suspended / service disabled disable the key with their reason', () => {
    expect(
      classifyUpstream(
        403,
        body(403, 'PERMISSION_DENIED', 'Your API key was reported as leaked. Please use another API key.'),
        NOW,
      ),
    ).toEqual({ kind: 'disable', reason: 'LEAKED' });
    expect(
      classifyUpstream(403, body(403, 'PERMISSION_DENIED', "Consumer 'api_key:xx' has been suspended."), NOW),
    ).toEqual({
      kind: 'disable',
      reason: 'SUSPENDED',
    });
    expect(
      classifyUpstream(
        403,
        body(403, 'PERMISSION_DENIED', 'Generative Language API has not been used', [
          { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'SERVICE_DISABLED' },
        ]),
        NOW,
      ),
    ).toEqual({ kind: 'disable', reason: 'SERVICE_DISABLED' });
    // Any other 403: the ErrorInfo reason when there is one, else PERMISSION_DENIED.
    expect(
      classifyUpstream(
        403,
        body(403, 'PERMISSION_DENIED', 'Requests from this referer are blocked.', [
          { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_HTTP_REFERRER_BLOCKED' },
        ]),
        NOW,
      ),
    ).toEqual({ kind: 'disable', reason: 'API_KEY_HTTP_REFERRER_BLOCKED' });
    expect(
      classifyUpstream(403, body(403, 'PERMISSION_DENIED', 'The caller does not have permission'), NOW),
    ).toEqual({ kind: 'disable', reason: 'PERMISSION_DENIED' });
  });

  it('other 400s and 404 are the request’s fault and pass through', () => {
    expect(
      classifyUpstream(400, body(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'), NOW),
    ).toEqual({
      kind: 'client_error',
    });
    expect(classifyUpstream(404, body(404, 'NOT_FOUND', 'Method not found.'), NOW)).toEqual({
      kind: 'client_error',
    });
  });

  it('a 404 for a model Google does not know was counted in no quota: its reservation goes back', () => {
    const message =
      'models/gemini-9-made-up is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.';
    expect(classifyUpstream(404, body(404, 'NOT_FOUND', message), NOW)).toEqual({
      kind: 'client_error',
      uncounted: true,
    });
    // The same words inside another message (an echoed prompt, say) are not Google's refusal.
    expect(classifyUpstream(404, body(404, 'NOT_FOUND', `CachedContent not found: ${message}`), NOW)).toEqual(
      { kind: 'client_error' },
    );
  });

  it('503 overloaded is retried without counting against the key', () => {
    expect(
      classifyUpstream(
        503,
        body(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.'),
        NOW,
      ),
    ).toEqual({
      kind: 'retry',
      reason: 'UNAVAILABLE',
      circuit: false,
    });
  });

  it('500 and 504 count toward the circuit breaker', () => {
    expect(
      classifyUpstream(500, body(500, 'INTERNAL', 'An internal error has occurred.'), NOW),
    ).toMatchObject({
      kind: 'retry',
      circuit: true,
    });
    expect(classifyUpstream(504, body(504, 'DEADLINE_EXCEEDED', 'Deadline expired'), NOW)).toMatchObject({
      kind: 'retry',
      circuit: true,
    });
    expect(classifyUpstream(502, 'not json', NOW)).toMatchObject({ kind: 'retry', circuit: true });
  });

  it('reads the OpenAI-compat array wrapper', () => {
    expect(classifyUpstream(403, [body(403, 'PERMISSION_DENIED', 'reported as leaked')], NOW)).toEqual({
      kind: 'disable',
      reason: 'LEAKED',
    });
  });

  it('a rest names the model whose quota ran out (QuotaFailure quotaDimensions.model), normalized', () => {
    // A -latest alias was asked; Google's 429 names the underlying model.
    const v = classifyUpstream(
      429,
      body(429, 'RESOURCE_EXHAUSTED', 'q', [
        quota('GenerateRequestsPerMinutePerProjectPerModel-FreeTier', 'models/gemini-2.5-flash'),
        retry('5s'),
      ]),
      NOW,
    );
    expect(v).toEqual({
      kind: 'rest',
      untilMs: NOW + 5000,
      reason: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
      daily: false,
      model: 'gemini-2.5-flash',
    });
  });

  it('with several violations, the rest names the model of the violation it is for', () => {
    const details = [
      {
        '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
        violations: [
          {
            quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
            quotaDimensions: { location: 'global', model: 'gemini-2.5-pro' },
          },
          {
            quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
            quotaDimensions: { location: 'global', model: 'gemini-2.5-flash' },
          },
        ],
      },
      retry('10s'),
    ];
    expect(classifyUpstream(429, body(429, 'RESOURCE_EXHAUSTED', 'q', details), NOW)).toEqual({
      kind: 'rest',
      untilMs: nextPacificMidnight(NOW),
      reason: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
      daily: true,
      model: 'gemini-2.5-flash',
    });
  });

  it('a QuotaFailure without a model dimension rests without naming one', () => {
    const details = [
      {
        '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
        violations: [
          { quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier', quotaDimensions: {} },
        ],
      },
      retry('3s'),
    ];
    const v = classifyUpstream(429, body(429, 'RESOURCE_EXHAUSTED', 'q', details), NOW);
    expect(v).toEqual({
      kind: 'rest',
      untilMs: NOW + 3000,
      reason: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
      daily: false,
    });
    expect('model' in v).toBe(false);
  });

  it('"User location is not supported" refuses the egress: no key is disabled', () => {
    // Google's exact body: no details.
    const v = classifyUpstream(
      400,
      body(400, 'FAILED_PRECONDITION', 'User location is not supported for the API use.'),
      NOW,
    );
    expect(v).toEqual({ kind: 'egress_refused', reason: EGRESS_REFUSED_REASON });
    // The OpenAI-compatible surface wraps the same error in an array.
    expect(
      classifyUpstream(
        400,
        [body(400, 'FAILED_PRECONDITION', 'User location is not supported for the API use.')],
        NOW,
      ),
    ).toEqual({ kind: 'egress_refused', reason: EGRESS_REFUSED_REASON });
  });

  it('location refusals that name billing refuse the project, not the egress: healable disable', () => {
    for (const message of [
      'User location is not supported for the API use without a billing account linked.',
      'Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.',
    ]) {
      const v = classifyUpstream(400, body(400, 'FAILED_PRECONDITION', message), NOW);
      expect(v).toEqual({ kind: 'disable', reason: 'LOCATION_NEEDS_BILLING' });
    }
    expect(isHealable('LOCATION_NEEDS_BILLING')).toBe(true);
    // Any other precondition failure: disabled, healable (a re-check tells).
    expect(
      classifyUpstream(400, body(400, 'FAILED_PRECONDITION', 'Precondition check failed.'), NOW),
    ).toEqual({
      kind: 'disable',
      reason: 'FAILED_PRECONDITION',
    });
  });

  it('429 "prepayment credits are depleted" is billing, not a time window: disable, healable', () => {
    const v = classifyUpstream(
      429,
      body(
        429,
        'RESOURCE_EXHAUSTED',
        'Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.',
      ),
      NOW,
    );
    expect(v).toEqual({ kind: 'disable', reason: 'BILLING' });
    expect(isHealable('BILLING')).toBe(true);
    // Not every 429 that mentions billing: the usual quota message does too.
    expect(
      classifyUpstream(
        429,
        body(
          429,
          'RESOURCE_EXHAUSTED',
          'You exceeded your current quota, please check your plan and billing details.',
          [quota('GenerateRequestsPerMinutePerProjectPerModel-FreeTier'), retry('2s')],
        ),
        NOW,
      ),
    ).toMatchObject({ kind: 'rest' });
  });

  it('isHealable: service disabled, billing and key restrictions heal; invalid, leaked, suspended and prose do not', () => {
    for (const r of ['SERVICE_DISABLED', 'BILLING', 'BILLING_DISABLED', 'API_KEY_IP_ADDRESS_BLOCKED'])
      expect(isHealable(r), r).toBe(true);
    for (const r of [
      'API_KEY_INVALID',
      'LEAKED',
      'SUSPENDED',
      'UNAUTHENTICATED',
      'PERMISSION_DENIED',
      'disabled by admin',
      'disabled by admin: SERVICE_DISABLED',
      'disabled in configuration',
      '',
      null,
      undefined,
    ])
      expect(isHealable(r), String(r)).toBe(false);
  });

  it('parses retryDelay forms', () => {
    expect(parseRetryDelay('23s')).toBe(23_000);
    expect(parseRetryDelay('54.05s')).toBe(54_050);
    expect(parseRetryDelay('1.0001s')).toBe(1001);
    expect(parseRetryDelay('soon')).toBeUndefined();
    expect(parseRetryDelay(undefined)).toBeUndefined();
  });
});

const gErr = (code: number, status: string, message: string, details: unknown[] = []) => ({
  error: { code, message, status, details },
});

describe('classifyUpstream, less common answers', () => {
  it('a 429 with RetryInfo but no QuotaFailure rests for retryDelay (not a bare throttle)', () => {
    const v = classifyUpstream(
      429,
      gErr(429, 'RESOURCE_EXHAUSTED', 'Please retry in 12s', [
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '12s' },
      ]),
      NOW,
    );
    expect(v).toEqual({ kind: 'rest', untilMs: NOW + 12_000, reason: 'RESOURCE_EXHAUSTED', daily: false });
  });

  it('a quota 429 without RetryInfo rests the default minute', () => {
    const v = classifyUpstream(
      429,
      gErr(429, 'RESOURCE_EXHAUSTED', 'quota', [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [{ quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier' }],
        },
      ]),
      NOW,
    );
    expect(DEFAULT_REST_MS).not.toBe(BARE_429_REST_MS);
    expect(v).toMatchObject({ kind: 'rest', untilMs: NOW + DEFAULT_REST_MS, daily: false });
  });

  it('a daily rest names the per-day quota', () => {
    const v = classifyUpstream(
      429,
      gErr(429, 'RESOURCE_EXHAUSTED', 'quota', [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [{ quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' }],
        },
      ]),
      NOW,
    );
    expect(v).toEqual({
      kind: 'rest',
      untilMs: nextPacificMidnight(NOW),
      reason: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
      daily: true,
    });
  });

  it('400 FAILED_PRECONDITION "free tier not available in your country" disables the key (heals with billing)', () => {
    const v = classifyUpstream(
      400,
      gErr(
        400,
        'FAILED_PRECONDITION',
        'Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.',
      ),
      NOW,
    );
    expect(v).toEqual({ kind: 'disable', reason: 'LOCATION_NEEDS_BILLING' });
    // "User location is not supported" refuses the egress, not the key: test/unit/classify.test.ts.
  });

  it('an invalid key named only in the message (no ErrorInfo) disables the key', () => {
    const v = classifyUpstream(
      400,
      gErr(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.'),
      NOW,
    );
    expect(v).toEqual({ kind: 'disable', reason: 'API_KEY_INVALID' });
  });

  it('401 disables the key', () => {
    expect(
      classifyUpstream(401, gErr(401, 'UNAUTHENTICATED', 'Request had invalid authentication'), NOW),
    ).toEqual({
      kind: 'disable',
      reason: 'UNAUTHENTICATED',
    });
  });

  it('499 CANCELLED is retried without counting against the key', () => {
    expect(classifyUpstream(499, gErr(499, 'CANCELLED', 'The operation was cancelled.'), NOW)).toEqual({
      kind: 'retry',
      reason: 'CANCELLED',
      circuit: false,
    });
  });

  it('a 3xx is not a success', () => {
    expect(classifyUpstream(300, '', NOW)).toEqual({ kind: 'client_error' });
  });

  it('SERVICE_DISABLED wins over another ErrorInfo reason listed first', () => {
    const v = classifyUpstream(
      403,
      gErr(403, 'PERMISSION_DENIED', 'Generative Language API has not been used in project 1', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'ACCESS_DENIED' },
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'SERVICE_DISABLED' },
      ]),
      NOW,
    );
    expect(v).toEqual({ kind: 'disable', reason: 'SERVICE_DISABLED' });
  });
});
