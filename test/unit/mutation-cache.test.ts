/**
 * Tests written by manual mutation testing of src/cache: each one kills a mutant the other
 * cache tests let survive (see the comment above each test).
 */
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue, isCompressed } from '../../src/cache/codec.ts';
import { MemoryCacheBackend, ResponseCache, wantsBypass } from '../../src/cache/index.ts';

const bytes = (n: number) => Buffer.alloc(n, 'x');

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
