import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { UsageJournal } from '../../src/store/journal.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { RedisStore } from '../../src/store/redis.ts';
import type { AcquireResult, Reservation } from '../../src/store/types.ts';
import { CIRCUIT, DAY, describeEachStore, key, redisUrl, req, T0 } from '../helpers/stores.ts';

/**
 * Exact edges of the StateStore contract: window boundaries, token slots, circuit and probe
 * timing, rests and global backoff that do not shorten each other, and what an 'unused' report
 * gives back. Each test fails when one rule of memory.ts or the Redis scripts is off by one.
 * Same setup as store.contract.test.ts: every test runs against both stores, on fake clocks.
 */
function granted(r: AcquireResult): Reservation {
  if (!r.ok) throw new Error(`expected a key, got ${JSON.stringify(r)}`);
  return r.reservation;
}

describeEachStore('StateStore contract edges', (store) => {
  it('a reservation given back that leaves its budget empty forgets the budget (made-up model names do not pile up)', async () => {
    await store.syncKeys([key('a', { project: 'p' })]);
    const made = await store.acquire(req(T0, { model: 'gemini-9-made-up' }));
    const kept = await store.acquire(req(T0, { model: 'gemini-2.5-flash' }));
    const again = await store.acquire(req(T0 + 1, { model: 'gemini-2.5-flash' }));
    if (!made.ok || !kept.ok || !again.ok) throw new Error('expected three reservations');
    await store.report(made.reservation, { kind: 'unused' }, T0 + 2, CIRCUIT);
    // A budget with another request in it keeps what that request spent.
    await store.report(again.reservation, { kind: 'unused' }, T0 + 2, CIRCUIT);
    const budgets = await store.budgetStates(T0 + 3, DAY);
    expect(budgets.map((b) => b.model)).toEqual(['gemini-2.5-flash']);
    expect(budgets[0]).toMatchObject({ requestsThisMinute: 1, requestsToday: 1 });
  });

  /** Opens the circuit of the only key at T0 (two failures, threshold 2, cooldown 10 s). */
  async function openCircuit(leaseMs = 5000): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const r = granted(await store.acquire(req(T0, { circuitProbeLeaseMs: leaseMs })));
      await store.report(r, { kind: 'failure', reason: 'INTERNAL' }, T0, CIRCUIT);
    }
  }

  it('a request exactly one minute old no longer counts, even within an already-housekept second', async () => {
    await store.syncKeys([key('a', { rpm: 2 })]);
    granted(await store.acquire(req(T0 + 500)));
    granted(await store.acquire(req(T0 + 60_100)));
    // the +500 ms request is exactly 60 s old now: the slot is free
    expect(await store.acquire(req(T0 + 60_500))).toMatchObject({ ok: true });
  });

  it('after rpm is lowered, the wait is for the rpm-th most recent request to leave the minute', async () => {
    await store.syncKeys([key('a', { rpm: 3 })]);
    for (const t of [0, 10_000, 20_000]) granted(await store.acquire(req(T0 + t)));
    await store.syncKeys([key('a', { rpm: 2 })]);
    expect(await store.acquire(req(T0 + 30_000))).toEqual({
      ok: false,
      retryAtMs: T0 + 70_000,
      globalBackoff: false,
    });
  });

  it('requestsToday and requestsThisMinute only count the asked day and the last minute', async () => {
    await store.syncKeys([key('a')]);
    granted(await store.acquire(req(T0)));
    expect((await store.keyStates(T0 + 59_999, DAY))[0]).toMatchObject({
      requestsToday: 1,
      requestsThisMinute: 1,
      tokensThisMinute: 10,
    });
    expect((await store.keyStates(T0 + 60_000, '2026-11-26'))[0]).toMatchObject({
      requestsToday: 0,
      requestsThisMinute: 0,
      tokensThisMinute: 0,
    });
  });

  it('a request larger than tpm waits until the window is empty, not a full minute from now', async () => {
    await store.syncKeys([key('a', { tpm: 100 })]);
    granted(await store.acquire(req(T0, { estimatedTokens: 50 })));
    expect(await store.acquire(req(T0 + 10_000, { estimatedTokens: 500 }))).toEqual({
      ok: false,
      retryAtMs: T0 + 60_000,
      globalBackoff: false,
    });
    expect(await store.acquire(req(T0 + 60_000, { estimatedTokens: 500 }))).toMatchObject({ ok: true });
  });

  it('a settlement for a slot that already left the minute does not count against later requests', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    const old = granted(await store.acquire(req(T0, { estimatedTokens: 100 })));
    granted(await store.acquire(req(T0 + 61_000, { estimatedTokens: 100 })));
    await store.report(old, { kind: 'success', actualTokens: 900 }, T0 + 61_500, CIRCUIT);
    expect(await store.acquire(req(T0 + 62_000, { estimatedTokens: 500 }))).toMatchObject({ ok: true });
    expect((await store.keyStates(T0 + 62_001, DAY))[0]!.tokensThisMinute).toBe(600);
  });

  // A slot holding 0 tokens (a model listing reserves 0; a success can settle a slot to 0) once
  // made acquire.lua send `HINCRBY sum -0`, which Redis refuses: every later acquire of that
  // project failed until the `secs` list expired.
  it('slots holding 0 tokens leave the window like any other', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    granted(await store.acquire(req(T0, { model: '', estimatedTokens: 0 })));
    const settled = granted(await store.acquire(req(T0 + 1000, { estimatedTokens: 100 })));
    await store.report(settled, { kind: 'success', actualTokens: 0 }, T0 + 1500, CIRCUIT);
    expect(await store.acquire(req(T0 + 61_000, { estimatedTokens: 10 }))).toMatchObject({ ok: true });
    expect(await store.acquire(req(T0 + 62_000, { estimatedTokens: 10 }))).toMatchObject({ ok: true });
    expect((await store.keyStates(T0 + 62_001, DAY))[0]!.tokensThisMinute).toBe(20);
  });

  it('tokens booked by a lagging clock still leave the window', async () => {
    await store.syncKeys([key('a', { tpm: 1000 })]);
    granted(await store.acquire(req(T0 + 5000, { estimatedTokens: 600 })));
    granted(await store.acquire(req(T0 + 1000, { estimatedTokens: 300 }))); // clock 4 s behind
    expect(await store.acquire(req(T0 + 66_000, { estimatedTokens: 800 }))).toMatchObject({ ok: true });
  });

  it('a shorter rest does not cut a longer one short', async () => {
    await store.syncKeys([key('a')]);
    const r1 = granted(await store.acquire(req(T0)));
    const r2 = granted(await store.acquire(req(T0 + 1)));
    await store.report(r1, { kind: 'rest', untilMs: T0 + 30_000, reason: 'PerMinute' }, T0 + 2, CIRCUIT);
    await store.report(r2, { kind: 'rest', untilMs: T0 + 10_000, reason: 'Short' }, T0 + 3, CIRCUIT);
    expect(await store.acquire(req(T0 + 15_000))).toEqual({
      ok: false,
      retryAtMs: T0 + 30_000,
      globalBackoff: false,
    });
    expect((await store.keyStates(T0 + 15_000, DAY))[0]).toMatchObject({
      restUntilMs: T0 + 30_000,
      restReason: 'gemini-2.5-flash: PerMinute',
    });
    // once over, keyStates no longer shows it
    expect((await store.keyStates(T0 + 30_000, DAY))[0]).toMatchObject({
      restUntilMs: null,
      restReason: null,
    });
  });

  it('resetKey clears a rest and an open circuit', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    const r = granted(await store.acquire(req(T0 + 10_000)));
    await store.report(r, { kind: 'rest', untilMs: T0 + 60_000, reason: 'PerMinute' }, T0 + 10_001, CIRCUIT);
    await store.report(r, { kind: 'failure', reason: 'INTERNAL' }, T0 + 10_002, CIRCUIT);
    await store.resetKey('a');
    expect((await store.keyStates(T0 + 10_003, DAY))[0]).toMatchObject({
      circuit: 'closed',
      consecutiveFailures: 0,
      restUntilMs: null,
    });
    expect(await store.acquire(req(T0 + 10_003))).toMatchObject({
      ok: true,
      reservation: { probe: false },
    });
  });

  it('the circuit is half-open from the exact end of its cooldown', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    expect((await store.keyStates(T0 + 9_999, DAY))[0]!.circuit).toBe('open');
    expect((await store.keyStates(T0 + 10_000, DAY))[0]!.circuit).toBe('half_open');
  });

  it('a new probe is allowed from the exact end of the previous probe lease', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    expect(granted(await store.acquire(req(T0 + 10_000))).probe).toBe(true);
    expect(await store.acquire(req(T0 + 14_999))).toMatchObject({ ok: false, retryAtMs: T0 + 15_000 });
    expect(await store.acquire(req(T0 + 15_000))).toMatchObject({ ok: true, reservation: { probe: true } });
  });

  it('a neutral outcome releases the probe at once', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    const probe = granted(await store.acquire(req(T0 + 10_000)));
    await store.report(probe, { kind: 'neutral' }, T0 + 10_001, CIRCUIT);
    expect(await store.acquire(req(T0 + 10_002))).toMatchObject({ ok: true, reservation: { probe: true } });
  });

  it('a rest releases the probe: the next probe goes when the rest ends, not when the lease does', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    const probe = granted(await store.acquire(req(T0 + 10_000)));
    await store.report(
      probe,
      { kind: 'rest', untilMs: T0 + 11_000, reason: 'PerMinute' },
      T0 + 10_500,
      CIRCUIT,
    );
    expect(await store.acquire(req(T0 + 10_600))).toMatchObject({ ok: false, retryAtMs: T0 + 11_000 });
    expect(await store.acquire(req(T0 + 11_000))).toMatchObject({ ok: true, reservation: { probe: true } });
  });

  it('a failed probe releases its lease: the next probe goes after the cooldown even when the lease is longer', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit(30_000);
    const probe = granted(await store.acquire(req(T0 + 10_000, { circuitProbeLeaseMs: 30_000 })));
    await store.report(probe, { kind: 'failure', reason: 'INTERNAL' }, T0 + 10_001, CIRCUIT);
    expect(await store.acquire(req(T0 + 20_001, { circuitProbeLeaseMs: 30_000 }))).toMatchObject({
      ok: true,
      reservation: { probe: true },
    });
  });

  it('a failed probe reopens the circuit even when the threshold was raised meanwhile', async () => {
    await store.syncKeys([key('a')]);
    await openCircuit();
    const probe = granted(await store.acquire(req(T0 + 10_000)));
    await store.report(probe, { kind: 'failure', reason: 'INTERNAL' }, T0 + 10_001, {
      failureThreshold: 5,
      cooldownMs: 10_000,
    });
    expect(await store.acquire(req(T0 + 10_002))).toEqual({
      ok: false,
      retryAtMs: T0 + 20_001,
      globalBackoff: false,
    });
  });

  it('a disable is recorded as the last error', async () => {
    await store.syncKeys([key('a')]);
    const r = granted(await store.acquire(req(T0)));
    await store.report(r, { kind: 'disable', reason: 'API_KEY_INVALID' }, T0 + 5, CIRCUIT);
    expect((await store.keyStates(T0 + 6, DAY))[0]).toMatchObject({
      lastError: 'API_KEY_INVALID',
      lastErrorAtMs: T0 + 5,
    });
  });

  it('a key removed and added back starts fresh, even if outcomes were reported for it meanwhile', async () => {
    await store.syncKeys([key('a'), key('b')]);
    const r = granted(await store.acquire(req(T0, { exclude: ['b'] })));
    await store.setKeyEnabled('a', false, 'by admin', T0);
    await store.syncKeys([key('b')]);
    // a late outcome of an in-flight request on the removed key
    await store.report(r, { kind: 'failure', reason: 'INTERNAL' }, T0 + 1, CIRCUIT);
    await store.report(r, { kind: 'failure', reason: 'INTERNAL' }, T0 + 2, CIRCUIT);
    await store.syncKeys([key('a'), key('b')]);
    expect((await store.keyStates(T0 + 3, DAY)).find((s) => s.id === 'a')).toMatchObject({
      enabled: true,
      disabledReason: null,
      circuit: 'closed',
      consecutiveFailures: 0,
      lastError: null,
    });
    expect(await store.acquire(req(T0 + 3, { exclude: ['b'] }))).toMatchObject({
      ok: true,
      reservation: { keyId: 'a', probe: false },
    });
  });

  it('a global backoff ends exactly at its time', async () => {
    await store.syncKeys([key('a')]);
    await store.setGlobalBackoff(T0 + 5000, T0);
    expect(await store.acquire(req(T0 + 4999))).toMatchObject({ ok: false, retryAtMs: T0 + 5000 });
    expect(await store.acquire(req(T0 + 5000))).toMatchObject({ ok: true });
  });

  // Another instance whose backoff has not grown yet sets a shorter one: the longer one stands
  // (RedisStore once overwrote it with a plain SET PX).
  it('a shorter global backoff does not cut a longer one short', async () => {
    await store.syncKeys([key('a')]);
    await store.setGlobalBackoff(T0 + 10_000, T0);
    await store.setGlobalBackoff(T0 + 5000, T0 + 1000);
    expect(await store.acquire(req(T0 + 6000))).toEqual({
      ok: false,
      retryAtMs: T0 + 10_000,
      globalBackoff: true,
    });
  });

  it("an 'unused' report gives back the request, its day count, its tokens and a probe", async () => {
    await store.syncKeys([key('a', { rpm: 1, rpd: 2, tpm: 1000 })]);
    const first = granted(await store.acquire(req(T0, { estimatedTokens: 600 })));
    expect(await store.acquire(req(T0 + 1000, { estimatedTokens: 600 }))).toMatchObject({ ok: false });
    await store.report(first, { kind: 'unused' }, T0 + 1000, CIRCUIT);
    expect((await store.keyStates(T0 + 1000, DAY))[0]).toMatchObject({
      requestsThisMinute: 0,
      requestsToday: 0,
      tokensThisMinute: 0,
    });
    // The whole budget is there again: the minute's one request, 600 tokens, both of the day's requests.
    const second = granted(await store.acquire(req(T0 + 1000, { estimatedTokens: 600 })));
    await store.report(second, { kind: 'success' }, T0 + 1500, CIRCUIT);
    expect(await store.acquire(req(T0 + 61_001, { estimatedTokens: 600 }))).toMatchObject({ ok: true });

    // A probe that was never sent is released at once.
    await store.syncKeys([key('b')]);
    for (let i = 0; i < 2; i++) {
      const r = granted(await store.acquire(req(T0 + 70_000)));
      await store.report(r, { kind: 'failure', reason: 'INTERNAL' }, T0 + 70_000, CIRCUIT);
    }
    const probe = granted(await store.acquire(req(T0 + 80_001)));
    expect(probe.probe).toBe(true);
    await store.report(probe, { kind: 'unused' }, T0 + 80_001, CIRCUIT);
    expect(granted(await store.acquire(req(T0 + 80_002))).probe).toBe(true);
  });
});

