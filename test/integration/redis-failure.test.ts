import { randomUUID } from 'node:crypto';
import type { RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Gateway } from '../../src/app/build.ts';
import { buildGateway } from '../../src/app/build.ts';
import { ConfigError } from '../../src/config/env.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { createRedisClient } from '../../src/store/redis-client.ts';
import { freePort } from '../../src/util/free-port.ts';
import { adminFetch, type Json } from '../helpers/admin.ts';
import { has } from '../helpers/global-setup.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type FlakyLink, type OwnRedis, startFlakyLink, startOwnRedis } from '../helpers/redis-server.ts';
import { generateText, poolKeyValues, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';
import { DAY, key, req } from '../helpers/stores.ts';

/**
 * A Redis that fails in any way (stops answering, drops the connection, loses commands or their
 * answers, refuses the address) never wedges the gateway and never counts a request twice.
 * Each test runs its own redis-server, which it stops (SIGSTOP) and resumes at will.
 */

const TIMEOUT_MS = 500;
/** The bound every answer must meet while Redis is stalled: the timeout plus a generous margin. */
const BOUND_MS = 5000;
const ADMIN_TOKEN = 'admin-token-for-redis-failure-tests-0001';

const available = has('redis-server');
if (!available) warnSkipped('Redis failure behaviour (stalled, cut, replayed, evicting, bad URL)');

const stack = stackPerTest({
  keys: 2,
  env: {
    // What a pool request gets with Redis away in `closed` mode; `local` mode: redis-failover.test.ts.
    STORE_FAILURE_MODE: 'closed',
    REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS),
    VERIFY_KEYS: 'false',
    ADMIN_TOKEN,
    QUEUE_MAX_WAIT_MS: '2000',
  },
});

/** The caller limits count in the store too (before the pool's acquire): they must not hang either. */
const LIMITS_ON = { GLOBAL_RATE_LIMIT: '100000', BURST_RATE_LIMIT: '100000', CLIENT_RATE_LIMIT: '100000' };

const servers: OwnRedis[] = [];
const links: FlakyLink[] = [];
async function ownRedis(args: string[] = []): Promise<OwnRedis> {
  const r = await startOwnRedis(args);
  servers.push(r);
  return r;
}
afterEach(async () => {
  await Promise.all(links.splice(0).map((l) => l.close()));
});
afterAll(async () => {
  // Resumed (SIGCONT) before they are killed: see OwnRedis.stop.
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/** Requests the store counted for this gateway's keys today (each key is its own project here). */
async function counted(g: Gateway): Promise<number> {
  const now = Date.now();
  const states = await g.store.keyStates(now, g.pool.calendarAt(now).day);
  const byProject = new Map(states.map((s) => [s.project, s.requestsToday]));
  return [...byProject.values()].reduce((a, b) => a + b, 0);
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await f();
  return { value, ms: performance.now() - started };
}

/** n concurrent native calls: status, body and duration of each. */
async function burst(s: Stack, n: number) {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      timed(async () => {
        const res = await generateText(s, `burst ${i} ${randomUUID()}`);
        return {
          status: res.status,
          retryAfter: res.headers.get('retry-after'),
          body: (await res.json()) as Json,
        };
      }),
    ),
  );
}

/** A store of its own on `redis` (a fresh prefix), with one key and one request booked. */
async function storeWithOneBooked(redis: OwnRedis, overrides: RedisOptions = {}): Promise<RedisStore> {
  const client = createRedisClient(redis.url, { commandTimeoutMs: TIMEOUT_MS, overrides });
  const store = new RedisStore(client, `store:${randomUUID()}:`);
  await store.syncKeys([key('k', { rpm: 100 })]);
  expect((await store.acquire(req(Date.now()))).ok).toBe(true);
  return store;
}

/** Requests key k counts today, read once the store reaches Redis again. */
async function bookedOnceBack(store: RedisStore): Promise<number | undefined> {
  const budgets = await vi.waitFor(() => store.budgetStates(Date.now(), DAY), {
    timeout: BOUND_MS,
    interval: 50,
  });
  return budgets.find((b) => b.project === 'k')?.requestsToday;
}

