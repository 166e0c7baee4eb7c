import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adminFetch, type Json, listKeys as listAdminKeys } from '../helpers/admin.ts';
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

/** The admin API (/admin) and the monitoring endpoints (/internal), behind ADMIN_TOKEN. */

const ADMIN = 'admin-token-for-tests-0123456789';
const redisUrl = redisTestUrl();
const tempDir = tempDirs('gg-admin-');

const stack = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });

function admin(s: Stack, method: string, path: string, body?: unknown, token = ADMIN) {
  return adminFetch(s, token, method, path, body);
}

const listKeys = (s: Stack) => listAdminKeys(s, ADMIN);

function keysFile(entries: Array<{ id: string; api_key: string; enabled?: boolean }>): string {
  const file = join(tempDir(), 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: entries }), { mode: 0o600 });
  return file;
}

function tempFile(name: string, text: string): string {
  const file = join(tempDir(), name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

describe('access', () => {
  it('without ADMIN_TOKEN the admin and internal routes do not exist', async () => {
    const s = await stack({ env: { ADMIN_TOKEN: '' } });
    for (const path of ['/admin/keys', '/internal/health', '/internal/cache', '/internal/circuits']) {
      const res = await admin(s, 'GET', path, undefined, 'anything');
      expect(res.status, path).toBe(404);
    }
  });

  it('requires the admin token (Bearer or X-Admin-Token); a client token is not enough', async () => {
    const s = await stack();
    expect((await fetch(`${s.url}/admin/keys`)).status).toBe(401);
    expect((await admin(s, 'GET', '/admin/keys', undefined, 'wrong-token')).status).toBe(401);
    expect((await admin(s, 'GET', '/admin/keys', undefined, TEST_TOKEN)).status).toBe(401);
    const noAuth = await fetch(`${s.url}/internal/health`);
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers.get('content-type')).toContain('application/problem+json');
    expect(noAuth.headers.get('www-authenticate')).toContain('Bearer');
    expect((await fetch(`${s.url}/admin/keys`, { headers: { 'x-admin-token': ADMIN } })).status).toBe(200);
    expect((await admin(s, 'GET', '/admin/keys')).status).toBe(200);
  });
});

describe('keys', () => {
  it('lists keys masked, with state, usage, limits and latency, never a key value', async () => {
    const s = await stack();
    for (let i = 0; i < 3; i++) expect((await generateText(s, `q${i}`)).status).toBe(200);
    const res = await admin(s, 'GET', '/admin/keys');
    const text = await res.text();
    for (const v of poolKeyValues(3)) expect(text).not.toContain(v);
    const keys = JSON.parse(text).keys as Json[];
    expect(keys).toHaveLength(3);
    for (const k of keys) {
      expect(k.api_key).toMatch(/^AIza….{4}$/);
      expect(k).toMatchObject({ state: 'available', enabled: true, origin: 'env', circuit: 'closed' });
      expect(k.limits.requests_per_minute).toBe(60);
    }
    const used = keys.filter((k) => k.usage.requests_this_minute > 0);
    expect(used.reduce((n, k) => n + k.usage.requests_today, 0)).toBe(3);
    expect(used[0].latency_ms).toMatchObject({ last: expect.any(Number), avg: expect.any(Number) });
  });

  it('shows one key by id (masked); an unknown id is a 404 problem', async () => {
    const s = await stack();
    const [k] = await listKeys(s);
    const one = await admin(s, 'GET', `/admin/keys/${k.id}`);
    expect(one.status).toBe(200);
    const text = await one.text();
    for (const v of poolKeyValues(3)) expect(text).not.toContain(v);
    expect(JSON.parse(text)).toMatchObject({ id: k.id, api_key: k.api_key, state: 'available' });
    const missing = await admin(s, 'GET', '/admin/keys/no_such_key');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
  });

  it('config shows the runtime settings in force and the reload status', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '7', CLIENT_RATE_LIMITS: 'tests:5' } });
    const res = await admin(s, 'GET', '/admin/config');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      settings: { GLOBAL_RATE_LIMIT: 7, CLIENT_RATE_LIMITS: { tests: 5 }, LOG_LEVEL: expect.any(String) },
      reload: { last_result: null },
      keys_file: 'unset',
      config_file: 'unset',
    });
  });

  it('disable takes a key out of rotation, enable puts it back', async () => {
    const s = await stack({ keys: 2 });
    const [k1] = await listKeys(s);
    const disabled = await admin(s, 'POST', `/admin/keys/${k1.id}/disable`, { reason: 'rotating it' });
    expect(disabled.status).toBe(200);
    expect((await disabled.json()) as Json).toMatchObject({
      state: 'disabled',
      enabled: false,
      reason: 'disabled by admin: rotating it',
    });
    s.fake.resetStats();
    for (let i = 0; i < 6; i++) expect((await generateText(s, `d${i}`)).status).toBe(200);
    const value = poolKeyValues(2)[0]!;
    expect(s.fake.stats.byKey.get(value) ?? 0).toBe(0);

    const enabled = await admin(s, 'POST', `/admin/keys/${k1.id}/enable`);
    expect(((await enabled.json()) as Json).state).toBe('available');
    s.fake.resetStats();
    for (let i = 0; i < 6; i++) await generateText(s, `e${i}`);
    expect(s.fake.stats.byKey.get(value) ?? 0).toBeGreaterThan(0);
  });

  it('when the keys file cannot be written, an added key is refused and nothing changes', async () => {
    const values = poolKeyValues(2);
    const file = keysFile([{ id: 'first', api_key: values[0]! }]);
    const s = await stack({ keys: 2, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    rmSync(dirname(file), { recursive: true, force: true }); // the volume went away
    const add = await admin(s, 'POST', '/admin/keys', { id: 'second', api_key: values[1]! });
    expect(add.status).toBe(500);
    expect(add.headers.get('content-type')).toContain('application/problem+json');
    const text = await add.text();
    expect(text).toContain('nothing was changed');
    expect(text).not.toContain(values[1]!);
    expect((await listKeys(s)).map((k) => k.id)).toEqual(['first']);
  });

  it('adds and removes keys; with API_KEYS_FILE the file is rewritten', async () => {
    const values = poolKeyValues(3);
    const file = keysFile([
      { id: 'first', api_key: values[0]! },
      { id: 'second', api_key: values[1]! },
    ]);
    const s = await stack({ keys: 3, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    const add = await admin(s, 'POST', '/admin/keys', { id: 'third', api_key: values[2]!, project: 'p3' });
    expect(add.status).toBe(201);
    const added = (await add.json()) as Json;
    expect(added).toMatchObject({ id: 'third', origin: 'file', project: 'p3', state: 'available' });
    expect(JSON.stringify(added)).not.toContain(values[2]!);
    const onDisk = JSON.parse(readFileSync(file, 'utf8'));
    expect(onDisk.keys.map((k: Json) => k.id)).toEqual(['first', 'second', 'third']);

    expect(
      (await admin(s, 'POST', '/admin/keys', { id: 'third', api_key: 'AIzaAnotherOne000000000000' })).status,
    ).toBe(409);
    expect((await admin(s, 'POST', '/admin/keys', { id: 'x', api_key: values[0]! })).status).toBe(409);
    const invalid = await admin(s, 'POST', '/admin/keys', {
      id: 'bad id',
      api_key: 'AIzaAnotherOne000000000000',
    });
    expect([400, 422]).toContain(invalid.status);

    s.fake.resetStats();
    for (let i = 0; i < 6; i++) expect((await generateText(s, `a${i}`)).status).toBe(200);
    expect(s.fake.stats.byKey.get(values[2]!) ?? 0).toBeGreaterThan(0);

    const del = await admin(s, 'DELETE', '/admin/keys/first');
    expect(del.status).toBe(200);
    expect(JSON.parse(readFileSync(file, 'utf8')).keys.map((k: Json) => k.id)).toEqual(['second', 'third']);
    s.fake.resetStats();
    for (let i = 0; i < 6; i++) await generateText(s, `r${i}`);
    expect(s.fake.stats.byKey.get(values[0]!) ?? 0).toBe(0);
    expect((await admin(s, 'DELETE', '/admin/keys/first')).status).toBe(404);
    expect((await listKeys(s)).map((k) => k.id)).toEqual(['second', 'third']);
  });

  it('reset ends a rest', async () => {
    const s = await stack({ keys: 1 });
    s.fake.script({ kind: 'rate_limit', retryDelay: '3600s' }, { times: 1 });
    const limited = await generateText(s);
    expect(limited.status).toBe(429);
    const [k] = await listKeys(s);
    expect(k.state).toBe('resting');
    expect(k.rest_until).toEqual(expect.any(String));
    const reset = await admin(s, 'POST', `/admin/keys/${k.id}/reset`);
    expect(((await reset.json()) as Json).state).toBe('available');
    expect((await generateText(s)).status).toBe(200);
  });

  it('reload re-reads the keys file; an invalid one is refused with 422 and changes nothing', async () => {
    const values = poolKeyValues(2);
    const file = keysFile([{ id: 'one', api_key: values[0]! }]);
    const s = await stack({ keys: 2, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file } });
    s.gateway.reloader.stop(); // this test drives reloads by hand
    writeFileSync(file, '{"keys": [ broken');
    const bad = await admin(s, 'POST', '/admin/reload');
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as Json).detail).toContain('API_KEYS_FILE');
    expect((await listKeys(s)).map((k) => k.id)).toEqual(['one']);
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { id: 'one', api_key: values[0] },
          { id: 'two', api_key: values[1] },
        ],
      }),
    );
    const ok = await admin(s, 'POST', '/admin/reload');
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as Json).keys).toMatchObject({ added: ['two'], removed: [] });
    expect((await listKeys(s)).map((k) => k.id)).toEqual(['one', 'two']);
  });
});

