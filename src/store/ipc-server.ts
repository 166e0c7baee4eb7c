import {
  STORE_RESULTS,
  type StoreCall,
  type StoreCallsMessage,
  type StoreResult,
  type StoreResultsMessage,
  storeMethods,
} from './ipc-protocol.ts';
import type { StateStore } from './types.ts';

/**
 * The primary's end of the embedded store (WORKERS > 1 without Redis): runs the calls of each
 * worker's message on the one store, in the order they were made, and answers them in one
 * message. Every call of a message starts before the next message is read: MemoryStore's
 * methods do their work synchronously, so calls from all workers are applied one at a time,
 * each atomic, as in one process.
 */
export class IpcStoreServer {
  private readonly store: StateStore;
  private readonly methods: Set<string>;

  constructor(store: StateStore) {
    this.store = store;
    this.methods = new Set(storeMethods(Object.getPrototypeOf(store) as object));
  }

  /** Runs a worker's calls; `reply` gets their results (once, all of them). */
  handle(message: StoreCallsMessage, reply: (message: StoreResultsMessage) => void): void {
    const calls = message.calls;
    const results: StoreResult[] = new Array(calls.length);
    let waiting = calls.length;
    const done = () => {
      waiting -= 1;
      if (waiting === 0) reply({ type: STORE_RESULTS, results });
    };
    if (waiting === 0) return;
    calls.forEach((call, i) => {
      const [id] = call;
      let answer: Promise<unknown>;
      try {
        answer = Promise.resolve(this.run(call));
      } catch (err) {
        answer = Promise.reject(err);
      }
      answer.then(
        (value) => {
          results[i] = [id, true, value];
          done();
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          results[i] = [id, false, { name: e.name, message: e.message }];
          done();
        },
      );
    });
  }

  private run([, method, args]: StoreCall): unknown {
    if (!this.methods.has(method)) throw new Error(`the state store has no method ${method}`);
    const fn = (this.store as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!;
    return fn.apply(this.store, args);
  }
}