/** Redis only: the fixed-window counters of hit() expire shortly after their window. */
describe.runIf(redisUrl)('RedisStore hit() expiry', () => {
  it('a hit counter expires one second after its window', async () => {
    const { Redis } = await import('ioredis');
    const prefix = `test:${randomUUID()}:`;
    const store = RedisStore.connect(redisUrl!, prefix);
    const probe = new Redis(redisUrl!);
    try {
      await store.hit('n', 60_000, T0 + 5);
      const ttl = await probe.pttl(`${prefix}hit:n:${T0}`);
      expect(ttl).toBeGreaterThan(60_000);
      expect(ttl).toBeLessThanOrEqual(61_000);
    } finally {
      probe.disconnect();
      await store.close();
    }
  });
});

/** The embedded store and the journal hold budgets in memory: made-up model names must not pile up. */
describe('budgets held in memory stay bounded', () => {
  it('MemoryStore drops budgets with nothing in them (here: refused when made, a limit of 0 a day)', async () => {
    const store = new MemoryStore();
    await store.syncKeys([key('a', { project: 'p', rpd: 0 })]);
    for (let i = 0; i < 3000; i++)
      expect((await store.acquire(req(T0 + i, { model: `gemini-made-up-${i}` }))).ok).toBe(false);
    const held = (await store.budgetStates(T0 + 3000, DAY)).length;
    // Swept each time the count reaches 1024: what is left is what came after the last sweep.
    expect(held).toBeLessThan(1024);
    expect(held).toBeGreaterThan(0);
  });

  it('UsageJournal forgets a budget whose only request came back, and sweeps the idle ones', () => {
    const journal = new UsageJournal();
    const now = T0;
    const slot = Math.floor(now / 1000);
    journal.admitted('p', 'gemini-9-made-up', now, slot, 10, DAY);
    journal.settled('p', 'gemini-9-made-up', slot, -10);
    journal.returned('p', 'gemini-9-made-up', now, DAY);
    expect(journal.text(now, now, DAY)).toBe('');
    // Budgets whose minute has passed and whose day is over are swept as new ones come.
    // (Each on a later day of its own: "<DAY>-0000" … "<DAY>-2999" sort as days do.)
    const dayOf = (i: number) => `${DAY}-${String(i).padStart(4, '0')}`;
    for (let i = 0; i < 3000; i++)
      journal.admitted('p', `m-${i}`, now + i * 60_000, slot + i * 60, 1, dayOf(i));
    const held = (journal as unknown as { count: number }).count;
    expect(held).toBeLessThan(1100);
    expect(journal.text(now + 2999 * 60_000, now + 2999 * 60_000, dayOf(2999))).toContain('m-2999');
  });
});
