import type { CacheBackend } from './types.ts';

interface Entry {
  value: Buffer;
  expiresAtMs: number;
  size: number;
}

/**
 * In-process LRU bounded in bytes (key + value bytes of every entry). A Map keeps insertion
 * order, so re-inserting on every read makes its first key the least recently used one.
 * Expired entries are dropped lazily (on read, on stats, or when evicted as the oldest).
 */
export class MemoryCacheBackend implements CacheBackend {
  readonly kind = 'memory' as const;
  readonly maxBytes: number;
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  #bytes = 0;

  constructor(maxBytes: number, now: () => number = Date.now) {
    this.maxBytes = maxBytes;
    this.#now = now;
  }

  async get(key: string): Promise<Buffer | null> {
    const entry = this.#entries.get(key);
    if (!entry) return null;
    this.#entries.delete(key);
    if (entry.expiresAtMs <= this.#now()) {
      this.#bytes -= entry.size;
      return null;
    }
    this.#entries.set(key, entry);
    return entry.value;
  }

  async set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    this.#remove(key);
    const size = Buffer.byteLength(key) + value.length;
    // A value larger than the whole cache would only evict everything and then itself.
    if (size > this.maxBytes) return;
    this.#entries.set(key, { value, size, expiresAtMs: this.#now() + ttlSeconds * 1000 });
    this.#bytes += size;
    for (const [oldest] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#remove(oldest);
    }
  }

  async invalidate(prefix = ''): Promise<number> {
    let removed = 0;
    for (const key of [...this.#entries.keys()]) {
      if (key.startsWith(prefix)) {
        this.#remove(key);
        removed++;
      }
    }
    return removed;
  }

  async usage(): Promise<{ entries: number; bytes: number }> {
    const now = this.#now();
    for (const [key, entry] of [...this.#entries]) if (entry.expiresAtMs <= now) this.#remove(key);
    return { entries: this.#entries.size, bytes: this.#bytes };
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.size;
  }
}
