import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeValue, encodeValue, isCompressed } from '../../src/cache/codec.ts';
import {
  type CacheBackend,
  createResponseCache,
  MemoryCacheBackend,
  RedisCacheBackend,
  ResponseCache,
  stableStringify,
  wantsBypass,
} from '../../src/cache/index.ts';
import { decorateResponseCache } from '../../src/cache/plugin.ts';
import { parseEnv } from '../../src/config/env.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';

const bytes = (n: number, fill = 'x') => Buffer.alloc(n, fill);

describe('MemoryCacheBackend (LRU bounded in bytes)', () => {
  it('keeps bytes within the bound when filled past it, evicting the oldest first', async () => {
    const max = 10_000;
    const mem = new MemoryCacheBackend(max);
    // each entry: 4-byte key + 996-byte value = 1000 bytes
    for (let i = 0; i < 25; i++) {
      await mem.set(`k${String(i).padStart(3, '0')}`, bytes(996), 60);
      const { bytes: used } = await mem.usage();
      expect(used).toBeLessThanOrEqual(max);
    }
    const usage = await mem.usage();
    expect(usage).toEqual({ entries: 10, bytes: 10_000 });
    for (let i = 0; i < 15; i++) expect(await mem.get(`k${String(i).padStart(3, '0')}`)).toBeNull();
    for (let i = 15; i < 25; i++) expect(await mem.get(`k${String(i).padStart(3, '0')}`)).not.toBeNull();
  });

  it('evicts the least recently used, not the least recently written', async () => {
    const mem = new MemoryCacheBackend(3000);
    await mem.set('a', bytes(999), 60);
    await mem.set('b', bytes(999), 60);
    await mem.set('c', bytes(999), 60);
    expect(await mem.get('a')).not.toBeNull(); // a becomes the most recent
    await mem.set('d', bytes(999), 60);
    expect(await mem.get('b')).toBeNull();
    expect(await mem.get('a')).not.toBeNull();
    expect(await mem.get('c')).not.toBeNull();
    expect(await mem.get('d')).not.toBeNull();
  });

  it('does not store a value larger than the whole bound, and replacing a key frees its old bytes', async () => {
    const mem = new MemoryCacheBackend(1000);
    await mem.set('small', bytes(100), 60);
    await mem.set('huge', bytes(2000), 60);
    expect(await mem.get('huge')).toBeNull();
    expect(await mem.get('small')).not.toBeNull();
    await mem.set('small', bytes(300), 60);
    expect(await mem.usage()).toEqual({ entries: 1, bytes: 5 + 300 });
  });

  it('expires entries after their TTL', async () => {
    let now = 1_000_000;
    const mem = new MemoryCacheBackend(10_000, () => now);
    await mem.set('a', bytes(10), 5);
    await mem.set('b', bytes(10), 50);
    now += 4_999;
    expect(await mem.get('a')).not.toBeNull();
    now += 2;
    expect(await mem.get('a')).toBeNull();
    expect(await mem.usage()).toEqual({ entries: 1, bytes: 11 });
  });

  it('invalidates by prefix, or everything', async () => {
    const mem = new MemoryCacheBackend(10_000);
    await mem.set('translate:m:1', bytes(1), 60);
    await mem.set('translate:m:2', bytes(1), 60);
    await mem.set('generate:m:1', bytes(1), 60);
    expect(await mem.invalidate('translate:')).toBe(2);
    expect((await mem.usage()).entries).toBe(1);
    expect(await mem.invalidate()).toBe(1);
    expect(await mem.usage()).toEqual({ entries: 0, bytes: 0 });
  });
});

describe('value codec (compression)', () => {
  it('stores small values raw and round-trips them', async () => {
    const value = { text: 'hello', n: 1, nested: { ok: true } };
    const stored = await encodeValue(value, 1000);
    expect(isCompressed(stored)).toBe(false);
    expect(await decodeValue(stored)).toEqual(value);
  });

  it('compresses values above the threshold and round-trips them', async () => {
    const value = {
      text: 'Xin chào thế giới. '.repeat(500),
      list: Array.from({ length: 50 }, (_, i) => `item ${i}`),
    };
    const json = Buffer.byteLength(JSON.stringify(value));
    const stored = await encodeValue(value, 1000);
    expect(isCompressed(stored)).toBe(true);
    expect(stored.length).toBeLessThan(json / 5);
    expect(await decodeValue(stored)).toEqual(value);
  });

  it('refuses unknown encodings', async () => {
    await expect(decodeValue(Buffer.from([9, 1, 2]))).rejects.toThrow(/unknown cache value encoding/);
  });
});

