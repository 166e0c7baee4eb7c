import cluster from 'node:cluster';
import { closeSync, openSync } from 'node:fs';
import { AggregatorRegistry } from 'prom-client';
import type { Gateway } from '../app/build.ts';
import type { ReloadSource } from '../config/reload.ts';
import { Unavailable } from '../errors/gateway-errors.ts';
import { createIpcStore, type IpcChannel } from '../store/ipc-client.ts';
import type { StateStore } from '../store/types.ts';
import {
  METRICS_ANSWER,
  METRICS_REQUEST,
  type MetricsAnswer,
  messageType,
  RELOAD,
  WORKER_READY,
} from './messages.ts';

/** Longest wait for the group's metrics (the primary asks every worker; prom-client gives up after 5 s). */
const METRICS_WAIT_MS = 8_000;

export const isWorker = cluster.isWorker;

/**
 * First thing in a worker (WORKERS > 1): answers the primary's metric requests at once (with
 * nothing until the gateway's registry exists, so a scrape during a worker's start does not
 * wait for it), and gives the embedded state store that lives in the primary. With Redis the
 * store is never called: buildGateway uses Redis.
 */
export function prepareWorker(): { store: StateStore } {
  // A primary that dies (killed, crashed) takes its workers with it: node:cluster exits a worker
  // whose IPC channel closes unexpectedly, at once (requests in flight are cut, as they would be
  // in one process that crashed). Before pino's own exit handler, which flushes stdout
  // synchronously and retries a failed write for ever: without a primary, stdout has no reader.
  process.prependListener('exit', () => {
    if (!process.connected) detachStdout();
  });
  new AggregatorRegistry(); // installs prom-client's answering of the primary's requests
  AggregatorRegistry.setRegistries([]);
  return { store: createIpcStore(process as unknown as IpcChannel) };
}

/**
 * Once the worker listens: its metrics join the group's, a /metrics scrape shows the whole
 * group, an admin's reload reaches the other workers, and the primary hears that the worker
 * serves. (A lost primary: node:cluster makes the worker exit at once, see prepareWorker.)
 */
export function joinGroup(gateway: Gateway): void {
  AggregatorRegistry.setRegistries([gateway.metrics.registry]);
  gateway.metrics.setRenderer(groupMetrics);

  const reloader = gateway.reloader;
  const reloadAll = reloader.reloadAll.bind(reloader);
  reloader.reloadAll = (source: ReloadSource = 'admin') => {
    if (source === 'admin') process.send?.({ type: RELOAD });
    return reloadAll(source);
  };
  process.on('message', (message: unknown) => {
    if (messageType(message) === RELOAD) void reloadAll('admin');
  });
  process.send?.({ type: WORKER_READY });
}

/**
 * A worker's stdout is a socket to the primary, which forwards its lines. With the primary gone,
 * writes to it fail (EPIPE), and pino's last flush at exit (sonic-boom's flushSync) retries a
 * failed write for ever, whatever the error: seen as workers that outlived a killed primary.
 * Pointed at /dev/null, the last lines are dropped (nobody could read them) and the worker exits.
 */
function detachStdout(): void {
  try {
    closeSync(1);
    const fd = openSync('/dev/null', 'w');
    if (fd !== 1) closeSync(fd);
  } catch {
    /* already closed */
  }
}

let metricsSeq = 0;

/** The whole group's metrics, gathered by the primary from every worker. */
function groupMetrics(): Promise<string> {
  metricsSeq += 1;
  const id = metricsSeq;
  return new Promise((resolve, reject) => {
    const unavailable = (why: string) =>
      new Unavailable(`the worker group's metrics could not be gathered: ${why}`, { retryAfterSeconds: 1 });
    const timer = setTimeout(() => {
      process.removeListener('message', onMessage);
      reject(unavailable('no answer in time'));
    }, METRICS_WAIT_MS);
    const onMessage = (message: unknown) => {
      if (messageType(message) !== METRICS_ANSWER || (message as MetricsAnswer).id !== id) return;
      clearTimeout(timer);
      process.removeListener('message', onMessage);
      const answer = message as MetricsAnswer;
      if (answer.text !== undefined) resolve(answer.text);
      else reject(unavailable(answer.error ?? 'unknown error'));
    };
    process.on('message', onMessage);
    try {
      process.send?.({ type: METRICS_REQUEST, id });
    } catch (err) {
      clearTimeout(timer);
      process.removeListener('message', onMessage);
      reject(unavailable((err as Error).message));
    }
  });
}
