import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JPEG, PNG } from '../fixtures/images.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { postApp, type Stack, startStack } from '../helpers/stack.ts';

function imageForm(bytes: Buffer, fields: Record<string, string> = {}) {
  const fd = new FormData();
  fd.append('file', new Blob([bytes]), 'shot.png');
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  return fd;
}

/** The same scenarios against the memory backend and, when available, Redis. */
function cacheSuite(name: string, env: () => Record<string, string> | undefined) {
  describe(`response cache (${name})`, () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack({ env: env() });
    });
    afterAll(async () => {
      await stack?.close();
    });

    it('/translate: a second identical call makes no upstream call and says HIT / cached', async () => {
      const before = stack.fake.stats.requests;
      const first = await postApp(stack, '/translate', imageForm(PNG, { target_language: 'Korean' }));
      expect(first.status).toBe(200);
      expect(first.xcache).toBe('MISS');
      expect(first.json.cached).toBe(false);
      const second = await postApp(stack, '/translate', imageForm(PNG, { target_language: 'Korean' }));
      expect(second.status).toBe(200);
      expect(second.xcache).toBe('HIT');
      expect(second.json.cached).toBe(true);
      expect(second.json.translated_text).toBe(first.json.translated_text);
      expect(second.json.request_id).not.toBe(first.json.request_id);
      expect(stack.fake.stats.requests).toBe(before + 1);
      // other image bytes or another language: a different entry
      expect(
        (await postApp(stack, '/translate', imageForm(JPEG, { target_language: 'Korean' }))).xcache,
      ).toBe('MISS');
      expect((await postApp(stack, '/translate', imageForm(PNG, { target_language: 'Thai' }))).xcache).toBe(
        'MISS',
      );
      expect(stack.fake.stats.requests).toBe(before + 3);
    });

    it('/v1/generate: HIT on repeat; Cache-Control: no-cache bypasses, calls upstream and refreshes', async () => {
      const body = { prompt: `cache probe ${name}` };
      const before = stack.fake.stats.requests;
      expect((await postApp(stack, '/v1/generate', body)).xcache).toBe('MISS');
      const hit = await postApp(stack, '/v1/generate', body);
      expect(hit.xcache).toBe('HIT');
      expect(hit.json.cached).toBe(true);
      expect(stack.fake.stats.requests).toBe(before + 1);
      const bypass = await postApp(stack, '/v1/generate', body, { 'cache-control': 'no-cache' });
      expect(bypass.status).toBe(200);
      expect(bypass.xcache).toBe('BYPASS');
      expect(bypass.json.cached).toBe(false);
      expect(stack.fake.stats.requests).toBe(before + 2);
      expect((await postApp(stack, '/v1/generate', body)).xcache).toBe('HIT');
      expect(stack.fake.stats.requests).toBe(before + 2);
    });

    it('the key covers the normalized request: defaults applied, key order irrelevant', async () => {
      const text = `Normalization probe for ${name}.`;
      const before = stack.fake.stats.requests;
      const a = await postApp(stack, '/v1/text_processing/process', { text, operation: 'summarize' });
      expect(a.xcache).toBe('MISS');
      const b = await postApp(stack, '/v1/text_processing/process', {
        options: { max_length: 150 },
        operation: 'summarize',
        text,
      });
      expect(b.xcache).toBe('HIT');
      expect(b.json.cached).toBe(true);
      const c = await postApp(stack, '/v1/text_processing/process', {
        text,
        operation: 'summarize',
        options: { max_length: 20 },
      });
      expect(c.xcache).toBe('MISS');
      // batch items share the entries of single requests
      const batch = await postApp(stack, '/v1/text_processing/batch_process', {
        requests: [{ text, operation: 'summarize' }],
      });
      expect(batch.json.results[0]).toMatchObject({ success: true, cached: true });
      expect(stack.fake.stats.requests).toBe(before + 2);
    });

    it('failures are not cached', async () => {
      const body = { prompt: `failure probe ${name}` };
      stack.fake.script({ kind: 'bad_request' }, { times: 1 });
      const failed = await postApp(stack, '/v1/generate', body);
      expect(failed.status).toBe(400);
      expect(failed.xcache).toBeNull();
      const before = stack.fake.stats.requests;
      const retry = await postApp(stack, '/v1/generate', body);
      expect(retry.status).toBe(200);
      expect(retry.xcache).toBe('MISS');
      expect(stack.fake.stats.requests).toBe(before + 1);
    });

    it('exposes stats and invalidate(prefix) for the internal endpoints', async () => {
      const cache = stack.gateway.app.responseCache;
      const stats = await cache.stats();
      expect(stats.enabled).toBe(true);
      expect(stats.hits).toBeGreaterThan(0);
      expect(stats.misses).toBeGreaterThan(0);
      expect(stats.entries).toBeGreaterThan(0);
      expect(stats.bytes).toBeGreaterThan(0);
      const removed = await cache.invalidate('generate:');
      expect(removed).toBeGreaterThan(0);
      const before = stack.fake.stats.requests;
      expect((await postApp(stack, '/v1/generate', { prompt: `cache probe ${name}` })).xcache).toBe('MISS');
      expect(stack.fake.stats.requests).toBe(before + 1);
    });
  });
}

