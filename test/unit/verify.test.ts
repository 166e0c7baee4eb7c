import { Agent, type Dispatcher } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { type KeyConfig, keyFromEntry } from '../../src/config/keys.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import {
  EgressRefusals,
  KeyVerifier,
  type KeyVerifierOptions,
  type VerifyResult,
} from '../../src/pool/verify.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { KeyState } from '../../src/store/types.ts';

/** The key verifier against the fake Gemini, on a real MemoryStore behind a KeyPool. */

const LIMITS = { DEFAULT_RPM: 60, DEFAULT_RPD: 1000, DEFAULT_TPM: 100_000 };
const secret = (name: string) => `AIzaVerify-${name}-xxxxxxxxxxxxxxxxxxxxxxxx`;
const config = (name: string, over: Partial<KeyConfig> = {}): KeyConfig => ({
  ...keyFromEntry({ id: name, api_key: secret(name) }, LIMITS),
  ...over,
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  fake: FakeGemini;
  store: MemoryStore;
  pool: KeyPool;
  verifier: KeyVerifier;
  results: VerifyResult[];
  egress: number;
  state(id: string): Promise<KeyState>;
}

async function setup(
  names: string[],
  opts: {
    fake?: FakeGemini;
    baseUrl?: string;
    verifier?: Partial<KeyVerifierOptions>;
    agent?: Dispatcher;
  } = {},
): Promise<Setup> {
  const fake = opts.fake ?? (await startFakeGemini({ keys: names.map((n) => ({ apiKey: secret(n) })) }));
  if (!opts.fake) cleanups.push(() => fake.close());
  const agent = new Agent({ connections: 16 });
  cleanups.push(() => agent.close());
  const store = new MemoryStore();
  const pool = new KeyPool(store, {
    queueMaxWaitMs: 0,
    circuit: { failureThreshold: 5, cooldownMs: 30_000 },
    verifyKeys: true,
  });
  await pool.setKeys(names.map((n) => config(n)));
  const s: Setup = {
    fake,
    store,
    pool,
    results: [],
    egress: 0,
    verifier: undefined as unknown as KeyVerifier,
    async state(id) {
      const now = Date.now();
      return (await store.keyStates(now, pool.calendarAt(now).day)).find((k) => k.id === id)!;
    },
  };
  s.verifier = new KeyVerifier({
    baseUrl: opts.baseUrl ?? fake.url,
    agent: opts.agent ?? agent,
    store,
    concurrency: 4,
    recheckMs: 60_000,
    timeoutMs: 2000,
    onResult: (r) => s.results.push(r),
    onEgressRefused: () => {
      s.egress += 1;
    },
    ...opts.verifier,
  });
  cleanups.push(() => s.verifier.stop());
  return s;
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('KeyVerifier', () => {
  it('verifies good keys and disables invalid and leaked ones, with their reason, before any generation call', async () => {
    const s = await setup(['good1', 'bad', 'leaky', 'good2']);
    s.fake.setKeyState(secret('bad'), 'invalid');
    s.fake.setKeyState(secret('leaky'), 'leaked');
    expect((await s.state('good1')).verified).toBe(false); // new keys start unverified

    await s.verifier.start(s.pool.keys);

    const bad = await s.state('bad');
    expect(bad).toMatchObject({ enabled: false, disabledReason: 'API_KEY_INVALID' });
    expect(await s.state('leaky')).toMatchObject({ enabled: false, disabledReason: 'LEAKED' });
    for (const id of ['good1', 'good2'])
      expect(await s.state(id)).toMatchObject({ enabled: true, verified: true });
    expect(s.verifier.summary()).toEqual({ verified: 2, pending: 0, failed: 2, healing: 0, skipped: 0 });
    expect(s.verifier.status('bad')).toMatchObject({ status: 'failed', reason: 'API_KEY_INVALID' });

    // One models.list per key, key in the header (never in the URL), one model asked for.
    const log = s.fake.stats.log;
    expect(log).toHaveLength(4);
    for (const r of log) {
      expect(r).toMatchObject({ method: 'GET', path: '/v1beta/models', search: '?pageSize=1' });
      expect(r.headers['x-goog-api-key']).toBe(r.apiKey);
    }
    expect(new Set(log.map((r) => r.apiKey))).toEqual(
      new Set(['good1', 'bad', 'leaky', 'good2'].map(secret)),
    );

    // The pool no longer offers the dead keys: traffic reaches only the good ones.
    const served = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const lease = await s.pool.acquire('gemini-2.5-flash', 1, []);
      served.add(lease.keyId);
      await s.pool.report(lease, { kind: 'success' });
    }
    expect(served).toEqual(new Set(['good1', 'good2']));
  });

  it('a service-disabled key is disabled, then re-enabled by itself when a re-check passes', async () => {
    const s = await setup(['ok', 'svc'], { verifier: { recheckMs: 150 } });
    s.fake.setKeyState(secret('svc'), 'service_disabled');
    await s.verifier.start(s.pool.keys);
    expect(await s.state('svc')).toMatchObject({ enabled: false, disabledReason: 'SERVICE_DISABLED' });
    expect(s.verifier.status('svc')).toMatchObject({ status: 'healing', reason: 'SERVICE_DISABLED' });

    // Still disabled at Google: re-checks keep it off (and say nothing new).
    await until(() => s.fake.stats.log.filter((r) => r.apiKey === secret('svc')).length >= 2, 'a re-check');
    expect((await s.state('svc')).enabled).toBe(false);

    s.fake.setKeyState(secret('svc'), 'ok'); // the project's owner enabled the API
    await until(async () => (await s.state('svc')).enabled, 'the key re-enabled');
    expect(await s.state('svc')).toMatchObject({ enabled: true, disabledReason: null, verified: true });
    expect(s.verifier.status('svc')).toMatchObject({ status: 'verified' });
    expect(s.results).toContain('reenabled');
    // Only models.list calls: nothing spent generation quota.
    expect(s.fake.stats.log.every((r) => r.path === '/v1beta/models')).toBe(true);
  });

  it('a key disabled by traffic with a healable reason (billing) is re-checked and healed too', async () => {
    const s = await setup(['paid'], { verifier: { recheckMs: 100 } });
    await s.verifier.start(s.pool.keys);
    expect((await s.state('paid')).verified).toBe(true);
    // A generateContent answered "prepayment credits are depleted": the forwarder disabled the key.
    const lease = await s.pool.acquire('gemini-2.5-flash', 1, []);
    await s.pool.report(lease, { kind: 'disable', reason: 'BILLING' });
    expect((await s.state('paid')).enabled).toBe(false);
    // Credits added: the next sweep finds the key accepted and enables it.
    await until(async () => (await s.state('paid')).enabled, 'the billing key healed');
  });

  it('a billing refusal during a check disables the key until a re-check passes', async () => {
    const s = await setup(['broke'], { verifier: { recheckMs: 100 } });
    s.fake.script({ kind: 'billing' }, { apiKey: secret('broke'), times: 2 });
    await s.verifier.start(s.pool.keys);
    expect(await s.state('broke')).toMatchObject({ enabled: false, disabledReason: 'BILLING' });
    await until(async () => (await s.state('broke')).enabled, 'the key re-enabled');
    expect(s.fake.stats.log.filter((r) => r.apiKey === secret('broke')).length).toBeGreaterThanOrEqual(3);
  });

  it('permanent reasons stay off on re-checks, until every key is verified again (keys file changed)', async () => {
    const s = await setup(['ok', 'bad'], { verifier: { recheckMs: 60_000 } });
    s.fake.setKeyState(secret('bad'), 'invalid');
    await s.verifier.start(s.pool.keys);
    expect((await s.state('bad')).disabledReason).toBe('API_KEY_INVALID');
    s.fake.setKeyState(secret('bad'), 'ok');
    s.fake.resetStats();

    await s.verifier.sweep();
    expect(s.fake.stats.requests).toBe(0); // nothing to heal: no call at all
    expect((await s.state('bad')).enabled).toBe(false);

    await s.verifier.reverifyAll();
    expect(s.fake.stats.requests).toBe(2);
    expect(await s.state('bad')).toMatchObject({ enabled: true, verified: true });
  });

  it('leaves keys an admin or the configuration disabled alone', async () => {
    const s = await setup(['ok', 'admin', 'off']);
    await s.pool.setKeys([config('ok'), config('admin'), config('off', { enabled: false })]);
    await s.store.setKeyEnabled('admin', false, 'disabled by admin: rotating', Date.now());
    s.fake.setKeyState(secret('admin'), 'service_disabled');

    await s.verifier.start(s.pool.keys);
    expect(s.fake.stats.log.map((r) => r.apiKey)).toEqual([secret('ok')]);
    expect(await s.state('admin')).toMatchObject({
      enabled: false,
      disabledReason: 'disabled by admin: rotating',
    });
    expect(s.verifier.summary()).toMatchObject({ verified: 1, skipped: 2 });

    // Nor does a full re-verification touch the admin's key.
    await s.verifier.reverifyAll();
    expect(s.fake.stats.log.map((r) => r.apiKey)).toEqual([secret('ok'), secret('ok')]);
    expect((await s.state('admin')).disabledReason).toBe('disabled by admin: rotating');
  });

  it('a network failure leaves the key unverified (and enabled), and it is tried again later', async () => {
    const dead = await startFakeGemini();
    const url = dead.url;
    await dead.close(); // nothing listens there now: connection refused
    const s = await setup(['k1'], { baseUrl: url, verifier: { retryMs: 50, recheckMs: 60_000 } });
    await s.verifier.start(s.pool.keys);
    expect(await s.state('k1')).toMatchObject({ enabled: true, verified: false, disabledReason: null });
    expect(s.verifier.status('k1')).toMatchObject({ status: 'pending', reason: 'NETWORK_ERROR' });
    expect(s.results).toEqual(['unavailable']);
    await until(() => s.results.length >= 3, 'retries (50 ms, doubling)');
    expect((await s.state('k1')).verified).toBe(false);
  });

  it('a 5xx or a timeout leaves the key unverified', async () => {
    const s = await setup(['k1', 'k2'], { verifier: { retryMs: 60_000, timeoutMs: 200 } });
    s.fake.script({ kind: 'internal' }, { apiKey: secret('k1') });
    s.fake.script({ kind: 'hang' }, { apiKey: secret('k2') });
    await s.verifier.start(s.pool.keys);
    expect(s.verifier.status('k1')).toMatchObject({ status: 'pending', reason: 'INTERNAL' });
    expect(s.verifier.status('k2')).toMatchObject({ status: 'pending', reason: 'TIMEOUT' });
    for (const id of ['k1', 'k2'])
      expect(await s.state(id)).toMatchObject({ enabled: true, verified: false });
  });

  it('Google refusing the egress location disables nothing: it is counted and the keys stay unverified', async () => {
    const s = await setup(['k1', 'k2']);
    s.fake.setEgressRefused(true);
    await s.verifier.start(s.pool.keys);
    expect(s.egress).toBe(2);
    expect(s.results).toEqual(['egress_refused', 'egress_refused']);
    for (const id of ['k1', 'k2']) {
      expect(await s.state(id)).toMatchObject({ enabled: true, disabledReason: null, verified: false });
      expect(s.verifier.status(id)).toMatchObject({
        status: 'pending',
        reason: 'USER_LOCATION_NOT_SUPPORTED',
      });
    }
  });

  it('checks a few keys at a time', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `k${i}`);
    const fake = await startFakeGemini({ keys: names.map((n) => ({ apiKey: secret(n) })), latencyMs: 40 });
    cleanups.push(() => fake.close());
    const agent = new Agent({ connections: 32 });
    cleanups.push(() => agent.close());
    let inFlight = 0;
    let most = 0;
    const counting = {
      request: async (o: Dispatcher.RequestOptions) => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        try {
          const res = await agent.request(o);
          await new Promise((r) => setTimeout(r, 5));
          return res;
        } finally {
          inFlight -= 1;
        }
      },
    } as unknown as Dispatcher;
    const s = await setup(names, { fake, agent: counting, verifier: { concurrency: 3 } });
    await s.verifier.start(s.pool.keys);
    expect(s.verifier.summary().verified).toBe(10);
    expect(most).toBe(3);
  });

  it('after a keys change, checks only the keys that are new or whose secret changed', async () => {
    const s = await setup(['a', 'b', 'c']);
    await s.verifier.start(s.pool.keys);
    s.fake.resetStats();
    s.fake.setKeyState(secret('c2'), 'leaked');
    const next = [config('a'), config('b', { apiKey: secret('b2') }), config('c2')];
    s.fake.addKey(secret('b2'));
    await s.pool.setKeys(next);
    await s.verifier.keysChanged(next);
    expect(s.fake.stats.log.map((r) => r.apiKey).sort()).toEqual([secret('b2'), secret('c2')].sort());
    expect(await s.state('c2')).toMatchObject({ enabled: false, disabledReason: 'LEAKED' });
    expect(
      s.verifier
        .list()
        .map((v) => v.id)
        .sort(),
    ).toEqual(['a', 'b', 'c2']);
  });

  it('stop() ends checks in flight and schedules no more', async () => {
    const s = await setup(['k1'], { verifier: { timeoutMs: 30_000 } });
    s.fake.script({ kind: 'hang' }, { apiKey: secret('k1') });
    const started = Date.now();
    const round = s.verifier.start(s.pool.keys);
    await until(() => s.fake.stats.requests === 1, 'the check to be sent');
    s.verifier.stop();
    await round;
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await s.state('k1')).verified).toBe(false);
  });
});

describe('EgressRefusals', () => {
  it('counts every refusal and says so at most once a minute', () => {
    let now = 0;
    const lines: unknown[] = [];
    const logger = { warn: (obj: unknown) => lines.push(obj) } as never;
    const e = new EgressRefusals({ logger, now: () => now });
    e.note('request');
    e.note('request');
    now = 30_000;
    e.note('verification');
    expect(lines).toHaveLength(1);
    now = 61_000;
    e.note('request');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ refusals: 3, reason: 'USER_LOCATION_NOT_SUPPORTED' });
    expect(e.lastAtMs).toBe(61_000);
  });
});
