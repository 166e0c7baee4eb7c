import { readFile } from 'node:fs/promises';

/** The URL of the dashboard's page; its script and stylesheet are served under it. */
export const DASHBOARD_PATH = '/admin/dashboard';

/** One file of the dashboard as the route serves it. */
export interface DashboardFile {
  url: string;
  contentType: string;
  body: string;
}

const FILES = [
  { name: 'index.html', url: DASHBOARD_PATH, contentType: 'text/html; charset=utf-8' },
  {
    name: 'dashboard.js',
    url: `${DASHBOARD_PATH}/dashboard.js`,
    contentType: 'text/javascript; charset=utf-8',
  },
  { name: 'dashboard.css', url: `${DASHBOARD_PATH}/dashboard.css`, contentType: 'text/css; charset=utf-8' },
];

/**
 * Reads the dashboard's files, once. They sit next to this module: in src/ under `node src/main.ts`,
 * in dist/ after `npm run build` (scripts/copy-assets.ts copies them there).
 */
export async function loadDashboardFiles(): Promise<DashboardFile[]> {
  return Promise.all(
    FILES.map(async (f) => ({
      url: f.url,
      contentType: f.contentType,
      body: await readFile(new URL(f.name, import.meta.url), 'utf8'),
    })),
  );
}
