import { nextPacificMidnight } from '../util/pacific.ts';
import { normalizeModel } from './models.ts';

/**
 * Upstream answer → what it means for the key and for the request. Pure: no I/O, no clock
 * other than the `nowMs` argument, so every Google error body can be unit-tested.
 */
export type Verdict =
  /** 2xx: the key works. */
  | { kind: 'success' }
  /**
   * The request itself is at fault (malformed, unknown model): pass the answer through as is.
   * `uncounted`: Google refused it before any quota counted it (a model it does not know), so
   * the reservation goes back, and a made-up model name leaves no budget behind.
   */
  | { kind: 'client_error'; uncounted?: boolean }
  /**
   * Quota exceeded: rest the key's (project, model) until untilMs, retry on another key.
   * `model`: the model Google's QuotaFailure names (normalized), when it names one.
   */
  | { kind: 'rest'; untilMs: number; reason: string; daily: boolean; model?: string }
  /** A 429 with no quota details: maybe per-IP throttling. Short rest, feeds the global-throttle detector. */
  | { kind: 'throttled'; untilMs: number; reason: string }
  /**
   * The key cannot serve: disable it with the reason, retry on another key. Some reasons heal
   * (see isHealable): the key verifier re-checks those keys and re-enables them by itself.
   */
  | { kind: 'disable'; reason: string }
  /**
   * Google refuses the gateway's own egress location ("User location is not supported"): every
   * key shares that egress, so no key is at fault and no other key would help. Answer the
   * client with a 4xx at once; disable nothing.
   */
  | { kind: 'egress_refused'; reason: string }
  /** Server-side trouble: retry on another key; counts toward the key's circuit breaker when `circuit`. */
  | { kind: 'retry'; reason: string; circuit: boolean };

interface GoogleErrorDetail {
  '@type'?: string;
  reason?: string;
  retryDelay?: string;
  violations?: Array<{ quotaId?: string; quotaMetric?: string; quotaDimensions?: { model?: unknown } }>;
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

  if (status === 429) {
    // Billing, not a time window: no wait frees it, adding credits does.
    if (BILLING_429.test(message)) return { kind: 'disable', reason: 'BILLING' };
    return classify429(details, nowMs);
  }

  if (status === 400) {
    if (reasons.includes('API_KEY_INVALID') || /API key not valid/i.test(message))
      return { kind: 'disable', reason: 'API_KEY_INVALID' };
    if (RESOURCE_REFUSAL.test(message)) return { kind: 'client_error' };
    if (error?.status === 'FAILED_PRECONDITION') return classifyPrecondition(message);
    return { kind: 'client_error' };
  }
  if (status === 401) return { kind: 'disable', reason: 'UNAUTHENTICATED' };
  if (status === 403 && RESOURCE_REFUSAL.test(message)) return { kind: 'client_error' };
  if (status === 403) return { kind: 'disable', reason: reasonFor403(reasons, message) };
  if (status === 503) return { kind: 'retry', reason: 'UNAVAILABLE', circuit: false };
  if (status === 499) return { kind: 'retry', reason: 'CANCELLED', circuit: false };
  if (status >= 500) return { kind: 'retry', reason: error?.status ?? `HTTP_${status}`, circuit: true };
  if (status === 404 && UNKNOWN_MODEL.test(message)) return { kind: 'client_error', uncounted: true };
  return { kind: 'client_error' };
}

/**
 * Google refuses a resource, not the key: another project's file, cache, batch or operation
 * ("You do not have permission to access the File x or it may not exist.", "CachedContent not
 * found (or permission denied)"), or a file still PROCESSING ("… is not in an ACTIVE state …").
 * The request's fault: passed through, the key stays in service.
 */
const RESOURCE_REFUSAL = /or it may not exist|not found \(or permission denied\)|not in an ACTIVE state/i;

/** Google's 404 for a model it does not know ("models/X is not found for API version v1beta, …"). */
const UNKNOWN_MODEL = /^models\/\S+ is not found for API version/;

/** Google's 429 for a prepaid project without credits (no QuotaFailure, no RetryInfo). */
const BILLING_429 = /prepayment credits are depleted/i;

