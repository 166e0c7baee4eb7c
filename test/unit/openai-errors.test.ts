import { describe, expect, it } from 'vitest';
import { googleErrorToOpenAi } from '../../src/openai/errors.ts';

describe('googleErrorToOpenAi', () => {
  it.each([
    [400, 'INVALID_ARGUMENT', 'Invalid value at contents', 'invalid_request_error', 'invalid_argument'],
    [
      400,
      'INVALID_ARGUMENT',
      'The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).',
      'invalid_request_error',
      'context_length_exceeded',
    ],
    [
      404,
      'NOT_FOUND',
      'models/x is not found for API version v1beta',
      'invalid_request_error',
      'model_not_found',
    ],
    [403, 'PERMISSION_DENIED', 'denied', 'permission_error', 'permission_denied'],
    [429, 'RESOURCE_EXHAUSTED', 'quota', 'rate_limit_error', 'rate_limit_exceeded'],
    [500, 'INTERNAL', 'oops', 'server_error', 'internal'],
    [503, 'UNAVAILABLE', 'The model is overloaded.', 'server_error', 'unavailable'],
  ])('%i %s', (status, googleStatus, message, type, code) => {
    const e = googleErrorToOpenAi(
      status,
      Buffer.from(JSON.stringify({ error: { code: status, message, status: googleStatus } })),
    );
    expect(e.status).toBe(status);
    expect(e.body()).toEqual({ error: { message, type, code, param: null } });
  });

  it('reads the array form of Google’s OpenAI endpoint and survives a body that is not JSON', () => {
    expect(
      googleErrorToOpenAi(400, [{ error: { message: 'bad', status: 'INVALID_ARGUMENT' } }]).message,
    ).toBe('bad');
    const e = googleErrorToOpenAi(502, '<html>bad gateway</html>');
    expect(e.body()).toEqual({
      error: { message: 'upstream answered HTTP 502', type: 'server_error', code: null, param: null },
    });
  });

  it.each([200, 302, 0])('an upstream status %i that is not an error status becomes 502', (status) => {
    const e = googleErrorToOpenAi(status, { error: { message: 'odd', status: 'UNKNOWN' } });
    expect(e.status).toBe(502);
    expect(e.body().error).toMatchObject({ message: 'odd', type: 'server_error' });
  });
});
