import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startFakeGemini } from '../../fake/fake-gemini.ts';
import { freePort } from '../../src/util/free-port.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import {
  poolKeyValues,
  type Stack,
  type StackOptions,
  sharedRedisPair,
  startStack,
} from '../helpers/stack.ts';

/** Several gateway instances sharing one real Redis spend one budget between them. */
const redisUrl = redisTestUrl();
const MODEL = 'gemini-2.5-flash-lite';
const stacks: Stack[] = [];
/** startStack, closed after the test. */
async function tracked(opts: StackOptions): Promise<Stack> {
  const s = await startStack(opts);
  stacks.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

if (!redisUrl) warnSkipped('multi-instance tests on a shared Redis');

describe.skipIf(!redisUrl)('gateway instances sharing Redis', () => {
  it('three instances never overstep the keys’ rpm together, and spread the load evenly', async () => {
    const keys = 3;
    const rpm = 6;
    const values = poolKeyValues(keys);
    const fake = await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })), limits: { rpm } });
    const env = {
      REDIS_URL: redisUrl!,
      STATE_PREFIX: `mi:${randomUUID()}:`,
      DEFAULT_RPM: String(rpm),
      QUEUE_MAX_WAIT_MS: '0',
    };
    for (let i = 0; i < 3; i++) stacks.push(await startStack({ keys, env, fakeInstance: fake }));
    try {
      const statuses = await Promise.all(
        Array.from({ length: 45 }, (_, i) =>
          fetch(`${stacks[i % 3]!.url}/v1beta/models/${MODEL}:generateContent`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-goog-api-key': stacks[0]!.token },
            body: JSON.stringify({ contents: [{ parts: [{ text: `m${i}` }] }] }),
          }).then((r) => r.status),
        ),
      );
      expect(statuses.filter((s) => s === 200)).toHaveLength(keys * rpm);
      expect(statuses.filter((s) => s === 429)).toHaveLength(45 - keys * rpm);
      expect(fake.stats.rateLimited).toBe(0);
      expect([...fake.stats.byKey.values()]).toEqual([rpm, rpm, rpm]);
    } finally {
      await Promise.all(stacks.splice(0).map((s) => s.close()));
      await fake.close();
    }
  });

  it('a key disabled through one instance is skipped by the others', async () => {
    const [a, b] = await sharedRedisPair(tracked, redisUrl!, { keys: 2 });
    a.fake.setKeyState(poolKeyValues(2)[0]!, 'invalid');
    const call = (s: Stack) =>
      fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
      });
    for (let i = 0; i < 2; i++) expect((await call(a)).status).toBe(200);
    a.fake.resetStats();
    for (let i = 0; i < 4; i++) expect((await call(b)).status).toBe(200);
    expect(a.fake.stats.byKey.get(poolKeyValues(2)[0]!)).toBeUndefined();
  });
});

describe.skipIf(!redisUrl)('a key added on one instance', () => {
  it('is used there, and skipped without delay by an instance that does not hold its secret', async () => {
    const [a, b] = await sharedRedisPair(tracked, redisUrl!, {
      keys: 1,
      env: { ADMIN_TOKEN: 'admin-token-multi-1234', QUEUE_MAX_WAIT_MS: '0' },
    });
    const added = 'AIzaAddedAtRuntimeOnA0000000000000000';
    a.fake.addKey(added);
    const res = await fetch(`${a.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: 'Bearer admin-token-multi-1234', 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'added_on_a', api_key: added }),
    });
    expect(res.status).toBeLessThan(300);
    const call = (s: Stack) =>
      fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
      });
    a.fake.resetStats();
    for (let i = 0; i < 4; i++) expect((await call(b)).status).toBe(200);
    expect(a.fake.stats.byKey.get(added)).toBeUndefined();
    for (let i = 0; i < 4; i++) expect((await call(a)).status).toBe(200);
    expect(a.fake.stats.byKey.get(added)).toBeGreaterThan(0);
  });
});

describe('suspected per-IP throttling', () => {
  it('bare 429s from every key at once trigger a global backoff instead of disabling keys', async () => {
    const s = await startStack({ keys: 3, env: { QUEUE_MAX_WAIT_MS: '0', MAX_ATTEMPTS: '3' } });
    stacks.push(s);
    s.fake.script({ kind: 'rate_limit', bare: true }, { times: 3 });
    const res = await fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const now = Date.now();
    const states = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
    expect(states.every((k) => k.enabled)).toBe(true);
    // the backoff holds every key, even those whose short rest is over
    const refused = await fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'y' }] }] }),
    });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(
      /upstream is throttling the gateway/,
    );
    expect(s.fake.stats.requests).toBe(3);
  });
});

describe.skipIf(!redisUrl)('Redis going away', () => {
  it('answers 503 with Retry-After (no key is used blindly), and serves again when Redis is back', async () => {
    const port = await freePort();
    const start = () =>
      spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        {
          stdio: 'ignore',
        },
      );
    let redis = start();
    await new Promise((r) => setTimeout(r, 300));
    // closed: a 503 while Redis is away (local, the default, serves shares: redis-failover.test.ts).
    const s = await startStack({
      keys: 2,
      env: { REDIS_URL: `redis://127.0.0.1:${port}`, STORE_FAILURE_MODE: 'closed' },
    });
    stacks.push(s);
    const call = () =>
      fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
      });
    try {
      expect((await call()).status).toBe(200);
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
      const down = await call();
      expect(down.status).toBe(503);
      expect(down.headers.get('retry-after')).toBe('1');
      expect(await down.json()).toMatchObject({ error: { code: 503, status: 'UNAVAILABLE' } });
      expect(s.fake.stats.requests).toBe(1);
      redis = start();
      await vi.waitFor(async () => expect((await call()).status).toBe(200), {
        timeout: 10_000,
        interval: 300,
      });
    } finally {
      redis.kill('SIGKILL');
    }
  });
});
