import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { RedisStore } from '../../src/store/redis.ts';
import { freePort } from '../../src/util/free-port.ts';
import { adminFetch, type Json, listKeys as listAdminKeys } from '../helpers/admin.ts';
import { has } from '../helpers/global-setup.ts';
import { sample } from '../helpers/metrics.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import {
  generateText,
  poolKeyValues,
  type Stack,
  sharedRedisPair,
  stackPerTest,
  TEST_TOKEN,
} from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * Tests written to kill mutants of the admin, internal, health and metrics routes and of the
 * reload path that the suite let live (docs/operations.md: Health, Admin API, Hot reload).
 */

const ADMIN = 'admin-token-for-mutation-tests-0123';
const MODEL = 'gemini-2.5-flash-lite';
const redisUrl = redisTestUrl();
const tempDir = tempDirs('gg-mut-admin-');

const stack = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });

const admin = (s: Stack, method: string, path: string, body?: unknown) =>
  adminFetch(s, ADMIN, method, path, body);
const listKeys = (s: Stack) => listAdminKeys(s, ADMIN);

function tempFile(name: string, text: string): string {
  const file = join(tempDir(), name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

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

if (!redisUrl) warnSkipped('a key added on another instance in the admin list');

describe.skipIf(!redisUrl)('keys known only from the shared store', () => {
  it('are listed by every instance, without a key value, as other_instance', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!, { keys: 2 });
    const extra = 'AIzaAddedOnInstanceA0000000000000000001';
    expect((await admin(a, 'POST', '/admin/keys', { id: 'only-on-a', api_key: extra })).status).toBe(201);
    const res = await admin(b, 'GET', '/admin/keys');
    const text = await res.text();
    expect(text).not.toContain(extra);
    const seen = (JSON.parse(text).keys as Json[]).find((k) => k.id === 'only-on-a');
    expect(seen).toMatchObject({ origin: 'other_instance', api_key: null, limits: null });
    expect((await admin(b, 'GET', '/admin/keys/only-on-a')).status).toBe(200);
  });
});

