import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ClientBudget } from '../clients/budget.ts';
import { ClientRegistry } from '../clients/registry.ts';
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
import { EgressRefusals, KeyVerifier, registerVerifyMetrics } from '../pool/verify.ts';
import { FailoverStore, registerFailoverMetrics } from '../store/failover.ts';
import { MemoryStore } from '../store/memory.ts';
import { openRedisState, redisTopologyOf } from '../store/open-redis.ts';
import { checkEvictionPolicy, connectRedis, createRedisClient, redisRunId } from '../store/redis-client.ts';
import type { StateStore } from '../store/types.ts';
import { Forwarder } from '../upstream/forwarder.ts';
import { createUpstreamAgent } from '../upstream/http.ts';
import { PoolCaller } from '../upstream/pool-caller.ts';
import { ResponseScrubber } from '../upstream/response-scrub.ts';
import { createUsage, type UsageRecorder } from '../usage/index.ts';
import { registerUsageMetrics } from '../usage/metrics.ts';

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
  /** Checks keys before traffic (VERIFY_KEYS); undefined when off. */
  verifier: KeyVerifier | undefined;
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
    env.REDIS_SENTINEL_PASSWORD,
    env.BACKEND_SERVICE_TOKEN,
    env.OPENAI_API_KEY,
    env.STABILITY_API_KEY,
  ])
    if (s) secrets.push(s);
  for (const url of [env.REDIS_URL, env.CACHE_REDIS_URL]) {
    if (!url) continue;
    try {
      const password = new URL(url).password;
      if (password) secrets.push(decodeURIComponent(password));
    } catch {
      /* a Unix socket path */
    }
  }
  return secrets;
}

/** Whether two clients talk to one Redis server (CACHE_REDIS_URL naming REDIS_URL's server, say). */
async function sameServer(a: Redis, b: Redis): Promise<boolean> {
  const [idA, idB] = await Promise.all([redisRunId(a), redisRunId(b)]);
  return idA !== null && idA === idB;
}

/**
 * The response cache's Redis: CACHE_REDIS_URL's own client (connected here), or the state
 * store's; undefined when the cache is off or in memory (CACHE_BACKEND=memory, or no Redis).
 */
