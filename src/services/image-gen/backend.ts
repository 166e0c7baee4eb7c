import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Env } from '../../config/env.ts';
import { Unavailable } from '../../errors/gateway-errors.ts';

/**
 * The account backend: who the user is, whether they have credits, and where usage goes.
 *
 * - RemoteAccountBackend talks to an existing service at BACKEND_URL (e.g. a Django app):
 *   POST /api/v1/auth/verify/, /api/v1/credits/check/, /api/v1/inference/webhook/, each with
 *   `Authorization: Bearer BACKEND_SERVICE_TOKEN` when set. Network errors and 502/503/504 are
 *   retried with exponential backoff; a backend that stays unreachable is Unavailable (503).
 * - EmbeddedAccountBackend (no BACKEND_URL): api_key must be one of the gateway's client tokens
 *   (CLIENT_API_KEYS_MAP, compared in constant time); credits are unlimited; no webhook.
 */

export interface UsageWebhook {
  user_id: string;
  catalog_id: string;
  status: 'success' | 'failed';
  image_url: string | null;
  latency_ms: number;
  provider: string;
  error?: string;
}

export interface Credits {
  hasCredits: boolean;
  /** null when unknown or unlimited. */
  credits: number | null;
}

export interface AccountBackend {
  readonly mode: 'remote' | 'embedded';
  verifyUser(userId: string, apiKey: string, signal?: AbortSignal): Promise<boolean>;
  checkCredits(userId: string, signal?: AbortSignal): Promise<Credits>;
  /** Queues the usage report and returns at once; delivery is retried in the background. */
  reportUsage(payload: UsageWebhook): void;
  /** Resolves when queued reports are delivered or given up, or after timeoutMs. */
  drain(timeoutMs?: number): Promise<void>;
}

export const VERIFY_PATH = '/api/v1/auth/verify/';
export const CREDITS_PATH = '/api/v1/credits/check/';
export const WEBHOOK_PATH = '/api/v1/inference/webhook/';

export interface RemoteBackendOptions {
  baseUrl: string;
  serviceToken?: string;
  logger: Logger;
  /** Per attempt. Default 10 s. */
  timeoutMs?: number;
  /** Attempts for verify/credits. Default 3. */
  attempts?: number;
  /** First backoff delay; doubles per attempt (with jitter). Default 200 ms. */
  retryBaseMs?: number;
  /** Attempts for a webhook. Default 6. */
  webhookAttempts?: number;
  /** First webhook backoff delay; doubles per attempt, capped at 30 s. Default 500 ms. */
  webhookRetryBaseMs?: number;
  fetch?: typeof fetch;
}

const RETRYABLE_STATUS = new Set([502, 503, 504]);
const UNAVAILABLE = 'the account backend is unavailable, try again later';

class BackendUnavailable extends Error {}

