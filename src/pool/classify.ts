import { nextPacificMidnight } from '../util/pacific.ts';

/**
 * Upstream answer → what it means for the key and for the request. Pure: no I/O, no clock
 * other than the `nowMs` argument, so every Google error body can be unit-tested.
 */
export type Verdict =
  /** 2xx: the key works. */
  | { kind: 'success' }
  /** The request itself is at fault (malformed, unknown model): pass the answer through as is. */
  | { kind: 'client_error' }
  /** Quota exceeded: rest the key's project until untilMs, retry on another key. */
  | { kind: 'rest'; untilMs: number; reason: string; daily: boolean }
  /** A 429 with no quota details: maybe per-IP throttling. Short rest, feeds the global-throttle detector. */
  | { kind: 'throttled'; untilMs: number; reason: string }
  /** The key is dead: disable it with the reason, retry on another key. */
  | { kind: 'disable'; reason: string }
  /** Server-side trouble: retry on another key; counts toward the key's circuit breaker when `circuit`. */
  | { kind: 'retry'; reason: string; circuit: boolean };

interface GoogleErrorDetail {
  '@type'?: string;
  reason?: string;
  retryDelay?: string;
  violations?: Array<{ quotaId?: string; quotaMetric?: string }>;
}
export interface GoogleErrorBody {
  error?: { code?: number; message?: string; status?: string; details?: GoogleErrorDetail[] };
}

/** When a 429 carries no usable RetryInfo. */
export const DEFAULT_REST_MS = 60_000;
/** A bare 429 (no quota details) rests the key only briefly. */
export const BARE_429_REST_MS = 5_000;

/** "23s", "23.456s", "1.5s" → ms; undefined for anything else. */
export function parseRetryDelay(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
  return m ? Math.ceil(Number(m[1]) * 1000) : undefined;
}

/** The `error` object of a Google body, tolerating the OpenAI-compat array wrapper. */
export function googleError(body: unknown): GoogleErrorBody['error'] | undefined {
  const b = Array.isArray(body) ? body[0] : body;
  if (b && typeof b === 'object' && 'error' in b) {
    const e = (b as GoogleErrorBody).error;
    if (e && typeof e === 'object') return e;
  }
  return undefined;
}

function detailsOf(error: GoogleErrorBody['error']): GoogleErrorDetail[] {
  return Array.isArray(error?.details) ? error.details : [];
}

export function classifyUpstream(status: number, body: unknown, nowMs: number): Verdict {
  if (status >= 200 && status < 300) return { kind: 'success' };
  const error = googleError(body);
  const details = detailsOf(error);
  const message = typeof error?.message === 'string' ? error.message : '';
  const reasons = details.map((d) => d.reason).filter((r): r is string => typeof r === 'string');

  if (status === 429) return classify429(details, nowMs);

  if (status === 400) {
    if (reasons.includes('API_KEY_INVALID') || /API key not valid/i.test(message))
      return { kind: 'disable', reason: 'API_KEY_INVALID' };
    if (error?.status === 'FAILED_PRECONDITION') return { kind: 'disable', reason: 'FAILED_PRECONDITION' };
    return { kind: 'client_error' };
  }
  if (status === 401) return { kind: 'disable', reason: 'UNAUTHENTICATED' };
  if (status === 403) return { kind: 'disable', reason: reasonFor403(reasons, message) };
  if (status === 503) return { kind: 'retry', reason: 'UNAVAILABLE', circuit: false };
  if (status === 499) return { kind: 'retry', reason: 'CANCELLED', circuit: false };
  if (status >= 500) return { kind: 'retry', reason: error?.status ?? `HTTP_${status}`, circuit: true };
  return { kind: 'client_error' };
}

function classify429(details: GoogleErrorDetail[], nowMs: number): Verdict {
  const quotaIds: string[] = [];
  let retryMs: number | undefined;
  for (const d of details) {
    const type = d['@type'] ?? '';
    if (type.endsWith('google.rpc.QuotaFailure') && Array.isArray(d.violations)) {
      for (const v of d.violations) if (typeof v.quotaId === 'string') quotaIds.push(v.quotaId);
    } else if (type.endsWith('google.rpc.RetryInfo')) {
      retryMs = parseRetryDelay(d.retryDelay);
    }
  }
  if (quotaIds.length === 0 && retryMs === undefined) {
    return { kind: 'throttled', untilMs: nowMs + BARE_429_REST_MS, reason: 'RESOURCE_EXHAUSTED' };
  }
  // A per-day quota's retryDelay is unreliable: the quota frees at the next Pacific midnight.
  const daily = quotaIds.find((q) => /PerDay/i.test(q));
  if (daily) return { kind: 'rest', untilMs: nextPacificMidnight(nowMs), reason: daily, daily: true };
  return {
    kind: 'rest',
    untilMs: nowMs + (retryMs ?? DEFAULT_REST_MS),
    reason: quotaIds[0] ?? 'RESOURCE_EXHAUSTED',
    daily: false,
  };
}

function reasonFor403(reasons: string[], message: string): string {
  if (reasons.includes('SERVICE_DISABLED')) return 'SERVICE_DISABLED';
  if (/leaked/i.test(message)) return 'LEAKED';
  if (/suspended/i.test(message)) return 'SUSPENDED';
  if (reasons.length > 0) return reasons[0]!;
  return 'PERMISSION_DENIED';
}
