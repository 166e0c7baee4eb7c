import multipart, { type Multipart } from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ResponseCache, setCacheHeader, wantsBypass } from '../../cache/index.ts';
import { assertModelAllowed } from '../../clients/models.ts';
import { callContext, usageJsonSchema } from '../../services/generate/gemini.ts';
import { prepareTranslate, runTranslate, type TranslateFields } from '../../services/translate/translate.ts';
import type { AppDeps } from '../deps.ts';
import { HttpProblem } from '../problem.ts';

const FILE_FIELDS = new Set(['file', 'image']);
const TEXT_FIELDS = new Set(['target_language', 'source_language', 'model', 'format']);

/** For the OpenAPI document only: the form is read and validated by readUpload/prepareTranslate. */
const translateForm = {
  type: 'object',
  properties: {
    file: {
      type: 'string',
      format: 'binary',
      description: 'The image (the field may also be named `image`).',
    },
    target_language: { type: 'string', default: 'Vietnamese' },
    source_language: { type: 'string', description: 'Detected when absent.' },
    model: { type: 'string', description: 'Default GEMINI_MODEL.' },
    format: { type: 'string', enum: ['text', 'blocks'], default: 'text' },
  },
  required: ['file'],
} as const;

const translateResponse = {
  type: 'object',
  properties: {
    translated_text: { type: 'string' },
    target_language: { type: 'string' },
    source_language: { type: 'string', nullable: true },
    model: { type: 'string' },
    format: { type: 'string', enum: ['text', 'blocks'] },
    blocks: {
      type: 'array',
      description: 'format=blocks only: each text block of the image with its translation, in reading order.',
      items: {
        type: 'object',
        properties: { original: { type: 'string' }, translated: { type: 'string' } },
        required: ['original', 'translated'],
      },
    },
    usage: usageJsonSchema,
    cached: { type: 'boolean' },
    request_id: { type: 'string' },
  },
  required: ['translated_text', 'target_language', 'model', 'format', 'usage', 'cached', 'request_id'],
} as const;

/**
 * Reads the multipart form: the image (field `file` or `image`) into memory, bounded by
 * MAX_UPLOAD_SIZE (413 past it), and the text fields. Nothing is sent anywhere yet.
 */
async function readUpload(
  request: FastifyRequest,
  maxBytes: number,
): Promise<{ file: Buffer; fields: TranslateFields }> {
  if (!request.isMultipart())
    throw new HttpProblem(415, 'send multipart/form-data with the image in the field "file"');
  let file: Buffer | undefined;
  let files = 0;
  const fields: Record<string, string> = {};
  try {
    const parts: AsyncIterable<Multipart> = request.parts({
      limits: { fileSize: maxBytes, files: 4, fields: 16, fieldSize: 1024, parts: 20 },
    });
    for await (const part of parts) {
      if (part.type === 'file') {
        if (!FILE_FIELDS.has(part.fieldname)) {
          part.file.resume(); // drain: a part must be consumed before the next one arrives
          continue;
        }
        files++;
        const bytes = await part.toBuffer();
        file ??= bytes;
      } else if (TEXT_FIELDS.has(part.fieldname)) {
        if (part.valueTruncated) throw new HttpProblem(422, `field ${part.fieldname} is too long`);
        if (typeof part.value === 'string') fields[part.fieldname] = part.value;
      }
    }
  } catch (err) {
    if (err instanceof HttpProblem) throw err;
    const code = (err as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE')
      throw new HttpProblem(413, `the image exceeds the upload limit of ${maxBytes} bytes`);
    if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT')
      throw new HttpProblem(413, 'the form has too many parts');
    throw new HttpProblem(400, 'malformed multipart/form-data body');
  }
  if (!file) throw new HttpProblem(400, 'missing image: send it in the multipart field "file" (or "image")');
  if (files > 1) throw new HttpProblem(400, 'send exactly one image per request');
  return { file, fields };
}

export async function translateRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const cache = app.responseCache;
  // Only here: the plugin adds a hook pair (temp-file cleanup) to every request of its scope.
  await app.register(multipart, {
    limits: {
      fileSize: deps.env.MAX_UPLOAD_SIZE,
      files: 1,
      fields: 20,
      fieldSize: deps.env.MAX_UPLOAD_SIZE,
    },
  });

  app.post(
    '/translate',
    {
      schema: {
        summary: 'Translate the text in an image (game screenshots, UI)',
        description: [
          'multipart/form-data fields:',
          '- `file` (or `image`): PNG, JPEG, WebP, GIF or HEIC, judged by content; at most MAX_UPLOAD_SIZE bytes.',
          '- `target_language` (default Vietnamese), `source_language` (default: detected).',
          '- `model` (default GEMINI_MODEL), `format`: `text` (default) or `blocks` (list of {original, translated}).',
          'Answers are cached (X-Cache: HIT|MISS); `Cache-Control: no-cache` bypasses and refreshes the entry.',
        ].join('\n'),
        tags: ['applications'],
        consumes: ['multipart/form-data'],
        body: translateForm,
        response: { 200: translateResponse },
      },
      // The body schema documents the form; multipart bodies are checked by readUpload, not by Ajv.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      const upload = await readUpload(request, deps.env.MAX_UPLOAD_SIZE);
      const prepared = prepareTranslate(upload.file, upload.fields, deps.env);
      assertModelAllowed(request, prepared.model);
      const key = ResponseCache.key('translate', prepared.model, prepared.cacheKeyInput, [upload.file]);
      const { value, status } = await cache.getOrCompute(
        key,
        () => runTranslate(deps.gemini, prepared, callContext(request, reply), request.log),
        { bypass: wantsBypass(request) },
      );
      setCacheHeader(reply, status);
      return { ...value, cached: status === 'HIT', request_id: String(request.id) };
    },
  );
}