export function createRemoteAccountBackend(opts: RemoteBackendOptions): AccountBackend {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const attempts = opts.attempts ?? 3;
  const retryBaseMs = opts.retryBaseMs ?? 200;
  const webhookAttempts = opts.webhookAttempts ?? 6;
  const webhookRetryBaseMs = opts.webhookRetryBaseMs ?? 500;
  const fetchImpl = opts.fetch ?? fetch;
  const pending = new Set<Promise<void>>();
  const log = opts.logger;

  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (opts.serviceToken) headers.authorization = `Bearer ${opts.serviceToken}`;

  /** One POST; network errors become BackendUnavailable. */
  async function postOnce(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const t = AbortSignal.timeout(timeoutMs);
    try {
      return await fetchImpl(`${base}${path}`, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: signal ? AbortSignal.any([t, signal]) : t,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new BackendUnavailable(`${path}: ${errName(err)}`);
    }
  }

  /** POST with retries on network errors and 502/503/504; answers the first other response. */
  async function post(path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    let last = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(backoff(retryBaseMs, attempt - 1), signal);
      try {
        const res = await postOnce(path, body, signal);
        if (!RETRYABLE_STATUS.has(res.status)) return res;
        await res.body?.cancel().catch(() => {});
        last = `${path}: HTTP ${res.status}`;
      } catch (err) {
        if (!(err instanceof BackendUnavailable)) throw err;
        last = err.message;
      }
    }
    log.warn({ backend: 'account', attempts, error: last }, 'account backend unavailable');
    throw new Unavailable(UNAVAILABLE);
  }

  /** A 200 answer's JSON object; any other status, or a body that is not one, is Unavailable. */
  async function readJson(res: Response, path: string): Promise<Record<string, unknown>> {
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      log.warn({ backend: 'account', path, status: res.status }, 'account backend unexpected status');
      throw new Unavailable(UNAVAILABLE);
    }
    try {
      const v: unknown = await res.json();
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      /* below */
    }
    log.warn({ backend: 'account', path, status: res.status }, 'account backend answered non-JSON');
    throw new Unavailable(UNAVAILABLE);
  }

  async function deliver(payload: UsageWebhook): Promise<void> {
    for (let attempt = 0; attempt < webhookAttempts; attempt++) {
      if (attempt > 0)
        await sleep(Math.min(30_000, backoff(webhookRetryBaseMs, attempt - 1)), undefined, true);
      let status = 0;
      let error = '';
      try {
        const res = await postOnce(WEBHOOK_PATH, payload);
        await res.body?.cancel().catch(() => {});
        status = res.status;
        if (res.ok) return;
        // a 4xx other than 408/429 will not get better by retrying
        if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
          log.warn({ backend: 'account', status, user_id: payload.user_id }, 'usage webhook refused');
          return;
        }
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
      }
      log.warn(
        { backend: 'account', attempt: attempt + 1, status: status || undefined, error: error || undefined },
        'usage webhook failed',
      );
    }
    log.error(
      { backend: 'account', user_id: payload.user_id, catalog_id: payload.catalog_id },
      'usage webhook given up',
    );
  }

  return {
    mode: 'remote',
    async verifyUser(userId, apiKey, signal) {
      const res = await post(VERIFY_PATH, { user_id: userId, api_key: apiKey }, signal);
      if ([400, 401, 403, 404].includes(res.status)) {
        await res.body?.cancel().catch(() => {});
        return false;
      }
      const body = await readJson(res, VERIFY_PATH);
      return body.valid === true;
    },
    async checkCredits(userId, signal) {
      const res = await post(CREDITS_PATH, { user_id: userId }, signal);
      if (res.status === 402 || res.status === 403) {
        await res.body?.cancel().catch(() => {});
        return { hasCredits: false, credits: 0 };
      }
      const body = await readJson(res, CREDITS_PATH);
      if (typeof body.has_credits !== 'boolean') {
        log.warn({ backend: 'account', path: CREDITS_PATH }, 'credits answer without has_credits');
        throw new Unavailable(UNAVAILABLE);
      }
      return {
        hasCredits: body.has_credits,
        credits: typeof body.credits === 'number' ? body.credits : null,
      };
    },
    reportUsage(payload) {
      const p = deliver(payload)
        .catch((err: unknown) =>
          log.error({ backend: 'account', error: errName(err) }, 'usage webhook crashed'),
        )
        .finally(() => pending.delete(p));
      pending.add(p);
    },
    drain: (timeoutMs = 10_000) => drainAll(pending, timeoutMs),
  };
}

export function createEmbeddedAccountBackend(clientTokens: Iterable<string>): AccountBackend {
  const digests = [...clientTokens].map(sha256);
  return {
    mode: 'embedded',
    async verifyUser(_userId, apiKey) {
      const candidate = sha256(apiKey);
      let ok = false;
      // every token is compared, so timing does not tell which one (or whether any) matched
      for (const d of digests) ok = timingSafeEqual(d, candidate) || ok;
      return ok;
    },
    async checkCredits() {
      return { hasCredits: true, credits: null };
    },
    reportUsage() {},
    async drain() {},
  };
}

export function createAccountBackend(env: Env, logger: Logger): AccountBackend {
  return env.BACKEND_URL
    ? createRemoteAccountBackend({
        baseUrl: env.BACKEND_URL,
        serviceToken: env.BACKEND_SERVICE_TOKEN,
        logger,
      })
    : createEmbeddedAccountBackend(env.CLIENT_API_KEYS_MAP.keys());
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function backoff(baseMs: number, n: number): number {
  const d = baseMs * 2 ** n;
  return d / 2 + Math.random() * (d / 2);
}

/** unref: a background retry does not keep the process alive on shutdown. */
function sleep(ms: number, signal?: AbortSignal, unref = false): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (unref) t.unref();
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function errName(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string } };
  return e?.cause?.code ?? e?.code ?? e?.name ?? 'error';
}

async function drainAll(pending: Set<Promise<void>>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0 && Date.now() < deadline) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...pending]),
      new Promise<void>((r) => {
        timer = setTimeout(r, Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
  }
}
