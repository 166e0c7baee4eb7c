import type { IpcChannel } from '../../src/store/ipc-client.ts';
import { createIpcStore } from '../../src/store/ipc-client.ts';
import { isStoreCalls } from '../../src/store/ipc-protocol.ts';
import { IpcStoreServer } from '../../src/store/ipc-server.ts';
import type { StateStore } from '../../src/store/types.ts';

/**
 * A worker's IPC store (WORKERS > 1) wired to a primary's IpcStoreServer around `inner`, in one
 * process: each message is copied with structuredClone (what node:cluster's advanced
 * serialization does) and delivered on a later turn, as over a real channel. `messages` counts
 * what the worker sent; `disconnect()` acts as a lost primary.
 */
export function ipcStorePair(
  inner: StateStore,
  methods?: string[],
): {
  store: StateStore;
  messages: () => number;
  disconnect: () => void;
} {
  const server = new IpcStoreServer(inner);
  const listeners = { message: new Set<(m: unknown) => void>(), disconnect: new Set<() => void>() };
  let sent = 0;
  let connected = true;
  const channel: IpcChannel = {
    send(message, _handle, _options, callback) {
      if (!connected) {
        const err = new Error('Channel closed');
        setImmediate(() => callback?.(err));
        return false;
      }
      sent += 1;
      const copy = structuredClone(message);
      setImmediate(() => {
        callback?.(null);
        if (!isStoreCalls(copy)) return;
        server.handle(copy, (answer) => {
          const back = structuredClone(answer);
          setImmediate(() => {
            if (connected) for (const l of listeners.message) l(back);
          });
        });
      });
      return true;
    },
    on(event: 'message' | 'disconnect', listener: (m: unknown) => void) {
      (listeners[event] as Set<(m: unknown) => void>).add(listener);
      return channel;
    },
    removeListener(event: string, listener: (...args: never[]) => void) {
      listeners[event as 'message']?.delete(listener as (m: unknown) => void);
      return channel;
    },
  } as IpcChannel;
  return {
    store: methods ? createIpcStore(channel, methods) : createIpcStore(channel),
    messages: () => sent,
    disconnect: () => {
      connected = false;
      for (const l of listeners.disconnect) l();
    },
  };
}
