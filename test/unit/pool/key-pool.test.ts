import { randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import type { KeyConfig } from '../../../src/config/keys.ts';
import { KeyPool, type Lease, PoolExhaustedError, QueueAbortedError } from '../../../src/pool/key-pool.ts';
import { MemoryStore } from '../../../src/store/memory.ts';
import { RedisStore } from '../../../src/store/redis.ts';
import { keyConfig } from '../../helpers/keys.ts';
import { redisTestUrl, warnSkipped } from '../../helpers/redis.ts';

/**
 * The key pool on a real MemoryStore with a clock the test moves by hand (a frozen clock never
 * ends a rest, so only the behaviour under test can serve or refuse a request): its wait lines,
 * model names as budgets count them, outcomes, the throttle detector, and keys of other instances.
 */
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const CIRCUIT = { failureThreshold: 2, cooldownMs: 10_000 };
const PRO = 'gemini-2.5-pro';
const FLASH = 'gemini-2.5-flash';
/** The model of the tests that are not about model budgets. */
const MODEL = FLASH;

async function makePool(
  keys: KeyConfig[],
  opts: { queueMaxWaitMs?: number; store?: MemoryStore; clock?: { t: number } } = {},
) {
  const store = opts.store ?? new MemoryStore();
  const clock = opts.clock ?? { t: T0 };
  const pool = new KeyPool(store, {
    queueMaxWaitMs: opts.queueMaxWaitMs ?? 60_000,
    circuit: CIRCUIT,
    now: () => clock.t,
    maxPollMs: 10,
  });
  await pool.setKeys(keys);
  const state = async (id: string) => {
    const states = await store.keyStates(clock.t, pool.calendarAt(clock.t).day);
    return states.find((k) => k.id === id)!;
  };
  return { store, clock, pool, state };
}

/** Rests the key's project until `untilMs`, as an upstream 429 would. */
async function rest(pool: KeyPool, untilMs: number): Promise<void> {
  const lease = await pool.acquire(MODEL, 1, []);
  await pool.report(lease, { kind: 'rest', untilMs, reason: 'test' });
}

/** The promise's outcome, or 'pending' when it is still unsettled after every ready task ran. */
async function outcomeOf<T>(p: Promise<T>): Promise<{ value: T } | { error: unknown } | 'pending'> {
  return Promise.race([
    p.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), 300)),
  ]);
}

async function exhausted(p: Promise<Lease>): Promise<PoolExhaustedError> {
  const err = await p.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(PoolExhaustedError);
  return err as PoolExhaustedError;
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
    const { pool, clock } = await makePool([proLimited()], { queueMaxWaitMs: 300_000 });
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
    const { pool, store } = await makePool([proLimited()], { queueMaxWaitMs: 0 });
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
    const { pool, store } = await makePool([keyConfig('a'), keyConfig('b'), keyConfig('dead')], {
      queueMaxWaitMs: 0,
    });
    await store.setKeyEnabled('dead', false, 'API_KEY_INVALID', T0);
    await pool.noteThrottled('a');
    await pool.noteThrottled('b');
    const err = (await pool.acquire(FLASH, 1, []).catch((e: unknown) => e)) as PoolExhaustedError;
    expect(err).toBeInstanceOf(PoolExhaustedError);
    expect(err.globalBackoff).toBe(true);
  });

  it('keys that can serve all count: two of three throttled is not a global throttle', async () => {
    const { pool } = await makePool([keyConfig('a'), keyConfig('b'), keyConfig('c')], { queueMaxWaitMs: 0 });
    await pool.noteThrottled('a');
    await pool.noteThrottled('b');
    const lease: Lease = await pool.acquire(FLASH, 1, []);
    expect(lease.keyId).toBeTruthy();
  });
});

