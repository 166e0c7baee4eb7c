import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Env } from '../config/env.ts';
import { pacificDay } from '../util/pacific.ts';
import { loadPrices } from './prices.ts';
import { UsageRecorder } from './recorder.ts';
import { RedisUsageStore } from './redis-store.ts';
import { SqliteUsageStore } from './sqlite-store.ts';

export type { UsageObserver } from './recorder.ts';
export { UsageRecorder } from './recorder.ts';

/**
 * The usage recorder of a gateway: kept in Redis when the state store is Redis (shared by every
 * instance), else in DATA_DIR/usage.sqlite. Reads today's totals, then flushes every second.
 */
export async function createUsage(
  env: Pick<Env, 'DATA_DIR' | 'USAGE_RETENTION_DAYS' | 'PRICES_FILE' | 'PRICES_JSON' | 'STATE_PREFIX'>,
  opts: { redis?: Redis; logger?: Logger; flushMs?: number },
): Promise<UsageRecorder> {
  const prices = loadPrices(env);
  const store = opts.redis
    ? new RedisUsageStore(opts.redis, env.STATE_PREFIX, env.USAGE_RETENTION_DAYS)
    : new SqliteUsageStore(env.DATA_DIR, env.USAGE_RETENTION_DAYS, pacificDay);
  const usage = new UsageRecorder({ store, prices, logger: opts.logger, flushMs: opts.flushMs });
  await usage.start();
  return usage;
}
