import type { FastifyInstance } from 'fastify';
import { withoutUnsafeInline } from '../dashboard/csp.ts';
import { DASHBOARD_PATH, loadDashboardFiles } from '../dashboard/files.ts';
import type { AppDeps } from '../deps.ts';

/**
 * GET /admin/dashboard: the operators' page over the admin API, with its script and stylesheet
 * under the same path. Registered only with ADMIN_TOKEN (like /admin). The files hold no data and
 * no secret, so they are served without the token; the page asks for it and sends it as a Bearer
 * token on its own calls to /admin and /health/detailed.
 */
export async function dashboardRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  if (!deps.env.ADMIN_TOKEN) return;
  for (const file of await loadDashboardFiles()) {
    app.get(
      file.url,
      {
        config: { clientAuth: false, page: true },
        schema: {
          tags: ['admin'],
          summary:
            file.url === DASHBOARD_PATH
              ? 'Admin dashboard (HTML): key states, usage and actions; asks for ADMIN_TOKEN in the page'
              : `The admin dashboard's ${file.url.slice(DASHBOARD_PATH.length + 1)}`,
          security: [],
        },
      },
      async (_request, reply) => {
        const csp = reply.getHeader('content-security-policy');
        if (typeof csp === 'string') reply.header('content-security-policy', withoutUnsafeInline(csp));
        reply.header('cache-control', 'no-store').type(file.contentType);
        return file.body;
      },
    );
  }
}
