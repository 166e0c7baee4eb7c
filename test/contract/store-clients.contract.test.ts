import { expect, it } from 'vitest';
import { describeEachStore } from '../helpers/stores.ts';

/** Admin-made clients and the per-day counters of client budgets: one contract for every StateStore. */
describeEachStore('StateStore clients contract', (store) => {
  it('every change bumps the version; listClients reads the records with their version', async () => {
    expect(await store.clientsVersion()).toBe(0);
    expect(await store.listClients()).toEqual({ version: 0, records: {} });
    expect(await store.putClient('a', '{"n":1}', true)).toBe(1);
    expect(await store.putClient('b', '{"n":2}')).toBe(2);
    // ifAbsent refuses a taken name and changes nothing.
    expect(await store.putClient('a', '{"n":3}', true)).toBeNull();
    expect(await store.listClients()).toEqual({ version: 2, records: { a: '{"n":1}', b: '{"n":2}' } });
    expect(await store.putClient('a', '{"n":4}')).toBe(3);
    expect(await store.deleteClient('b')).toBe(4);
    expect(await store.deleteClient('b')).toBeNull();
    expect(await store.clientsVersion()).toBeGreaterThanOrEqual(4);
    const { records } = await store.listClients();
    expect(records).toEqual({ a: '{"n":4}' });
  });

  it('counters add up, go below zero only by what was added, and expire', async () => {
    const now = Date.now();
    expect(await store.readCounter('c1', now)).toBe(0);
    expect(await store.addToCounter('c1', 5, now + 60_000)).toBe(5);
    expect(await store.addToCounter('c1', -1, now + 60_000)).toBe(4);
    expect(await store.readCounter('c1', now)).toBe(4);
    expect(await store.readCounter('c2', now)).toBe(0);
    await store.addToCounter('short', 7, Date.now() + 50);
    await new Promise((r) => setTimeout(r, 120));
    expect(await store.readCounter('short', Date.now())).toBe(0);
    expect(await store.addToCounter('short', 1, Date.now() + 60_000)).toBe(1);
  });
});
