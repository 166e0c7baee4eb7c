import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Env } from '../config/env.ts';
import type { KeyPool } from '../pool/key-pool.ts';
import type { StateStore } from '../store/types.ts';
import type { Forwarder } from '../upstream/forwarder.ts';
import type { GeminiCaller } from '../upstream/gemini-caller.ts';

/** What route plugins receive. Built once at start in src/app/build.ts. */
export interface AppDeps {
  env: Env;
  /** Every Gemini call of the application services goes through this (the key pool). */
  gemini: GeminiCaller;
  /** Shared state: key budgets, counters (store.hit) for throttles and caller limits. */
  store: StateStore;
  /** The Redis connection when REDIS_URL/REDIS_HOST is configured (cache backend), else undefined. */
  redis?: Redis;
  logger: Logger;
  /** The native proxy's path to Google (key pool + retries). */
  forwarder: Forwarder;
  pool: KeyPool;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the authenticated client (never its token); undefined on routes without client auth. */
    clientName?: string;
    /** Set when the request went upstream: for the request log line and the overhead metric. */
    upstream?: { keyId: string | null; ms: number; attempts: number; queuedMs: number };
  }
  interface FastifyContextConfig {
    /** false: the route does not require a client token (health, docs, media, admin has its own). */
    clientAuth?: boolean;
    /** true: errors are rendered in Google's error shape instead of problem+json. */
    googleErrors?: boolean;
  }
}
