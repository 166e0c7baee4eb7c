import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ConfigError, type Env, parseEnv } from '../config/env.ts';
import { loadKeys } from '../config/keys.ts';
import { buildHttpApp } from '../http/app.ts';
import { ClientAuth } from '../http/auth.ts';
import type { AppDeps } from '../http/deps.ts';
import { createLogger } from '../observability/logger.ts';
import { KeyPool } from '../pool/key-pool.ts';
import { MemoryStore } from '../store/memory.ts';
import { RedisStore } from '../store/redis.ts';
import type { StateStore } from '../store/types.ts';
import { Forwarder } from '../upstream/forwarder.ts';
import { createUpstreamAgent } from '../upstream/http.ts';
import { PoolCaller } from '../upstream/pool-caller.ts';

export interface Gateway {
  app: FastifyInstance;
  env: Env;
  pool: KeyPool;
  store: StateStore;
  deps: AppDeps;
  /** Stops the HTTP server, the upstream agent and the store. */
  close(): Promise<void>;
}

export function redisUrlOf(env: Env): string | undefined {
  if (env.REDIS_URL) return env.REDIS_URL;
  if (!env.REDIS_HOST) return undefined;
  const auth = env.REDIS_PASSWORD ? `:${encodeURIComponent(env.REDIS_PASSWORD)}@` : '';
  return `redis://${auth}${env.REDIS_HOST}:${env.REDIS_PORT}/${env.REDIS_DB}`;
}

/** The composition root: configuration → state store → key pool → upstream → HTTP app. */
export async function buildGateway(
  source: Record<string, string | undefined>,
  opts: { logger?: Logger } = {},
): Promise<Gateway> {
  const env = parseEnv(source);
  const keys = await loadKeys(env);
  if (keys.length === 0) throw new ConfigError('no pool keys: set API_KEYS_FILE or GEMINI_API_KEYS');
  if (env.CLIENT_API_KEYS_MAP.size === 0 && !env.ALLOW_ANONYMOUS) {
    throw new ConfigError(
      'CLIENT_API_KEYS_MAP is empty: set client tokens ("token:name,...") or ALLOW_ANONYMOUS=true to open the gateway to anyone',
    );
  }
  const logger = opts.logger ?? createLogger(env);

  const redisUrl = redisUrlOf(env);
  let redis: Redis | undefined;
  let store: StateStore;
  if (redisUrl) {
    redis = new Redis(redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true });
    await redis.connect().catch((err: Error) => {
      throw new ConfigError(`REDIS_URL: cannot connect (${err.message})`);
    });
    store = new RedisStore(redis, env.STATE_PREFIX);
  } else {
    store = new MemoryStore();
  }

  const pool = new KeyPool(store, {
    queueMaxWaitMs: env.QUEUE_MAX_WAIT_MS,
    circuit: { failureThreshold: env.CIRCUIT_FAILURE_THRESHOLD, cooldownMs: env.CIRCUIT_COOLDOWN_MS },
  });
  await pool.setKeys(keys);

  const agent = createUpstreamAgent(env.UPSTREAM_TIMEOUT_MS);
  const forwarder = new Forwarder({
    baseUrl: env.GEMINI_BASE_URL,
    agent,
    pool,
    maxAttempts: env.MAX_ATTEMPTS,
    attemptTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
  });
  const gemini = new PoolCaller(forwarder, env.REQUEST_TIMEOUT * 1000);
  const deps: AppDeps = { env, gemini, store, redis, logger, forwarder, pool };
  const app = await buildHttpApp(deps, new ClientAuth(env.CLIENT_API_KEYS_MAP, env.ALLOW_ANONYMOUS));

  return {
    app,
    env,
    pool,
    store,
    deps,
    async close() {
      await app.close();
      await agent.close();
      await store.close();
    },
  };
}
