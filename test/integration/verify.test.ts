import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFakeGemini } from '../../fake/fake-gemini.ts';
import { adminFetch, type Json, listKeys } from '../helpers/admin.ts';
import { sample } from '../helpers/metrics.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import {
  generateText,
  poolKeyValues,
  postApp,
  type Stack,
  sharedRedisPair,
  stackPerTest,
} from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/** Keys verified before traffic, and Google refusing the gateway's egress location. */

const ADMIN = 'verify-admin-token-0123456789';
const start = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });
const tempDir = tempDirs('gg-verify-');
const redisUrl = redisTestUrl();
const GENERATE = ':generateContent';

function generateCallsTo(s: Stack, apiKey: string): number {
  return s.fake.stats.log.filter((r) => r.apiKey === apiKey && r.path.endsWith(GENERATE)).length;
}

async function eventually(check: () => Promise<boolean> | boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('Google refuses the egress location', () => {
  it('no key is disabled, the client gets a clear 4xx at once, and a metric and a warn line say so', async () => {
    const lines: string[] = [];
    const s = await start({ keys: 3, logLines: lines });
    s.fake.setEgressRefused(true);

    const res = await generateText(s);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Json;
    expect(body.error.status).toBe('FAILED_PRECONDITION');
    expect(body.error.message).toMatch(/network location/);
    expect(body.error.message).toMatch(/User location is not supported/);
    // Not retried on the other keys: they share the egress.
    expect(s.fake.stats.requests).toBe(1);

    // The application endpoints say the same as problem+json.
    const app = await postApp(s, '/v1/generate', { prompt: 'hello' });
    expect(app.status).toBe(400);
    expect(app.res.headers.get('content-type')).toMatch(/problem\+json/);
    expect(app.json.detail).toMatch(/network location/);

    const keys = await listKeys(s, ADMIN);
    expect(keys.map((k: Json) => [k.enabled, k.state])).toEqual([
      [true, 'available'],
      [true, 'available'],
      [true, 'available'],
    ]);
    const metrics = await s.gateway.metrics.render();
    expect(sample(metrics, 'gateway_egress_refused_total', { source: 'request' })).toBe(2);
    expect(sample(metrics, 'gateway_upstream_requests_total', { outcome: 'egress_refused' })).toBe(1);
    const warns = lines.map((l) => JSON.parse(l) as Json).filter((l) => /egress location/.test(l.msg));
    expect(warns).toHaveLength(1); // said once a minute, not per request
    expect(warns[0].level).toBe(40);

    // Once the egress is accepted again, the same keys serve.
    s.fake.setEgressRefused(false);
    expect((await generateText(s)).status).toBe(200);
  });

  it('during verification: nothing is disabled, keys stay unverified, and start does not fail', async () => {
    const fake = await startFakeGemini({
      keys: poolKeyValues(2).map((apiKey) => ({ apiKey })),
      egressRefused: true,
    });
    try {
      const s = await start({ keys: 2, fakeInstance: fake, env: { VERIFY_KEYS: 'true' } });
      expect(s.gateway.verifier?.summary()).toMatchObject({ pending: 2, failed: 0, verified: 0 });
      const metrics = await s.gateway.metrics.render();
      expect(sample(metrics, 'gateway_egress_refused_total', { source: 'verification' })).toBe(2);
      for (const k of await listKeys(s, ADMIN)) expect(k.enabled).toBe(true);
    } finally {
      await fake.close();
    }
  });
});

describe('keys verified before traffic', () => {
  it('an invalid and a leaked key are disabled with their reason before any generateContent reaches them', async () => {
    const values = poolKeyValues(4);
    const fake = await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })) });
    fake.setKeyState(values[1]!, 'invalid');
    fake.setKeyState(values[2]!, 'leaked');
    try {
      const s = await start({ keys: 4, fakeInstance: fake, env: { VERIFY_KEYS: 'true' } });
      // Start waited for the first round: the admin view already shows why.
      const keys = await listKeys(s, ADMIN);
      expect(keys.map((k: Json) => [k.enabled, k.reason])).toEqual([
        [true, null],
        [false, 'API_KEY_INVALID'],
        [false, 'LEAKED'],
        [true, null],
      ]);
      const health = (await (await fetch(`${s.url}/health/detailed`)).json()) as Json;
      expect(health.verification).toEqual({ verified: 2, pending: 0, failed: 2, healing: 0, skipped: 0 });

      const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => generateText(s, `q${i}`)));
      expect(statuses.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(generateCallsTo(s, values[1]!)).toBe(0);
      expect(generateCallsTo(s, values[2]!)).toBe(0);

      const metrics = await s.gateway.metrics.render();
      expect(sample(metrics, 'gateway_key_verifications_total', { result: 'verified' })).toBe(2);
      expect(sample(metrics, 'gateway_key_verifications_total', { result: 'disabled' })).toBe(2);
      expect(sample(metrics, 'gateway_keys_verification', { status: 'failed' })).toBe(2);
    } finally {
      await fake.close();
    }
  });

  it('a key added through the admin API is checked at once', async () => {
    const s = await start({ keys: 2, env: { VERIFY_KEYS: 'true' } });
    // The fake knows only the pool keys: any other key is invalid at Google.
    const res = await adminFetch(s, ADMIN, 'POST', '/admin/keys', {
      id: 'newcomer',
      api_key: 'AIzaNotAKeyGoogleKnows000000000000000',
    });
    expect(res.status).toBe(201);
    await eventually(async () => {
      const k = (await listKeys(s, ADMIN)).find((x: Json) => x.id === 'newcomer');
      return k?.reason === 'API_KEY_INVALID';
    }, 'the new key disabled');
    expect(s.fake.stats.log.filter((r) => r.path.endsWith(GENERATE))).toHaveLength(0);
  });

  it('a service-disabled key heals by itself once Google accepts it', async () => {
    const values = poolKeyValues(2);
    const fake = await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })) });
    fake.setKeyState(values[0]!, 'service_disabled');
    try {
      const s = await start({
        keys: 2,
        fakeInstance: fake,
        env: { VERIFY_KEYS: 'true', VERIFY_RECHECK_MS: '150' },
      });
      expect((await listKeys(s, ADMIN))[0]).toMatchObject({ enabled: false, reason: 'SERVICE_DISABLED' });
      fake.setKeyState(values[0]!, 'ok');
      await eventually(async () => (await listKeys(s, ADMIN))[0].enabled === true, 'the key re-enabled');
      expect(s.gateway.verifier?.status((await listKeys(s, ADMIN))[0].id)?.status).toBe('verified');
    } finally {
      await fake.close();
    }
  });

  it('a keys file with new content re-verifies every key: a fixed key comes back', async () => {
    const values = poolKeyValues(2);
    const fake = await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })) });
    fake.setKeyState(values[1]!, 'invalid');
    const file = join(tempDir(), 'keys.json');
    const write = (project: string) =>
      writeFileSync(
        file,
        JSON.stringify({
          keys: values.map((api_key, i) => ({ id: `k${i}`, api_key, project: `${project}${i}` })),
        }),
      );
    write('p');
    try {
      const s = await start({
        fakeInstance: fake,
        env: { VERIFY_KEYS: 'true', API_KEYS_FILE: file, GEMINI_API_KEYS: '' },
      });
      expect((await listKeys(s, ADMIN)).map((k: Json) => k.reason)).toEqual([null, 'API_KEY_INVALID']);

      // The owner fixed the key at Google; a plain re-check schedule does not revisit a permanent reason.
      fake.setKeyState(values[1]!, 'ok');
      await s.gateway.verifier?.sweep();
      expect((await listKeys(s, ADMIN))[1].enabled).toBe(false);

      // A keys-file change does (applied by the file watcher or by this call, whichever comes first).
      write('q');
      expect((await s.gateway.reloader.reloadKeys()).ok).toBe(true);
      await eventually(
        async () => (await listKeys(s, ADMIN))[1].enabled === true,
        'the fixed key re-enabled',
      );
    } finally {
      await fake.close();
    }
  });
});

