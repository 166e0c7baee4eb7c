import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../deps.ts';

/** Every route plugin, registered in one place. A new surface is one file plus one line here. */
export async function registerRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { nativeRoutes } = await import('./native.ts');
  await app.register(nativeRoutes, deps);
}
