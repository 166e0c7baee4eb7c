import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { ClientAuth, sameString } from '../../src/http/auth.ts';
import { HttpProblem } from '../../src/http/problem.ts';

const TOKENS = new Map([
  ['token-of-alice-0001', 'alice'],
  ['token-of-bobby-0002', 'bob'],
]);

/** A request as the auth hook sees it, arriving on `connection`. */
function requestOn(connection: object, token: string): FastifyRequest {
  return {
    headers: { 'x-goog-api-key': token },
    query: {},
    raw: { socket: connection },
  } as unknown as FastifyRequest;
}

function refusal(run: () => unknown): number | undefined {
  try {
    run();
  } catch (err) {
    return err instanceof HttpProblem ? err.status : -1;
  }
  return undefined;
}

describe('client auth', () => {
  it('names the client of each token, whatever came before on the same connection', () => {
    const auth = new ClientAuth(TOKENS, false);
    const connection = {};
    expect(auth.authenticate(requestOn(connection, 'token-of-alice-0001'))).toBe('alice');
    expect(auth.authenticate(requestOn(connection, 'token-of-alice-0001'))).toBe('alice');
    expect(auth.authenticate(requestOn(connection, 'token-of-bobby-0002'))).toBe('bob');
    expect(auth.authenticate(requestOn(connection, 'token-of-alice-0001'))).toBe('alice');
    expect(auth.authenticate(requestOn({}, 'token-of-bobby-0002'))).toBe('bob');
  });

  it('refuses a wrong token on a connection where a valid one was accepted', () => {
    const auth = new ClientAuth(TOKENS, false);
    const connection = {};
    expect(auth.authenticate(requestOn(connection, 'token-of-alice-0001'))).toBe('alice');
    // Same length, one character off; then a prefix; then nothing at all.
    expect(refusal(() => auth.authenticate(requestOn(connection, 'token-of-alice-0002')))).toBe(401);
    expect(refusal(() => auth.authenticate(requestOn(connection, 'token-of-alice')))).toBe(401);
    expect(refusal(() => auth.authenticate(requestOn(connection, '')))).toBe(401);
    expect(auth.authenticate(requestOn(connection, 'token-of-alice-0001'))).toBe('alice');
  });

  it('compares strings by content and length', () => {
    expect(sameString('abc', 'abc')).toBe(true);
    expect(sameString('abc', 'abd')).toBe(false);
    expect(sameString('abc', 'xbc')).toBe(false);
    expect(sameString('abc', 'abcd')).toBe(false);
    expect(sameString('', '')).toBe(true);
  });
});
