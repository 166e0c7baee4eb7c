import cluster, { type Worker } from 'node:cluster';
import pino, { type Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { Env } from '../config/env.ts';
import { bufferedStdout, createLogger, loggerOptions } from '../observability/logger.ts';
import { isStoreCalls } from '../store/ipc-protocol.ts';
import { IpcStoreServer } from '../store/ipc-server.ts';
import { MemoryStore } from '../store/memory.ts';
import type { StateStore } from '../store/types.ts';
import {
  METRICS_ANSWER,
  METRICS_REQUEST,
  type MetricsAnswer,
  type MetricsRequest,
  messageType,
  RELOAD,
  WORKER_ENV,
  WORKER_READY,
} from './messages.ts';

/** A worker that lived at least this long restarts at once; quicker deaths back off. */
const STEADY_MS = 10_000;
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** Past SHUTDOWN_TIMEOUT_MS (when workers cut their last connections), how long they have to exit. */
const EXIT_GRACE_MS = 10_000;
/** A group none of whose workers ever served gives up after this many quick deaths of one. */
const MAX_FAILED_STARTS = 5;
/** At exit, how long the workers' last log lines may take to arrive. */
const PIPE_DRAIN_MS = 1000;

interface Slot {
  /** 1..WORKERS: the worker's number, kept by its replacements. */
  index: number;
  worker: Worker | null;
  startedAt: number;
  ready: boolean;
  quickExits: number;
  restartTimer: NodeJS.Timeout | null;
}

/** Where the primary's lines and the workers' (forwarded whole) go. */
interface Output {
  logger: Logger;
  /** Complete lines from a worker; null when workers do not write to stdout. */
  write: ((lines: string) => void) | null;
  flush(): void;
}

function openOutput(env: Env): Output {
  if (!env.LOG_STDOUT) {
    const logger = createLogger(env);
    return { logger, write: null, flush: () => logger.flush() };
  }
  // One writer of stdout for the whole group: the workers' stdout are pipes to this process,
  // and their lines go out whole, never cut into by another worker's (writes larger than a
  // pipe's atomic size would interleave if every worker wrote to the same stdout itself).
  const out = bufferedStdout();
  const logger = pino(loggerOptions(env), out);
  return {
    logger,
    write: (lines) => out.write(lines),
    flush: () => {
      try {
        out.flushSync();
      } catch {
        /* nothing pending, or stdout closed */
      }
    },
  };
}

/**
 * WORKERS > 1: this process serves nothing itself. It starts WORKERS processes that share the
 * port (node:cluster hands each new connection to the next worker in turn), replaces one that
 * dies, and on SIGTERM / SIGINT lets every worker drain (stop accepting, finish requests and
 * streams in flight) before it exits. Without Redis it holds the one embedded state store, which
 * the workers reach through IPC (src/store/ipc-client.ts), so budgets are exact across workers;
 * with Redis the workers use Redis directly. One scrape of /metrics on any worker shows the
 * whole group (prom-client's AggregatorRegistry). SIGHUP, and an admin's reload, reach every
 * worker; each worker also watches API_KEYS_FILE and CONFIG_FILE itself.
 */
export async function runPrimary(env: Env): Promise<void> {
  const output = openOutput(env);
  const log = output.logger.child({ role: 'primary' });
  // Made when a worker first calls it: with Redis (whichever way it is configured) no worker does.
  let store: StateStore | null = null;
  let storeServer: IpcStoreServer | null = null;
  const server = () => {
    if (!storeServer) {
      store = new MemoryStore();
      storeServer = new IpcStoreServer(store);
    }
    return storeServer;
  };

  const registry = new Registry();
  const restarts = new Counter({
    name: 'gateway_worker_restarts_total',
    help: 'Workers that died and were replaced (WORKERS > 1).',
    registers: [registry],
  });
  const slots: Slot[] = Array.from({ length: env.WORKERS }, (_, i) => ({
    index: i + 1,
    worker: null,
    startedAt: 0,
    ready: false,
    quickExits: 0,
    restartTimer: null,
  }));
  new Gauge({
    name: 'gateway_workers',
    help: 'Worker processes, by state: configured (WORKERS), serving (listening).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'configured' }, env.WORKERS);
      this.set({ state: 'serving' }, slots.filter((s) => s.worker && s.ready).length);
    },
  });
  const aggregator = new AggregatorRegistry();
  let scrape: Promise<string> | null = null;
  const groupMetrics = (): Promise<string> => {
    // Scrapes that arrive while one is being gathered share it.
    scrape ??= Promise.all([aggregator.clusterMetrics(), registry.metrics()])
      .then(([workers, own]) => workers + own)
      .finally(() => {
        scrape = null;
      });
    return scrape;
  };

  cluster.setupPrimary({
    serialization: 'advanced',
    stdio: ['ignore', output.write ? 'pipe' : 'ignore', 'inherit', 'ipc'],
  });

  let stopping = false;
  let failed = false;
  /** The exit code a fatal stop asks for (a configuration the workers refuse: 2). */
  let fatalCode: number | null = null;
  /** Whether any worker has ever served: until then, workers that keep dying mean a dead start. */
  let anyReady = false;
  let exitCode: number | null = null;
  /** Workers' stdout not yet read to its end: their last lines are written before the exit. */
  const pipes = new Set<Promise<void>>();
  let hardStop: NodeJS.Timeout | null = null;

  const fork = (slot: Slot) => {
    slot.restartTimer = null;
    if (stopping) return;
    const worker = cluster.fork({ [WORKER_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.ready = false;
    if (output.write) {
      const drained = forwardLines(worker, output.write);
      pipes.add(drained);
      void drained.then(() => pipes.delete(drained));
    }
  };

  const finish = (code: number) => {
    if (exitCode !== null) return;
    exitCode = code;
    if (hardStop) clearTimeout(hardStop);
    void (async () => {
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(pipes),
        new Promise<void>((resolve) => {
          waited = setTimeout(resolve, PIPE_DRAIN_MS);
        }),
      ]);
      clearTimeout(waited);
      await (store as StateStore | null)?.close().catch(() => {});
      log.info({ code }, 'stopped');
      output.flush();
      process.exit(code);
    })();
  };

  const live = () => slots.filter((s) => s.worker !== null);

  const shutdown = (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    if (code !== 0) fatalCode = code;
    log.info(
      { signal, workers: live().length, deadline_ms: env.SHUTDOWN_TIMEOUT_MS },
      'shutting down: every worker finishes its requests in flight',
    );
    for (const slot of slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = null;
      slot.worker?.process.kill('SIGTERM');
    }
    hardStop = setTimeout(() => {
      log.warn('workers did not exit in time; killing them');
      for (const slot of live()) slot.worker?.process.kill('SIGKILL');
      finish(1);
    }, env.SHUTDOWN_TIMEOUT_MS + EXIT_GRACE_MS);
    if (live().length === 0) finish(fatalCode ?? (failed ? 1 : 0));
  };

  cluster.on('message', (worker: Worker, message: unknown) => {
    if (isStoreCalls(message)) {
      server().handle(message, (answer) => {
        if (worker.isConnected()) worker.send(answer);
      });
      return;
    }
    const slot = slots.find((s) => s.worker === worker);
    switch (messageType(message)) {
      case WORKER_READY:
        if (slot && !slot.ready) {
          slot.ready = true;
          anyReady = true;
          log.info({ worker: slot.index, pid: worker.process.pid }, 'worker serving');
        }
        return;
      case METRICS_REQUEST: {
        const { id } = message as MetricsRequest;
        const answer = (a: Omit<MetricsAnswer, 'type' | 'id'>) => {
          if (worker.isConnected()) worker.send({ type: METRICS_ANSWER, id, ...a } satisfies MetricsAnswer);
        };
        groupMetrics().then(
          (text) => answer({ text }),
          (err: unknown) => answer({ error: (err as Error).message }),
        );
        return;
      }
      case RELOAD:
        // An admin's reload on one worker: the others read their files again too.
        for (const other of live()) if (other.worker !== worker) other.worker?.send({ type: RELOAD });
        return;
    }
  });

  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    const slot = slots.find((s) => s.worker === worker);
    if (!slot) return;
    slot.worker = null;
    if (stopping) {
      if (code !== 0) failed = true;
      if (live().length === 0) finish(fatalCode ?? (failed ? 1 : 0));
      return;
    }
    if (!slot.ready && code === 2) {
      // A configuration the workers refuse (they say why on stderr): every one would.
      log.error({ worker: slot.index, code }, 'a worker refused the configuration; stopping');
      shutdown('configuration', 2);
      return;
    }
    if (!anyReady && slot.quickExits >= MAX_FAILED_STARTS) {
      log.error({ worker: slot.index, code, signal }, 'workers keep dying before they serve; stopping');
      shutdown('workers cannot start', 1);
      return;
    }
    const lived = Date.now() - slot.startedAt;
    if (lived >= STEADY_MS) slot.quickExits = 0;
    const delay = lived >= STEADY_MS ? 0 : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** slot.quickExits);
    if (lived < STEADY_MS) slot.quickExits += 1;
    restarts.inc();
    log.warn(
      { worker: slot.index, pid: worker.process.pid, code, signal, restart_in_ms: delay },
      'worker died; starting a new one',
    );
    slot.restartTimer = setTimeout(() => fork(slot), delay);
  });

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    log.info('SIGHUP: every worker reads API_KEYS_FILE and CONFIG_FILE again');
    for (const slot of live()) slot.worker?.process.kill('SIGHUP');
  });

  log.info({ workers: env.WORKERS }, 'starting workers');
  for (const slot of slots) fork(slot);
}

/** A worker's stdout, passed on in whole lines; resolves when it has been read to its end. */
function forwardLines(worker: Worker, write: (lines: string) => void): Promise<void> {
  const stdout = worker.process.stdout;
  if (!stdout) return Promise.resolve();
  const closed = new Promise<void>((resolve) => stdout.once('close', () => resolve()));
  let tail: Buffer[] = [];
  stdout.on('data', (chunk: Buffer) => {
    const nl = chunk.lastIndexOf(10);
    if (nl < 0) {
      tail.push(chunk);
      return;
    }
    const head = chunk.subarray(0, nl + 1);
    write((tail.length > 0 ? Buffer.concat([...tail, head]) : head).toString('utf8'));
    tail = nl + 1 < chunk.length ? [Buffer.from(chunk.subarray(nl + 1))] : [];
  });
  stdout.on('end', () => {
    if (tail.length > 0) write(`${Buffer.concat(tail).toString('utf8')}\n`);
    tail = [];
  });
  return closed;
}