if (!redisUrl) warnSkipped('key verification across instances on a shared Redis');

describe.skipIf(!redisUrl)('unverified keys across instances (shared Redis)', () => {
  it('with verification slow, a burst through two instances sends at most one generateContent to an invalid key', async () => {
    const values = poolKeyValues(4);
    const bad = values[2]!;
    const fake = await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })) });
    fake.setKeyState(bad, 'invalid');
    // The invalid key's verification call hangs on each instance: it stays unverified.
    fake.script({ kind: 'hang' }, { apiKey: bad, times: 2 });
    try {
      const [a, b] = await sharedRedisPair(start, redisUrl!, {
        keys: 4,
        fakeInstance: fake,
        env: { VERIFY_KEYS: 'true', VERIFY_STARTUP_WAIT_MS: '300', QUEUE_MAX_WAIT_MS: '5000' },
      });
      expect(fake.stats.log.filter((r) => r.apiKey === bad)).toHaveLength(2); // the two hanging checks
      const burst = await Promise.all(
        Array.from({ length: 40 }, (_, i) => generateText(i % 2 === 0 ? a : b, `burst ${i}`)),
      );
      expect(burst.map((r) => r.status)).toEqual(Array(40).fill(200));
      expect(generateCallsTo(a, bad)).toBeLessThanOrEqual(1);
      // The other keys carried the burst.
      for (const v of values.filter((x) => x !== bad)) expect(generateCallsTo(a, v)).toBeGreaterThan(0);
    } finally {
      await fake.close();
    }
  });
});
