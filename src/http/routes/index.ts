import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../deps.ts';

/** Every route plugin, registered in one place. A new surface is one file plus one line here. */
export async function registerRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { healthRoutes } = await import('./health.ts');
  await app.register(healthRoutes, deps);
  await app.register((await import('./metrics.ts')).metricsRoutes, deps);
  await app.register((await import('./admin.ts')).adminRoutes, deps);
  await app.register((await import('./admin-clients.ts')).adminClientRoutes, deps);
  await app.register((await import('./usage.ts')).usageRoutes, deps);
  await app.register((await import('./internal.ts')).internalRoutes, deps);
  await app.register((await import('./dashboard.ts')).dashboardRoutes, deps);
  const { nativeRoutes } = await import('./native.ts');
  await app.register(nativeRoutes, deps);
  await app.register((await import('./openai.ts')).openAiRoutes, deps);
  const { translateRoutes } = await import('./translate.ts');
  await app.register(translateRoutes, deps);
  const { generateRoutes } = await import('./generate.ts');
  await app.register(generateRoutes, deps);
  const { textProcessingRoutes } = await import('./text-processing.ts');
  await app.register(textProcessingRoutes, deps);
  await app.register((await import('./create-image.ts')).createImageRoutes, deps);
  await app.register((await import('./batches.ts')).batchRoutes, deps);
  await app.register((await import('./long-running.ts')).longRunningRoutes, deps);
  await app.register((await import('./files.ts')).filesRoutes, deps);
  await app.register((await import('./cached-contents.ts')).cachedContentsRoutes, deps);
  await app.register((await import('./interactions.ts')).interactionRoutes, deps);
  await app.register((await import('./live.ts')).liveRoutes, deps);
  await app.register((await import('./unimplemented.ts')).unimplementedRoutes, deps);
}
