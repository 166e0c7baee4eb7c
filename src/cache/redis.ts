import type { Redis } from 'ioredis';
import type { CacheBackend } from './types.ts';

/** Escapes Redis glob metacharacters so a prefix matches literally in SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Redis backend: one string key per entry (`<namespace><key>`) with SET … EX ttl, so expiry and
 * eviction are Redis's job (maxmemory-policy). Shared by every gateway instance.
 */
export class RedisCacheBackend implements CacheBackend {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #namespace: string;

  /** namespace: prepended to every key, e.g. `gg:cache:`. */
  constructor(redis: Redis, namespace: string) {
    this.#redis = redis;
    this.#namespace = namespace;
  }

  async get(key: string): Promise<Buffer | null> {
    return this.#redis.getBuffer(this.#namespace + key);
  }

  async set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    await this.#redis.set(this.#namespace + key, value, 'EX', Math.max(1, Math.ceil(ttlSeconds)));
  }

  async invalidate(prefix = ''): Promise<number> {
    let removed = 0;
    for await (const keys of this.#scan(prefix)) {
      if (keys.length > 0) removed += await this.#redis.unlink(...keys);
    }
    return removed;
  }

  async usage(): Promise<{ entries: number; bytes: number }> {
    let entries = 0;
    let bytes = 0;
    for await (const keys of this.#scan('')) {
      if (keys.length === 0) continue;
      const pipeline = this.#redis.pipeline();
      for (const k of keys) pipeline.strlen(k);
      const results = (await pipeline.exec()) ?? [];
      keys.forEach((k, i) => {
        const len = results[i]?.[1];
        if (typeof len === 'number' && len > 0) {
          entries++;
          bytes += Buffer.byteLength(k) - Buffer.byteLength(this.#namespace) + len;
        }
      });
    }
    return { entries, bytes };
  }

  /**
   * Batches of keys under namespace+prefix, as the client's commands expect them: SCAN sees the
   * connection's own keyPrefix (if any) in MATCH and in its answers, other commands add it.
   */
  async *#scan(prefix: string): AsyncGenerator<string[]> {
    const clientPrefix = this.#redis.options.keyPrefix ?? '';
    const match = `${globEscape(clientPrefix + this.#namespace + prefix)}*`;
    let cursor = '0';
    do {
      const [next, found] = await this.#redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      yield found.map((k) => k.slice(clientPrefix.length));
    } while (cursor !== '0');
  }
}
