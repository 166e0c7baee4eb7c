import { describe, expect, it } from 'vitest';
import { generateWith, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * The native routes with plain HTTP (test/integration/proxy.test.ts drives them with the SDK):
 * model listing and lookup, stream headers, the token reservation, the native cache key.
 */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const MODEL = 'gemini-2.5-flash-lite';
const stack = stackPerTest();

const json = { 'content-type': 'application/json' };
const body = (text: string) => JSON.stringify({ contents: [{ parts: [{ text }] }] });

const generate = (
  s: Stack,
  headers: Record<string, string> = { 'x-goog-api-key': TEST_TOKEN },
  text = 'hi',
) => generateWith(s, headers, text);

describe('native routes', () => {
  it('model listing and lookup never forward the client token given as ?key=', async () => {
    const s = await stack();
    const list = await fetch(`${s.url}/v1beta/models?key=${TEST_TOKEN}&pageSize=5`);
    expect(list.status).toBe(200);
    const one = await fetch(`${s.url}/v1/models/gemini-2.5-flash?key=${TEST_TOKEN}`);
    expect(one.status).toBe(200);
    const [first, second] = s.fake.stats.log.slice(-2);
    expect(first!.search).toBe('?pageSize=5');
    expect(second!.search).toBe('');
    expect(JSON.stringify(s.fake.stats.log)).not.toContain(TEST_TOKEN);
  });

  it('a model lookup with a name that is not a model name is a 404 and goes nowhere', async () => {
    const s = await stack();
    for (const path of [
      '/v1beta/models/a/b',
      `/v1beta/models/${MODEL}:generateContent`,
      '/v1/models/..%2Fx',
    ]) {
      const res = await fetch(s.url + path, { headers: { 'x-goog-api-key': TEST_TOKEN } });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as Json).error.status, path).toBe('NOT_FOUND');
    }
    expect(s.fake.stats.requests).toBe(0);
  });

  it('a streamed answer is sent with Cache-Control: no-cache', async () => {
    const s = await stack();
    const res = await fetch(`${s.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { ...json, 'x-goog-api-key': TEST_TOKEN },
      body: body('s'),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    await res.text();
  });

  it('the request’s estimated tokens are reserved against the key’s TPM before it goes upstream', async () => {
    // 400 characters: about 100 tokens. With 150 per minute the second request does not fit.
    const s = await stack({ keys: 1, env: { DEFAULT_TPM: '150', QUEUE_MAX_WAIT_MS: '0' } });
    const text = 'y'.repeat(400);
    expect((await generate(s, undefined, text)).status).toBe(200);
    const second = await generate(s, undefined, text);
    expect(second.status).toBe(429);
    expect(s.fake.stats.requests).toBe(1);
  });

  it('the native cache keys on the forwarded query string too', async () => {
    const s = await stack({ env: { CACHE_NATIVE_PROXY: 'true' } });
    const call = (query: string) =>
      fetch(`${s.url}/v1beta/models/${MODEL}:generateContent${query}`, {
        method: 'POST',
        headers: { ...json, 'x-goog-api-key': TEST_TOKEN },
        body: body('cached'),
      });
    expect((await call('?variant=1')).headers.get('x-cache')).toBe('MISS');
    expect((await call('?variant=1')).headers.get('x-cache')).toBe('HIT');
    expect((await call('?variant=2')).headers.get('x-cache')).toBe('MISS');
    expect(s.fake.stats.log.map((r) => r.search)).toEqual(['?variant=1', '?variant=2']);
  });
});