describe('KeyPool wait queue', () => {
  it('a newcomer does not take a freed key ahead of a request already waiting for it', async () => {
    const { pool, clock } = await makePool([keyConfig('a')]);
    await rest(pool, T0 + 10_000);
    const served: string[] = [];
    const first = pool.acquire(MODEL, 1, []).then(() => served.push('first'));
    await vi.waitFor(() => expect(pool.queueLength).toBe(1));
    clock.t = T0 + 10_001; // the rest is over; the waiter has not looked yet
    const second = pool.acquire(MODEL, 1, []).then(() => served.push('second'));
    await Promise.all([first, second]);
    expect(served).toEqual(['first', 'second']);
  });

  it('a request whose key frees only after the queue limit is refused at once, not queued', async () => {
    const { pool } = await makePool([keyConfig('a')], { queueMaxWaitMs: 5_000 });
    await rest(pool, T0 + 60_000);
    const abandon = new AbortController();
    try {
      const result = await outcomeOf(pool.acquire(MODEL, 1, [], abandon.signal));
      expect(result).not.toBe('pending');
      const err = (result as { error: unknown }).error;
      expect(err).toBeInstanceOf(PoolExhaustedError);
      expect((err as PoolExhaustedError).retryAtMs).toBe(T0 + 60_000);
      expect(pool.queueLength).toBe(0);
    } finally {
      abandon.abort();
    }
  });

  it('a request already abandoned is not queued', async () => {
    const { pool, clock } = await makePool([keyConfig('a')]);
    await rest(pool, T0 + 1_000);
    const gone = new AbortController();
    gone.abort();
    try {
      const result = await outcomeOf(pool.acquire(MODEL, 1, [], gone.signal));
      expect(result).not.toBe('pending');
      expect((result as { error: unknown }).error).toBeInstanceOf(QueueAbortedError);
      expect(pool.queueLength).toBe(0);
    } finally {
      clock.t = T0 + 120_000; // lets a wrongly queued request end
    }
  });

  it('an abandoned waiter leaves the line and spends no budget; the next one is served', async () => {
    const { pool, clock, state } = await makePool([keyConfig('a')]);
    await rest(pool, T0 + 1_000);
    const leaving = new AbortController();
    const first = pool.acquire(MODEL, 1, [], leaving.signal);
    const firstOutcome = first.catch((e: unknown) => e);
    await vi.waitFor(() => expect(pool.queueLength).toBe(1));
    const second = pool.acquire(MODEL, 1, []);
    expect(pool.queueLength).toBe(2);
    leaving.abort();
    expect(await firstOutcome).toBeInstanceOf(QueueAbortedError);
    expect(pool.queueLength).toBe(1);
    clock.t = T0 + 1_001;
    const lease = await second;
    expect(lease.keyId).toBe('a');
    expect(lease.queuedMs).toBe(1_001);
    // the rest's own lease and the second request's: nothing reserved for the one that left
    expect((await state('a')).requestsThisMinute).toBe(2);
  });

  it('a waiter is served as soon as its key is reset, before the rest would have ended', async () => {
    const { pool, store } = await makePool([keyConfig('a')], { queueMaxWaitMs: 20 * 60_000 });
    await rest(pool, T0 + 10 * 60_000); // the frozen clock never gets there
    const abandon = new AbortController();
    const waiting = pool.acquire(MODEL, 1, [], abandon.signal);
    await vi.waitFor(() => expect(pool.queueLength).toBe(1));
    await store.resetKey('a'); // an admin (or another instance) frees the key
    try {
      await vi.waitFor(
        async () => expect(await outcomeOf(waiting)).toMatchObject({ value: { keyId: 'a' } }),
        {
          timeout: 5_000,
        },
      );
    } finally {
      abandon.abort();
    }
  });
});