/**
 * Reasons a key is disabled for that can end without a new key: the project's owner enables
 * the API, adds credits or billing, or loosens the key's restrictions. The key verifier
 * re-checks such keys on a schedule and re-enables them when Google accepts them again. Every
 * other reason (invalid, leaked, suspended, an admin's or the configuration's) is permanent:
 * the key stays off until the keys file changes or an admin re-enables it.
 */
const HEALABLE = new Set([
  'SERVICE_DISABLED',
  'BILLING',
  'BILLING_DISABLED',
  'LOCATION_NEEDS_BILLING',
  'FAILED_PRECONDITION',
  'API_KEY_SERVICE_BLOCKED',
  'API_KEY_HTTP_REFERRER_BLOCKED',
  'API_KEY_IP_ADDRESS_BLOCKED',
  'API_KEY_ANDROID_APP_BLOCKED',
  'API_KEY_IOS_APP_BLOCKED',
]);

export function isHealable(reason: string | null | undefined): boolean {
  return typeof reason === 'string' && HEALABLE.has(reason);
}

/** The reason classifyUpstream gives a location refusal (egress_refused). */
export const EGRESS_REFUSED_REASON = 'USER_LOCATION_NOT_SUPPORTED';

/**
 * 400 FAILED_PRECONDITION. "User location is not supported for the API use." refuses the
 * gateway's egress whatever the key. Its variants that name billing ("… without a billing
 * account linked", "free tier is not available in your country") refuse only projects without
 * billing: a key of a billed project still works from here, so that key is disabled (healable).
 */
function classifyPrecondition(message: string): Verdict {
  const billing = /billing/i.test(message);
  if (/location is not supported/i.test(message) && !billing)
    return { kind: 'egress_refused', reason: EGRESS_REFUSED_REASON };
  if (billing || /free tier is not available/i.test(message))
    return { kind: 'disable', reason: 'LOCATION_NEEDS_BILLING' };
  return { kind: 'disable', reason: 'FAILED_PRECONDITION' };
}

function classify429(details: GoogleErrorDetail[], nowMs: number): Verdict {
  const violations: Array<{ quotaId: string; model: string | undefined }> = [];
  let retryMs: number | undefined;
  for (const d of details) {
    const type = d['@type'] ?? '';
    if (type.endsWith('google.rpc.QuotaFailure') && Array.isArray(d.violations)) {
      for (const v of d.violations) {
        if (typeof v?.quotaId !== 'string') continue;
        const model = v.quotaDimensions?.model;
        violations.push({
          quotaId: v.quotaId,
          model: typeof model === 'string' && model !== '' ? normalizeModel(model) : undefined,
        });
      }
    } else if (type.endsWith('google.rpc.RetryInfo')) {
      retryMs = parseRetryDelay(d.retryDelay);
    }
  }
  if (violations.length === 0 && retryMs === undefined) {
    return { kind: 'throttled', untilMs: nowMs + BARE_429_REST_MS, reason: 'RESOURCE_EXHAUSTED' };
  }
  // A per-day quota's retryDelay is unreliable: the quota frees at the next Pacific midnight.
  const daily = violations.find((v) => /PerDay/i.test(v.quotaId));
  const named = daily ?? violations[0];
  // The model whose quota ran out: the chosen violation's, else any violation's.
  const model = named?.model ?? violations.find((v) => v.model !== undefined)?.model;
  const withModel = model !== undefined ? { model } : {};
  if (daily)
    return {
      kind: 'rest',
      untilMs: nextPacificMidnight(nowMs),
      reason: daily.quotaId,
      daily: true,
      ...withModel,
    };
  return {
    kind: 'rest',
    untilMs: nowMs + (retryMs ?? DEFAULT_REST_MS),
    reason: named?.quotaId ?? 'RESOURCE_EXHAUSTED',
    daily: false,
    ...withModel,
  };
}

function reasonFor403(reasons: string[], message: string): string {
  if (reasons.includes('SERVICE_DISABLED')) return 'SERVICE_DISABLED';
  if (/leaked/i.test(message)) return 'LEAKED';
  if (/suspended/i.test(message)) return 'SUSPENDED';
  if (reasons.length > 0) return reasons[0]!;
  return 'PERMISSION_DENIED';
}
