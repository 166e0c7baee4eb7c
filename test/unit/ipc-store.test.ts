import { describe, expect, it } from 'vitest';
import { storeMethods } from '../../src/store/ipc-protocol.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { StateStore } from '../../src/store/types.ts';
import { ipcStorePair } from '../helpers/ipc-store.ts';
import { key, req, T0 } from '../helpers/stores.ts';

/**
 * The worker's IPC store (WORKERS > 1 without Redis): the calls of one event-loop turn travel as
 * one message, every StateStore method (also one added later) travels, errors come back as
 * errors, and a lost primary fails calls at once. (test/contract runs the whole StateStore
 * contract against it too.)
 */

describe('IPC store', () => {
  it('sends the calls of one turn as one message, and those of a later turn apart', async () => {
    const pair = ipcStorePair(new MemoryStore());
    await pair.store.syncKeys([key('a', { rpm: 5 }), key('b', { rpm: 5 })]);
    const before = pair.messages();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pair.store.acquire(req(T0 + i))));
    expect(pair.messages() - before).toBe(1);
    // Exactly the budget, in order, as in one process.
    expect(results.map((r) => r.ok)).toEqual([...Array(10).fill(true), ...Array(10).fill(false)]);
    await pair.store.hit('x', 60_000, T0);
    await pair.store.hit('x', 60_000, T0);
    expect(pair.messages() - before).toBe(3);
  });

  it('a method the stores gain later travels without an edit, with its arguments and answer', async () => {
    class Extended extends MemoryStore {
      async twice(n: number, labels: { a?: string[] }): Promise<{ n: number; labels: { a?: string[] } }> {
        return { n: n * 2, labels };
      }
    }
    expect(storeMethods(Extended.prototype)).toContain('twice');
    expect(storeMethods(Extended.prototype)).toContain('acquire');
    expect(storeMethods(Extended.prototype)).not.toContain('close');
    const pair = ipcStorePair(new Extended(), storeMethods(Extended.prototype));
    const store = pair.store as StateStore & { twice: Extended['twice'] };
    expect(await store.twice(21, { a: ['x'] })).toEqual({ n: 42, labels: { a: ['x'] } });
    expect(store.kind).toBe('memory');
  });

  it('an error in the primary rejects only its call; an unknown method is refused there', async () => {
    class Failing extends MemoryStore {
      async boom(): Promise<void> {
        throw new RangeError('no such thing');
      }
    }
    const pair = ipcStorePair(new Failing(), [...storeMethods(MemoryStore.prototype), 'boom', 'missing']);
    const store = pair.store as StateStore & { boom(): Promise<void>; missing(): Promise<void> };
    const [boom, ok, missing] = await Promise.allSettled([store.boom(), store.ping(), store.missing()]);
    expect(boom).toMatchObject({
      status: 'rejected',
      reason: { name: 'RangeError', message: 'no such thing' },
    });
    expect(ok.status).toBe('fulfilled');
    expect(missing).toMatchObject({
      status: 'rejected',
      reason: { message: 'the state store has no method missing' },
    });
  });

  it('a lost primary fails the calls in flight and every later call at once', async () => {
    const pair = ipcStorePair(new MemoryStore());
    await pair.store.syncKeys([key('a')]);
    const inFlight = pair.store.acquire(req(T0));
    pair.disconnect();
    await expect(inFlight).rejects.toThrow(/primary process is gone/);
    await expect(pair.store.ping()).rejects.toThrow(/primary process is gone/);
  });

  it('close ends only the worker’s end', async () => {
    const inner = new MemoryStore();
    const pair = ipcStorePair(inner);
    await pair.store.syncKeys([key('a')]);
    await pair.store.close();
    await expect(pair.store.ping()).rejects.toThrow(/closed/);
    expect((await inner.acquire(req(T0))).ok).toBe(true);
  });
});
