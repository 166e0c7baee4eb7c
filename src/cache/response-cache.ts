import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { decodeValue, encodeValue } from './codec.ts';
import type { CacheBackend, CacheStats, CacheStatus } from './types.ts';

/** JSON with object keys sorted at every level, so equal requests hash equally whatever their key order. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}

const WARN_INTERVAL_MS = 10_000;

export interface ResponseCacheOptions {
  ttlSeconds: number;
  compressionThreshold: number;
  logger?: Logger;
}

/**
 * Exact-match cache of successful application answers (translate, generate, text processing).
 * Keys: `<endpoint>:<model>:<sha256 of endpoint, model, normalized request and binary inputs>`,
 * so `invalidate('translate:')` drops one endpoint and `invalidate('translate:gemini-2.5-flash:')`
 * one model of it. Values are JSON, brotli-compressed above the threshold.
 * A backend failure never fails a request: a read error is a miss, a write error is dropped.
 */
export class ResponseCache {
  readonly #backend: CacheBackend | null;
  readonly #opts: ResponseCacheOptions;
  #hits = 0;
  #misses = 0;
  #bypasses = 0;
  #errors = 0;
  /** When a backend failure was last logged: an outage logs a line per 10 s, not one per request. */
  #lastWarnMs = 0;
  /** Computations under way, by key: an identical request arriving meanwhile shares the result. */
  readonly #inflight = new Map<string, Promise<unknown>>();

  /** backend null: caching disabled (every lookup computes, status OFF). */
  constructor(backend: CacheBackend | null, opts: ResponseCacheOptions) {
    this.#backend = backend;
    this.#opts = opts;
  }

  get enabled(): boolean {
    return this.#backend !== null;
  }

  get backend(): CacheBackend | null {
    return this.#backend;
  }

  static key(
    endpoint: string,
    model: string,
    request: unknown,
    binaries: readonly Uint8Array[] = [],
  ): string {
    const hash = createHash('sha256');
    hash.update(stableStringify({ endpoint, model, request }));
    for (const bytes of binaries) {
      // Length-prefixed, so two inputs can never run into each other.
      hash.update(`\0${bytes.length}\0`);
      hash.update(bytes);
    }
    return `${endpoint}:${model}:${hash.digest('hex')}`;
  }

  /** The cached value, or undefined (counted as a hit or a miss). */
  async get<T>(key: string): Promise<T | undefined> {
    if (!this.#backend) return undefined;
    try {
      const stored = await this.#backend.get(key);
      if (stored) {
        const value = (await decodeValue(stored)) as T;
        this.#hits++;
        return value;
      }
    } catch (err) {
      this.#errors++;
      this.#warn(err, key, 'response cache read failed; treating as a miss');
    }
    this.#misses++;
    return undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    if (!this.#backend) return;
    try {
      const stored = await encodeValue(value, this.#opts.compressionThreshold);
      await this.#backend.set(key, stored, this.#opts.ttlSeconds);
    } catch (err) {
      this.#errors++;
      this.#warn(err, key, 'response cache write failed; answer not cached');
    }
  }

  #warn(err: unknown, key: string, message: string): void {
    const now = Date.now();
    if (now - this.#lastWarnMs < WARN_INTERVAL_MS) return;
    this.#lastWarnMs = now;
    this.#opts.logger?.warn({ cause: String((err as Error)?.message ?? err), cacheKey: key }, message);
  }

  /**
   * The cached answer for key, or compute() stored under it. Identical requests arriving while
   * it is computed share that one computation (per instance). bypass (Cache-Control: no-cache)
   * skips the lookup but stores the fresh answer. A throwing compute() stores nothing.
   */
  async getOrCompute<T>(
    key: string,
    compute: () => Promise<T>,
    opts: { bypass?: boolean } = {},
  ): Promise<{ value: T; status: CacheStatus }> {
    if (!this.#backend) return { value: await compute(), status: 'OFF' };
    if (opts.bypass) {
      this.#bypasses++;
      const value = await compute();
      await this.set(key, value);
      return { value, status: 'BYPASS' };
    }
    const pending = this.#inflight.get(key) as Promise<{ value: T; status: CacheStatus }> | undefined;
    if (pending) {
      // Single flight: the same answer, without a second upstream call.
      const { value } = await pending;
      this.#hits++;
      return { value, status: 'HIT' };
    }
    // Registered before the first await, so a request arriving during the lookup joins it.
    const run = (async (): Promise<{ value: T; status: CacheStatus }> => {
      const hit = await this.get<T>(key);
      if (hit !== undefined) return { value: hit, status: 'HIT' };
      const value = await compute();
      await this.set(key, value);
      return { value, status: 'MISS' };
    })();
    this.#inflight.set(key, run);
    try {
      return await run;
    } finally {
      if (this.#inflight.get(key) === run) this.#inflight.delete(key);
    }
  }

  /** Drops every entry whose key starts with prefix (everything without one); returns how many. */
  async invalidate(prefix?: string): Promise<number> {
    return this.#backend ? this.#backend.invalidate(prefix) : 0;
  }

  /** Counters and usage; a backend that fails or times out shows as unreachable with no usage. */
  async stats(): Promise<CacheStats> {
    let reachable = true;
    let usage = { entries: 0, bytes: 0 };
    if (this.#backend) {
      try {
        usage = await this.#backend.usage();
      } catch {
        reachable = false;
      }
    }
    const maxBytes =
      this.#backend && 'maxBytes' in this.#backend && typeof this.#backend.maxBytes === 'number'
        ? this.#backend.maxBytes
        : null;
    return {
      enabled: this.enabled,
      backend: this.#backend?.kind ?? 'none',
      reachable,
      hits: this.#hits,
      misses: this.#misses,
      bypasses: this.#bypasses,
      errors: this.#errors,
      entries: usage.entries,
      bytes: usage.bytes,
      maxBytes,
    };
  }
}
