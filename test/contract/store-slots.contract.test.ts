import { expect, it } from 'vitest';
import { describeEachStore, T0 } from '../helpers/stores.ts';

/** Concurrency slots with leases (Live sessions per project and model): one contract for every StateStore. */
const SCOPE = 'live\tproject-a\tgemini-live-2.5-flash-preview';
const TTL = 30_000;

describeEachStore('StateStore slot contract', (store) => {
  it('gives at most `limit` slots of a scope; a release frees one; other scopes are apart', async () => {
    expect(await store.acquireSlot(SCOPE, 's1', 2, TTL, T0)).toEqual({ ok: true, held: 1 });
    expect(await store.acquireSlot(SCOPE, 's2', 2, TTL, T0 + 1)).toEqual({ ok: true, held: 2 });
    expect(await store.acquireSlot(SCOPE, 's3', 2, TTL, T0 + 2)).toEqual({ ok: false, held: 2 });
    // Another project's scope has its own slots.
    expect(await store.acquireSlot('live\tproject-b\tm', 's3', 2, TTL, T0 + 2)).toEqual({
      ok: true,
      held: 1,
    });
    // A holder asking again keeps its slot (no second one).
    expect(await store.acquireSlot(SCOPE, 's1', 2, TTL, T0 + 3)).toEqual({ ok: true, held: 2 });
    await store.releaseSlot(SCOPE, 's1');
    expect(await store.acquireSlot(SCOPE, 's3', 2, TTL, T0 + 4)).toEqual({ ok: true, held: 2 });
    expect(await store.acquireSlot(SCOPE, 's4', 2, TTL, T0 + 5)).toEqual({ ok: false, held: 2 });
  });

  it('a lease that is not renewed runs out (a crashed instance leaks nothing); a renewed one stays', async () => {
    await store.acquireSlot(SCOPE, 'crashed', 2, TTL, T0);
    await store.acquireSlot(SCOPE, 'alive', 2, TTL, T0);
    expect((await store.acquireSlot(SCOPE, 'new', 2, TTL, T0 + 1000)).ok).toBe(false);
    await store.renewSlot(SCOPE, 'alive', TTL, T0 + TTL - 1000);
    // Past the first lease's end: the crashed holder no longer counts, the renewed one does.
    expect(await store.acquireSlot(SCOPE, 'new', 2, TTL, T0 + TTL + 1)).toEqual({ ok: true, held: 2 });
    expect((await store.acquireSlot(SCOPE, 'another', 2, TTL, T0 + TTL + 2)).ok).toBe(false);
  });

  it('a renewal takes back a slot that had lapsed, whatever the limit (the session is still open)', async () => {
    await store.acquireSlot(SCOPE, 'slow', 1, TTL, T0);
    await store.acquireSlot(SCOPE, 'other', 1, TTL, T0 + TTL + 1);
    await store.renewSlot(SCOPE, 'slow', TTL, T0 + TTL + 2);
    expect(await store.acquireSlot(SCOPE, 'third', 1, TTL, T0 + TTL + 3)).toEqual({ ok: false, held: 2 });
  });
});
