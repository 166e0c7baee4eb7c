/**
 * The messages between a worker's IpcStore (src/store/ipc-client.ts) and the primary's
 * IpcStoreServer (src/store/ipc-server.ts), carried over node:cluster's IPC channel with
 * `serialization: 'advanced'` (structured clone: `undefined`, nested objects and arrays pass as
 * they are). A worker sends the calls of one event-loop turn as one message; the primary answers
 * them with one message, in the same order.
 */

export const STORE_CALLS = 'gg:store-calls';
export const STORE_RESULTS = 'gg:store-results';

/** One call: its id (per worker), the StateStore method's name and its arguments. */
export type StoreCall = [id: number, method: string, args: unknown[]];

/** A call's result: its value, or the error it threw (name and message). */
export type StoreResult = [id: number, ok: true, value: unknown] | [id: number, ok: false, error: WireError];

export interface WireError {
  name: string;
  message: string;
}

export interface StoreCallsMessage {
  type: typeof STORE_CALLS;
  calls: StoreCall[];
}

export interface StoreResultsMessage {
  type: typeof STORE_RESULTS;
  results: StoreResult[];
}

/** Methods that never travel: the object's own, and close (a worker closes only its end). */
const LOCAL = new Set(['constructor', 'close']);

/**
 * The methods of a store class, read from its prototype chain (up to Object.prototype): the
 * worker's proxy and the primary's dispatcher agree on them without a list kept by hand, so a
 * method added to MemoryStore travels without an edit here.
 */
export function storeMethods(proto: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (LOCAL.has(name)) continue;
      const d = Object.getOwnPropertyDescriptor(p, name);
      if (d && typeof d.value === 'function') names.add(name);
    }
  }
  return [...names];
}

export function isStoreCalls(message: unknown): message is StoreCallsMessage {
  return (message as { type?: unknown } | null)?.type === STORE_CALLS;
}

export function isStoreResults(message: unknown): message is StoreResultsMessage {
  return (message as { type?: unknown } | null)?.type === STORE_RESULTS;
}
