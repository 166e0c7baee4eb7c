import type { FastifyInstance } from 'fastify';
import { ResponseCache, setCacheHeader, wantsBypass } from '../../cache/index.ts';
import { assertModelAllowed } from '../../clients/models.ts';
import { callContext, usageJsonSchema } from '../../services/generate/gemini.ts';
import { generateInput, prepareGenerate, runGenerate } from '../../services/generate/generate.ts';
import { parseInput } from '../../services/generate/input.ts';
import type { AppDeps } from '../deps.ts';

const generateBody = {
  type: 'object',
  properties: {
    prompt: { type: 'string', minLength: 1 },
    model: { type: 'string', description: 'Default GEMINI_MODEL.' },
    system: { type: 'string', description: 'System instruction.' },
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    max_tokens: { type: 'integer', minimum: 1, maximum: 65536 },
  },
  required: ['prompt'],
} as const;

const generateResponse = {
  type: 'object',
  properties: {
    text: { type: 'string' },
    model: { type: 'string' },
    usage: usageJsonSchema,
    cached: { type: 'boolean' },
    request_id: { type: 'string' },
  },
  required: ['text', 'model', 'usage', 'cached', 'request_id'],
} as const;

export async function generateRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const cache = app.responseCache;

  app.post(
    '/v1/generate',
    {
      schema: {
        summary: 'Simple text generation',
        description:
          'Cached (X-Cache: HIT|MISS); `Cache-Control: no-cache` bypasses and refreshes the entry.',
        tags: ['applications'],
        body: generateBody,
        response: { 200: generateResponse },
      },
    },
    async (request, reply) => {
      const prepared = prepareGenerate(parseInput(generateInput, request.body), deps.env);
      assertModelAllowed(request, prepared.model);
      const key = ResponseCache.key('generate', prepared.model, prepared.cacheKeyInput);
      const { value, status } = await cache.getOrCompute(
        key,
        () => runGenerate(deps.gemini, prepared, callContext(request, reply)),
        { bypass: wantsBypass(request) },
      );
      setCacheHeader(reply, status);
      return { ...value, cached: status === 'HIT', request_id: String(request.id) };
    },
  );
}
