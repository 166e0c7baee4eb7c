import type { FastifyRequest } from 'fastify';

/**
 * The request's route options. Fastify's request.routeOptions builds a new object on every
 * read; the hooks of one request (auth, rate limits, error rendering, the access line) share one.
 */
export function routeOf(request: FastifyRequest): FastifyRequest['routeOptions'] {
  request.routeInfo ??= request.routeOptions;
  return request.routeInfo;
}
