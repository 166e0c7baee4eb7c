import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ResponseCache, setCacheHeader, wantsBypass } from '../../cache/index.ts';
import type { CacheStatus } from '../../cache/types.ts';
import { assertModelAllowed } from '../../clients/models.ts';
import { callContext, usageJsonSchema } from '../../services/generate/gemini.ts';
import { OPERATION_IDS, OPERATIONS } from '../../services/text/operations.ts';
import {
  mapWithConcurrency,
  type PreparedProcess,
  type ProcessResult,
  prepareProcess,
  runProcess,
} from '../../services/text/processor.ts';
import type { CallContext } from '../../upstream/gemini-caller.ts';
import type { AppDeps } from '../deps.ts';
import { isKnownError, toProblem } from '../errors.ts';
import { HttpProblem } from '../problem.ts';

const processBodyProperties = {
  text: { type: 'string', description: 'The text to process (at most TEXT_MAX_LENGTH characters).' },
  operation: { type: 'string', enum: [...OPERATION_IDS] },
  options: {
    type: 'object',
    description:
      'Operation options, see GET /v1/text_processing/operations (max_length, max_points, num_questions).',
  },
  question: { type: 'string', description: 'Required by operation qa.' },
  model: { type: 'string', description: 'Default GEMINI_MODEL.' },
} as const;

const resultProperties = {
  operation: { type: 'string' },
  model: { type: 'string' },
  usage: usageJsonSchema,
  result: { type: 'string', description: 'summarize, qa' },
  sentiment: {
    type: 'object',
    description: 'sentiment',
    properties: {
      sentiment: { type: 'string', enum: ['positive', 'negative', 'neutral', 'mixed'] },
      confidence: { type: 'number', minimum: 0, maximum: 1 },
      explanation: { type: 'string' },
    },
    required: ['sentiment', 'confidence', 'explanation'],
  },
  key_points: { type: 'array', items: { type: 'string' }, description: 'key_points' },
  questions: { type: 'array', items: { type: 'string' }, description: 'questions' },
  cached: { type: 'boolean' },
} as const;

const processResponse = {
  type: 'object',
  properties: { ...resultProperties, request_id: { type: 'string' }, processing_time_ms: { type: 'number' } },
  required: ['operation', 'model', 'usage', 'cached', 'request_id', 'processing_time_ms'],
} as const;

const batchResponse = {
  type: 'object',
  properties: {
    batch_id: { type: 'string' },
    total_requests: { type: 'integer' },
    completed: { type: 'integer' },
    failed: { type: 'integer' },
    processing_time_ms: { type: 'number' },
    results: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          success: { type: 'boolean' },
          ...resultProperties,
          error: {
            type: 'object',
            properties: {
              status: { type: 'integer' },
              title: { type: 'string' },
              detail: { type: 'string' },
            },
            required: ['status', 'title', 'detail'],
          },
        },
        required: ['index', 'success'],
      },
    },
  },
  required: ['batch_id', 'total_requests', 'completed', 'failed', 'results', 'processing_time_ms'],
} as const;

const operationsResponse = {
  type: 'object',
  properties: {
    operations: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          description: { type: 'string' },
          output: { type: 'string', enum: ['text', 'structured'] },
          requires_question: { type: 'boolean' },
          options: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                name: { type: 'string' },
                type: { type: 'string' },
                description: { type: 'string' },
                default: { type: 'number' },
                minimum: { type: 'number' },
                maximum: { type: 'number' },
              },
            },
          },
        },
      },
    },
  },
} as const;

