import type { FastifyInstance } from 'fastify';
import { createMediaStore, type MediaStore } from '../../services/image-gen/media-store.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

/**
 * GET /media/:file: generated images. Only names of the exact shape the store writes
 * (<uuid>.<ext>) are served, so there is no traversal and no listing; the content type comes
 * from the file's magic bytes, with nosniff and a CSP that forbids everything active.
 */
export async function mediaRoutes(
  app: FastifyInstance,
  deps: AppDeps & { media?: MediaStore },
): Promise<void> {
  const media = deps.media ?? createMediaStore(deps.env.MEDIA_DIR);
  app.get(
    '/media/:file',
    {
      config: { clientAuth: false },
      schema: {
        summary: 'A generated image',
        tags: ['image generation'],
        params: { type: 'object', properties: { file: { type: 'string' } }, required: ['file'] },
      },
    },
    async (request, reply) => {
      const { file } = request.params as { file: string };
      const found = await media.read(file);
      if (!found) throw new HttpProblem(404, 'no such media file');
      reply
        .header('content-type', found.contentType)
        .header('content-length', found.bytes.length)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; sandbox")
        .header('cache-control', 'public, max-age=31536000, immutable');
      return reply.send(found.bytes);
    },
  );
}
