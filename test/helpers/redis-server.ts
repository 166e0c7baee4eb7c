import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/util/free-port.ts';

/** A redis-server of a test's own (Debian package), which the test may stop, resume or kill. */
export interface OwnRedis {
  url: string;
  port: number;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** A client for the test's own inspection (CONFIG SET, counts); closed by stop(). */
  admin(): Redis;
  /** Resumes it if paused, then kills it and removes its directory. */
  stop(): Promise<void>;
}

export async function startOwnRedis(extraArgs: string[] = []): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gg-own-redis-'));
  const proc: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      ...extraArgs,
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  let paused = false;
  let adminClient: Redis | null = null;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let probeError = '';
  probe.on('error', (err: Error) => {
    probeError = err.message;
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch (err) {
      // A server with requirepass is up when it asks for the password.
      if (/NOAUTH|WRONGPASS/.test(`${(err as Error).message} ${probeError}`)) break;
      probe.disconnect();
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error('redis-server did not start within 10 s');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  probe.disconnect();
  return {
    url,
    port,
    pause() {
      paused = true;
      proc.kill('SIGSTOP');
    },
    resume() {
      paused = false;
      proc.kill('SIGCONT');
    },
    admin() {
      if (!adminClient) {
        adminClient = new Redis(url, { maxRetriesPerRequest: 0 });
        adminClient.on('error', () => {});
      }
      return adminClient;
    },
    async stop() {
      adminClient?.disconnect();
      if (paused) proc.kill('SIGCONT');
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP relay between the gateway and a Redis that can lose traffic like a broken network:
 * `dropRequests` discards what clients send (Redis never sees it), `dropReplies` what Redis
 * answers (Redis ran it, the client never hears); `cut()` closes every relayed connection.
 */
export interface FlakyLink {
  url: string;
  dropRequests: boolean;
  dropReplies: boolean;
  cut(): void;
  close(): Promise<void>;
}

export async function startFlakyLink(targetPort: number): Promise<FlakyLink> {
  const pairs = new Set<[Socket, Socket]>();
  const link: FlakyLink = {
    url: '',
    dropRequests: false,
    dropReplies: false,
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    async close() {
      link.cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('data', (d) => {
      if (!link.dropRequests) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!link.dropReplies) client.write(d);
    });
    for (const s of pair) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  link.url = `redis://127.0.0.1:${(server.address() as { port: number }).port}`;
  return link;
}
