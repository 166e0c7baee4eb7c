import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { RedisStore } from '../../src/store/redis.ts';
import type { AcquireResult } from '../../src/store/types.ts';
import { CIRCUIT, DAY, describeEachStore, key, NEXT_DAY, redisUrl, req, T0 } from '../helpers/stores.ts';

/** One behavioural contract, run against every StateStore implementation. */
function id(r: AcquireResult): string | null {
  return r.ok ? r.reservation.keyId : null;
}

describeEachStore('StateStore contract', (store) => {
  it('rotates round robin and spreads load evenly', async () => {
    await store.syncKeys([key('a'), key('b'), key('c')]);
    const seen: string[] = [];
    for (let i = 0; i < 9; i++) seen.push(id(await store.acquire(req(T0 + i)))!);
    const counts = Object.fromEntries(['a', 'b', 'c'].map((k) => [k, seen.filter((s) => s === k).length]));
    expect(counts).toEqual({ a: 3, b: 3, c: 3 });
    // consecutive picks differ: a true rotation, not a random spread
    for (let i = 1; i < seen.length; i++) expect(seen[i]).not.toBe(seen[i - 1]);
  });

  it('never admits more than rpm in any rolling 60 s, and says when the next slot frees', async () => {
    await store.syncKeys([key('a', { rpm: 2 })]);
    expect(id(await store.acquire(req(T0)))).toBe('a');
    expect(id(await store.acquire(req(T0 + 10_000)))).toBe('a');
    const full = await store.acquire(req(T0 + 20_000));
    expect(full).toEqual({ ok: false, retryAtMs: T0 + 60_000, globalBackoff: false });
    expect((await store.acquire(req(T0 + 59_999))).ok).toBe(false);
    expect(id(await store.acquire(req(T0 + 60_000)))).toBe('a');
    // the window rolls: the request at +10 s still counts until +70 s
    expect(await store.acquire(req(T0 + 60_001))).toMatchObject({ ok: false, retryAtMs: T0 + 70_000 });
  });

  it('a request that leaves the minute in mid-second frees its slot at once', async () => {
    await store.syncKeys([key('a', { rpm: 3 })]);
    expect(id(await store.acquire(req(T0 + 100)))).toBe('a');
    expect(id(await store.acquire(req(T0 + 59_000)))).toBe('a');
    expect(id(await store.acquire(req(T0 + 60_050)))).toBe('a'); // the one at +100 ms still counts
    expect(await store.acquire(req(T0 + 60_080))).toMatchObject({ ok: false, retryAtMs: T0 + 60_100 });
    // same wall-clock second, the +100 ms request is now older than a minute
    expect(id(await store.acquire(req(T0 + 60_500)))).toBe('a');
    expect(await store.acquire(req(T0 + 60_600))).toMatchObject({ ok: false, retryAtMs: T0 + 119_000 });
  });

  it('counts requests per Pacific day and frees the project at the next midnight', async () => {
    await store.syncKeys([key('a', { rpd: 2 })]);
    await store.acquire(req(T0));
    await store.acquire(req(T0 + 1));
    expect(await store.acquire(req(T0 + 2))).toEqual({
      ok: false,
      retryAtMs: NEXT_DAY,
      globalBackoff: false,
    });
    expect(
      id(await store.acquire(req(NEXT_DAY, { day: '2026-11-26', nextDayMs: NEXT_DAY + 86_400_000 }))),
    ).toBe('a');
  });

  it('a request dated before the newest day seen counts into that day (a clock still before midnight)', async () => {
    await store.syncKeys([key('a', { rpd: 2 })]);
    const tomorrow = { day: '2026-11-26', nextDayMs: NEXT_DAY + 86_400_000 };
    expect(id(await store.acquire(req(NEXT_DAY, tomorrow)))).toBe('a');
    expect(id(await store.acquire(req(NEXT_DAY - 1)))).toBe('a'); // dated DAY by a lagging clock
    expect(await store.acquire(req(NEXT_DAY + 2, tomorrow))).toMatchObject({
      ok: false,
      retryAtMs: NEXT_DAY + 86_400_000,
    });
    expect((await store.keyStates(NEXT_DAY + 3, '2026-11-26'))[0]!.requestsToday).toBe(2);
  });

  it('a request refused for its day or token budget takes no place in the minute', async () => {
    await store.syncKeys([key('a', { rpm: 2, rpd: 1, tpm: 100 })]);
    const tomorrow = { day: '2026-11-26', nextDayMs: NEXT_DAY + 86_400_000 };
    expect(id(await store.acquire(req(NEXT_DAY - 2_000)))).toBe('a');
    expect((await store.acquire(req(NEXT_DAY - 1_000))).ok).toBe(false); // rpd
    expect((await store.acquire(req(NEXT_DAY, { ...tomorrow, estimatedTokens: 95 }))).ok).toBe(false); // tpm
    // One request in the minute so far: the second of the rpm still fits.
    expect(id(await store.acquire(req(NEXT_DAY + 1, tomorrow)))).toBe('a');
    expect(await store.acquire(req(NEXT_DAY + 2, tomorrow))).toMatchObject({
      ok: false,
      retryAtMs: NEXT_DAY - 2_000 + 60_000,
    });
    expect((await store.keyStates(NEXT_DAY + 3, '2026-11-26'))[0]!.requestsThisMinute).toBe(2);
  });

  it('reserves estimated tokens and settles them with the actual count', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    const first = await store.acquire(req(T0, { estimatedTokens: 600 }));
    expect(first.ok).toBe(true);
    const second = await store.acquire(req(T0 + 500, { estimatedTokens: 600 }));
    expect(second).toMatchObject({ ok: false, retryAtMs: T0 + 60_000 });
    if (!first.ok) throw new Error('unreachable');
    await store.report(first.reservation, { kind: 'success', actualTokens: 100 }, T0 + 600, CIRCUIT);
    expect(id(await store.acquire(req(T0 + 700, { estimatedTokens: 600 })))).toBe('a');
    const states = await store.keyStates(T0 + 800, DAY);
    expect(states[0]!.tokensThisMinute).toBe(700);
  });

  it('settleTokens corrects a clean reservation (batched on Redis); a key with failures is not clean', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    const r = await store.acquire(req(T0, { estimatedTokens: 600 }));
    if (!r.ok) throw new Error('expected a key');
    expect(r.reservation.clean).toBe(true);
    await store.settleTokens(r.reservation, 100);
    await vi.waitFor(async () => expect((await store.keyStates(T0 + 1, DAY))[0]!.tokensThisMinute).toBe(100));
    await store.report(r.reservation, { kind: 'failure', reason: 'INTERNAL' }, T0 + 2, CIRCUIT);
    expect(await store.acquire(req(T0 + 3))).toMatchObject({ ok: true, reservation: { clean: false } });
  });

  it('token slots leave the rolling minute one second at a time', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    expect((await store.acquire(req(T0, { estimatedTokens: 600 }))).ok).toBe(true);
    expect((await store.acquire(req(T0 + 30_000, { estimatedTokens: 300 }))).ok).toBe(true);
    expect(await store.acquire(req(T0 + 40_000, { estimatedTokens: 200 }))).toMatchObject({
      ok: false,
      retryAtMs: T0 + 60_000,
    });
    expect((await store.acquire(req(T0 + 60_000, { estimatedTokens: 600 }))).ok).toBe(true);
    expect((await store.keyStates(T0 + 60_001, DAY))[0]!.tokensThisMinute).toBe(900);
    // once the +30 s slot has left too, the whole limit is free again
    expect(await store.acquire(req(T0 + 90_000, { estimatedTokens: 400 }))).toMatchObject({ ok: true });
  });

  it('lets a lone request larger than tpm through when the window is empty', async () => {
    await store.syncKeys([key('a', { tpm: 100 })]);
    expect((await store.acquire(req(T0, { estimatedTokens: 500 }))).ok).toBe(true);
    expect((await store.acquire(req(T0 + 1, { estimatedTokens: 1 }))).ok).toBe(false);
  });

  it('keys of one project share one budget', async () => {
    await store.syncKeys([
      key('a', { project: 'p', rpm: 2 }),
      key('b', { project: 'p', rpm: 2 }),
      key('c', { rpm: 2 }),
    ]);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await store.acquire(req(T0 + i));
      if (r.ok) got.push(r.reservation.keyId);
    }
    expect(got.filter((k) => k === 'a' || k === 'b')).toHaveLength(2);
    expect(got.filter((k) => k === 'c')).toHaveLength(2);
  });

  it("a rest benches the project's keys for that model only, until its time", async () => {
    await store.syncKeys([key('a', { project: 'p' }), key('b', { project: 'p' })]);
    const r = await store.acquire(req(T0));
    if (!r.ok) throw new Error('expected a key');
    await store.report(
      r.reservation,
      { kind: 'rest', untilMs: T0 + 23_000, reason: 'PerMinute' },
      T0,
      CIRCUIT,
    );
    expect(await store.acquire(req(T0 + 1000))).toEqual({
      ok: false,
      retryAtMs: T0 + 23_000,
      globalBackoff: false,
    });
    // Another model of the same project is served meanwhile (Google counts per project and model).
    expect((await store.acquire(req(T0 + 1000, { model: 'gemini-2.5-pro' }))).ok).toBe(true);
    expect((await store.acquire(req(T0 + 23_000))).ok).toBe(true);
    const s = await store.keyStates(T0 + 1000, DAY);
    expect(s.map((k) => k.restReason)).toEqual([
      'gemini-2.5-flash: PerMinute',
      'gemini-2.5-flash: PerMinute',
    ]);
    const budgets = await store.budgetStates(T0 + 1000, DAY);
    expect(budgets.find((b) => b.model === 'gemini-2.5-flash')).toMatchObject({
      project: 'p',
      restUntilMs: T0 + 23_000,
      restReason: 'PerMinute',
      requestsThisMinute: 2, // the request at T0 and the one admitted at +23 s
    });
    expect(budgets.find((b) => b.model === 'gemini-2.5-pro')).toMatchObject({
      restUntilMs: null,
      requestsThisMinute: 1,
    });
  });

  it('a disabled key is never chosen until enabled again', async () => {
    await store.syncKeys([key('a'), key('b')]);
    const r = await store.acquire(req(T0, { exclude: ['b'] }));
    if (!r.ok) throw new Error('expected a');
    await store.report(r.reservation, { kind: 'disable', reason: 'API_KEY_INVALID' }, T0, CIRCUIT);
    for (let i = 0; i < 4; i++) expect(id(await store.acquire(req(T0 + i)))).toBe('b');
    expect(await store.acquire(req(T0, { exclude: ['b'] }))).toEqual({
      ok: false,
      retryAtMs: null,
      globalBackoff: false,
    });
    const states = await store.keyStates(T0, DAY);
    expect(states.find((s) => s.id === 'a')).toMatchObject({
      enabled: false,
      disabledReason: 'API_KEY_INVALID',
      disabledAtMs: T0,
    });
    await store.setKeyEnabled('a', true, null, T0);
    expect(id(await store.acquire(req(T0, { exclude: ['b'] })))).toBe('a');
  });

  it('circuit breaker: opens after the threshold, probes once half-open, closes on success', async () => {
    await store.syncKeys([key('a')]);
    for (let i = 0; i < 2; i++) {
      const r = await store.acquire(req(T0));
      if (!r.ok) throw new Error('expected a');
      await store.report(r.reservation, { kind: 'failure', reason: 'INTERNAL' }, T0, CIRCUIT);
    }
    expect(await store.acquire(req(T0 + 1))).toEqual({
      ok: false,
      retryAtMs: T0 + 10_000,
      globalBackoff: false,
    });
    expect((await store.keyStates(T0 + 1, DAY))[0]!.circuit).toBe('open');
    const probe = await store.acquire(req(T0 + 10_000));
    expect(probe).toMatchObject({ ok: true, reservation: { probe: true } });
    // only one probe at a time
    expect(await store.acquire(req(T0 + 10_001))).toMatchObject({ ok: false, retryAtMs: T0 + 15_000 });
    if (!probe.ok) throw new Error('unreachable');
    await store.report(probe.reservation, { kind: 'failure', reason: 'INTERNAL' }, T0 + 10_002, CIRCUIT);
    expect(await store.acquire(req(T0 + 10_003))).toMatchObject({ ok: false, retryAtMs: T0 + 20_002 });
    const probe2 = await store.acquire(req(T0 + 20_002));
    if (!probe2.ok) throw new Error('expected a probe');
    await store.report(probe2.reservation, { kind: 'success' }, T0 + 20_003, CIRCUIT);
    expect((await store.keyStates(T0 + 20_004, DAY))[0]).toMatchObject({
      circuit: 'closed',
      consecutiveFailures: 0,
    });
    expect(await store.acquire(req(T0 + 20_005))).toMatchObject({
      ok: true,
      reservation: { probe: false },
    });
  });

  it('neutral outcomes (503 overloaded) neither open the circuit nor disable', async () => {
    await store.syncKeys([key('a')]);
    for (let i = 0; i < 5; i++) {
      const r = await store.acquire(req(T0 + i));
      if (!r.ok) throw new Error('expected a');
      await store.report(r.reservation, { kind: 'neutral', reason: 'UNAVAILABLE' }, T0 + i, CIRCUIT);
    }
    expect((await store.keyStates(T0 + 10, DAY))[0]).toMatchObject({
      enabled: true,
      circuit: 'closed',
      lastError: 'UNAVAILABLE',
    });
  });

  it('filters by allowed models; the empty model matches any key', async () => {
    await store.syncKeys([
      key('flash', { models: ['gemini-2.5-flash'] }),
      key('lite', { models: ['gemini-2.5-flash-lite'] }),
    ]);
    for (let i = 0; i < 3; i++)
      expect(id(await store.acquire(req(T0 + i, { model: 'gemini-2.5-flash-lite' })))).toBe('lite');
    expect(await store.acquire(req(T0, { model: 'gemini-pro' }))).toEqual({
      ok: false,
      retryAtMs: null,
      globalBackoff: false,
    });
    expect((await store.acquire(req(T0, { model: '' }))).ok).toBe(true);
  });

  it('skips excluded keys and honours a global backoff', async () => {
    await store.syncKeys([key('a'), key('b')]);
    for (let i = 0; i < 3; i++) expect(id(await store.acquire(req(T0 + i, { exclude: ['a'] })))).toBe('b');
    await store.setGlobalBackoff(T0 + 5000, T0);
    expect(await store.acquire(req(T0 + 1))).toEqual({
      ok: false,
      retryAtMs: T0 + 5000,
      globalBackoff: true,
    });
  });

  it('syncKeys keeps the runtime state of kept keys and drops removed ones', async () => {
    await store.syncKeys([key('a'), key('b')]);
    await store.setKeyEnabled('a', false, 'by admin', T0);
    await store.syncKeys([key('a'), key('c')]);
    const states = await store.keyStates(T0, DAY);
    expect(states.map((s) => s.id)).toEqual(['a', 'c']);
    expect(states[0]).toMatchObject({ enabled: false, disabledReason: 'by admin' });
    await store.resetKey('a');
    await store.setKeyEnabled('a', true, null, T0);
    expect((await store.keyStates(T0, DAY))[0]!.enabled).toBe(true);
  });

  it('reports usage per key', async () => {
    await store.syncKeys([key('a', { rpm: 10 })]);
    for (let i = 0; i < 3; i++) await store.acquire(req(T0 + i, { estimatedTokens: 5 }));
    expect((await store.keyStates(T0 + 10, DAY))[0]).toMatchObject({
      requestsThisMinute: 3,
      requestsToday: 3,
      tokensThisMinute: 15,
      circuit: 'closed',
    });
  });

  it('hit() counts in fixed windows', async () => {
    const n = `c-${randomUUID()}`;
    expect(await store.hit(n, 60_000, T0)).toEqual({ count: 1, resetAtMs: T0 + 60_000 });
    expect((await store.hit(n, 60_000, T0 + 5)).count).toBe(2);
    expect((await store.hit(n, 60_000, T0 + 60_000)).count).toBe(1);
  });

  it('is atomic under concurrent acquires: exactly rpm admitted', async () => {
    await store.syncKeys([key('a', { rpm: 7 }), key('b', { rpm: 7 })]);
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => store.acquire(req(T0 + (i % 3)))));
    expect(results.filter((r) => r.ok)).toHaveLength(14);
  });

  it('acquires made at once each get their own answer, in the order they were made', async () => {
    const flash = ['gemini-2.5-flash'];
    await store.syncKeys([
      key('a', { rpm: 1, models: flash }),
      key('b', { models: ['gemini-2.5-pro'] }),
      key('c', { models: flash }),
    ]);
    const [first, pro, excluded, noModel, full] = await Promise.all([
      store.acquire(req(T0)),
      store.acquire(req(T0, { model: 'gemini-2.5-pro' })),
      store.acquire(req(T0, { exclude: ['a', 'b', 'c'] })),
      store.acquire(req(T0, { model: 'gemini-9' })),
      store.acquire(req(T0 + 1, { exclude: ['c'] })),
    ]);
    const firstKey = first!.ok ? first!.reservation.keyId : 'none';
    expect(['a', 'c']).toContain(firstKey);
    expect(pro).toMatchObject({ ok: true, reservation: { keyId: 'b' } });
    expect(excluded).toEqual({ ok: false, retryAtMs: null, globalBackoff: false });
    expect(noModel).toEqual({ ok: false, retryAtMs: null, globalBackoff: false });
    // Without 'c', only 'a' (rpm 1) serves flash: free unless the first request took it.
    if (firstKey === 'a') expect(full).toEqual({ ok: false, retryAtMs: T0 + 60_000, globalBackoff: false });
    else expect(full).toMatchObject({ ok: true, reservation: { keyId: 'a', atMs: T0 + 1 } });
  });
});

