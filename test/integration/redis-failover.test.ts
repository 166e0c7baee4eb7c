import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Gateway } from '../../src/app/build.ts';
import { FailoverStore } from '../../src/store/failover.ts';
import type { Json } from '../helpers/admin.ts';
import { has } from '../helpers/global-setup.ts';
import { sample } from '../helpers/metrics.ts';
import { warnSkipped } from '../helpers/redis.ts';
import { type RestartableRedis, startRestartableRedis } from '../helpers/redis-ha.ts';
import { generateText, poolKeyValues, type Stack, stackPerTest } from '../helpers/stack.ts';

/**
 * STORE_FAILURE_MODE=local (the default) with two instances on one Redis, which is killed (and
 * started again empty) or paused (and resumed) under load: each instance serves its half of every
 * budget alone, the fake Gemini (same limits) never answers 429, health and metrics say degraded,
 * and when Redis is back both rejoin without a restart with every request counted in Redis.
 * STORE_FAILURE_MODE=closed answers 503 instead.
 */

const available = has('redis-server');
if (!available) warnSkipped('STORE_FAILURE_MODE (Redis killed, paused, restarted under load)');

/** Two keys, each its own project, 10 requests a minute each: 20 in all. */
const RPM = 10;
const KEYS = 2;
const start = stackPerTest({
  keys: KEYS,
  env: {
    DEFAULT_RPM: String(RPM),
    // Requests wait in the pool's line while an instance may not spend alone yet (the others may
    // not have noticed the outage) or waits for the others to rejoin; a full budget is refused at once.
    QUEUE_MAX_WAIT_MS: '5000',
    REDIS_COMMAND_TIMEOUT_MS: '500',
  },
});

const servers: RestartableRedis[] = [];
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
async function ownRedis(): Promise<RestartableRedis> {
  const r = await startRestartableRedis();
  servers.push(r);
  return r;
}

async function pair(redis: RestartableRedis, lines?: string[]): Promise<[Stack, Stack]> {
  const env = { REDIS_URL: redis.url, STATE_PREFIX: `fo:${randomUUID()}:` };
  const values = poolKeyValues(KEYS);
  // The fake counts Google's way (rolling minute per project) with the same limits.
  const a = await start({
    env,
    logLines: lines,
    fake: { keys: values.map((apiKey) => ({ apiKey })), limits: { rpm: RPM } },
  });
  const b = await start({ env, fakeInstance: a.fake });
  return [a, b];
}

function failover(s: Stack): FailoverStore {
  const store = s.gateway.store;
  if (!(store instanceof FailoverStore)) throw new Error('expected the local failure mode');
  return store;
}

/** Requests counted in the store this minute, every budget together. */
async function countedThisMinute(g: Gateway): Promise<number> {
  const now = Date.now();
  const budgets = await g.store.budgetStates(now, g.pool.calendarAt(now).day);
  return budgets.reduce((n, b) => n + b.requestsThisMinute, 0);
}

/** Sequential requests, alternating between the instances: their statuses, per instance. */
async function send(stacks: Stack[], n: number): Promise<number[][]> {
  const out: number[][] = stacks.map(() => []);
  for (let i = 0; i < n; i++) {
    const k = i % stacks.length;
    out[k]!.push((await generateText(stacks[k]!, `q${i} ${randomUUID()}`)).status);
  }
  return out;
}

const ok = (statuses: number[]) => statuses.filter((s) => s === 200).length;

