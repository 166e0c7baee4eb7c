/**
 * Error bodies exactly as generativelanguage.googleapis.com sends them:
 * `{"error":{"code","message","status","details"?}}`.
 */

export interface ErrorReply {
  status: number;
  body: Buffer;
}

const T = 'type.googleapis.com/google.rpc.';
const SERVICE = 'generativelanguage.googleapis.com';

export function errorBody(code: number, status: string, message: string, details?: unknown[]): Buffer {
  const error: Record<string, unknown> = { code, message, status };
  if (details && details.length > 0) error.details = details;
  return Buffer.from(JSON.stringify({ error }));
}

function reply(code: number, status: string, message: string, details?: unknown[]): ErrorReply {
  return { status: code, body: errorBody(code, status, message, details) };
}

/** Shows only the first and last 4 characters of a secret. */
export function maskSecret(secret: string): string {
  if (secret.length <= 10) return '***';
  return `${secret.slice(0, 4)}...${secret.slice(-4)}`;
}

const INVALID_KEY_MESSAGE = 'API key not valid. Please pass a valid API key.';

export const ERR_NO_KEY: ErrorReply = reply(
  403,
  'PERMISSION_DENIED',
  "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
);

export const ERR_INVALID_KEY: ErrorReply = reply(400, 'INVALID_ARGUMENT', INVALID_KEY_MESSAGE, [
  {
    '@type': `${T}ErrorInfo`,
    reason: 'API_KEY_INVALID',
    domain: 'googleapis.com',
    metadata: { service: SERVICE },
  },
  { '@type': `${T}LocalizedMessage`, locale: 'en-US', message: INVALID_KEY_MESSAGE },
]);

export const ERR_LEAKED: ErrorReply = reply(
  403,
  'PERMISSION_DENIED',
  'Your API key was reported as leaked. Please use another API key.',
);

/** Google refuses the caller's location (its egress IP's country), whatever the key: no details. */
export const ERR_LOCATION: ErrorReply = reply(
  400,
  'FAILED_PRECONDITION',
  'User location is not supported for the API use.',
);

/** A prepaid project without credits: a 429 that is billing, not a time window (no QuotaFailure, no RetryInfo). */
export const ERR_BILLING: ErrorReply = reply(
  429,
  'RESOURCE_EXHAUSTED',
  'Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.',
);

export const ERR_OVERLOADED: ErrorReply = reply(
  503,
  'UNAVAILABLE',
  'The model is overloaded. Please try again later.',
);

const INTERNAL_MESSAGE =
  'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting';
export const ERR_INTERNAL: ErrorReply = reply(500, 'INTERNAL', INTERNAL_MESSAGE);
/** The object sent as a mid-stream error chunk (`{"error":{...}}`). */
export const MIDSTREAM_ERROR_JSON = JSON.stringify({
  error: { code: 500, message: INTERNAL_MESSAGE, status: 'INTERNAL' },
});

export const ERR_BARE_429: ErrorReply = reply(
  429,
  'RESOURCE_EXHAUSTED',
  'Resource has been exhausted (e.g. check quota).',
);

export const ERR_METHOD_NOT_FOUND: ErrorReply = reply(404, 'NOT_FOUND', 'Method not found.');

function badRequest(message: string): ErrorReply {
  return reply(400, 'INVALID_ARGUMENT', message, [
    { '@type': `${T}BadRequest`, fieldViolations: [{ description: message }] },
  ]);
}

export const ERR_BAD_REQUEST: ErrorReply = badRequest(
  'Invalid JSON payload received. Unknown name "fake_unknown_field": Cannot find field.',
);
export const ERR_INVALID_JSON: ErrorReply = badRequest('Invalid JSON payload received. Unexpected token.');
export const ERR_NO_CONTENTS: ErrorReply = reply(
  400,
  'INVALID_ARGUMENT',
  '* GenerateContentRequest.contents: contents is not specified\n',
);
export const ERR_EMPTY_EMBED: ErrorReply = reply(
  400,
  'INVALID_ARGUMENT',
  '* EmbedContentRequest.content: contents is not specified\n',
);

