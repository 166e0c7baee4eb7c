import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { getResponseCache } from '../cache/index.ts';
import { ConfigError, type Env, parseEnv } from '../config/env.ts';
import type { KeyConfig } from '../config/keys.ts';
import { KeyManager } from '../config/keys-store.ts';
import { ConfigReloader, type EffectiveSettings } from '../config/reload.ts';
import { buildHttpApp } from '../http/app.ts';
import { ClientAuth } from '../http/auth.ts';
import type { AppDeps } from '../http/deps.ts';
import { CallerRateLimiter, type RateLimitSettings } from '../http/rate-limit.ts';
import { createLogger, flushLogger, SecretScrubber } from '../observability/logger.ts';
import { GatewayMetrics } from '../observability/metrics.ts';
import { KeyPool } from '../pool/key-pool.ts';
import { MemoryStore } from '../store/memory.ts';
import { REDIS_OPTIONS, RedisStore } from '../store/redis.ts';
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
  logger: Logger;
  metrics: GatewayMetrics;
  keys: KeyManager;
  reloader: ConfigReloader;
  /**
   * Graceful stop: no new connections, requests and streams in flight run to their end, then
   * the upstream agent and the store are closed.
   */
  close(): Promise<void>;
  /** Cuts every open connection now (the shutdown deadline passed). */
  forceClose(): void;
}

function redisUrlOf(env: Env): string | undefined {
  if (env.REDIS_URL) return env.REDIS_URL;
  if (!env.REDIS_HOST) return undefined;
  const auth = env.REDIS_PASSWORD ? `:${encodeURIComponent(env.REDIS_PASSWORD)}@` : '';
  return `redis://${auth}${env.REDIS_HOST}:${env.REDIS_PORT}/${env.REDIS_DB}`;
}

/** Every secret of the configuration other than pool keys: never to appear in a log line. */
function configSecrets(env: Env): string[] {
  const secrets = [...env.CLIENT_API_KEYS_MAP.keys()];
  for (const s of [
    env.ADMIN_TOKEN,
    env.METRICS_TOKEN,
    env.REDIS_PASSWORD,
    env.BACKEND_SERVICE_TOKEN,
    env.OPENAI_API_KEY,
    env.STABILITY_API_KEY,
  ])
    if (s) secrets.push(s);
  if (env.REDIS_URL) {
    try {
      const password = new URL(env.REDIS_URL).password;
      if (password) secrets.push(decodeURIComponent(password));
    } catch {
      /* not a URL: ioredis will say so */
    }
  }
  return secrets;
}

export function rateLimitSettings(s: EffectiveSettings): RateLimitSettings {
  return {
    ipPerMinute: s.GLOBAL_RATE_LIMIT,
    ipBurst: s.BURST_RATE_LIMIT,
    clientPerMinute: s.CLIENT_RATE_LIMIT,
    perClient: s.CLIENT_RATE_LIMITS,
  };
}

