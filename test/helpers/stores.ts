import { randomUUID } from 'node:crypto';
import { afterAll, beforeEach, describe, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { AcquireRequest, PoolKeyRecord, StateStore } from '../../src/store/types.ts';
import { ipcStorePair } from './ipc-store.ts';
import { redisTestUrl, warnSkipped } from './redis.ts';

/** What the StateStore contract suites share: a fake clock's day, keys, requests, the stores. */
export const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
export const DAY = '2026-11-25';
export const NEXT_DAY = Date.UTC(2026, 10, 26, 8, 0, 0);
export const CIRCUIT = { failureThreshold: 2, cooldownMs: 10_000 };

export function key(id: string, over: Partial<PoolKeyRecord> = {}): PoolKeyRecord {
  return {
    id,
    project: id,
    models: [],
    enabled: true,
    rpm: 1000,
    rpd: 100_000,
    tpm: 10_000_000,
    modelLimits: {},
    ...over,
  };
}

export function req(nowMs: number, over: Partial<AcquireRequest> = {}): AcquireRequest {
  return {
    model: 'gemini-2.5-flash',
    estimatedTokens: 10,
    nowMs,
    day: DAY,
    nextDayMs: NEXT_DAY,
    exclude: [],
    circuitProbeLeaseMs: 5000,
    ...over,
  };
}

export const redisUrl = redisTestUrl();

/** Every StateStore implementation, each with a maker of fresh instances (null: no redis-server). */
export const STORES: ReadonlyArray<readonly [string, (() => StateStore) | null]> = [
  ['memory', () => new MemoryStore()],
  // A worker's store when WORKERS > 1: every call travels to a MemoryStore in the primary.
  ['ipc', () => ipcStorePair(new MemoryStore()).store],
  // The suite drives windows with a fake clock: the store uses the requests' nowMs, not Redis's TIME.
  [
    'redis',
    redisUrl
      ? () => RedisStore.connect(redisUrl, `test:${randomUUID()}:`, {}, { instanceClock: true })
      : null,
  ],
];

/**
 * One contract suite per StateStore implementation: `body` gets the store of the test that runs
 * (a fresh one per test, all closed after the suite), and a store that cannot run here (no
 * redis-server) is reported as skipped, loudly.
 */
export function describeEachStore(suite: string, body: (store: StateStore) => void): void {
  for (const [name, make] of STORES) {
    if (!make) {
      warnSkipped(`${suite} on ${name}`);
      describe.skip(`${suite}: ${name} (SKIPPED: no redis-server)`, () => {
        it('needs redis-server', () => {});
      });
      continue;
    }
    describe(`${suite}: ${name}`, () => {
      let current: StateStore | undefined;
      const opened: StateStore[] = [];
      beforeEach(() => {
        current = make();
        opened.push(current);
      });
      afterAll(async () => {
        await Promise.all(opened.map((s) => s.close()));
      });
      // The test's own store: calls made through it reach the one made for the running test.
      const store = new Proxy({} as StateStore, {
        get(_, prop) {
          const target = current as unknown as Record<string | symbol, unknown>;
          const value = target[prop];
          return typeof value === 'function' ? value.bind(current) : value;
        },
      });
      body(store);
    });
  }
}