describe('admin API details', () => {
  it('a disable reason is kept to 200 characters', async () => {
    const s = await stack({ keys: 2 });
    const [k] = await listKeys(s);
    const res = await admin(s, 'POST', `/admin/keys/${k.id}/disable`, { reason: 'x'.repeat(500) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Json).reason).toBe(`disabled by admin: ${'x'.repeat(200)}`);
  });

  it('config shows every runtime setting in force and whether the files are set', async () => {
    const keysFile = tempFile(
      'keys.json',
      JSON.stringify({ keys: [{ id: 'one', api_key: poolKeyValues(1)[0] }] }),
    );
    const configFile = tempFile('gateway.json', JSON.stringify({ BURST_RATE_LIMIT: 9, LOG_LEVEL: 'warn' }));
    const s = await stack({
      keys: 1,
      env: {
        GEMINI_API_KEYS: '',
        API_KEYS_FILE: keysFile,
        CONFIG_FILE: configFile,
        GLOBAL_RATE_LIMIT: '0',
        CLIENT_RATE_LIMIT: '11',
        CLIENT_RATE_LIMITS: 'tests:5',
      },
    });
    const res = await admin(s, 'GET', '/admin/config');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      settings: {
        GLOBAL_RATE_LIMIT: 0,
        BURST_RATE_LIMIT: 9,
        CLIENT_RATE_LIMIT: 11,
        CLIENT_RATE_LIMITS: { tests: 5 },
        LOG_LEVEL: 'warn',
      },
      keys_file: 'set',
      config_file: 'set',
    });
  });

  it('a reload with an invalid CONFIG_FILE is a 422 and keeps the settings; fixing it clears the error', async () => {
    const configFile = tempFile('gateway.json', JSON.stringify({ CLIENT_RATE_LIMIT: 4 }));
    const s = await stack({ env: { CONFIG_FILE: configFile } });
    s.gateway.reloader.stop(); // reloads are driven by hand here
    writeFileSync(configFile, JSON.stringify({ CLIENT_RATE_LIMIT: 'many' }));
    const bad = await admin(s, 'POST', '/admin/reload');
    expect(bad.status).toBe(422);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    expect(((await bad.json()) as Json).detail).toContain('CLIENT_RATE_LIMIT');
    const config = (await (await admin(s, 'GET', '/admin/config')).json()) as Json;
    expect(config.settings.CLIENT_RATE_LIMIT).toBe(4);
    expect(config.reload).toMatchObject({ last_result: 'rejected', last_error: expect.any(String) });

    writeFileSync(configFile, JSON.stringify({ CLIENT_RATE_LIMIT: 6 }));
    expect((await admin(s, 'POST', '/admin/reload')).status).toBe(200);
    const fixed = (await (await admin(s, 'GET', '/admin/config')).json()) as Json;
    expect(fixed.settings.CLIENT_RATE_LIMIT).toBe(6);
    expect(fixed.reload).toMatchObject({ last_result: 'applied', last_error: null });
  });

  it('a reload with nothing to re-read reports "unchanged"', async () => {
    const s = await stack();
    expect((await admin(s, 'POST', '/admin/reload')).status).toBe(200);
    const config = (await (await admin(s, 'GET', '/admin/config')).json()) as Json;
    expect(config.reload).toMatchObject({ last_result: 'unchanged', last_error: null });
  });

  it('admin reloads are counted in gateway_config_reloads_total, applied and rejected', async () => {
    const values = poolKeyValues(2);
    const file = tempFile('keys.json', JSON.stringify({ keys: [{ id: 'one', api_key: values[0] }] }));
    const s = await stack({ keys: 2, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    s.gateway.reloader.stop();
    writeFileSync(file, '{"keys": [ broken');
    expect((await admin(s, 'POST', '/admin/reload')).status).toBe(422);
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'one', api_key: values[0] },
          { id: 'two', api_key: values[1] },
        ],
      }),
    );
    expect((await admin(s, 'POST', '/admin/reload')).status).toBe(200);
    // the applied reload clears the previous error from the status
    const config = (await (await admin(s, 'GET', '/admin/config')).json()) as Json;
    expect(config.reload).toMatchObject({ last_result: 'applied', last_error: null });
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(sample(text, 'gateway_config_reloads_total', { source: 'admin', result: 'rejected' })).toBe(1);
    expect(sample(text, 'gateway_config_reloads_total', { source: 'admin', result: 'applied' })).toBe(1);
  });
});

describe('internal monitoring details', () => {
  it('/internal/health carries the reload status and the rate limits in force', async () => {
    const s = await stack({ env: { CLIENT_RATE_LIMIT: '7' } });
    expect((await admin(s, 'POST', '/admin/reload')).status).toBe(200);
    const res = await admin(s, 'GET', '/internal/health');
    expect(res.status).toBe(200);
    expect((await res.json()) as Json).toMatchObject({
      reload: { last_result: 'unchanged' },
      rate_limits: { client_per_minute: 7 },
    });
  });

  it('cache invalidation with a prefix drops only the entries under it', async () => {
    const s = await stack();
    const gen = () =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'keep me cached' }),
      });
    expect((await gen()).status).toBe(200);
    const none = await admin(s, 'DELETE', '/internal/cache?prefix=translate:');
    expect(none.status).toBe(200);
    expect(await none.json()).toEqual({ removed: 0, prefix: 'translate:' });
    expect((await gen()).headers.get('x-cache')).toBe('HIT');
  });
});

describe('metrics token', () => {
  it('is accepted only as a Bearer token (scheme case-insensitive), not as X-Admin-Token', async () => {
    const token = 'metrics-token-for-mutation-0123';
    const s = await stack({ env: { METRICS_TOKEN: token } });
    const header = await fetch(`${s.url}/metrics`, { headers: { 'x-admin-token': token } });
    expect(header.status).toBe(401);
    const lower = await fetch(`${s.url}/metrics`, { headers: { authorization: `bearer ${token}` } });
    expect(lower.status).toBe(200);
  });
});