cacheSuite('memory', () => undefined);

const redisUrl = redisTestUrl();
const prefix = `cache-it-${process.pid}-${Date.now()}:`;
if (redisUrl) {
  cacheSuite('redis', () => ({ REDIS_URL: redisUrl, STATE_PREFIX: prefix, CACHE_DEFAULT_TTL: '120' }));
  describe('response cache in Redis', () => {
    it('stores entries under <STATE_PREFIX>cache: with the configured TTL', async () => {
      const stack = await startStack({
        env: { REDIS_URL: redisUrl, STATE_PREFIX: prefix, CACHE_DEFAULT_TTL: '77' },
      });
      const redis = new Redis(redisUrl);
      try {
        await postApp(stack, '/v1/generate', { prompt: 'ttl probe' });
        const keys = await redis.keys(`${prefix}cache:generate:*`);
        expect(keys.length).toBeGreaterThan(0);
        const ttls = await Promise.all(keys.map((k) => redis.ttl(k)));
        expect(ttls.some((t) => t > 70 && t <= 77)).toBe(true);
      } finally {
        const all = await redis.keys(`${prefix}*`);
        if (all.length) await redis.del(...all);
        redis.disconnect();
        await stack.close();
      }
    });
  });
} else {
  warnSkipped('test/integration/cache.test.ts > response cache (redis): 6 tests');
}

describe('response cache keys: a different request is a different entry', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });
  const post = (path: string, body: FormData | unknown) => postApp(stack, path, body);

  it('/v1/generate keys on system and max_tokens too', async () => {
    const prompt = `cache key probe ${Date.now()}`;
    expect((await post('/v1/generate', { prompt, system: 'Be terse.', max_tokens: 50 })).xcache).toBe('MISS');
    expect((await post('/v1/generate', { prompt, system: 'Be verbose.', max_tokens: 50 })).xcache).toBe(
      'MISS',
    );
    expect((await post('/v1/generate', { prompt, system: 'Be terse.', max_tokens: 60 })).xcache).toBe('MISS');
    expect((await post('/v1/generate', { prompt, system: 'Be terse.', max_tokens: 50 })).xcache).toBe('HIT');
  });

  it('qa keys on the question: another question about the same text is not answered from the cache', async () => {
    const text = `Hanoi is the capital of Vietnam. ${Date.now()}`;
    const a = await post('/v1/text_processing/process', {
      text,
      operation: 'qa',
      question: 'What is the capital?',
    });
    const b = await post('/v1/text_processing/process', {
      text,
      operation: 'qa',
      question: 'Which country?',
    });
    expect(a.xcache).toBe('MISS');
    expect(b.xcache).toBe('MISS');
    expect(b.json.result).toContain('Which country?');
  });

  it('text entries live under text:<operation>: so one operation can be invalidated alone', async () => {
    const text = `Invalidate by operation ${Date.now()}`;
    await post('/v1/text_processing/process', { text, operation: 'summarize' });
    await post('/v1/text_processing/process', { text, operation: 'sentiment' });
    expect(await stack.gateway.app.responseCache.invalidate('text:summarize:')).toBeGreaterThan(0);
    expect((await post('/v1/text_processing/process', { text, operation: 'summarize' })).xcache).toBe('MISS');
    expect((await post('/v1/text_processing/process', { text, operation: 'sentiment' })).xcache).toBe('HIT');
  });
});

describe('response cache disabled', () => {
  it('CACHE_ENABLED=false: every call goes upstream, no X-Cache header', async () => {
    const stack = await startStack({ env: { CACHE_ENABLED: 'false' } });
    try {
      const before = stack.fake.stats.requests;
      const a = await postApp(stack, '/v1/generate', { prompt: 'no cache' });
      const b = await postApp(stack, '/v1/generate', { prompt: 'no cache' });
      expect([a.status, b.status]).toEqual([200, 200]);
      expect(a.xcache).toBeNull();
      expect(b.json.cached).toBe(false);
      expect(stack.fake.stats.requests).toBe(before + 2);
    } finally {
      await stack.close();
    }
  });
});

describe('single flight', () => {
  it('identical requests arriving together make one upstream call', async () => {
    const s = await startStack({ fake: { latencyMs: 300 } });
    try {
      const call = () =>
        fetch(`${s.url}/v1/generate`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'together' }),
        });
      const answers = await Promise.all([call(), call(), call()]);
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(answers.map((r) => r.headers.get('x-cache')).sort()).toEqual(['HIT', 'HIT', 'MISS']);
      const texts = await Promise.all(answers.map(async (r) => ((await r.json()) as { text: string }).text));
      expect(new Set(texts).size).toBe(1);
      expect(s.fake.stats.requests).toBe(1);
    } finally {
      await s.close();
    }
  });
});
