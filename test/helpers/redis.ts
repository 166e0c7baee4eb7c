import { inject } from 'vitest';

/** The test Redis URL, or undefined (then the caller skips, and says so). */
export function redisTestUrl(): string | undefined {
  try {
    return inject('redisUrl') || process.env.REDIS_TEST_URL || undefined;
  } catch {
    return process.env.REDIS_TEST_URL || undefined;
  }
}

/** Set for the test files: REDIS_TEST_URL inside workers comes from the global setup's provide(). */
const url = redisTestUrl();
if (url) process.env.REDIS_TEST_URL = url;

export function warnSkipped(what: string): void {
  console.warn(`\n!!! SKIPPED (no redis-server): ${what}\n`);
}
