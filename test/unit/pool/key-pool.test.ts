import { describe, expect, it, vi } from 'vitest';
import type { KeyConfig } from '../../../src/config/keys.ts';
import { KeyPool, type Lease, PoolExhaustedError } from '../../../src/pool/key-pool.ts';
import { MemoryStore } from '../../../src/store/memory.ts';
import { keyConfig } from '../../helpers/keys.ts';

/** The pool's per-model wait lines, model names as budgets count them, and the throttle detector. */
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const CIRCUIT = { failureThreshold: 2, cooldownMs: 10_000 };
const PRO = 'gemini-2.5-pro';
const FLASH = 'gemini-2.5-flash';

async function makePool(keys: KeyConfig[], queueMaxWaitMs = 60_000) {
  const store = new MemoryStore();
  const clock = { t: T0 };
  const pool = new KeyPool(store, { queueMaxWaitMs, circuit: CIRCUIT, now: () => clock.t, maxPollMs: 10 });
  await pool.setKeys(keys);
  return { store, clock, pool };
}

const proLimited = () =>
  keyConfig('a', {
    modelLimits: { [PRO]: { requestsPerMinute: 1, requestsPerDay: 100, tokensPerMinute: 1_000_000 } },
  });

describe('KeyPool per-model wait lines', () => {
  it('a request some key can serve now is never held behind a waiter for another model', async () => {
    const { pool, clock } = await makePool([proLimited()]);
    await pool.acquire(PRO, 1, []);
    let proServed = false;
    const waitingPro = pool.acquire(PRO, 1, []).then((lease) => {
      proServed = true;
      return lease;
    });
    await vi.waitFor(() => expect(pool.queueLength).toBe(1));
    // Flash has its own budget on the same key: served while pro still waits for its minute.
    const flash = await pool.acquire(FLASH, 1, []);
    expect(flash.reservation.model).toBe(FLASH);
    expect(proServed).toBe(false);
    clock.t = T0 + 60_000;
    expect((await waitingPro).reservation.model).toBe(PRO);
    expect(pool.queueLength).toBe(0);
  });

  it('the waiters of one model are still served in arrival order', async () => {
    const { pool, clock } = await makePool([proLimited()], 300_000);
    await pool.acquire(PRO, 1, []);
    const order: number[] = [];
    const waiters = [1, 2].map((n) => pool.acquire(PRO, 1, []).then(() => order.push(n)));
    clock.t = T0 + 60_000;
    await waiters[0];
    clock.t = T0 + 120_000;
    await Promise.all(waiters);
    expect(order).toEqual([1, 2]);
  });

  it("'models/' prefixes count against the same budget as the bare name", async () => {
    const { pool, store } = await makePool([proLimited()], 0);
    const lease = await pool.acquire(`models/${PRO}`, 1, []);
    expect(lease.reservation.model).toBe(PRO);
    const err = await pool.acquire(PRO, 1, []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolExhaustedError);
    const budgets = await store.budgetStates(T0, pool.calendarAt(T0).day);
    expect(budgets.filter((b) => b.model.includes('models/'))).toEqual([]);
  });
});

describe('KeyPool throttle detector', () => {
  it('a key disabled at run time (dead keys send no 429) does not keep the detector from firing', async () => {
    const { pool, store } = await makePool([keyConfig('a'), keyConfig('b'), keyConfig('dead')], 0);
    await store.setKeyEnabled('dead', false, 'API_KEY_INVALID', T0);
    await pool.noteThrottled('a');
    await pool.noteThrottled('b');
    const err = (await pool.acquire(FLASH, 1, []).catch((e: unknown) => e)) as PoolExhaustedError;
    expect(err).toBeInstanceOf(PoolExhaustedError);
    expect(err.globalBackoff).toBe(true);
  });

  it('keys that can serve all count: two of three throttled is not a global throttle', async () => {
    const { pool } = await makePool([keyConfig('a'), keyConfig('b'), keyConfig('c')], 0);
    await pool.noteThrottled('a');
    await pool.noteThrottled('b');
    const lease: Lease = await pool.acquire(FLASH, 1, []);
    expect(lease.keyId).toBeTruthy();
  });
});