describe('internal monitoring', () => {
  it('health, cache status and invalidation, circuit breakers', async () => {
    const s = await stack();
    const health = await admin(s, 'GET', '/internal/health');
    expect(health.status).toBe(200);
    expect((await health.json()) as Json).toMatchObject({
      status: 'ready',
      store: { kind: 'memory', reachable: true },
      keys: { configured: 3, usable: 3 },
      rate_limits: { ip_per_minute: 0 },
    });

    // Fill the cache through an application route, then drop it.
    const gen = () =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'cache me' }),
      });
    expect((await gen()).status).toBe(200);
    expect((await gen()).headers.get('x-cache')).toBe('HIT');
    const stats = (await (await admin(s, 'GET', '/internal/cache')).json()) as Json;
    expect(stats).toMatchObject({ enabled: true, hits: 1, misses: 1, entries: 1 });
    const dropped = await admin(s, 'DELETE', '/internal/cache?prefix=generate:');
    expect(((await dropped.json()) as Json).removed).toBe(1);
    expect((await gen()).headers.get('x-cache')).toBe('MISS');

    s.fake.script({ kind: 'internal' }, { times: 20 });
    await generateText(s);
    const circuits = (await (await admin(s, 'GET', '/internal/circuits')).json()) as Json;
    expect(circuits.circuits).toHaveLength(3);
    const failing = circuits.circuits.find((c: Json) => c.consecutive_failures > 0);
    expect(failing).toMatchObject({ state: 'closed', last_error: expect.any(String) });
    const reset = await admin(s, 'POST', `/internal/circuits/${failing.key_id}/reset`);
    expect(reset.status).toBe(200);
    const after = (await (await admin(s, 'GET', '/internal/circuits')).json()) as Json;
    expect(after.circuits.find((c: Json) => c.key_id === failing.key_id).consecutive_failures).toBe(0);
  });

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