describe('KeyPool outcomes', () => {
  it('a successful half-open probe closes the circuit', async () => {
    const { pool, clock, state } = await makePool([keyConfig('a')]);
    for (let i = 0; i < CIRCUIT.failureThreshold; i++) {
      await pool.report(await pool.acquire(MODEL, 1, []), { kind: 'failure', reason: 'INTERNAL' });
    }
    expect((await state('a')).circuit).toBe('open');
    clock.t = T0 + CIRCUIT.cooldownMs + 1;
    const probe = await pool.acquire(MODEL, 1, []);
    expect(probe.reservation.probe).toBe(true);
    await pool.report(probe, { kind: 'success' });
    expect(await state('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
  });

  it('a success after a failure resets the failure count (failures must be consecutive)', async () => {
    const { pool, state } = await makePool([keyConfig('a')]);
    await pool.report(await pool.acquire(MODEL, 1, []), { kind: 'failure', reason: 'INTERNAL' });
    const lease = await pool.acquire(MODEL, 1, []);
    expect(lease.reservation.clean).toBe(false);
    await pool.report(lease, { kind: 'success' });
    await pool.report(await pool.acquire(MODEL, 1, []), { kind: 'failure', reason: 'INTERNAL' });
    expect(await state('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 1 });
  });
});

describe('KeyPool suspected per-IP throttling', () => {
  const three = () => [keyConfig('a'), keyConfig('b'), keyConfig('c')];

  it('bare 429s from every usable key back all keys off together, flagged as a global backoff', async () => {
    const { pool } = await makePool(three(), { queueMaxWaitMs: 0 });
    for (const id of ['a', 'b', 'c']) await pool.noteThrottled(id);
    const err = await exhausted(pool.acquire(MODEL, 1, []));
    expect(err.globalBackoff).toBe(true);
    expect(err.retryAtMs).toBe(T0 + 5_000);
  });

  it('the backoff doubles while the throttling goes on, and a success resets it', async () => {
    const { pool, clock } = await makePool(three(), { queueMaxWaitMs: 0 });
    const throttleAll = async () => {
      for (const id of ['a', 'b', 'c']) await pool.noteThrottled(id);
    };
    await throttleAll();
    clock.t = T0 + 5_000;
    await throttleAll();
    expect((await exhausted(pool.acquire(MODEL, 1, []))).retryAtMs).toBe(T0 + 5_000 + 10_000);
    clock.t = T0 + 15_000;
    await pool.report(await pool.acquire(MODEL, 1, []), { kind: 'success' });
    await throttleAll();
    expect((await exhausted(pool.acquire(MODEL, 1, []))).retryAtMs).toBe(T0 + 15_000 + 5_000);
  });

  it('bare 429s spread wider than the detection window are not a global throttle', async () => {
    const { pool, clock } = await makePool(three(), { queueMaxWaitMs: 0 });
    for (const [i, id] of ['a', 'b', 'c'].entries()) {
      clock.t = T0 + i * 11_000;
      await pool.noteThrottled(id);
    }
    expect((await pool.acquire(MODEL, 1, [])).keyId).toBeTruthy();
  });

  it('after a backoff, one more bare 429 does not start another', async () => {
    const { pool, clock } = await makePool(three(), { queueMaxWaitMs: 0 });
    for (const id of ['a', 'b', 'c']) await pool.noteThrottled(id);
    clock.t = T0 + 6_000;
    await pool.noteThrottled('a');
    expect((await pool.acquire(MODEL, 1, [])).keyId).toBeTruthy();
  });

  it('a single-key pool never infers a global throttle', async () => {
    const { pool } = await makePool([keyConfig('a')], { queueMaxWaitMs: 0 });
    await pool.noteThrottled('a');
    expect((await pool.acquire(MODEL, 1, [])).keyId).toBe('a');
  });

  it('disabled keys do not count: every enabled key throttled is enough', async () => {
    const { pool } = await makePool([keyConfig('a'), keyConfig('b'), keyConfig('off', { enabled: false })], {
      queueMaxWaitMs: 0,
    });
    await pool.noteThrottled('a');
    await pool.noteThrottled('b');
    expect((await exhausted(pool.acquire(MODEL, 1, []))).globalBackoff).toBe(true);
  });
});

describe('KeyPool with a key another instance added (secret not held here)', () => {
  async function twoInstances(foreign: Partial<KeyConfig> = {}) {
    const store = new MemoryStore();
    const clock = { t: T0 };
    // b knows only 'mine'; a (synced last) registers 'theirs' too, in the shared store
    const b = await makePool([keyConfig('mine')], { store, clock, queueMaxWaitMs: 0 });
    const a = await makePool([keyConfig('mine'), keyConfig('theirs', foreign)], {
      store,
      clock,
      queueMaxWaitMs: 0,
    });
    return { a, b, clock };
  }

  it('choosing it by chance does not hold its circuit probe', async () => {
    const { a, b, clock } = await twoInstances();
    for (let i = 0; i < CIRCUIT.failureThreshold; i++) {
      const lease = await a.pool.acquire(MODEL, 1, ['mine']);
      await a.pool.report(lease, { kind: 'failure', reason: 'INTERNAL' });
    }
    clock.t = T0 + CIRCUIT.cooldownMs + 1;
    for (let i = 0; i < 2; i++) expect((await b.pool.acquire(MODEL, 1, [])).keyId).toBe('mine');
    const probe = await a.pool.acquire(MODEL, 1, ['mine']);
    expect(probe).toMatchObject({ keyId: 'theirs', reservation: { probe: true } });
  });

  it('is tried at most once per request when no known key is free', async () => {
    const { a, b } = await twoInstances({
      limits: { requestsPerMinute: 3, requestsPerDay: 100_000, tokensPerMinute: 10_000_000 },
    });
    await rest(b.pool, T0 + 60_000); // b's only usable key
    const states = await b.store.keyStates(T0, b.pool.calendarAt(T0).day);
    expect(states.find((k) => k.id === 'mine')!.restUntilMs).toBe(T0 + 60_000);
    await exhausted(b.pool.acquire(MODEL, 1, []));
    expect((await a.pool.acquire(MODEL, 1, ['mine'])).keyId).toBe('theirs');
  });
});

describe('KeyPool: a reservation never sent upstream gives its budget back', () => {
  it('a waiter whose client leaves while its key is being reserved does not keep the key (nor its probe)', async () => {
    let t = T0;
    let leaveDuringNextRead = false;
    const client = new AbortController();
    const store = new MemoryStore();
    const pool = new KeyPool(store, {
      queueMaxWaitMs: 60_000,
      circuit: CIRCUIT,
      maxPollMs: 10,
      // The clock is read inside the reservation: the client leaves at exactly that moment.
      now: () => {
        if (leaveDuringNextRead) {
          leaveDuringNextRead = false;
          client.abort();
        }
        return t;
      },
    });
    await pool.setKeys([keyConfig('a')]);
    // Two failures open the circuit: the next lease is the key's single half-open probe.
    for (let i = 0; i < 2; i++)
      await pool.report(await pool.acquire(MODEL, 1, []), { kind: 'failure', reason: 'INTERNAL' });
    const waiting = pool.acquire(MODEL, 1, [], client.signal).catch((e: unknown) => e);
    await vi.waitFor(() => expect(pool.queueLength).toBe(1));
    t = T0 + CIRCUIT.cooldownMs + 1;
    leaveDuringNextRead = true;
    expect(await waiting).toBeInstanceOf(QueueAbortedError);

    const state = async () => (await store.keyStates(t, pool.calendarAt(t).day))[0]!;
    await vi.waitFor(async () => expect((await state()).requestsThisMinute).toBe(2)); // the two failures only
    expect((await state()).requestsToday).toBe(2);
    // The probe went back with it: the next request is the probe, not refused for the lease's 30 s.
    const next = await pool.acquire(MODEL, 1, []);
    expect(next.reservation.probe).toBe(true);
  });

  it("a key another instance added costs this instance's requests nothing", async () => {
    const store = new MemoryStore();
    const options = { queueMaxWaitMs: 0, circuit: CIRCUIT, now: () => T0 };
    const withoutSecret = new KeyPool(store, options);
    await withoutSecret.setKeys([keyConfig('mine')]);
    const holder = new KeyPool(store, options);
    const theirs = keyConfig('theirs', {
      limits: { requestsPerMinute: 5, requestsPerDay: 100_000, tokensPerMinute: 10_000_000 },
    });
    await holder.setKeys([keyConfig('mine'), theirs]);
    // The instance without the secret picks "theirs" every other time, and must pass it by.
    for (let i = 0; i < 10; i++) {
      const lease = await withoutSecret.acquire(MODEL, 100, []);
      expect(lease.keyId).toBe('mine');
      await withoutSecret.report(lease, { kind: 'success' });
    }
    const states = await store.keyStates(T0, holder.calendarAt(T0).day);
    expect(states.find((s) => s.id === 'theirs')).toMatchObject({
      requestsThisMinute: 0,
      requestsToday: 0,
      tokensThisMinute: 0,
    });
    expect((await holder.acquire(MODEL, 1, ['mine'])).keyId).toBe('theirs');
  });
});

const redisUrl = redisTestUrl();
if (!redisUrl) warnSkipped('KeyPool with its store gone (needs redis-server)');
describe.skipIf(!redisUrl)('KeyPool when its store goes away after the acquire', () => {
  it('settling the lease does not reject (callers fire and forget it: a rejection would end the process)', async () => {
    const store = RedisStore.connect(redisUrl!, `test:${randomUUID()}:`);
    const pool = new KeyPool(store, { queueMaxWaitMs: 0, circuit: CIRCUIT, now: () => T0 });
    await pool.setKeys([keyConfig('a'), keyConfig('b')]);
    const lease = await pool.acquire(MODEL, 10, []);
    store.redis.disconnect(); // every command from now on fails
    await expect(store.report(lease.reservation, { kind: 'neutral' }, T0, CIRCUIT)).rejects.toThrow();
    for (const outcome of [
      { kind: 'failure', reason: 'INTERNAL' },
      { kind: 'rest', untilMs: T0 + 5000, reason: 'bare 429' },
      { kind: 'unused' },
      { kind: 'success', actualTokens: 99 },
    ] as const) {
      await expect(pool.report(lease, outcome)).resolves.toBeUndefined();
    }
    // Bare 429s from both keys would start a global backoff, which needs the store too.
    await expect(pool.noteThrottled('a')).resolves.toBeUndefined();
    await expect(pool.noteThrottled('b')).resolves.toBeUndefined();
  });
});
