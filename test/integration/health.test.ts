import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RedisStore } from '../../src/store/redis.ts';
import { freePort } from '../../src/util/free-port.ts';
import { adminFetch, listKeys as listAdminKeys } from '../helpers/admin.ts';
import { has } from '../helpers/global-setup.ts';
import {
  generateText,
  poolKeyValues,
  type Stack,
  type StackOptions,
  startStack,
  TEST_TOKEN,
} from '../helpers/stack.ts';

/** Liveness (/health) and readiness (/health/detailed). */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const ADMIN = 'admin-token-for-health-0123456';
const stacks: Stack[] = [];
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

async function stack(opts: StackOptions = {}): Promise<Stack> {
  const s = await startStack({ ...opts, env: { ADMIN_TOKEN: ADMIN, ...opts.env } });
  stacks.push(s);
  return s;
}

const MODEL = 'gemini-2.5-flash-lite';
const admin = (s: Stack, method: string, path: string, body?: unknown) =>
  adminFetch(s, ADMIN, method, path, body);
const listKeys = (s: Stack) => listAdminKeys(s, ADMIN);

describe('health', () => {
  it('/health answers without a token and without touching the store', async () => {
    const s = await stack();
    s.gateway.store.ping = () => Promise.reject(new Error('store down'));
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('/health/detailed is ready with usable keys, and says how many', async () => {
    const s = await stack({ keys: 3 });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(200);
    expect((await res.json()) as Json).toMatchObject({
      status: 'ready',
      store: { kind: 'memory', reachable: true },
      keys: { configured: 3, usable: 3, disabled: 0, resting: 0, circuit_open: 0 },
      circuits: { closed: 3, open: 0, half_open: 0 },
      queue_length: 0,
    });
  });

  it('503 when every key is disabled', async () => {
    const s = await stack({ keys: 2 });
    const list = (await (
      await fetch(`${s.url}/admin/keys`, { headers: { 'x-admin-token': ADMIN } })
    ).json()) as Json;
    for (const k of list.keys)
      await fetch(`${s.url}/admin/keys/${k.id}/disable`, {
        method: 'POST',
        headers: { 'x-admin-token': ADMIN },
      });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({
      status: 'not_ready',
      keys: { usable: 0, disabled: 2 },
    });
  });

  it('503 when every key was found dead upstream', async () => {
    const s = await stack({ keys: 2 });
    for (const k of poolKeyValues(2)) s.fake.setKeyState(k, 'invalid');
    await fetch(`${s.url}/v1beta/models`, { headers: { 'x-goog-api-key': s.token } });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as Json).keys.disabled).toBe(2);
  });

  it('503 when the state store does not answer', async () => {
    const s = await stack();
    s.gateway.store.ping = () => Promise.reject(new Error('ECONNREFUSED'));
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({ status: 'not_ready', store: { reachable: false } });
  });
});

describe('readiness counts only usable keys', () => {
  it('a pool whose only key is resting is not ready; the key shows its rest reason', async () => {
    const s = await stack({ keys: 1, env: { QUEUE_MAX_WAIT_MS: '0' } });
    s.fake.script({ kind: 'rate_limit', retryDelay: '3600s' }, { times: 1 });
    expect((await generateText(s)).status).toBe(429);
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({
      status: 'not_ready',
      keys: { configured: 1, usable: 0, resting: 1, disabled: 0, circuit_open: 0 },
    });
    const internal = await admin(s, 'GET', '/internal/health');
    expect(internal.status).toBe(503);
    const [k] = await listKeys(s);
    expect(k).toMatchObject({ state: 'resting', reason: expect.any(String) });
    expect(k.reason.length).toBeGreaterThan(0);
  });

  it('a pool whose only key has an open circuit is not ready', async () => {
    const s = await stack({
      keys: 1,
      env: { QUEUE_MAX_WAIT_MS: '0', CIRCUIT_FAILURE_THRESHOLD: '1', CIRCUIT_COOLDOWN_MS: '600000' },
    });
    s.fake.script({ kind: 'internal' }, { times: 5 });
    expect((await generateText(s)).status).not.toBe(200);
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({
      keys: { usable: 0, circuit_open: 1 },
      circuits: { open: 1, closed: 0 },
    });
  });

  it('reports the requests waiting in line for a key', async () => {
    const s = await stack({ keys: 1, env: { DEFAULT_RPM: '1', QUEUE_MAX_WAIT_MS: '120000' } });
    expect((await generateText(s, 'first')).status).toBe(200);
    const client = new AbortController();
    const waiting = fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'second' }] }] }),
      signal: client.signal,
    }).catch(() => undefined);
    try {
      await vi.waitFor(
        async () => {
          const body = (await (await fetch(`${s.url}/health/detailed`)).json()) as Json;
          expect(body.queue_length).toBe(1);
        },
        { timeout: 5000, interval: 50 },
      );
    } finally {
      client.abort();
      await waiting;
    }
  });

  it('a reachable store reports its latency', async () => {
    const s = await stack();
    const body = (await (await fetch(`${s.url}/health/detailed`)).json()) as Json;
    expect(body.store.latency_ms).toEqual(expect.any(Number));
  });
});

describe.skipIf(!has('redis-server'))('Redis down', () => {
  it('readiness fails and the admin and internal state views answer 503 problems', async () => {
    const port = await freePort();
    const redis: ChildProcess = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      // closed: Redis down is a 503 (local, the default, serves shares: redis-failover.test.ts).
      const s = await stack({
        keys: 2,
        env: { REDIS_URL: `redis://127.0.0.1:${port}`, STORE_FAILURE_MODE: 'closed' },
      });
      expect((await fetch(`${s.url}/health/detailed`)).status).toBe(200);
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
      // The readiness check fails on the lost connection itself, without a command waiting out
      // ioredis' reconnect retries first (the gateway's client queues nothing offline).
      const store = s.gateway.store as RedisStore;
      await vi.waitFor(() => expect(store.redis.status).not.toBe('ready'));
      await expect(store.ping()).rejects.toThrow(/enableOfflineQueue options is false/);

      const health = await fetch(`${s.url}/health/detailed`);
      expect(health.status).toBe(503);
      expect((await health.json()) as Json).toMatchObject({
        status: 'not_ready',
        store: { kind: 'redis', reachable: false, latency_ms: null },
      });
      for (const path of ['/admin/keys', '/internal/circuits']) {
        const res = await admin(s, 'GET', path);
        expect(res.status, path).toBe(503);
        expect(res.headers.get('content-type'), path).toContain('application/problem+json');
      }
    } finally {
      redis.kill('SIGKILL');
    }
  });
});
