import { describe, expect, it } from 'vitest';
import { generateWith, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/** Client authentication on the native routes: where a token is read from, and the 401 challenges. */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const stack = stackPerTest();

const generate = (
  s: Stack,
  headers: Record<string, string> = { 'x-goog-api-key': TEST_TOKEN },
  text = 'hi',
) => generateWith(s, headers, text);

describe('client auth', () => {
  it('only the Bearer scheme of Authorization carries a client token', async () => {
    const s = await stack();
    for (const scheme of ['Basic', 'Token', 'Digest']) {
      const res = await generate(s, { authorization: `${scheme} ${TEST_TOKEN}` });
      expect(res.status, scheme).toBe(401);
      expect(((await res.json()) as Json).error.message).toContain('missing client token');
    }
    expect((await generate(s, { authorization: `bearer ${TEST_TOKEN}` })).status).toBe(200);
    expect(s.fake.stats.requests).toBe(1);
  });

  it('ALLOW_ANONYMOUS does not open a gateway that has client tokens', async () => {
    const s = await stack({ env: { ALLOW_ANONYMOUS: 'true' } });
    const res = await generate(s, {});
    expect(res.status).toBe(401);
    expect((await generate(s)).status).toBe(200);
  });

  it('a missing token is challenged with Bearer, a wrong one with error="invalid_token"', async () => {
    const s = await stack();
    const missing = await generate(s, {});
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    const wrong = await generate(s, { 'x-goog-api-key': 'not-a-token' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(s.fake.stats.requests).toBe(0);
  });
});