async function health(s: Stack): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${s.url}/health/detailed`);
  return { status: res.status, body: (await res.json()) as Json };
}

async function degradedMetric(s: Stack): Promise<number | undefined> {
  return sample(await (await fetch(`${s.url}/metrics`)).text(), 'gateway_store_degraded');
}

/**
 * The scenario of both tests: load before the outage, load during it (`during` requests: enough
 * to exhaust both halves, or fewer), then Redis back under load; `outage` takes Redis away, `back`
 * brings it back.
 */
async function outageUnderLoad(
  outage: (r: RestartableRedis) => Promise<void> | void,
  back: (r: RestartableRedis) => Promise<void> | void,
  duringCount: number,
) {
  const redis = await ownRedis();
  const lines: string[] = [];
  const [a, b] = await pair(redis, lines);
  // Each instance counts the other once it has had a heartbeat since the other started (2 s).
  await vi.waitFor(
    () => {
      for (const s of [a, b])
        expect(failover(s).status()).toMatchObject({ mode: 'redis', instances: 2, counted: true });
    },
    { timeout: 5000, interval: 50 },
  );
  expect(await degradedMetric(a)).toBe(0);

  // Before: 6 of the 20 through Redis.
  const before = await send([a, b], 6);
  expect(before.flat().every((s) => s === 200)).toBe(true);

  await outage(redis);
  // During: each instance serves alone from its half.
  const during = await send([a, b], duringCount);
  for (const statuses of during) expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
  expect(failover(a).status()).toMatchObject({ mode: 'local', shareOf: { n: 2, share: true } });
  expect(failover(b).status()).toMatchObject({ mode: 'local', shareOf: { n: 2, share: true } });
  // Both kept serving, and neither was ever sent past a limit.
  expect(ok(during[0]!)).toBeGreaterThan(0);
  expect(ok(during[1]!)).toBeGreaterThan(0);
  expect(a.fake.stats.rateLimited).toBe(0);
  expect(ok(before.flat()) + ok(during.flat())).toBeLessThanOrEqual(KEYS * RPM);
  // Ready, and saying it serves alone.
  const h = await health(a);
  expect(h.status).toBe(200);
  expect(h.body).toMatchObject({
    status: 'ready',
    store: { kind: 'redis', reachable: false, degraded: true, failure_mode: 'local', instances: 2 },
  });
  expect(await degradedMetric(a)).toBe(1);
  const warning = lines.map((l) => JSON.parse(l) as Json).find((l) => /serves alone/.test(l.msg));
  expect(warning).toMatchObject({ level: 40, instances: 2 });

  // Back, under load on both instances all along: they rejoin one after the other, without a restart.
  let stop = false;
  const rejoin: number[] = [];
  const loop = async (s: Stack) => {
    while (!stop) {
      rejoin.push((await generateText(s, `rejoin ${randomUUID()}`)).status);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const loops = [loop(a), loop(b)];
  try {
    await back(redis);
    await vi.waitFor(
      () => {
        expect(failover(a).status().mode).toBe('redis');
        expect(failover(b).status().mode).toBe('redis');
      },
      { timeout: 10_000, interval: 50 },
    );
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  expect(rejoin.every((s) => s === 200 || s === 429)).toBe(true);
  expect((await health(b)).body.store).toMatchObject({ reachable: true, degraded: false });
  expect(await degradedMetric(b)).toBe(0);
  expect(lines.some((l) => l.includes('reachable again: the local spend'))).toBe(true);

  // Nothing past a limit across the switch back either, and the budgets are intact: every
  // request sent upstream is counted in Redis, once.
  expect(a.fake.stats.rateLimited).toBe(0);
  const sent = a.fake.stats.requests;
  expect(ok(before.flat()) + ok(during.flat()) + ok(rejoin)).toBe(sent);
  expect(sent).toBeLessThanOrEqual(KEYS * RPM);
  expect(await countedThisMinute(a.gateway)).toBe(sent);
  expect(await countedThisMinute(b.gateway)).toBe(sent);
  // The rest of the minute's budget, and not more.
  const after = await send([a, b], 4 + KEYS * RPM - sent);
  expect(sent + ok(after.flat())).toBe(KEYS * RPM);
  expect(a.fake.stats.rateLimited).toBe(0);
  console.info(
    `local failure mode: ${ok(before.flat())} sent before the outage, ${ok(during[0]!)} + ${ok(during[1]!)} by ` +
      `the two instances alone, ${ok(rejoin)} while they rejoined, ${ok(after.flat())} after; ` +
      `${a.fake.stats.requests} upstream, 0 upstream 429s`,
  );
}

describe.runIf(available)('STORE_FAILURE_MODE=local, two instances', () => {
  it('Redis killed under load and started again empty: each serves its half alone, both rejoin, nothing lost', async () => {
    await outageUnderLoad(
      (r) => r.kill(),
      (r) => r.restart(),
      40,
    );
  });

  it('Redis paused under load and resumed: the same, with the data Redis kept and budget left for the rejoin', async () => {
    // Fewer requests alone: budget is left when Redis comes back, under load.
    await outageUnderLoad(
      (r) => r.pause(),
      (r) => r.resume(),
      6,
    );
  });
});

describe.runIf(available)('STORE_FAILURE_MODE=closed', () => {
  it('answers 503 (Retry-After: 1) while Redis is away, and is not ready', async () => {
    const redis = await ownRedis();
    const s = await start({
      env: { REDIS_URL: redis.url, STATE_PREFIX: `fc:${randomUUID()}:`, STORE_FAILURE_MODE: 'closed' },
    });
    expect(s.gateway.store).not.toBeInstanceOf(FailoverStore);
    expect((await generateText(s)).status).toBe(200);
    await redis.kill();
    for (let i = 0; i < 3; i++) {
      const res = await generateText(s);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
    }
    const h = await health(s);
    expect(h.status).toBe(503);
    expect(h.body.store).toEqual({ kind: 'redis', reachable: false, latency_ms: null });
    expect(await degradedMetric(s)).toBeUndefined();
    expect(s.fake.stats.requests).toBe(1);
    await redis.restart();
    await vi.waitFor(async () => expect((await generateText(s)).status).toBe(200), {
      timeout: 10_000,
      interval: 100,
    });
  });
});
