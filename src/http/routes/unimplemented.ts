import type { FastifyInstance } from 'fastify';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

/**
 * Gemini API surfaces the gateway does not carry: a clear 501 in Google's error shape (status
 * UNIMPLEMENTED) naming the feature, instead of a bare 404, and nothing sent upstream. Each keeps
 * state in the project of the key that made it (a tuned model, a file search store, a generated
 * file list), so carrying one needs the ownership rules of the other stateful surfaces.
 */
const FEATURES: ReadonlyArray<{ path: string; feature: string }> = [
  { path: 'tunedModels', feature: 'Tuned models (tunedModels)' },
  { path: 'generatedFiles', feature: 'The generated files list (generatedFiles)' },
  { path: 'fileSearchStores', feature: 'File Search stores (fileSearchStores)' },
];

export async function unimplementedRoutes(app: FastifyInstance, _deps: AppDeps): Promise<void> {
  const config = { googleErrors: true };
  for (const version of ['v1beta', 'v1']) {
    for (const { path, feature } of FEATURES) {
      const handler = async (): Promise<never> => {
        throw new HttpProblem(
          501,
          `${feature} is not supported by this gateway: its resources belong to one Google Cloud project ` +
            'and the gateway does not route them yet. Use a Google API key directly for this feature.',
          { title: 'Not Implemented', googleStatus: 'UNIMPLEMENTED' },
        );
      };
      // Not OPTIONS: CORS preflights stay with the CORS plugin.
      for (const url of [`/${version}/${path}`, `/${version}/${path}/*`, `/upload/${version}/${path}/*`])
        app.route({ method: ['GET', 'POST', 'PATCH', 'DELETE'], url, config, handler });
    }
  }
}
