import type { Redis } from 'ioredis';
import { clusterOf } from '../store/redis-client.ts';
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
      if (keys.length === 0) continue;
      // A Cluster refuses one command on keys of several slots: one UNLINK each (pipelined).
      const cluster = clusterOf(this.#redis);
      if (cluster) {
        const pipeline = cluster.pipeline();
        for (const k of keys) pipeline.unlink(k);
        for (const [, n] of (await pipeline.exec()) ?? []) removed += Number(n ?? 0);
      } else removed += await this.#redis.unlink(...keys);
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
    // A Cluster's entries are spread over its masters: each one is scanned.
    const nodes: Redis[] = clusterOf(this.#redis)?.nodes('master') ?? [this.#redis];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', 500);
        cursor = next;
        yield found.map((k) => k.slice(clientPrefix.length));
      } while (cursor !== '0');
    }
  }
}
