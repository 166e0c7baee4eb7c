import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ClientBudget } from '../clients/budget.ts';
import type { ClientRegistry } from '../clients/registry.ts';
import type { Env } from '../config/env.ts';
import type { KeyManager } from '../config/keys-store.ts';
import type { ConfigReloader } from '../config/reload.ts';
import type { RequestContext } from '../observability/logger.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { KeyPool } from '../pool/key-pool.ts';
import type { KeyVerifier } from '../pool/verify.ts';
import type { StateStore } from '../store/types.ts';
import type { Forwarder } from '../upstream/forwarder.ts';
import type { GeminiCaller } from '../upstream/gemini-caller.ts';
import type { UsageRecorder } from '../usage/recorder.ts';
import type { Cancellation } from '../util/cancel.ts';
import type { CallerRateLimiter } from './rate-limit.ts';

/** What route plugins receive. Built once at start in src/app/build.ts. */
export interface AppDeps {
  env: Env;
  /** Every Gemini call of the application services goes through this (the key pool). */
  gemini: GeminiCaller;
  /** Shared state: key budgets, counters (store.hit) for throttles and caller limits. */
  store: StateStore;
  /** The Redis connection when REDIS_URL/REDIS_HOST is configured (cache backend), else undefined. */
  redis?: Redis;
  /**
   * The response cache's Redis when it has one of its own (CACHE_REDIS_URL) or shares `redis`;
   * undefined: the cache is in memory (or off). Unset in hand-built deps: the cache follows `redis`.
   */
  cacheRedis?: Redis;
  logger: Logger;
  /** The native proxy's path to Google (key pool + retries). */
  forwarder: Forwarder;
  pool: KeyPool;
  // Operations (set by src/app/build.ts; optional so a test can build AppDeps by hand).
  /** Prometheus metrics of this gateway. */
  metrics?: GatewayMetrics;
  /** The key list and its persistence (admin API). */
  keys?: KeyManager;
  /** Hot reload of API_KEYS_FILE and CONFIG_FILE. */
  reloader?: ConfigReloader;
  /** Caller rate limits (per IP, per client). */
  rateLimiter?: CallerRateLimiter;
  /** Key verification before traffic (VERIFY_KEYS); undefined when off. */
  verifier?: KeyVerifier;
  /** Usage and cost per client, model and day (src/usage); undefined in hand-built deps. */
  usage?: UsageRecorder;
  /** The gateway's clients (CLIENT_API_KEYS_MAP, CLIENTS_FILE, admin-made): src/clients/. */
  clients?: ClientRegistry;
  /**
   * Clients' own budgets. The usage accounting calls clientBudget.recordTokens(client, tokens)
   * after each answer (prompt + output tokens) for tokens_per_day.
   */
  clientBudget?: ClientBudget;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Fires at REQUEST_TIMEOUT or when the client goes away: services pass it on as ctx.signal
     * so the upstream call is aborted with the request. (Not Fastify's request.signal, which
     * fires as soon as a request body has been read.)
     */
    abortSignal: AbortSignal;
    /** The same as abortSignal, without an AbortSignal unless one is asked for (see Cancellation). */
    cancellation: Cancellation | null;
    /** Epoch ms of the request's REQUEST_TIMEOUT deadline. */
    deadlineMs: number;
    /** The connection closed before the answer was complete (recorded with status 499). */
    clientGone: boolean;
    /** Name of the authenticated client (never its token); undefined on routes without client auth. */
    clientName?: string;
    /** The route's options, read once per request (see routeOf). */
    routeInfo: FastifyRequest['routeOptions'] | null;
    /** What is known about the request while it is served (see requestContext); null before onRequest. */
    context: RequestContext | null;
    /** Set when the request went upstream: for the request log line and the overhead metric. */
    upstream?: { keyId: string | null; ms: number; attempts: number; queuedMs: number };
  }
  interface FastifyContextConfig {
    /** false: the route does not require a client token (health, docs, media, admin has its own). */
    clientAuth?: boolean;
    /** true: errors are rendered in Google's error shape instead of problem+json. */
    googleErrors?: boolean;
    /** false: exempt from the caller rate limits (health, metrics, docs). */
    rateLimit?: boolean;
    /** true: an HTML page (docs, dashboard): helmet's full header set instead of the API set. */
    page?: boolean;
  }
}