/** The composition root: configuration → state store → key pool → upstream → HTTP app. */
export async function buildGateway(
  source: Record<string, string | undefined>,
  opts: { logger?: Logger } = {},
): Promise<Gateway> {
  const env = parseEnv(source);
  if (env.CLIENT_API_KEYS_MAP.size === 0 && !env.ALLOW_ANONYMOUS) {
    throw new ConfigError(
      'CLIENT_API_KEYS_MAP is empty: set client tokens ("token:name,...") or ALLOW_ANONYMOUS=true to open the gateway to anyone',
    );
  }
  const baseSecrets = configSecrets(env);
  const scrubber = new SecretScrubber(baseSecrets);
  const ownLogger = !opts.logger;
  const logger = opts.logger ?? createLogger(env, scrubber);

  const redisUrl = redisUrlOf(env);
  let redis: Redis | undefined;
  let store: StateStore;
  if (redisUrl) {
    redis = new Redis(redisUrl, {
      ...REDIS_OPTIONS,
      maxRetriesPerRequest: 2,
      lazyConnect: true,
      // Connected below before use; once connected, a lost connection fails commands at once
      // (pool requests 503, readiness not ready) instead of queueing them through reconnect retries.
      enableOfflineQueue: false,
    });
    await redis.connect().catch((err: Error) => {
      throw new ConfigError(`REDIS_URL: cannot connect (${err.message})`);
    });
    store = new RedisStore(redis, env.STATE_PREFIX);
    // ioredis reconnects by itself; say so once per outage instead of an unhandled error event.
    let down = false;
    redis.on('error', (err: Error) => {
      if (!down)
        logger.warn({ err: err.message }, 'redis unreachable; pool requests answer 503 until it is back');
      down = true;
    });
    redis.on('ready', () => {
      if (down) logger.info('redis reachable again');
      down = false;
    });
  } else {
    store = new MemoryStore();
  }

  const pool = new KeyPool(store, {
    queueMaxWaitMs: env.QUEUE_MAX_WAIT_MS,
    circuit: { failureThreshold: env.CIRCUIT_FAILURE_THRESHOLD, cooldownMs: env.CIRCUIT_COOLDOWN_MS },
  });
  const keys = new KeyManager({ env, pool, store, logger });
  try {
    const loaded = await keys.load();
    if (loaded.length === 0) throw new ConfigError('no pool keys: set API_KEYS_FILE or GEMINI_API_KEYS');
  } catch (err) {
    await store.close();
    throw err;
  }
  // Every pool key ever configured in this process stays scrubbed, removed ones included.
  const poolSecrets = new Set<string>();
  keys.onChange = (configs: readonly KeyConfig[]) => {
    for (const k of configs) poolSecrets.add(k.apiKey);
    scrubber.set([...baseSecrets, ...poolSecrets]);
  };
  await keys.apply();

  const metrics = new GatewayMetrics();

  const agent = createUpstreamAgent(env.UPSTREAM_TIMEOUT_MS);
  const forwarder = new Forwarder({
    baseUrl: env.GEMINI_BASE_URL,
    agent,
    pool,
    maxAttempts: env.MAX_ATTEMPTS,
    attemptTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
    observer: metrics,
  });
  const gemini = new PoolCaller(forwarder, env.REQUEST_TIMEOUT * 1000);

  const rateLimiter = new CallerRateLimiter(
    store,
    { ipPerMinute: 0, ipBurst: 0, clientPerMinute: 0, perClient: new Map() },
    { logger },
  );
  rateLimiter.onRefusal = (scope) => metrics.rateLimited.inc({ scope });
  // The level is set only when CONFIG_FILE changes it (a logger handed in keeps its own).
  let logLevel = env.LOG_LEVEL;
  const reloader = new ConfigReloader({
    env,
    keys,
    logger,
    applyConfig: (settings) => {
      rateLimiter.update(rateLimitSettings(settings));
      if (settings.LOG_LEVEL !== logLevel) {
        logger.level = settings.LOG_LEVEL;
        logLevel = settings.LOG_LEVEL;
      }
    },
    onResult: (source, result) => metrics.reloads.inc({ source, result }),
  });
  try {
    await reloader.init();
  } catch (err) {
    await store.close();
    throw err;
  }

  const deps: AppDeps = {
    env,
    gemini,
    store,
    redis,
    logger,
    forwarder,
    pool,
    metrics,
    keys,
    reloader,
    rateLimiter,
  };
  metrics.setKeySource(async () => {
    const now = Date.now();
    return { configs: pool.keys, states: await store.keyStates(now, pool.calendarAt(now).day) };
  });
  metrics.setQueueSource(() => pool.queueLength);
  const cache = getResponseCache(deps);
  metrics.setCacheSource(() => cache.stats());

  const app = await buildHttpApp(deps, new ClientAuth(env.CLIENT_API_KEYS_MAP, env.ALLOW_ANONYMOUS));
  reloader.start();

  let closed: Promise<void> | null = null;
  return {
    app,
    env,
    pool,
    store,
    deps,
    logger,
    metrics,
    keys,
    reloader,
    close() {
      closed ??= (async () => {
        reloader.stop();
        // Connections whose last answer ended during the drain would otherwise idle until
        // their keep-alive timeout before the server may close.
        const sweep = setInterval(() => app.server.closeIdleConnections?.(), 100);
        try {
          await app.close();
        } finally {
          clearInterval(sweep);
        }
        await agent.close();
        await store.close();
        if (ownLogger) await flushLogger(logger);
      })();
      return closed;
    },
    forceClose() {
      app.server.closeAllConnections?.();
    },
  };
}
