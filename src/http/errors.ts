import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { googleStatusFor, HttpProblem } from './problem.ts';

/**
 * The one error handler. Gateway-made errors are RFC 7807 problem+json; on the native Gemini
 * routes (route config googleErrors) they take Google's shape so the SDKs parse them.
 * Unknown errors become a 500 whose body says nothing about the cause (the log has it).
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | HttpProblem | Error, request, reply) => {
    const problem = toProblem(err);
    if (problem.status >= 500 && !(err instanceof HttpProblem)) request.log.error({ err }, 'unhandled error');
    else if (problem.status >= 500)
      request.log.warn({ status: problem.status, detail: problem.detail }, 'request failed');
    return sendProblem(request, reply, problem);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    return sendProblem(
      request,
      reply,
      new HttpProblem(404, `no route for ${request.method} ${path}`),
      isGooglePath(path),
    );
  });
}

const GOOGLE_PATH = /^\/(v1beta|v1)\/(models|openai)(\/|$)/;
function isGooglePath(path: string | undefined): boolean {
  return GOOGLE_PATH.test(path ?? '');
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  problem: HttpProblem,
  googleShape = request.routeOptions.config?.googleErrors === true,
): FastifyReply {
  reply.code(problem.status);
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  if (googleShape) {
    reply.type('application/json; charset=UTF-8');
    return reply.send({
      error: {
        code: problem.status,
        message: problem.detail,
        status: problem.googleStatus ?? googleStatusFor(problem.status),
        request_id: request.id,
      },
    });
  }
  reply.type('application/problem+json');
  return reply.send({
    type: problem.type,
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    instance: request.url.split('?')[0],
    request_id: request.id,
    ...problem.extra,
  });
}

/** Maps Fastify's and plugins' errors to problems with the right 4xx status. */
export function toProblem(err: FastifyError | HttpProblem | Error): HttpProblem {
  if (err instanceof HttpProblem) return err;
  const e = err as FastifyError;
  if (e.validation)
    return new HttpProblem(422, `invalid request: ${e.message}`, { title: 'Validation Failed' });
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new HttpProblem(413, 'request body is larger than the configured limit');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new HttpProblem(415, 'unsupported content type');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpProblem(400, 'request body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpProblem(400, 'request body is not valid JSON');
  }
  if (e instanceof SyntaxError || e.statusCode === 400) return new HttpProblem(400, 'malformed request');
  const status =
    typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
  return new HttpProblem(status, status === 500 ? 'internal error' : 'request refused');
}
