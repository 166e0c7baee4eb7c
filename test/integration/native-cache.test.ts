import { afterEach, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.ts';

/** Response caching on the native proxy: off by default, on by config or per request. */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

const MODEL = 'gemini-2.5-flash-lite';
function generate(s: Stack, text: string, headers: Record<string, string> = {}, method = 'generateContent') {
  return fetch(`${s.url}/v1beta/models/${MODEL}:${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token, ...headers },
    body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
  });
}

describe('native proxy cache', () => {
  it('is off by default: identical calls both go upstream', async () => {
    stack = await startStack();
    for (let i = 0; i < 2; i++) expect((await generate(stack, 'same')).headers.get('x-cache')).toBeNull();
    expect(stack.fake.stats.requests).toBe(2);
  });

  it('with CACHE_NATIVE_PROXY=true a repeat is served from the cache, spending no key budget', async () => {
    stack = await startStack({ env: { CACHE_NATIVE_PROXY: 'true' } });
    const first = await generate(stack, 'cache me');
    expect(first.headers.get('x-cache')).toBe('MISS');
    const firstBody = await first.text();
    const second = await generate(stack, 'cache me');
    expect(second.headers.get('x-cache')).toBe('HIT');
    expect(await second.text()).toBe(firstBody);
    expect(second.headers.get('content-type')).toContain('application/json');
    expect(stack.fake.stats.requests).toBe(1);
    const now = Date.now();
    const used = (await stack.gateway.store.keyStates(now, stack.gateway.pool.calendarAt(now).day)).reduce(
      (n, k) => n + k.requestsThisMinute,
      0,
    );
    expect(used).toBe(1);
    // another body, or Cache-Control: no-cache, goes upstream
    expect((await generate(stack, 'other')).headers.get('x-cache')).toBe('MISS');
    expect((await generate(stack, 'cache me', { 'cache-control': 'no-cache' })).headers.get('x-cache')).toBe(
      'BYPASS',
    );
    expect(stack.fake.stats.requests).toBe(3);
  });

  it('a request can ask for it with X-Gateway-Cache: on; failures and streams are never cached', async () => {
    stack = await startStack();
    stack.fake.script({ kind: 'bad_request' });
    expect((await generate(stack, 'x', { 'x-gateway-cache': 'on' })).status).toBe(400);
    expect((await generate(stack, 'x', { 'x-gateway-cache': 'on' })).headers.get('x-cache')).toBe('MISS');
    expect((await generate(stack, 'x', { 'x-gateway-cache': 'on' })).headers.get('x-cache')).toBe('HIT');
    expect(stack.fake.stats.requests).toBe(2);
    for (let i = 0; i < 2; i++) {
      const s = await generate(stack, 'stream', { 'x-gateway-cache': 'on' }, 'streamGenerateContent');
      await s.text();
      expect(s.headers.get('x-cache')).toBeNull();
    }
    expect(stack.fake.stats.requests).toBe(4);
  });
});
