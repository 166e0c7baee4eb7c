import type { FastifyRequest } from 'fastify';
import { PermissionDenied } from '../errors/gateway-errors.ts';
import { normalizeModel } from '../pool/models.ts';
import { allowsModel, type Client } from './client.ts';

/**
 * Clients limited to some models, by request: set by the caller gate only for such clients, so
 * every other request pays nothing (no decoration, no lookup beyond a WeakMap miss).
 */
const restricted = new WeakMap<FastifyRequest, Client>();

/** Called by the caller gate once the request's client is known. */
export function noteClient(request: FastifyRequest, client: Client): void {
  if (client.models !== null) restricted.set(request, client);
}

/**
 * The route-level check, where the model is known (native routes: the path; OpenAI routes and
 * the application endpoints: the body): a client not allowed `model` gets a 403 in the route's
 * error shape, before anything goes upstream or to the cache.
 */
export function assertModelAllowed(request: FastifyRequest, model: string): void {
  const client = restricted.get(request);
  if (client === undefined || allowsModel(client, model)) return;
  throw new PermissionDenied(
    `client "${client.name}" may not use model "${normalizeModel(model)}" (allowed: ${client.models!.join(', ')})`,
  );
}

/** A fallback chain without the models the request's client may not use. */
export function allowedFallbacks(
  request: FastifyRequest,
  fallbacks: readonly string[] | undefined,
): readonly string[] | undefined {
  const client = restricted.get(request);
  if (client === undefined || fallbacks === undefined) return fallbacks;
  return fallbacks.filter((m) => allowsModel(client, m));
}
