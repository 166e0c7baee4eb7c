import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppDeps } from '../http/deps.ts';
import { MemoryCacheBackend } from './memory.ts';
import { RedisCacheBackend } from './redis.ts';
import { ResponseCache } from './response-cache.ts';
import type { CacheStatus } from './types.ts';

export { MemoryCacheBackend } from './memory.ts';
export { RedisCacheBackend } from './redis.ts';
export { ResponseCache, stableStringify } from './response-cache.ts';
export type { CacheBackend, CacheStats, CacheStatus } from './types.ts';

export type CacheDeps = Pick<AppDeps, 'env' | 'redis' | 'cacheRedis' | 'logger'>;

/**
 * Redis (TTL CACHE_DEFAULT_TTL) on deps.cacheRedis (CACHE_REDIS_URL's client, set by
 * src/app/build.ts) or else deps.redis, unless CACHE_BACKEND=memory; else the byte-bounded memory
 * LRU; none when CACHE_ENABLED=false. A Redis that fails or does not answer within
 * REDIS_COMMAND_TIMEOUT_MS makes a lookup a miss and a write dropped, never a failed request.
 */
export function createResponseCache(deps: CacheDeps): ResponseCache {
  const { env } = deps;
  const redis = env.CACHE_BACKEND === 'memory' ? undefined : (deps.cacheRedis ?? deps.redis);
  const backend = !env.CACHE_ENABLED
    ? null
    : redis
      ? new RedisCacheBackend(redis, `${env.STATE_PREFIX}cache:`)
      : new MemoryCacheBackend(env.CACHE_MAX_BYTES);
  return new ResponseCache(backend, {
    ttlSeconds: env.CACHE_DEFAULT_TTL,
    compressionThreshold: env.CACHE_COMPRESSION_THRESHOLD,
    logger: deps.logger,
  });
}

/** `Cache-Control: no-cache` (or `Pragma: no-cache`) on the request: skip the lookup, refresh the entry. */
export function wantsBypass(request: FastifyRequest): boolean {
  const cc = request.headers['cache-control'];
  const pragma = request.headers.pragma;
  return /\bno-cache\b/i.test(String(cc ?? '')) || /\bno-cache\b/i.test(String(pragma ?? ''));
}

export function setCacheHeader(reply: FastifyReply, status: CacheStatus): void {
  if (status !== 'OFF') reply.header('x-cache', status);
}