export function errSuspended(apiKey: string, project: string): ErrorReply {
  return reply(403, 'PERMISSION_DENIED', `Consumer 'api_key:${maskSecret(apiKey)}' has been suspended.`, [
    {
      '@type': `${T}ErrorInfo`,
      reason: 'CONSUMER_SUSPENDED',
      domain: 'googleapis.com',
      metadata: { service: SERVICE, consumer: `projects/${project}` },
    },
    {
      '@type': `${T}LocalizedMessage`,
      locale: 'en-US',
      message: `Permission denied: Consumer 'api_key:${maskSecret(apiKey)}' has been suspended.`,
    },
  ]);
}

export function errServiceDisabled(project: string): ErrorReply {
  const url = `https://console.developers.google.com/apis/api/${SERVICE}/overview?project=${project}`;
  const message = `Generative Language API has not been used in project ${project} before or it is disabled. Enable it by visiting ${url} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.`;
  return reply(403, 'PERMISSION_DENIED', message, [
    {
      '@type': `${T}ErrorInfo`,
      reason: 'SERVICE_DISABLED',
      domain: 'googleapis.com',
      metadata: {
        service: SERVICE,
        consumer: `projects/${project}`,
        activationUrl: url,
        serviceTitle: 'Generative Language API',
        containerInfo: project,
      },
    },
    { '@type': `${T}LocalizedMessage`, locale: 'en-US', message },
    { '@type': `${T}Help`, links: [{ description: 'Google developers console API activation', url }] },
  ]);
}

export function errModelNotFound(model: string, version: string, method: string): ErrorReply {
  return reply(
    404,
    'NOT_FOUND',
    `models/${model} is not found for API version ${version}, or is not supported for ${method}. Call ListModels to see the list of available models and their supported methods.`,
  );
}

export interface QuotaViolation {
  quotaMetric: string;
  quotaId: string;
  model: string;
  limit: number;
}

/** Seconds as Google's `Duration` JSON: "23s" or "23.456s". */
export function formatDuration(ms: number): string {
  const clamped = Math.max(0, Math.ceil(ms));
  const s = Math.floor(clamped / 1000);
  const frac = clamped % 1000;
  if (frac === 0) return `${s}s`;
  return `${s}.${String(frac).padStart(3, '0').replace(/0+$/, '')}s`;
}

/** The current (2025-2026) 429 body: Help, QuotaFailure, RetryInfo. */
export function err429(violations: QuotaViolation[], retryDelayMs: number, retryDelay?: string): ErrorReply {
  const delay = retryDelay ?? formatDuration(retryDelayMs);
  const seconds = Number.parseFloat(delay);
  const lines = violations
    .map((v) => `* Quota exceeded for metric: ${v.quotaMetric}, limit: ${v.limit}, model: ${v.model}`)
    .join('\n');
  const message = `You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n${lines}\nPlease retry in ${Number.isFinite(seconds) ? seconds.toFixed(Math.max(1, decimals(delay))) : delay}s.`;
  return reply(429, 'RESOURCE_EXHAUSTED', message, [
    {
      '@type': `${T}Help`,
      links: [
        {
          description: 'Learn more about Gemini API quotas',
          url: 'https://ai.google.dev/gemini-api/docs/rate-limits',
        },
      ],
    },
    {
      '@type': `${T}QuotaFailure`,
      violations: violations.map((v) => ({
        quotaMetric: v.quotaMetric,
        quotaId: v.quotaId,
        quotaDimensions: { location: 'global', model: v.model },
        quotaValue: String(v.limit),
      })),
    },
    { '@type': `${T}RetryInfo`, retryDelay: delay },
  ]);
}

function decimals(duration: string): number {
  const dot = duration.indexOf('.');
  return dot < 0 ? 0 : duration.length - dot - 2; // minus the dot and the trailing "s"
}
