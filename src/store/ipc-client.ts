import {
  isStoreResults,
  STORE_CALLS,
  type StoreCall,
  type StoreCallsMessage,
  type StoreResultsMessage,
  storeMethods,
  type WireError,
} from './ipc-protocol.ts';
import { MemoryStore } from './memory.ts';
import type { StateStore } from './types.ts';

/** What the IPC store needs of its channel: a cluster worker's `process` (or a test's pair). */
export interface IpcChannel {
  send(
    message: unknown,
    sendHandle?: undefined,
    options?: object,
    callback?: (err: Error | null) => void,
  ): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** A store call that the primary refused or could not run: its error, as thrown there. */
export class IpcStoreError extends Error {
  constructor(wire: WireError) {
    super(wire.message);
    this.name = wire.name;
  }
}

/**
 * The worker's end of the embedded store (WORKERS > 1 without Redis): the primary process holds
 * the one MemoryStore, so every budget stays exact across workers, and each StateStore call is
 * a message to it. The calls made during one event-loop turn leave together, as one message, at
 * the turn's end (like RedisStore's acquire batches): under load one message carries the
 * acquires, settlements and counter hits of many requests. The primary runs them in order.
 */
export class IpcStoreClient {
  private readonly channel: IpcChannel;
  private readonly pending = new Map<number, Pending>();
  private queue: StoreCall[] = [];
  private scheduled = false;
  private seq = 0;
  private attached = false;
  private gone: Error | null = null;

  constructor(channel: IpcChannel) {
    this.channel = channel;
  }

  call(method: string, args: unknown[]): Promise<unknown> {
    if (this.gone) return Promise.reject(this.gone);
    if (!this.attached) this.attach();
    return new Promise((resolve, reject) => {
      this.seq = (this.seq + 1) % Number.MAX_SAFE_INTEGER;
      const id = this.seq;
      this.pending.set(id, { resolve, reject });
      this.queue.push([id, method, args]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  /** Calls in flight or waiting for the end of the turn. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** This worker's end only: the primary's store lives on for the other workers. */
  close(): void {
    this.fail(new Error('the state store is closed'));
    this.detach();
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const calls = this.queue;
    this.queue = [];
    if (calls.length === 0) return;
    if (this.gone) {
      this.rejectCalls(calls, this.gone);
      return;
    }
    const message: StoreCallsMessage = { type: STORE_CALLS, calls };
    try {
      this.channel.send(message, undefined, {}, (err) => {
        if (err) this.rejectCalls(calls, new Error(`state store unreachable: ${err.message}`));
      });
    } catch (err) {
      // An argument that cannot be cloned, or a channel closed meanwhile.
      this.rejectCalls(calls, err as Error);
    }
  };

  private readonly onMessage = (message: unknown): void => {
    if (!isStoreResults(message)) return;
    for (const [id, ok, value] of (message as StoreResultsMessage).results) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      if (ok) p.resolve(value);
      else p.reject(new IpcStoreError(value as WireError));
    }
  };

  private readonly onDisconnect = (): void => {
    this.fail(new Error('state store unreachable: the primary process is gone'));
  };

  private attach(): void {
    this.attached = true;
    this.channel.on('message', this.onMessage);
    this.channel.on('disconnect', this.onDisconnect);
  }

  private detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.channel.removeListener('message', this.onMessage);
    this.channel.removeListener('disconnect', this.onDisconnect);
  }

  private rejectCalls(calls: readonly StoreCall[], err: Error): void {
    for (const [id] of calls) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      p.reject(err);
    }
  }

  private fail(err: Error): void {
    this.gone = err;
    const all = [...this.pending.values()];
    this.pending.clear();
    this.queue = [];
    for (const p of all) p.reject(err);
  }
}

/**
 * A StateStore whose every method is a call to the primary's store. The methods are those of
 * MemoryStore's prototype (what the primary holds), found at run time: a method added to the
 * stores needs no edit here. `kind` is the primary store's ('memory').
 */
export function createIpcStore(
  channel: IpcChannel,
  methods = storeMethods(MemoryStore.prototype),
): StateStore {
  const client = new IpcStoreClient(channel);
  const store: Record<string, unknown> = {
    kind: 'memory',
    close: async () => client.close(),
  };
  for (const name of methods) {
    if (name in store) continue;
    store[name] = (...args: unknown[]) => client.call(name, args);
  }
  return store as unknown as StateStore;
}