describe('ResponseCache', () => {
  const opts = { ttlSeconds: 60, compressionThreshold: 100 };

  it('builds keys from endpoint, model, normalized request and binary inputs', () => {
    const a = ResponseCache.key('text:summarize', 'm1', { text: 'x', options: { a: 1, b: 2 } });
    expect(a).toMatch(/^text:summarize:m1:[0-9a-f]{64}$/);
    expect(ResponseCache.key('text:summarize', 'm1', { options: { b: 2, a: 1 }, text: 'x' })).toBe(a);
    expect(ResponseCache.key('text:summarize', 'm2', { text: 'x', options: { a: 1, b: 2 } })).not.toBe(a);
    expect(ResponseCache.key('text:sentiment', 'm1', { text: 'x', options: { a: 1, b: 2 } })).not.toBe(a);
    expect(ResponseCache.key('text:summarize', 'm1', { text: 'y', options: { a: 1, b: 2 } })).not.toBe(a);
    const img1 = ResponseCache.key('translate', 'm', { t: 'vi' }, [Buffer.from([1, 2, 3])]);
    expect(ResponseCache.key('translate', 'm', { t: 'vi' }, [Buffer.from([1, 2, 3])])).toBe(img1);
    expect(ResponseCache.key('translate', 'm', { t: 'vi' }, [Buffer.from([1, 2, 4])])).not.toBe(img1);
    expect(stableStringify({ b: [1, { d: 1, c: undefined }], a: null })).toBe('{"a":null,"b":[1,{"d":1}]}');
  });

  it('single flight: identical concurrent requests share one computation (failures too, never cached)', async () => {
    const cache = new ResponseCache(new MemoryCacheBackend(1 << 20), opts);
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = async () => {
      calls++;
      await gate;
      return { answer: 'once' };
    };
    const both = Promise.all([cache.getOrCompute('k', slow), cache.getOrCompute('k', slow)]);
    release();
    const [a, b] = await both;
    expect(calls).toBe(1);
    expect([a.status, b.status].sort()).toEqual(['HIT', 'MISS']);
    expect(b.value).toEqual({ answer: 'once' });

    let failures = 0;
    const failing = async () => {
      failures++;
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('upstream down');
    };
    const results = await Promise.allSettled([
      cache.getOrCompute('f', failing),
      cache.getOrCompute('f', failing),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(failures).toBe(1);
    // nothing cached, nothing left in flight: the next call computes again
    await expect(cache.getOrCompute('f', async () => 'ok')).resolves.toMatchObject({
      value: 'ok',
      status: 'MISS',
    });
  });

  it('answers MISS then HIT, BYPASS recomputes and refreshes, counting each', async () => {
    const cache = new ResponseCache(new MemoryCacheBackend(1 << 20), opts);
    let calls = 0;
    const compute = async () => ({ answer: `v${++calls}` });
    expect(await cache.getOrCompute('k', compute)).toEqual({ value: { answer: 'v1' }, status: 'MISS' });
    expect(await cache.getOrCompute('k', compute)).toEqual({ value: { answer: 'v1' }, status: 'HIT' });
    expect(await cache.getOrCompute('k', compute, { bypass: true })).toEqual({
      value: { answer: 'v2' },
      status: 'BYPASS',
    });
    expect(await cache.getOrCompute('k', compute)).toEqual({ value: { answer: 'v2' }, status: 'HIT' });
    expect(calls).toBe(2);
    const stats = await cache.stats();
    expect(stats).toMatchObject({
      enabled: true,
      backend: 'memory',
      hits: 2,
      misses: 1,
      bypasses: 1,
      entries: 1,
    });
    expect(stats.bytes).toBeGreaterThan(0);
    expect(stats.maxBytes).toBe(1 << 20);
  });

  it('never caches a failure', async () => {
    const cache = new ResponseCache(new MemoryCacheBackend(1 << 20), opts);
    await expect(
      cache.getOrCompute('k', async () => {
        throw new Error('upstream down');
      }),
    ).rejects.toThrow('upstream down');
    expect((await cache.stats()).entries).toBe(0);
    expect((await cache.getOrCompute('k', async () => 'ok')).status).toBe('MISS');
  });

  it('stores large values compressed in the backend', async () => {
    const backend = new MemoryCacheBackend(1 << 20);
    const cache = new ResponseCache(backend, opts);
    const big = { text: 'lorem ipsum '.repeat(200) };
    await cache.set('big', big);
    await cache.set('small', { text: 'hi' });
    expect(isCompressed((await backend.get('big'))!)).toBe(true);
    expect(isCompressed((await backend.get('small'))!)).toBe(false);
    expect(await cache.get('big')).toEqual(big);
  });

  it('treats a failing backend as a miss and keeps serving', async () => {
    const broken: CacheBackend = {
      kind: 'redis',
      get: async () => {
        throw new Error('connection lost');
      },
      set: async () => {
        throw new Error('connection lost');
      },
      invalidate: async () => 0,
      usage: async () => ({ entries: 0, bytes: 0 }),
    };
    const cache = new ResponseCache(broken, opts);
    expect(await cache.getOrCompute('k', async () => 42)).toEqual({ value: 42, status: 'MISS' });
    expect(await cache.stats()).toMatchObject({ errors: 2, misses: 1, hits: 0 });
  });

  it('is OFF when disabled, and invalidate() drops entries', async () => {
    const off = createResponseCache({
      env: parseEnv({ CACHE_ENABLED: 'false' }),
      logger: undefined as never,
    });
    expect(await off.getOrCompute('k', async () => 1)).toEqual({ value: 1, status: 'OFF' });
    expect((await off.stats()).backend).toBe('none');

    const cache = new ResponseCache(new MemoryCacheBackend(1 << 20), opts);
    await cache.set('translate:m:a', 1);
    await cache.set('generate:m:a', 2);
    expect(await cache.invalidate('translate:')).toBe(1);
    expect(await cache.get('translate:m:a')).toBeUndefined();
    expect(await cache.get('generate:m:a')).toBe(2);
  });

  it('builds the memory backend from the env, one cache per app', async () => {
    const env = parseEnv({ CACHE_MAX_BYTES: '4096' });
    const deps = { env, logger: undefined as never };
    const app = Fastify();
    const other = Fastify();
    try {
      decorateResponseCache(app, deps);
      decorateResponseCache(other, { env: parseEnv({}), logger: undefined as never });
      // Every route plugin sees the root's one cache, as the routes and /internal/cache do.
      const seen: ResponseCache[] = [];
      for (let i = 0; i < 2; i++)
        await app.register(async (scope) => {
          seen.push(scope.responseCache);
        });
      await app.ready();
      const cache = app.responseCache;
      expect(cache).toBeInstanceOf(ResponseCache);
      expect(seen).toHaveLength(2);
      expect(seen[0]).toBe(cache);
      expect(seen[1]).toBe(cache);
      expect(other.responseCache).not.toBe(cache);
      expect(cache.backend?.kind).toBe('memory');
      expect((cache.backend as MemoryCacheBackend).maxBytes).toBe(4096);
    } finally {
      await app.close();
      await other.close();
    }
  });
});

const url = redisTestUrl();
describe.skipIf(!url)('RedisCacheBackend (real Redis)', () => {
  let redis: Redis;
  let prefixed: Redis;
  const ns = `test-cache-${process.pid}-${Date.now()}:`;

  beforeAll(async () => {
    redis = new Redis(url!);
    prefixed = new Redis(url!, { keyPrefix: 'pfx:' });
  });
  afterAll(async () => {
    const keys = await redis.keys(`*${ns}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    prefixed.disconnect();
  });

  it('stores with TTL, reads back bytes, reports usage and invalidates by prefix', async () => {
    const backend = new RedisCacheBackend(redis, ns);
    await backend.set('translate:m:1', Buffer.from([0, 1, 2, 255]), 30);
    await backend.set('translate:m:2', Buffer.from('abc'), 30);
    await backend.set('generate:m:1', Buffer.from('abcd'), 30);
    expect(await backend.get('translate:m:1')).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(await backend.get('missing')).toBeNull();
    const ttl = await redis.pttl(`${ns}translate:m:1`);
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
    const usage = await backend.usage();
    expect(usage.entries).toBe(3);
    expect(usage.bytes).toBe(
      'translate:m:1'.length + 4 + 'translate:m:2'.length + 3 + 'generate:m:1'.length + 4,
    );
    expect(await backend.invalidate('translate:')).toBe(2);
    expect(await backend.get('translate:m:2')).toBeNull();
    expect(await backend.get('generate:m:1')).toEqual(Buffer.from('abcd'));
    expect(await backend.invalidate()).toBe(1);
    expect((await backend.usage()).entries).toBe(0);
  });

  it('expires entries in Redis', async () => {
    const backend = new RedisCacheBackend(redis, ns);
    await backend.set('short', Buffer.from('x'), 1);
    expect(await backend.get('short')).not.toBeNull();
    await new Promise((r) => setTimeout(r, 1200));
    expect(await backend.get('short')).toBeNull();
  });

  it('works under a client keyPrefix and treats glob characters in prefixes literally', async () => {
    const backend = new RedisCacheBackend(prefixed, ns);
    await backend.set('a*b', Buffer.from('1'), 30);
    await backend.set('axb', Buffer.from('2'), 30);
    expect(await redis.exists(`pfx:${ns}a*b`)).toBe(1);
    expect(await backend.invalidate('a*')).toBe(1);
    expect(await backend.get('axb')).toEqual(Buffer.from('2'));
    expect((await backend.usage()).entries).toBe(1);
    expect(await backend.invalidate()).toBe(1);
  });

  it('serves ResponseCache with compression through Redis (createResponseCache picks Redis)', async () => {
    const env = parseEnv({ STATE_PREFIX: ns, CACHE_COMPRESSION_THRESHOLD: '100', CACHE_DEFAULT_TTL: '20' });
    const cache = createResponseCache({ env, redis, logger: undefined as never });
    expect(cache.backend?.kind).toBe('redis');
    const value = { text: 'compressible '.repeat(100) };
    const first = await cache.getOrCompute('generate:m:k', async () => value);
    expect(first.status).toBe('MISS');
    const raw = await redis.getBuffer(`${ns}cache:generate:m:k`);
    expect(raw && isCompressed(raw)).toBe(true);
    expect(await redis.ttl(`${ns}cache:generate:m:k`)).toBeLessThanOrEqual(20);
    expect(await cache.getOrCompute('generate:m:k', async () => ({ text: 'other' }))).toEqual({
      value,
      status: 'HIT',
    });
    expect(await cache.stats()).toMatchObject({
      backend: 'redis',
      entries: 1,
      hits: 1,
      misses: 1,
      maxBytes: null,
    });
  });
});
if (!url) warnSkipped('test/unit/cache.test.ts > RedisCacheBackend (real Redis): 4 tests');

describe('MemoryCacheBackend edges', () => {
  // Mutant: `expiresAtMs <= now` → `<` (an entry would live one millisecond past its TTL).
  it('an entry is gone exactly when its TTL has elapsed', async () => {
    let now = 1_000_000;
    const mem = new MemoryCacheBackend(10_000, () => now);
    await mem.set('a', bytes(10), 5);
    now += 4_999;
    expect(await mem.get('a')).not.toBeNull();
    now += 1; // exactly 5 s after the write
    expect(await mem.get('a')).toBeNull();
  });

  // Mutant: `size > maxBytes` → `>=` (an entry that fills the cache exactly would be refused).
  it('stores an entry whose key and value fill the bound exactly', async () => {
    const mem = new MemoryCacheBackend(100);
    await mem.set('k', bytes(99), 60);
    expect(await mem.get('k')).not.toBeNull();
    expect(await mem.usage()).toEqual({ entries: 1, bytes: 100 });
  });

  // Mutant: `key.startsWith(prefix)` → `key.includes(prefix)`.
  it('invalidate(prefix) drops only keys that start with the prefix', async () => {
    const mem = new MemoryCacheBackend(10_000);
    await mem.set('translate:m:1', bytes(1), 60);
    await mem.set('generate:m:1', bytes(1), 60);
    await mem.set('m:x', bytes(1), 60);
    expect(await mem.invalidate('m:')).toBe(1);
    expect(await mem.get('translate:m:1')).not.toBeNull();
    expect(await mem.get('generate:m:1')).not.toBeNull();
    expect(await mem.get('m:x')).toBeNull();
  });

  // Mutant: usage() no longer drops expired entries (stats would count dead entries and bytes).
  it('usage() counts only live entries, without a read having touched the expired ones', async () => {
    let now = 1_000_000;
    const mem = new MemoryCacheBackend(10_000, () => now);
    await mem.set('short', bytes(10), 1);
    await mem.set('long', bytes(20), 60);
    expect(await mem.usage()).toEqual({ entries: 2, bytes: 5 + 10 + 4 + 20 });
    now += 1_000;
    expect(await mem.usage()).toEqual({ entries: 1, bytes: 4 + 20 });
  });
});

describe('value codec edges', () => {
  // Mutant: `json.length > threshold` → `>=` (a value exactly at the threshold would be compressed).
  it('compresses only values whose JSON exceeds the threshold', async () => {
    const value = 'a'.repeat(200); // JSON: 202 bytes, very compressible
    const atThreshold = await encodeValue(value, 202);
    expect(isCompressed(atThreshold)).toBe(false);
    expect(await decodeValue(atThreshold)).toBe(value);
    const above = await encodeValue(value, 201);
    expect(isCompressed(above)).toBe(true);
    expect(await decodeValue(above)).toBe(value);
  });

  // Mutant: `packed.length < json.length` → `true` (output bigger than the input would be stored).
  it('keeps a value raw when brotli would make it bigger', async () => {
    const stored = await encodeValue('a', 0); // JSON `"a"`: 3 bytes, brotli cannot shrink it
    expect(isCompressed(stored)).toBe(false);
    expect(stored.length).toBe(1 + 3);
    expect(await decodeValue(stored)).toBe('a');
  });
});

describe('ResponseCache counters', () => {
  // Mutant: the request that joins an in-flight computation is not counted as a hit.
  it('a request served by single flight counts as a hit in stats', async () => {
    const cache = new ResponseCache(new MemoryCacheBackend(1 << 20), {
      ttlSeconds: 60,
      compressionThreshold: 1000,
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const compute = async () => {
      calls++;
      await gate;
      return { answer: 42 };
    };
    const first = cache.getOrCompute('k', compute);
    const second = cache.getOrCompute('k', compute);
    release();
    const [a, b] = await Promise.all([first, second]);
    expect(calls).toBe(1);
    expect([a.status, b.status].sort()).toEqual(['HIT', 'MISS']);
    const stats = await cache.stats();
    expect(stats.hits).toBe(1);
    expect(stats.misses).toBe(1);
  });
});

describe('wantsBypass', () => {
  // Mutant: the `Pragma: no-cache` check removed (HTTP/1.0 clients could not bypass).
  it('Cache-Control: no-cache or Pragma: no-cache bypass the cache; other directives do not', async () => {
    const app = Fastify();
    app.get('/', async (request) => ({ bypass: wantsBypass(request) }));
    try {
      const ask = async (headers: Record<string, string>) =>
        (await app.inject({ method: 'GET', url: '/', headers })).json().bypass;
      expect(await ask({})).toBe(false);
      expect(await ask({ pragma: 'no-cache' })).toBe(true);
      expect(await ask({ 'cache-control': 'max-age=0, No-Cache' })).toBe(true);
      expect(await ask({ 'cache-control': 'no-store' })).toBe(false);
    } finally {
      await app.close();
    }
  });
});
