/**
 * The response cache's storage: one small interface, two backends (memory LRU, Redis).
 * Backends store opaque byte values; encoding, compression and hashing live in ResponseCache.
 */
export interface CacheBackend {
  readonly kind: 'memory' | 'redis';
  /** The stored bytes, or null when absent or expired. */
  get(key: string): Promise<Buffer | null>;
  set(key: string, value: Buffer, ttlSeconds: number): Promise<void>;
  /** Removes every entry whose key starts with prefix (all entries without one); returns how many. */
  invalidate(prefix?: string): Promise<number>;
  /** Live entries and the bytes they take (keys + values). */
  usage(): Promise<{ entries: number; bytes: number }>;
}

export interface CacheStats {
  enabled: boolean;
  backend: 'memory' | 'redis' | 'none';
  /** false: the backend failed or timed out reading its usage (entries and bytes then show 0). */
  reachable: boolean;
  /** Lookups answered from the cache (this process). */
  hits: number;
  /** Lookups that went upstream (this process). */
  misses: number;
  /** Requests that skipped the lookup (Cache-Control: no-cache). */
  bypasses: number;
  /** Backend failures (a failed read counts as a miss; a failed write is dropped). */
  errors: number;
  entries: number;
  bytes: number;
  /** Byte bound of the memory backend; null for Redis (bounded by its own maxmemory policy). */
  maxBytes: number | null;
}

/** HIT: served from the cache; MISS: computed and stored; BYPASS: no-cache, computed and refreshed; OFF: cache disabled. */
export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS' | 'OFF';
