import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Env } from '../config/env.ts';
import { FailoverStore } from './failover.ts';
import { RedisStore } from './redis.ts';
import { clusterPrefix, connectRedis, createRedisClientFor, type RedisTopology } from './redis-client.ts';
import type { StateStore } from './types.ts';

/**
 * Where the state store's Redis is: REDIS_URL (or REDIS_HOST...), a Sentinel group
 * (REDIS_SENTINELS + REDIS_SENTINEL_NAME) or a Cluster (REDIS_CLUSTER_NODES); undefined: no Redis
 * (embedded). parseEnv lets at most one of them be set.
 */
export function redisTopologyOf(env: Env, url: string | undefined): RedisTopology | undefined {
  if (env.REDIS_SENTINELS)
    return {
      kind: 'sentinel',
      sentinels: env.REDIS_SENTINELS,
      name: env.REDIS_SENTINEL_NAME!,
      password: env.REDIS_PASSWORD,
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      db: env.REDIS_DB,
    };
  if (env.REDIS_CLUSTER_NODES)
    return { kind: 'cluster', nodes: env.REDIS_CLUSTER_NODES, password: env.REDIS_PASSWORD };
  return url ? { kind: 'url', url } : undefined;
}

/**
 * The state store on Redis, connected: a RedisStore on the client (its keys under STATE_PREFIX,
 * made a hash tag on a Cluster), wrapped by a FailoverStore (heartbeats started) when
 * STORE_FAILURE_MODE=local. The client is returned too: the response cache may share it.
 */
export async function openRedisState(
  env: Env,
  topology: RedisTopology,
  logger: Logger,
): Promise<{ redis: Redis; store: StateStore }> {
  const local = env.STORE_FAILURE_MODE === 'local';
  const setting =
    topology.kind === 'sentinel'
      ? 'REDIS_SENTINELS'
      : topology.kind === 'cluster'
        ? 'REDIS_CLUSTER_NODES'
        : env.REDIS_URL
          ? 'REDIS_URL'
          : 'REDIS_HOST';
  // Every command answers or fails within REDIS_COMMAND_TIMEOUT_MS, nothing is sent twice,
  // and an outage is one log line (redis-client.ts).
  const redis = createRedisClientFor(topology, {
    role: 'state store',
    setting,
    commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
    logger,
    whileDown: local
      ? 'each instance serves its share of every budget from memory until it is back (STORE_FAILURE_MODE=local)'
      : 'pool requests answer 503 until it is back (STORE_FAILURE_MODE=closed)',
  });
  await connectRedis(redis);
  const prefix = topology.kind === 'cluster' ? clusterPrefix(env.STATE_PREFIX) : env.STATE_PREFIX;
  const redisStore = new RedisStore(redis, prefix);
  if (!local) return { redis, store: redisStore };
  const store = new FailoverStore(redisStore, prefix, { logger });
  await store.start();
  return { redis, store };
}
