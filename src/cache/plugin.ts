import type { FastifyInstance } from 'fastify';
import { type CacheDeps, createResponseCache } from './index.ts';
import type { ResponseCache } from './response-cache.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The app's one response cache: the application routes read and fill it, /internal/cache and
     * the metrics read its stats and invalidate it. Set by decorateResponseCache.
     */
    responseCache: ResponseCache;
  }
}

/**
 * Builds the app's response cache from its deps and decorates the root instance with it, so
 * every route plugin registered afterwards reaches the same cache as `app.responseCache`.
 * Called on the root instance directly (not through app.register, whose encapsulation would
 * hide the decorator from sibling plugins).
 */
export function decorateResponseCache(app: FastifyInstance, deps: CacheDeps): void {
  app.decorate('responseCache', createResponseCache(deps));
}