if (!redisUrl) warnSkipped('admin changes seen by every instance');

describe.skipIf(!redisUrl)('admin changes on a shared Redis', () => {
  it('a key disabled through instance A is skipped by instance B; enabling it on B brings it back', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!, { keys: 2 });
    const [k1] = await listKeys(a);
    expect((await admin(a, 'POST', `/admin/keys/${k1.id}/disable`)).status).toBe(200);
    expect((await listKeys(b)).find((k) => k.id === k1.id).state).toBe('disabled');
    a.fake.resetStats();
    for (let i = 0; i < 8; i++) expect((await generateText(b, `b${i}`)).status).toBe(200);
    expect(a.fake.stats.byKey.get(poolKeyValues(2)[0]!) ?? 0).toBe(0);

    expect((await admin(b, 'POST', `/admin/keys/${k1.id}/enable`)).status).toBe(200);
    a.fake.resetStats();
    for (let i = 0; i < 8; i++) await generateText(a, `a${i}`);
    expect(a.fake.stats.byKey.get(poolKeyValues(2)[0]!) ?? 0).toBeGreaterThan(0);
  });

  it('a key removed through A is no longer used by B', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!, { keys: 3 });
    const [k1] = await listKeys(a);
    expect((await admin(a, 'DELETE', `/admin/keys/${k1.id}`)).status).toBe(200);
    a.fake.resetStats();
    for (let i = 0; i < 9; i++) expect((await generateText(b, `b${i}`)).status).toBe(200);
    expect(a.fake.stats.byKey.get(poolKeyValues(3)[0]!) ?? 0).toBe(0);
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
