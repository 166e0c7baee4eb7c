import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../../src/store/redis.ts';
import type { AcquireResult, Reservation } from '../../src/store/types.ts';
import { CIRCUIT, DAY, describeEachStore, key, redisUrl, req, T0 } from '../helpers/stores.ts';

/** Budgets per (project, model), unverified keys: one contract for every StateStore. */
const PRO = 'gemini-2.5-pro';
const LITE = 'gemini-2.5-flash-lite';
const FLASH = 'gemini-2.5-flash';

function granted(r: AcquireResult): Reservation {
  if (!r.ok) throw new Error(`expected a key, got ${JSON.stringify(r)}`);
  return r.reservation;
}

describeEachStore('StateStore per-model contract', (store) => {
  it("each model's budget is spent exactly, side by side, and unnamed models use the key's limits", async () => {
    const limits = {
      [PRO]: { rpm: 2, rpd: 50, tpm: 1_000_000 },
      [LITE]: { rpm: 3, rpd: 50, tpm: 1_000_000 },
    };
    await store.syncKeys([
      key('a', { project: 'p', rpm: 1, modelLimits: limits }),
      key('b', { project: 'p', rpm: 1, modelLimits: limits }),
    ]);
    const admitted = { [PRO]: 0, [LITE]: 0, [FLASH]: 0 };
    for (let i = 0; i < 6; i++) {
      for (const model of [PRO, LITE, FLASH] as const) {
        if ((await store.acquire(req(T0 + i, { model }))).ok) admitted[model] += 1;
      }
    }
    // Two keys of one project share each model's budget: the project's, not the key's, counts.
    expect(admitted).toEqual({ [PRO]: 2, [LITE]: 3, [FLASH]: 1 });
    const budgets = await store.budgetStates(T0 + 10, DAY);
    const byModel = Object.fromEntries(budgets.map((b) => [b.model, b]));
    expect(byModel[PRO]).toMatchObject({ project: 'p', rpm: 2, requestsThisMinute: 2, requestsToday: 2 });
    expect(byModel[LITE]).toMatchObject({ rpm: 3, requestsThisMinute: 3 });
    expect(byModel[FLASH]).toMatchObject({ rpm: 1, requestsThisMinute: 1 });
    // A key's view sums its project's models.
    expect((await store.keyStates(T0 + 10, DAY))[0]).toMatchObject({
      requestsThisMinute: 6,
      requestsToday: 6,
    });
  });

  it('a per-day rest of one model leaves the other models serving on the same keys', async () => {
    await store.syncKeys([key('a', { project: 'p' }), key('b', { project: 'p' })]);
    const r = granted(await store.acquire(req(T0, { model: PRO })));
    const nextDay = T0 + 18 * 3600_000;
    await store.report(r, { kind: 'rest', untilMs: nextDay, reason: 'PerDay' }, T0, CIRCUIT);
    expect(await store.acquire(req(T0 + 1000, { model: PRO }))).toEqual({
      ok: false,
      retryAtMs: nextDay,
      globalBackoff: false,
    });
    for (let i = 0; i < 4; i++)
      expect((await store.acquire(req(T0 + 1000 + i, { model: FLASH }))).ok).toBe(true);
    expect((await store.acquire(req(T0 + 2000, { model: LITE }))).ok).toBe(true);
  });

  it('a rest for the model the quota named rests that model too (an alias and its model)', async () => {
    await store.syncKeys([key('a')]);
    const r = granted(await store.acquire(req(T0, { model: 'gemini-flash-latest' })));
    await store.report(
      r,
      { kind: 'rest', untilMs: T0 + 30_000, reason: 'PerMinute', model: FLASH },
      T0,
      CIRCUIT,
    );
    expect((await store.acquire(req(T0 + 1, { model: 'gemini-flash-latest' }))).ok).toBe(false);
    expect((await store.acquire(req(T0 + 1, { model: FLASH }))).ok).toBe(false);
    expect((await store.acquire(req(T0 + 1, { model: LITE }))).ok).toBe(true);
  });

  it('resetKey ends the rests of every model of its project', async () => {
    await store.syncKeys([key('a')]);
    for (const model of [PRO, FLASH]) {
      const r = granted(await store.acquire(req(T0, { model })));
      await store.report(r, { kind: 'rest', untilMs: T0 + 30_000, reason: 'PerMinute' }, T0, CIRCUIT);
    }
    await store.resetKey('a');
    expect((await store.acquire(req(T0 + 1, { model: PRO }))).ok).toBe(true);
    expect((await store.acquire(req(T0 + 1, { model: FLASH }))).ok).toBe(true);
  });

  it('a key new to the store while unverified carries one request at a time, until verified', async () => {
    await store.syncKeys([key('a')], { unverified: true });
    const first = granted(await store.acquire(req(T0)));
    expect(first.probe).toBe(true);
    expect((await store.acquire(req(T0 + 1))).ok).toBe(false);
    expect((await store.keyStates(T0 + 1, DAY))[0]).toMatchObject({ verified: false });
    await store.markVerified('a');
    expect((await store.keyStates(T0 + 1, DAY))[0]).toMatchObject({ verified: true });
    const a = granted(await store.acquire(req(T0 + 2)));
    const b = granted(await store.acquire(req(T0 + 3)));
    expect([a.probe, b.probe]).toEqual([false, false]);
  });

  it('a success verifies an unverified key; keys already known stay verified on a later sync', async () => {
    await store.syncKeys([key('a')], { unverified: true });
    const first = granted(await store.acquire(req(T0)));
    await store.report(first, { kind: 'success' }, T0 + 1, CIRCUIT);
    await store.syncKeys([key('a'), key('b')], { unverified: true });
    const states = await store.keyStates(T0 + 2, DAY);
    expect(states.map((s) => [s.id, s.verified])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    // Without the option, new keys carry traffic at once.
    await store.syncKeys([key('a'), key('b'), key('c')]);
    expect((await store.keyStates(T0 + 2, DAY)).find((s) => s.id === 'c')?.verified).toBe(true);
  });

  it("keyHealth reads one key's enabled flag and reason (an admin's reason over the configuration's)", async () => {
    await store.syncKeys([key('a'), key('b', { enabled: false }), key('c', { enabled: false })]);
    await store.setKeyEnabled('a', false, 'API_KEY_INVALID', T0);
    await store.setKeyEnabled('c', false, 'disabled by admin', T0);
    expect(await store.keyHealth('a')).toEqual({ enabled: false, disabledReason: 'API_KEY_INVALID' });
    expect(await store.keyHealth('b')).toEqual({
      enabled: false,
      disabledReason: 'disabled in configuration',
    });
    expect(await store.keyHealth('c')).toEqual({ enabled: false, disabledReason: 'disabled by admin' });
    await store.setKeyEnabled('a', true, null, T0);
    expect(await store.keyHealth('a')).toEqual({ enabled: true, disabledReason: null });
    expect(await store.keyHealth('nope')).toBeNull();
  });

  it("a pinned request is served only by its project's keys (or its one key), never another's", async () => {
    await store.syncKeys([
      key('a1', { project: 'pa', rpm: 1 }),
      key('a2', { project: 'pa', rpm: 1 }),
      key('b1', { project: 'pb' }),
    ]);
    const pinned = { pin: { project: 'pa' } };
    expect(granted(await store.acquire(req(T0, pinned))).project).toBe('pa');
    // pa's budget (shared by its two keys) is spent: refused, though pb's key is free.
    expect(await store.acquire(req(T0 + 1, pinned))).toMatchObject({ ok: false, retryAtMs: T0 + 60_000 });
    expect(granted(await store.acquire(req(T0 + 2))).project).toBe('pb');
    expect(granted(await store.acquire(req(T0 + 3, { pin: { keyId: 'b1' } }))).keyId).toBe('b1');
    expect(await store.acquire(req(T0 + 4, { pin: { project: 'nobody' } }))).toMatchObject({
      ok: false,
      retryAtMs: null,
    });
  });

  it('records who owns a resource, for its lifetime, and lists a kind per client', async () => {
    // Real time: Redis expires the records on its own clock.
    const now = Date.now();
    const owner = { project: 'pa', keyId: 'a1', client: 'alice' };
    await store.putResource({ name: 'files/abc', owner, expiresAtMs: now + 48 * 3600_000 });
    await store.putResource({
      name: 'files/old',
      owner: { ...owner, client: 'bob' },
      expiresAtMs: now - 1,
    });
    await store.putResource({
      name: 'models/veo-3/operations/op1',
      owner: { ...owner, client: 'bob' },
      expiresAtMs: now + 3600_000,
    });
    expect(await store.getResources(['files/abc', 'files/old', 'files/none'], now)).toEqual([
      owner,
      null,
      null,
    ]);
    expect((await store.listResources('files', 'alice', now)).map((r) => r.name)).toEqual(['files/abc']);
    expect((await store.listResources('files', 'bob', now)).map((r) => r.name)).toEqual([]);
    expect((await store.listResources('operations', null, now)).map((r) => r.name)).toEqual([
      'models/veo-3/operations/op1',
    ]);
    await store.deleteResource('files/abc');
    expect(await store.getResources(['files/abc'], now)).toEqual([null]);
    expect(await store.listResources('files', null, now)).toEqual([]);
  });
});

/** Redis only: its own clock, and healing a Redis that lost its data. */
describe.runIf(redisUrl)('RedisStore clock and lost state', () => {
  const opened: RedisStore[] = [];
  const open = (prefix: string) => {
    const store = RedisStore.connect(redisUrl!, prefix);
    opened.push(store);
    return store;
  };
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
  });

  it("windows use Redis's clock: an instance whose clock is minutes behind oversteps nothing", async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = open(prefix);
    const b = open(prefix);
    await a.syncKeys([key('k', { rpm: 1 })]);
    await b.syncKeys([key('k', { rpm: 1 })]);
    const now = Date.now();
    expect((await a.acquire(req(now))).ok).toBe(true);
    // b's clock says 5 minutes earlier, then 5 minutes later: either way the minute is Redis's.
    expect((await b.acquire(req(now - 300_000))).ok).toBe(false);
    const refused = await b.acquire(req(now + 300_000));
    expect(refused.ok).toBe(false);
    // The retry time is told on the asking instance's clock, within the minute.
    if (!refused.ok) expect(refused.retryAtMs! - Date.now()).toBeLessThanOrEqual(60_000);
  });

  it('Redis flushed: each instance re-seeds what it spent, so no budget is spent twice', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = open(prefix);
    const b = open(prefix);
    const keys = [key('k1', { project: 'p', rpm: 4, rpd: 6 }), key('k2', { project: 'p', rpm: 4, rpd: 6 })];
    await a.syncKeys(keys);
    await b.syncKeys(keys);
    const now = Date.now();
    expect((await a.acquire(req(now))).ok).toBe(true);
    expect((await a.acquire(req(now))).ok).toBe(true);
    expect((await b.acquire(req(now))).ok).toBe(true);
    // Redis loses everything under the prefix (restart empty, FLUSHDB, failover to a stale replica).
    const stored = await a.redis.keys(`${prefix}*`);
    await a.redis.del(...stored);
    // a notices on its next acquire and re-seeds its two requests; b notices and adds its one.
    expect((await a.acquire(req(now))).ok).toBe(true);
    expect((await b.acquire(req(now))).ok).toBe(false);
    expect((await a.acquire(req(now))).ok).toBe(false);
    const budget = (await a.budgetStates(Date.now(), req(now).day)).find((s) => s.model === req(now).model);
    expect(budget).toMatchObject({ requestsThisMinute: 4 });
  });

  it('an acquire that Redis runs after its deadline (it was stalled) books nothing', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = open(prefix);
    await a.syncKeys([key('k', { rpm: 1 })]);
    const gen = (await a.redis.get(`${prefix}gen`))!;
    const line = `\t10\t${DAY}\t0\t5000\t\t\t${FLASH}\n`;
    // What a batch that waited in a stopped Redis's socket finds when Redis resumes.
    expect(await a.redis.ggAcquire(prefix, gen, line, String(Date.now() - 1000))).toMatch(/^X\t\d+$/);
    expect((await a.budgetStates(Date.now(), DAY)).find((b) => b.model === FLASH)).toBeUndefined();
    // In time, the same batch books its request.
    expect(await a.redis.ggAcquire(prefix, gen, line, String(Date.now() + 60_000))).toMatch(/\n1\tk\t/);
    expect((await a.acquire(req(Date.now()))).ok).toBe(false);
  });

  it('a late answer that still reaches its caller is a timeout: nothing booked, and later deadlines hold', async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = open(prefix);
    await a.syncKeys([key('k', { rpm: 1 })]);
    // The store believes Redis's clock far ahead of its own, so the batch's deadline (told on
    // Redis's clock) has passed when Redis runs it, though the caller still waits for it.
    (a as unknown as { clockSkewMs: number }).clockSkewMs = -60_000;
    await expect(a.acquire(req(Date.now()))).rejects.toThrow(/after the command timeout/);
    expect((await a.budgetStates(Date.now(), DAY)).find((b) => b.model === FLASH)).toBeUndefined();
    // The late answer carried Redis's clock: the next batch's deadline is right again (a skew
    // read as NaN once made every later deadline a no-op, and stalled batches booked).
    expect((a as unknown as { clockSkewMs: number }).clockSkewMs).toBeGreaterThan(-5_000);
    expect((await a.acquire(req(Date.now()))).ok).toBe(true);
    expect((await a.acquire(req(Date.now()))).ok).toBe(false);
  });

  it("a re-seed brings back the day's count and the rests", async () => {
    const prefix = `test:${randomUUID()}:`;
    const a = open(prefix);
    await a.syncKeys([key('k', { rpm: 100, rpd: 3 })]);
    const now = Date.now();
    const r = granted(await a.acquire(req(now, { model: PRO })));
    await a.report(r, { kind: 'rest', untilMs: now + 600_000, reason: 'PerMinute' }, now, CIRCUIT);
    expect((await a.acquire(req(now))).ok).toBe(true);
    expect((await a.acquire(req(now))).ok).toBe(true);
    await a.redis.del(...(await a.redis.keys(`${prefix}*`)));
    expect((await a.acquire(req(now))).ok).toBe(true); // the third of the day for flash
    expect((await a.acquire(req(now))).ok).toBe(false); // rpd 3 spent, though rpm is 100
    expect((await a.acquire(req(now, { model: PRO }))).ok).toBe(false); // still resting
  });
});
