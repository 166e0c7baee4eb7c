import type { FastifyInstance } from 'fastify';
import { DASHBOARD_HTML } from '../dashboard/page.ts';
import type { AppDeps } from '../deps.ts';

/**
 * GET /admin/dashboard: the operators' page over the admin API. Registered only with ADMIN_TOKEN
 * (like /admin). The page holds no data and no secret, so it is served without the token; it asks
 * for it and sends it as a Bearer token on its own calls to /admin and /health/detailed.
 */
export async function dashboardRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  if (!deps.env.ADMIN_TOKEN) return;
  app.get(
    '/admin/dashboard',
    {
      config: { clientAuth: false, page: true },
      schema: {
        tags: ['admin'],
        summary: 'Admin dashboard (HTML): key states, usage and actions; asks for ADMIN_TOKEN in the page',
        security: [],
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store').type('text/html; charset=utf-8');
      return DASHBOARD_HTML;
    },
  );
}
