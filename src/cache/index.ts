import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Env } from '../config/env.ts';
import type { AppDeps } from '../http/deps.ts';
import { MemoryCacheBackend } from './memory.ts';
import { RedisCacheBackend } from './redis.ts';
import { ResponseCache } from './response-cache.ts';
import type { CacheStatus } from './types.ts';

export { MemoryCacheBackend } from './memory.ts';
export { RedisCacheBackend } from './redis.ts';
export { ResponseCache, stableStringify } from './response-cache.ts';
export type { CacheBackend, CacheStats, CacheStatus } from './types.ts';

/** Redis when deps.redis is set (TTL CACHE_DEFAULT_TTL), else the byte-bounded memory LRU; none when CACHE_ENABLED=false. */
export function createResponseCache(deps: Pick<AppDeps, 'env' | 'redis' | 'logger'>): ResponseCache {
  const { env } = deps;
  const backend = !env.CACHE_ENABLED
    ? null
    : deps.redis
      ? new RedisCacheBackend(deps.redis, `${env.STATE_PREFIX}cache:`)
      : new MemoryCacheBackend(env.CACHE_MAX_BYTES);
  return new ResponseCache(backend, {
    ttlSeconds: env.CACHE_DEFAULT_TTL,
    compressionThreshold: env.CACHE_COMPRESSION_THRESHOLD,
    logger: deps.logger,
  });
}

const perApp = new WeakMap<Env, ResponseCache>();

/**
 * The one response cache of an app (memoized on its env object), shared by the application
 * routes and by whoever exposes its stats / invalidation (/internal/cache, metrics).
 */
export function getResponseCache(deps: Pick<AppDeps, 'env' | 'redis' | 'logger'>): ResponseCache {
  let cache = perApp.get(deps.env);
  if (!cache) {
    cache = createResponseCache(deps);
    perApp.set(deps.env, cache);
  }
  return cache;
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