/** The warnings about a Redis outage (not the "reachable again" lines). */
function outageLines(lines: string[], role = 'state store'): Json[] {
  return lines
    .map((l) => JSON.parse(l) as Json)
    .filter((l) => l.level === 40 && String(l.msg).startsWith(`redis (${role})`));
}

describe.skipIf(!available)('a stalled Redis (SIGSTOP)', () => {
  it('pool requests answer 503 within the bound, readiness and admin say so, and SIGCONT brings it back', async () => {
    const redis = await ownRedis();
    const lines: string[] = [];
    const consoleErrors = vi.spyOn(console, 'error');
    const s = await stack({
      logLines: lines,
      env: { REDIS_URL: redis.url, STATE_PREFIX: `sf:${randomUUID()}:` },
    });
    expect((await generateText(s)).status).toBe(200);
    const upstreamBefore = s.fake.stats.requests;
    const countedBefore = await counted(s.gateway);

    redis.pause();
    // First wave: its commands were written to a connection that stopped answering.
    const first = await burst(s, 6);
    // Later waves find the connection dropped (socket timeout) and fail at once.
    const second = await burst(s, 6);
    const health = await timed(() => fetch(`${s.url}/health/detailed`));
    const adminKeys = await timed(() => adminFetch(s, ADMIN_TOKEN, 'GET', '/admin/keys'));

    for (const r of [...first, ...second]) {
      expect(r.value.status).toBe(503);
      expect(r.value.retryAfter).toBe('1');
      expect(r.value.body).toMatchObject({ error: { code: 503, status: 'UNAVAILABLE' } });
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    const slowestFirst = Math.max(...first.map((r) => r.ms));
    const slowestSecond = Math.max(...second.map((r) => r.ms));
    expect(slowestFirst).toBeLessThan(BOUND_MS);
    expect(slowestSecond).toBeLessThan(BOUND_MS);
    expect(health.value.status).toBe(503);
    expect(health.ms).toBeLessThan(BOUND_MS);
    expect((await health.value.json()) as Json).toMatchObject({
      status: 'not_ready',
      store: { kind: 'redis', reachable: false, latency_ms: null },
    });
    expect(adminKeys.value.status).toBe(503);
    expect(adminKeys.ms).toBeLessThan(BOUND_MS);
    expect(s.fake.stats.requests).toBe(upstreamBefore);
    console.info(
      `stalled Redis (timeout ${TIMEOUT_MS} ms): first wave 503 in <= ${Math.round(slowestFirst)} ms, ` +
        `second wave <= ${Math.round(slowestSecond)} ms, /health/detailed ${Math.round(health.ms)} ms, ` +
        `/admin/keys ${Math.round(adminKeys.ms)} ms`,
    );

    redis.resume();
    const resumedAt = performance.now();
    await vi.waitFor(
      async () => {
        expect((await generateText(s)).status).toBe(200);
      },
      { timeout: BOUND_MS, interval: 50 },
    );
    const recoveredMs = performance.now() - resumedAt;
    const after = await burst(s, 6);
    for (const r of after) expect(r.value.status).toBe(200);
    expect((await fetch(`${s.url}/health/detailed`)).status).toBe(200);
    console.info(`SIGCONT: requests succeed again after ${Math.round(recoveredMs)} ms`);

    // Counted: every admitted request exactly once. The first wave's script call, which Redis had
    // received before it stopped and ran only when it resumed (its callers had their 503
    // already), carried its deadline on Redis's clock and booked nothing (acquire.lua).
    const admitted = s.fake.stats.requests - upstreamBefore;
    const unsent = (await counted(s.gateway)) - countedBefore - admitted;
    expect(unsent).toBe(0);

    // One line for the outage, saying why; one when it is back; no ioredis stack.
    const down = outageLines(lines);
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({ level: 40, cause: expect.stringContaining(`within ${TIMEOUT_MS} ms`) });
    expect(down[0].request_id).toBeUndefined();
    expect(down[0].msg).toContain('pool requests answer 503');
    expect(lines.some((l) => l.includes('reachable again'))).toBe(true);
    expect(consoleErrors.mock.calls.flat().join(' ')).not.toContain('[ioredis]');
    consoleErrors.mockRestore();
  });

  it('acquires queued behind one that timed out are refused unwritten: the resumed Redis books none of them', async () => {
    const redis = await ownRedis();
    // The socket timeout, which drops the stalled connection, comes a little after the command
    // timeout here (in the gateway, moments after): a batch written in between would be lost
    // with the connection, its callers refused, and yet run by Redis when it resumes in time.
    const store = await storeWithOneBooked(redis, { socketTimeout: TIMEOUT_MS + 150 });
    try {
      redis.pause();
      const first = store.acquire(req(Date.now()));
      await new Promise((resolve) => setTimeout(resolve, 50)); // the first batch is sent
      const queued = Array.from({ length: 5 }, () => store.acquire(req(Date.now())));
      await expect(first).rejects.toThrow('Command timed out');
      const refused = await Promise.allSettled(queued);
      expect(refused.map((r) => r.status)).toEqual(Array(5).fill('rejected'));
      // Resumed after the connection was dropped, and before the queued batch's deadline.
      await new Promise((resolve) => setTimeout(resolve, 200));
      redis.resume();
      // Only the acquire made before the pause: the first batch reached Redis past its deadline.
      expect(await bookedOnceBack(store)).toBe(1);
    } finally {
      redis.resume();
      await store.close();
    }
  });

  it("an acquire written behind an unanswered command books nothing once that command's connection is dropped", async () => {
    const redis = await ownRedis();
    const store = await storeWithOneBooked(redis);
    try {
      redis.pause();
      // Another command goes unanswered first: its socket timeout drops the connection, with the
      // acquire written after it still on it, before the acquire's own timeout.
      const other = store.redis.ping().then(
        () => 'answered',
        (err: Error) => err.message,
      );
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 2));
      const started = Date.now();
      await expect(store.acquire(req(Date.now()))).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(TIMEOUT_MS);
      expect(await other).not.toBe('answered');
      // Resumed within what would have been the acquire's own deadline: Redis runs it now.
      redis.resume();
      expect(await bookedOnceBack(store)).toBe(1);
    } finally {
      redis.resume();
      await store.close();
    }
  });

  it('readiness, the first to meet the stalled Redis, answers 503 (store down) within the bound', async () => {
    const redis = await ownRedis();
    const s = await stack({ env: { REDIS_URL: redis.url, STATE_PREFIX: `ready:${randomUUID()}:` } });
    expect((await fetch(`${s.url}/health/detailed`)).status).toBe(200);
    redis.pause();
    const health = await timed(() => fetch(`${s.url}/health/detailed`));
    expect(health.value.status).toBe(503);
    expect(health.ms).toBeLessThan(BOUND_MS);
    expect((await health.value.json()) as Json).toMatchObject({ store: { reachable: false } });
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    redis.resume();
    await vi.waitFor(async () => expect((await fetch(`${s.url}/health/detailed`)).status).toBe(200), {
      timeout: BOUND_MS,
      interval: 50,
    });
    console.info(`stalled Redis: /health/detailed (first contact) 503 in ${Math.round(health.ms)} ms`);
  });

  it('with caller rate limits on, they fail open and the request still answers 503 within the bound', async () => {
    const redis = await ownRedis();
    const s = await stack({
      env: { ...LIMITS_ON, REDIS_URL: redis.url, STATE_PREFIX: `rl:${randomUUID()}:` },
    });
    expect((await generateText(s)).status).toBe(200);
    const upstreamBefore = s.fake.stats.requests;
    const countedBefore = await counted(s.gateway);
    redis.pause();
    const waves = [...(await burst(s, 6)), ...(await burst(s, 6))];
    for (const r of waves) {
      expect(r.value.status).toBe(503);
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    redis.resume();
    await vi.waitFor(async () => expect((await generateText(s)).status).toBe(200), {
      timeout: BOUND_MS,
      interval: 50,
    });
    // The limiter's counters were what the stalled connection held; no acquire reached Redis.
    expect(await counted(s.gateway)).toBe(countedBefore + s.fake.stats.requests - upstreamBefore);
    console.info(
      `stalled Redis, limits on: 503 in ${waves.map((r) => Math.round(r.ms)).join(', ')} ms (two waves of six)`,
    );
  });

  it('a cache on its own stalled Redis is a miss: the answer still comes, within the bound', async () => {
    const cacheRedis = await ownRedis();
    const lines: string[] = [];
    const s = await stack({ logLines: lines, env: { CACHE_REDIS_URL: cacheRedis.url } });
    const prompt = `cache stall ${randomUUID()}`;
    const post = (other = '') =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: prompt + other }),
      });
    expect((await post()).headers.get('x-cache')).toBe('MISS');
    expect((await post()).headers.get('x-cache')).toBe('HIT');
    cacheRedis.pause();
    // The cached prompt is a miss (its lookup times out), and so are new ones arriving together.
    const stalled = [await timed(() => post())];
    stalled.push(...(await Promise.all([1, 2, 3].map((i) => timed(() => post(`other ${i}`))))));
    for (const r of stalled) {
      expect(r.value.status).toBe(200);
      expect(r.value.headers.get('x-cache')).toBe('MISS');
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    const health = await fetch(`${s.url}/health/detailed`);
    expect(health.status).toBe(200);
    const cacheStatus = await timed(() => adminFetch(s, ADMIN_TOKEN, 'GET', '/internal/cache'));
    expect(cacheStatus.value.status).toBe(200);
    expect(cacheStatus.ms).toBeLessThan(BOUND_MS);
    expect((await cacheStatus.value.json()) as Json).toMatchObject({ backend: 'redis', reachable: false });
    cacheRedis.resume();
    await vi.waitFor(
      async () => {
        expect((await post()).headers.get('x-cache')).toBe('HIT');
      },
      { timeout: BOUND_MS, interval: 100 },
    );
    const down = outageLines(lines, 'response cache');
    expect(down, JSON.stringify(down)).toHaveLength(1);
    expect(down[0].msg).toContain('cache lookups are misses');
    console.info(
      `stalled cache Redis: answers in <= ${Math.round(Math.max(...stalled.map((r) => r.ms)))} ms`,
    );
  });
});