export async function textProcessingRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const cache = app.responseCache;
  const { env } = deps;

  /** One request through the cache; throws a domain error or HttpProblem for anything refused or failed. */
  async function processOne(
    raw: unknown,
    request: FastifyRequest,
    ctx: CallContext,
  ): Promise<{ value: ProcessResult; status: CacheStatus }> {
    const prepared: PreparedProcess = prepareProcess(raw, env);
    assertModelAllowed(request, prepared.model);
    const key = ResponseCache.key(`text:${prepared.operation}`, prepared.model, prepared.cacheKeyInput);
    return cache.getOrCompute(key, () => runProcess(deps.gemini, prepared, ctx, request.log), {
      bypass: wantsBypass(request),
    });
  }

  const operations = {
    operations: OPERATION_IDS.map((id) => {
      const op = OPERATIONS[id];
      return {
        id,
        name: op.name,
        description: op.description,
        output: op.output,
        requires_question: op.requiresQuestion,
        options: op.options,
      };
    }),
  };

  app.get(
    '/v1/text_processing/operations',
    {
      schema: {
        summary: 'Text-processing operations and their options',
        tags: ['text processing'],
        response: { 200: operationsResponse },
      },
    },
    async () => operations,
  );

  app.post(
    '/v1/text_processing/process',
    {
      schema: {
        summary: 'Process one text (summarize, sentiment, key_points, questions, qa)',
        description:
          'Refusals: 422 invalid request or qa without question, 413 text longer than TEXT_MAX_LENGTH, ' +
          '400 prompt injection. Cached (X-Cache: HIT|MISS); `Cache-Control: no-cache` bypasses.',
        tags: ['text processing'],
        body: { type: 'object', properties: processBodyProperties, required: ['text', 'operation'] },
        response: { 200: processResponse },
      },
    },
    async (request, reply) => {
      const started = performance.now();
      const { value, status } = await processOne(request.body, request, callContext(request, reply));
      setCacheHeader(reply, status);
      return {
        ...value,
        cached: status === 'HIT',
        request_id: String(request.id),
        processing_time_ms: Math.round(performance.now() - started),
      };
    },
  );

  app.post(
    '/v1/text_processing/batch_process',
    {
      schema: {
        summary: 'Process several texts; each item succeeds or fails on its own',
        description:
          `At most BATCH_MAX_SIZE requests (413 above), BATCH_CONCURRENCY at a time. ` +
          'A refused or failed item is reported in its own result (success false, error) without failing the batch.',
        tags: ['text processing'],
        body: {
          type: 'object',
          properties: {
            requests: {
              type: 'array',
              description:
                'Items shaped like the body of /v1/text_processing/process; each is validated on its own.',
              items: { type: 'object' },
            },
            batch_id: { type: 'string', maxLength: 100 },
          },
          required: ['requests'],
        },
        response: { 200: batchResponse },
      },
    },
    async (request, reply) => {
      const started = performance.now();
      const body = request.body as { requests: unknown[]; batch_id?: string };
      const items = body.requests;
      if (items.length === 0) throw new HttpProblem(422, 'requests must not be empty');
      if (items.length > env.BATCH_MAX_SIZE)
        throw new HttpProblem(
          413,
          `the batch has ${items.length} requests; the maximum is ${env.BATCH_MAX_SIZE}`,
        );
      const ctx = callContext(request, reply);
      const results = await mapWithConcurrency(items, env.BATCH_CONCURRENCY, async (item, index) => {
        try {
          const { value, status } = await processOne(item, request, ctx);
          return { index, success: true, ...value, cached: status === 'HIT' };
        } catch (err) {
          const problem = isKnownError(err)
            ? toProblem(err)
            : new HttpProblem(500, 'internal error while processing this item');
          if (!isKnownError(err)) request.log.error({ err, index }, 'batch item failed');
          return {
            index,
            success: false,
            error: { status: problem.status, title: problem.title, detail: problem.detail },
          };
        }
      });
      const failed = results.filter((r) => !r.success).length;
      return {
        batch_id: body.batch_id ?? `batch_${randomUUID()}`,
        total_requests: items.length,
        completed: items.length - failed,
        failed,
        results,
        processing_time_ms: Math.round(performance.now() - started),
      };
    },
  );
}
