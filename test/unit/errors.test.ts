import type { FastifyError } from 'fastify';
import { describe, expect, it } from 'vitest';
import { RouteIndex, toProblem } from '../../src/http/errors.ts';
import { HttpProblem } from '../../src/http/problem.ts';

function fastifyError(code: string, statusCode?: number, message = 'x'): FastifyError {
  return Object.assign(new Error(message), { code, statusCode }) as FastifyError;
}

describe('toProblem', () => {
  it('keeps an HttpProblem as it is', () => {
    const p = new HttpProblem(429, 'slow down', { headers: { 'retry-after': '3' } });
    expect(toProblem(p)).toBe(p);
  });

  it('maps Fastify and plugin errors to 4xx', () => {
    expect(toProblem(fastifyError('FST_ERR_CTP_BODY_TOO_LARGE', 413)).status).toBe(413);
    expect(toProblem(fastifyError('FST_REQ_FILE_TOO_LARGE', 413)).status).toBe(413);
    expect(toProblem(fastifyError('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415)).status).toBe(415);
    expect(toProblem(fastifyError('FST_ERR_CTP_INVALID_JSON_BODY', 400)).status).toBe(400);
    expect(toProblem(fastifyError('FST_ERR_CTP_EMPTY_JSON_BODY', 400)).status).toBe(400);
    expect(toProblem(Object.assign(fastifyError('FST_ERR_VALIDATION', 400), { validation: [] })).status).toBe(
      422,
    );
    expect(toProblem(fastifyError('FST_ERR_HANDLER_TIMEOUT', 503)).status).toBe(504);
    expect(toProblem(fastifyError('SOMETHING', 404)).status).toBe(404);
  });

  it('turns an unknown error into a 500 that says nothing about it', () => {
    const p = toProblem(new Error('connection string redis://:hunter2@db failed'));
    expect(p.status).toBe(500);
    expect(p.detail).toBe('internal error');
    expect(JSON.stringify(p)).not.toContain('hunter2');
    // A 5xx status on a foreign error is not trusted either.
    expect(toProblem(fastifyError('X', 503, 'upstream said boo')).detail).toBe('internal error');
  });
});

describe('RouteIndex', () => {
  it('finds the methods of the routes matching a concrete path', () => {
    const idx = new RouteIndex();
    idx.add('/health', ['GET', 'HEAD']);
    idx.add('/admin/keys/:id', ['GET']);
    idx.add('/admin/keys/:id', ['DELETE']);
    idx.add('/v1beta/models/*', ['POST']);
    idx.add('/v1beta/models/*', ['GET']);
    idx.add('*', ['OPTIONS']);
    expect(idx.methodsFor('/health')).toEqual(['GET', 'HEAD']);
    expect(idx.methodsFor('/health/')).toEqual(['GET', 'HEAD']);
    expect(idx.methodsFor('/admin/keys/k1')).toEqual(['DELETE', 'GET']);
    expect(idx.methodsFor('/admin/keys/k1/x')).toEqual([]);
    expect(idx.methodsFor('/v1beta/models/gemini:generateContent')).toEqual(['GET', 'POST']);
    // The CORS catch-all does not make every path "known".
    expect(idx.methodsFor('/nope')).toEqual([]);
  });

  it('escapes regular expression characters in literal segments', () => {
    const idx = new RouteIndex();
    idx.add('/a.b', ['GET']);
    expect(idx.methodsFor('/a.b')).toEqual(['GET']);
    expect(idx.methodsFor('/axb')).toEqual([]);
  });
});