describe.skipIf(!available)('commands lost on a broken connection are never sent again', () => {
  it('commands that never reached Redis count nothing; every admitted request counts exactly once', async () => {
    const redis = await ownRedis();
    const link = await startFlakyLink(redis.port);
    links.push(link);
    const s = await stack({ env: { REDIS_URL: link.url, STATE_PREFIX: `lost:${randomUUID()}:` } });
    expect((await generateText(s)).status).toBe(200);
    const upstreamBefore = s.fake.stats.requests;
    const countedBefore = await counted(s.gateway);

    // The network loses what the gateway sends: its acquires go unanswered, time out (503), the
    // connection is dropped and made again. Resent on the new connection, they would count.
    link.dropRequests = true;
    const lost = [...(await burst(s, 1)), ...(await burst(s, 4))];
    for (const r of lost) {
      expect(r.value.status).toBe(503);
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    link.cut();
    link.dropRequests = false;
    await vi.waitFor(async () => expect((await generateText(s)).status).toBe(200), {
      timeout: BOUND_MS,
      interval: 50,
    });
    for (const r of await burst(s, 5)) expect(r.value.status).toBe(200);

    const admitted = s.fake.stats.requests - upstreamBefore;
    expect(await counted(s.gateway)).toBe(countedBefore + admitted);
  });

  it('commands Redis ran whose answers were lost count once each, not again after the reconnect', async () => {
    const redis = await ownRedis();
    const link = await startFlakyLink(redis.port);
    links.push(link);
    const s = await stack({ env: { REDIS_URL: link.url, STATE_PREFIX: `unanswered:${randomUUID()}:` } });
    expect((await generateText(s)).status).toBe(200);
    const upstreamBefore = s.fake.stats.requests;
    const countedBefore = await counted(s.gateway);

    link.dropReplies = true;
    // One acquire goes out and is run, its answer lost; the connection is then dropped for not
    // answering, so the next ones fail at once without reaching Redis.
    const unanswered = [...(await burst(s, 1)), ...(await burst(s, 4))];
    for (const r of unanswered) {
      expect(r.value.status).toBe(503);
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    link.cut();
    link.dropReplies = false;
    await vi.waitFor(async () => expect((await generateText(s)).status).toBe(200), {
      timeout: BOUND_MS,
      interval: 50,
    });
    for (const r of await burst(s, 5)) expect(r.value.status).toBe(200);

    // Redis ran the lost acquire once (it cannot know that its caller gave up): counted once, on
    // the safe side. Sent again on the new connection, it would count twice.
    const admitted = s.fake.stats.requests - upstreamBefore;
    expect(await counted(s.gateway)).toBe(countedBefore + admitted + 1);
  });
});

describe.skipIf(!available)('rate state is never evicted for cached answers', () => {
  let redis: OwnRedis;
  beforeAll(async () => {
    redis = await ownRedis();
  });
  afterEach(async () => {
    await redis.admin().config('SET', 'maxmemory', '0');
    await redis.admin().config('SET', 'maxmemory-policy', 'noeviction');
  });

  async function evicting(): Promise<void> {
    await redis.admin().config('SET', 'maxmemory', '100mb');
    await redis.admin().config('SET', 'maxmemory-policy', 'allkeys-lru');
  }

  const baseEnv = () => ({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    GEMINI_API_KEYS: poolKeyValues(1).join(','),
    CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
    VERIFY_KEYS: 'false',
    REDIS_URL: redis.url,
    STATE_PREFIX: `evict:${randomUUID()}:`,
  });

  it('a start whose cache shares an evicting Redis is refused, saying how to fix it', async () => {
    await evicting();
    const err = await buildGateway({ ...baseEnv(), GEMINI_BASE_URL: 'http://127.0.0.1:9' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/maxmemory-policy allkeys-lru/);
    expect((err as Error).message).toMatch(/CACHE_REDIS_URL/);
    expect((err as Error).message).toMatch(/CACHE_BACKEND=memory/);
    expect((err as Error).message).toMatch(/noeviction/);
    // CACHE_REDIS_URL naming the same server (here: another database of it) shares its memory too.
    const same = await buildGateway({
      ...baseEnv(),
      GEMINI_BASE_URL: 'http://127.0.0.1:9',
      CACHE_REDIS_URL: `${redis.url}/3`,
    }).catch((e: unknown) => e);
    expect(same).toBeInstanceOf(ConfigError);
  });

  it('with the cache elsewhere (CACHE_REDIS_URL, CACHE_BACKEND=memory) it starts, with a warning', async () => {
    await evicting();
    const elsewhere = redisTestUrl() ?? (await ownRedis()).url;
    const cacheEnvs: Record<string, string>[] = [
      { CACHE_REDIS_URL: elsewhere },
      { CACHE_BACKEND: 'memory' },
      { CACHE_ENABLED: 'false' },
    ];
    for (const cacheEnv of cacheEnvs) {
      const lines: string[] = [];
      const s = await stack({ logLines: lines, env: { ...baseEnv(), LOG_LEVEL: 'info', ...cacheEnv } });
      const warning = lines
        .map((l) => JSON.parse(l) as Json)
        .find((l) => /maxmemory-policy allkeys-lru/.test(l.msg));
      expect(warning, JSON.stringify(cacheEnv)).toMatchObject({ level: 40 });
      expect(warning.msg).toContain('set maxmemory-policy noeviction');
      expect((await generateText(s)).status).toBe(200);
    }
  });

  it('noeviction, or no maxmemory, starts without a word about eviction', async () => {
    const lines: string[] = [];
    await stack({ logLines: lines, env: baseEnv() });
    expect(lines.join('\n')).not.toMatch(/maxmemory/);
  });

  it('a Redis whose CONFIG command is disabled (managed Redis) starts with one warning', async () => {
    const managed = await ownRedis(['--rename-command', 'CONFIG', '']);
    const lines: string[] = [];
    await stack({ logLines: lines, env: { ...baseEnv(), REDIS_URL: managed.url } });
    const warnings = lines.filter((l) => l.includes('cannot read maxmemory-policy'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('CACHE_REDIS_URL');
  });
});

describe.skipIf(!available)('a bad Redis address', () => {
  const env = (over: Record<string, string>) => ({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    GEMINI_API_KEYS: poolKeyValues(1).join(','),
    CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
    ...over,
  });

  async function refusal(over: Record<string, string>): Promise<string> {
    const err = await buildGateway(env(over)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }

  it('is one clear ConfigError per cause, without the password, and no unhandled error event', async () => {
    const consoleErrors = vi.spyOn(console, 'error');
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const secured = await ownRedis(['--requirepass', 'right-password-123']);
      const closedPort = await freePort(); // nothing listens there

      expect(await refusal({ REDIS_URL: `http://:hunter2secret@127.0.0.1:${secured.port}` })).toMatch(
        /REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL .*not http:\/\//,
      );
      expect(await refusal({ REDIS_URL: `127.0.0.1:${secured.port}` })).toMatch(/REDIS_URL: .*no scheme/);
      expect(await refusal({ CACHE_REDIS_URL: 'https://cache.example.com' })).toMatch(
        /CACHE_REDIS_URL: .*not https/,
      );

      const wrongPassword = await refusal({ REDIS_URL: `redis://:hunter2secret@127.0.0.1:${secured.port}` });
      expect(wrongPassword).toMatch(
        new RegExp(
          `REDIS_URL: cannot connect to Redis \\(state store\\): authentication failed at 127.0.0.1:${secured.port}`,
        ),
      );
      expect(wrongPassword).not.toContain('hunter2secret');
      expect(await refusal({ REDIS_URL: `redis://127.0.0.1:${secured.port}` })).toMatch(
        /authentication failed/,
      );
      expect(await refusal({ REDIS_URL: `redis://127.0.0.1:${closedPort}` })).toMatch(
        new RegExp(`connection refused by 127.0.0.1:${closedPort}`),
      );
      expect(await refusal({ REDIS_URL: 'redis://no-such-host.invalid:6379' })).toMatch(
        /host not found: no-such-host.invalid:6379/,
      );
      expect(await refusal({ CACHE_REDIS_URL: `redis://127.0.0.1:${closedPort}` })).toMatch(
        /CACHE_REDIS_URL: cannot connect to Redis \(response cache\): connection refused/,
      );
      expect(
        await refusal({
          REDIS_HOST: '127.0.0.1',
          REDIS_PORT: String(secured.port),
          REDIS_PASSWORD: 'hunter2secret',
        }),
      ).toMatch(/REDIS_HOST: .*authentication failed.*check the user and password in REDIS_HOST/);

      // The refused clients stop reconnecting: nothing more is said after a while.
      await new Promise((r) => setTimeout(r, 300));
      expect(consoleErrors.mock.calls.flat().join(' ')).not.toContain('[ioredis]');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      consoleErrors.mockRestore();
    }
  });

  it('a Redis lost while running is one log line with the cause, and none with a password', async () => {
    const redis = await ownRedis(['--requirepass', 'hunter2secret']);
    const lines: string[] = [];
    const url = `redis://:hunter2secret@127.0.0.1:${redis.port}`;
    const s = await stack({
      logLines: lines,
      env: { REDIS_URL: url, STATE_PREFIX: `lost:${randomUUID()}:` },
    });
    expect((await generateText(s)).status).toBe(200);
    await redis.stop();
    await vi.waitFor(() => expect(outageLines(lines).length).toBeGreaterThan(0));
    await new Promise((r) => setTimeout(r, 1500)); // several reconnect attempts
    const down = outageLines(lines);
    expect(down).toHaveLength(1);
    expect(down[0].msg).toMatch(new RegExp(`connection (refused by|to) 127.0.0.1:${redis.port}`));
    expect(lines.join('\n')).not.toContain('hunter2secret');
    expect((await generateText(s)).status).toBe(503);
  });
});