async function openCacheRedis(
  env: Env,
  stateRedis: Redis | undefined,
  logger: Logger,
): Promise<Redis | undefined> {
  if (!env.CACHE_ENABLED || env.CACHE_BACKEND === 'memory') return undefined;
  if (env.CACHE_REDIS_URL) {
    const client = createRedisClient(env.CACHE_REDIS_URL, {
      role: 'response cache',
      setting: 'CACHE_REDIS_URL',
      commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
      logger,
      whileDown: 'cache lookups are misses until it is back',
    });
    await connectRedis(client);
    return client;
  }
  if (env.CACHE_BACKEND === 'redis' && !stateRedis)
    throw new ConfigError('CACHE_BACKEND=redis needs a Redis: set CACHE_REDIS_URL (or REDIS_URL)');
  return stateRedis;
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
  /** store: the embedded state store to use instead of a MemoryStore of its own (a worker's IPC store). */
  opts: { logger?: Logger; store?: StateStore } = {},
): Promise<Gateway> {
  const env = parseEnv(source);
  // Clients come from CLIENT_API_KEYS_MAP, CLIENTS_FILE or the admin API (src/clients/).
  const clientSources = env.CLIENT_API_KEYS_MAP.size > 0 || env.CLIENTS_FILE !== undefined;
  if (!clientSources && !env.ADMIN_TOKEN && !env.ALLOW_ANONYMOUS) {
    throw new ConfigError(
      'no clients: set client tokens (CLIENT_API_KEYS_MAP="token:name,..." or CLIENTS_FILE), or ADMIN_TOKEN to create them through /admin/clients, or ALLOW_ANONYMOUS=true to open the gateway to anyone',
    );
  }
  /** No client sources and ALLOW_ANONYMOUS: callers without a known token are "anonymous". */
  const anonymous = env.ALLOW_ANONYMOUS && !clientSources;
  const baseSecrets = configSecrets(env);
  const scrubber = new SecretScrubber(baseSecrets);
  const ownLogger = !opts.logger;
  const logger = opts.logger ?? createLogger(env, scrubber);
  if (anonymous)
    logger.warn(
      'ALLOW_ANONYMOUS=true and no CLIENT_API_KEYS_MAP: ANYONE who can reach this gateway can spend the key pool; set client tokens unless it is reachable only by trusted callers',
    );

  const redisUrl = redisUrlOf(env);
  let redis: Redis | undefined;
  let store: StateStore;
  // One server, a Sentinel group or a Cluster; with STORE_FAILURE_MODE=local, wrapped so that an
  // unreachable Redis leaves each instance serving its share of every budget (store/failover.ts).
  const topology = redisTopologyOf(env, redisUrl);
  if (topology) {
    ({ redis, store } = await openRedisState(env, topology, logger));
  } else {
    store = opts.store ?? new MemoryStore();
  }
  let cacheRedis: Redis | undefined;
  /** Closes the state store and the cache's own Redis client (if any). */
  /** Usage accounting (src/usage): its last counts are written before the stores close. */
  let usage: UsageRecorder | undefined;
  const closeStores = async () => {
    await usage?.close();
    await store.close();
    if (cacheRedis && cacheRedis !== redis) await cacheRedis.quit().catch(() => cacheRedis?.disconnect());
  };
  try {
    cacheRedis = await openCacheRedis(env, redis, logger);
    if (redis) {
      // Rate state must never be evicted to make room for cached answers (one server, one memory).
      const shared =
        cacheRedis !== undefined && (cacheRedis === redis || (await sameServer(cacheRedis, redis)));
      await checkEvictionPolicy(redis, { cacheShares: shared, logger });
    }
  } catch (err) {
    await closeStores();
    throw err;
  }

  const pool = new KeyPool(store, {
    queueMaxWaitMs: env.QUEUE_MAX_WAIT_MS,
    circuit: { failureThreshold: env.CIRCUIT_FAILURE_THRESHOLD, cooldownMs: env.CIRCUIT_COOLDOWN_MS },
    verifyKeys: env.VERIFY_KEYS,
  });
  const keys = new KeyManager({ env, pool, store, logger });
  try {
    const loaded = await keys.load();
    if (loaded.length === 0) throw new ConfigError('no pool keys: set API_KEYS_FILE or GEMINI_API_KEYS');
  } catch (err) {
    await closeStores();
    throw err;
  }
  // Every pool key ever configured in this process stays scrubbed, removed ones included.
  const poolSecrets = new Set<string>();
  /** Plain client tokens known to this process besides CLIENT_API_KEYS_MAP's (CLIENTS_FILE, minted). */
  let clientSecrets: readonly string[] = [];
  // Pool keys and client tokens are taken out of every upstream answer passed on to a client
  // (an upstream sees no other secret of the gateway's, so it cannot echo one).
  const clientTokens = [...env.CLIENT_API_KEYS_MAP.keys()];
  const responseScrubber = new ResponseScrubber(clientTokens);
  keys.onChange = (configs: readonly KeyConfig[]) => {
    for (const k of configs) poolSecrets.add(k.apiKey);
    scrubber.set([...baseSecrets, ...poolSecrets, ...clientSecrets]);
    responseScrubber.set([...clientTokens, ...poolSecrets]);
  };
  await keys.apply();

  const metrics = new GatewayMetrics({
    perKey: env.METRICS_PER_KEY,
    maxProjects: env.METRICS_MAX_PROJECTS,
    poolSize: () => pool.keys.length,
  });
  if (store instanceof FailoverStore) registerFailoverMetrics(metrics.registry, store);
  // Usage and cost per client, model and day: in Redis when the state is, else under DATA_DIR.
  try {
    usage = await createUsage(env, { redis, logger });
  } catch (err) {
    await closeStores();
    throw err;
  }
  registerUsageMetrics(metrics.registry, usage);

  const agent = createUpstreamAgent(env.UPSTREAM_TIMEOUT_MS);
  // Keys verified before traffic (src/pool/verify.ts); started below, once the configuration is read.
  const verifyMetrics = registerVerifyMetrics(metrics.registry, () => verifier?.summary() ?? null);
  const egress = new EgressRefusals({ logger, counter: verifyMetrics.egressRefused });
  const verifier = env.VERIFY_KEYS
    ? new KeyVerifier({
        baseUrl: env.GEMINI_BASE_URL,
        agent,
        store,
        concurrency: env.VERIFY_CONCURRENCY,
        recheckMs: env.VERIFY_RECHECK_MS,
        timeoutMs: Math.min(env.UPSTREAM_TIMEOUT_MS, 10_000),
        logger,
        onResult: (result) => verifyMetrics.verifications.inc({ result }),
        onEgressRefused: () => egress.note('verification'),
      })
    : undefined;
  const forwarder = new Forwarder({
    baseUrl: env.GEMINI_BASE_URL,
    agent,
    pool,
    maxAttempts: env.MAX_ATTEMPTS,
    attemptTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
    observer: metrics,
    onEgressRefused: () => egress.note('request'),
    scrubber: responseScrubber,
    usage,
  });
  const gemini = new PoolCaller(forwarder, env.REQUEST_TIMEOUT * 1000);

  const rateLimiter = new CallerRateLimiter(
    store,
    { ipPerMinute: 0, ipBurst: 0, clientPerMinute: 0, perClient: new Map() },
    { logger },
  );
  rateLimiter.onRefusal = (scope) => metrics.rateLimited.inc({ scope });
  // The client registry: CLIENT_API_KEYS_MAP, CLIENTS_FILE and the admin-made clients of the store.
  const clients = new ClientRegistry({
    store,
    env,
    logger,
    shared: store.kind === 'redis' || opts.store !== undefined,
  });
  clients.onSecrets = (tokens) => {
    clientSecrets = tokens;
    scrubber.set([...baseSecrets, ...poolSecrets, ...clientSecrets]);
  };
  try {
    await clients.init();
  } catch (err) {
    await closeStores();
    throw err;
  }
  const clientBudget = new ClientBudget({
    store,
    calendar: (ms) => pool.calendarAt(ms),
    defaultRpm: (name) => rateLimiter.clientLimit(name),
    find: (name) => clients.get(name),
    logger,
  });
  clientBudget.onRefusal = (scope) => metrics.rateLimited.inc({ scope });
  // tokens_per_day: every answer's tokens (prompt + output + thinking), as usage counts them.
  usage.onTokens = (client, tokens) => void clientBudget.recordTokens(client, tokens);
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
    // A changed keys file: every key is checked again (its owner may have fixed the dead ones).
    onKeysReloaded: () => void verifier?.reverifyAll(),
  });
  try {
    await reloader.init();
  } catch (err) {
    await closeStores();
    throw err;
  }
  if (verifier) {
    const scrub = keys.onChange;
    keys.onChange = (configs) => {
      scrub?.(configs);
      void verifier.keysChanged(configs);
    };
    // Keys verified before traffic, as far as VERIFY_STARTUP_WAIT_MS allows; never a reason not to start.
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([
      verifier.start(keys.configs()),
      new Promise<void>((resolve) => {
        waited = setTimeout(resolve, env.VERIFY_STARTUP_WAIT_MS);
      }),
    ]);
    clearTimeout(waited);
  }

  const deps: AppDeps = {
    env,
    gemini,
    store,
    redis,
    cacheRedis,
    logger,
    forwarder,
    pool,
    metrics,
    keys,
    reloader,
    rateLimiter,
    verifier,
    clients,
    clientBudget,
    usage,
  };
  metrics.setKeySource(async () => {
    const now = Date.now();
    return { configs: pool.keys, states: await store.keyStates(now, pool.calendarAt(now).day) };
  });
  metrics.setBudgetSource(() => {
    const now = Date.now();
    return store.budgetStates(now, pool.calendarAt(now).day);
  });
  metrics.setQueueSource(() => pool.queueLength);

  const app = await buildHttpApp(deps, new ClientAuth(clients, anonymous));
  metrics.setCacheSource(() => app.responseCache.stats());
  reloader.start();
  clients.startWatching();

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
    verifier,
    close() {
      closed ??= (async () => {
        reloader.stop();
        clients.stop();
        verifier?.stop();
        // Connections whose last answer ended during the drain would otherwise idle until
        // their keep-alive timeout before the server may close.
        const sweep = setInterval(() => app.server.closeIdleConnections?.(), 100);
        try {
          await app.close();
        } finally {
          clearInterval(sweep);
        }
        await agent.close();
        await closeStores();
        if (ownLogger) await flushLogger(logger);
      })();
      return closed;
    },
    forceClose() {
      app.server.closeAllConnections?.();
    },
  };
}