/**
 * What the Redis server itself receives: the number of requests each acquire call of the store
 * with `prefix` carried (EVAL or EVALSHA, script, 0 keys, prefix, generation, then the requests).
 */
async function watchAcquireCalls(prefix: string) {
  const { Redis } = await import('ioredis');
  const monitor = await new Redis(redisUrl!).monitor();
  const batches: number[] = [];
  monitor.on('monitor', (_time: string, args: string[]) => {
    // EVALSHA sha 1 <prefix>gen (the key that routes a call in a Cluster), then acquire.lua's
    // arguments: the prefix, the generation, then the requests, a line each (MONITOR shows a
    // line break escaped, as backslash and n), the deadline. The only other script with four
    // arguments from the prefix on (registry.lua) has a 0 or 1 where acquire has the
    // generation, a UUID.
    const acquire = args.length === 8 && /^[0-9a-f-]{36}$/.test(args[5] ?? '');
    if (/^eval(sha)?$/i.test(args[0] ?? '') && args[4] === prefix && acquire) {
      batches.push((args[6] ?? '').split('\\n').filter(Boolean).length);
    }
  });
  return { batches, monitor };
}

/** Redis only: acquires travel together in script calls. */
describe.runIf(redisUrl)('RedisStore acquire batches', () => {
  it('sends the acquires of one turn as one call (at most 32 each) and those of later turns apart', async () => {
    const prefix = `test:${randomUUID()}:`;
    const store = RedisStore.connect(redisUrl!, prefix, {}, { instanceClock: true });
    const { batches, monitor } = await watchAcquireCalls(prefix);
    const seen = async (n: number) => {
      for (let i = 0; i < 100 && batches.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    try {
      await store.syncKeys([key('a'), key('b')]);
      const results = await Promise.all(Array.from({ length: 40 }, () => store.acquire(req(T0))));
      await seen(2);
      expect(batches).toEqual([32, 8]);
      const used = results.map((r) => (r.ok ? r.reservation.keyId : 'refused'));
      expect(used.filter((id) => id === 'a')).toHaveLength(20);
      expect(used.filter((id) => id === 'b')).toHaveLength(20);
      await store.acquire(req(T0));
      await store.acquire(req(T0));
      await seen(4);
      expect(batches).toEqual([32, 8, 1, 1]);
    } finally {
      monitor.disconnect();
      await store.close();
    }
  });

  it('acquires made while a call is out wait for its answer and then go together', async () => {
    const { Redis } = await import('ioredis');
    const prefix = `test:${randomUUID()}:`;
    const store = RedisStore.connect(redisUrl!, prefix, {}, { instanceClock: true });
    const admin = new Redis(redisUrl!);
    const { batches, monitor } = await watchAcquireCalls(prefix);
    try {
      await store.syncKeys([key('a')]);
      // Redis holds write commands for 300 ms: the first call stays out that long.
      await admin.call('CLIENT', 'PAUSE', '300', 'WRITE');
      const first = store.acquire(req(T0));
      const later: Promise<AcquireResult>[] = [];
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 20)); // five separate turns
        later.push(store.acquire(req(T0 + 1 + i)));
      }
      const results = await Promise.all([first, ...later]);
      expect(results.every((r) => r.ok)).toBe(true);
      await vi.waitFor(() => expect(batches).toEqual([1, 5]));
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => {});
      admin.disconnect();
      monitor.disconnect();
      await store.close();
    }
  });

  it('a model name with a line break is refused alone; the rest of its batch is answered in order', async () => {
    const store = RedisStore.connect(redisUrl!, `test:${randomUUID()}:`, {}, { instanceClock: true });
    try {
      await store.syncKeys([
        key('a', { project: 'shared project', models: ['m1'] }),
        key('b', { models: ['m2'] }),
      ]);
      const results = await Promise.allSettled([
        store.acquire(req(T0, { model: 'm1' })),
        store.acquire(req(T0, { model: 'm2\n1\tb\tb\t0\t0\t0' })),
        store.acquire(req(T0, { model: 'm2' })),
        store.acquire(req(T0, { model: 'm1' })),
      ]);
      expect(results[1]).toMatchObject({ status: 'rejected', reason: { message: /line break/ } });
      const ids = results.map((r) =>
        r.status === 'fulfilled' && r.value.ok ? r.value.reservation.keyId : null,
      );
      expect(ids).toEqual(['a', null, 'b', 'a']);
      const first = results[0]!.status === 'fulfilled' ? results[0]!.value : null;
      expect(first?.ok && first.reservation.project).toBe('shared project');
    } finally {
      await store.close();
    }
  });

  it('script calls are written at once, not queued for an auto-pipeline; plain commands still are', async () => {
    const store = RedisStore.connect(redisUrl!, `test:${randomUUID()}:`, {}, { instanceClock: true });
    try {
      await store.syncKeys([key('a')]);
      const scripted = store.redis.ggAcquire(`test:${randomUUID()}:`, '', '', '');
      expect(store.redis.autoPipelineQueueSize).toBe(0);
      const plain = store.redis.get('unrelated');
      expect(store.redis.autoPipelineQueueSize).toBe(1);
      await Promise.all([scripted, plain]);
    } finally {
      await store.close();
    }
  });

  it('a failed call fails every acquire it carried', async () => {
    const store = RedisStore.connect(redisUrl!, `test:${randomUUID()}:`, {}, { instanceClock: true });
    await store.syncKeys([key('a')]);
    store.redis.disconnect();
    const results = await Promise.allSettled([store.acquire(req(T0)), store.acquire(req(T0))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});

/** Redis only: budget state carries expiries, so projects that go quiet leave nothing behind. */
describe.runIf(redisUrl)('RedisStore expiries', () => {
  /** A store on a fresh prefix, a plain client to look at its keys, and both closed after `check`. */
  async function withProbe(check: (store: RedisStore, probe: Redis, prefix: string) => Promise<void>) {
    const { Redis } = await import('ioredis');
    const prefix = `test:${randomUUID()}:`;
    const store = RedisStore.connect(redisUrl!, prefix, {}, { instanceClock: true });
    const probe = new Redis(redisUrl!);
    try {
      await check(store, probe, prefix);
    } finally {
      probe.disconnect();
      await store.close();
    }
  }

  it('every structure an acquire writes expires, the request log only after its minute', () =>
    withProbe(async (store, probe, prefix) => {
      await store.syncKeys([key('a')]);
      // Two acquires in one second: the second refreshes nothing, the first set every expiry.
      expect((await store.acquire(req(T0))).ok).toBe(true);
      expect((await store.acquire(req(T0 + 400))).ok).toBe(true);
      const budget = `${prefix}p:a\tgemini-2.5-flash`;
      const ttl = async (suffix: string) => probe.pttl(`${budget}:${suffix}`);
      expect(await ttl('log')).toBeGreaterThan(60_000);
      expect(await ttl('tok')).toBeGreaterThan(60_000);
      expect(await ttl('secs')).toBeGreaterThan(60_000);
      expect(await probe.pttl(budget)).toBeGreaterThan(24 * 3600_000);
      expect(await probe.pttl(`${prefix}pm:a`)).toBeGreaterThan(24 * 3600_000);
      expect(await probe.llen(`${budget}:log`)).toBe(2);
      expect(await probe.hmget(budget, 'day', 'day_count')).toEqual([DAY, '2']);
    }));

  it('a project whose token slots expired starts its token count from zero', () =>
    withProbe(async (store, probe, prefix) => {
      await store.syncKeys([key('a', { tpm: 1000 })]);
      expect((await store.acquire(req(T0, { estimatedTokens: 900 }))).ok).toBe(true);
      // What their expiry does after two quiet minutes; the project hash (its sum) outlives them.
      await probe.del(`${prefix}p:a\tgemini-2.5-flash:secs`, `${prefix}p:a\tgemini-2.5-flash:tok`);
      expect((await store.acquire(req(T0 + 130_000, { estimatedTokens: 900 }))).ok).toBe(true);
      expect((await store.keyStates(T0 + 130_001, DAY))[0]!.tokensThisMinute).toBe(900);
    }));
});
