import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/util/free-port.ts';

/**
 * Real Redis topologies made from Debian's packages (redis-server, redis-sentinel, redis-cli) on
 * free ports, for the failure-mode, Sentinel and Cluster tests. Every process started here is
 * killed by the returned stop() (call it in afterAll).
 */

/** One redis-server (or redis-sentinel) process. */
class RedisProcess {
  proc: ChildProcess | null = null;
  paused = false;
  readonly command: string;
  readonly args: string[];
  constructor(command: string, args: string[]) {
    this.command = command;
    this.args = args;
  }

  start(): void {
    this.proc = spawn(this.command, this.args, { stdio: 'ignore' });
    this.paused = false;
  }

  pause(): void {
    this.paused = true;
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.paused = false;
    this.proc?.kill('SIGCONT');
  }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    if (this.paused) p.kill('SIGCONT');
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
    this.proc = null;
  }
}

function serverArgs(port: number, dir: string, extra: string[] = []): string[] {
  return [
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
    ...extra,
  ];
}

/** Waits until the server on `port` answers PING (10 s at most). */
export async function waitForPing(port: number): Promise<void> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      try {
        await client.connect();
        await client.ping();
        return;
      } catch {
        client.disconnect();
        if (Date.now() > deadline) throw new Error(`redis on port ${port} did not start within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    client.disconnect();
  }
}

/** A short-lived client for a test's own inspection. */
export async function withClient<T>(port: number, f: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, connectTimeout: 2000 });
  c.on('error', () => {});
  try {
    return await f(c);
  } finally {
    c.disconnect();
  }
}

/** A redis-server that can be killed and started again, empty, on the same port, or paused. */
export interface RestartableRedis {
  url: string;
  port: number;
  pause(): void;
  resume(): void;
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gg-ha-redis-'));
  const p = new RedisProcess('redis-server', serverArgs(port, dir));
  p.start();
  await waitForPing(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pause: () => p.pause(),
    resume: () => p.resume(),
    kill: () => p.kill(),
    async restart() {
      await p.kill();
      p.start();
      await waitForPing(port);
    },
    async stop() {
      await p.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Redis Cluster of `masters` masters, each with `replicas` replicas (redis-cli --cluster create). */
export interface OwnCluster {
  /** REDIS_CLUSTER_NODES: every master, host:port. */
  nodes: string;
  /** The masters' ports. */
  ports: number[];
  /** SIGSTOP to every node (a stalled cluster: connections stay open, nothing answers). */
  pause(): void;
  resume(): void;
  /** The master serving `key`'s slot and that master's replicas, as the node on `ports[0]` sees them. */
  servers(key: string): Promise<{ master: number; replicas: number[] }>;
  /** SIGSTOP / SIGCONT to one node. */
  pauseNode(port: number): void;
  resumeNode(port: number): void;
  /** SIGKILL to one node (a crash: no goodbye to the cluster). */
  killNode(port: number): Promise<void>;
  /** ROLE's first word: 'master' or 'slave'. */
  role(port: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startCluster(masters = 3, replicas = 0): Promise<OwnCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-cluster-'));
  const procs: RedisProcess[] = [];
  const ports: number[] = [];
  let masterPorts: number[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      // The cluster bus gets a free port of its own (the default, port + 10000, may be taken).
      const bus = await freePort();
      const nodeDir = join(dir, String(i));
      mkdirSync(nodeDir);
      const p = new RedisProcess(
        'redis-server',
        serverArgs(port, nodeDir, [
          '--cluster-enabled',
          'yes',
          '--cluster-port',
          String(bus),
          '--cluster-config-file',
          join(nodeDir, 'nodes.conf'),
          '--cluster-node-timeout',
          '2000',
        ]),
      );
      p.start();
      procs.push(p);
      ports.push(port);
    }
    for (const port of ports) await waitForPing(port);
    const created = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    if (created.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    // Every node must agree that the cluster is up before clients come.
    const deadline = Date.now() + 15_000;
    for (const port of ports) {
      for (;;) {
        const info = await withClient(port, (c) => c.cluster('INFO'));
        if (/cluster_state:ok/.test(String(info))) break;
        if (Date.now() > deadline) throw new Error(`cluster node ${port} not ok: ${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // The masters, as the cluster says (redis-cli chooses them); every replica in sync before use.
    const ranges = await withClient(ports[0]!, (c) => c.cluster('SLOTS'));
    const masterOf = (r: unknown) => Number((r as [number, number, [string, number]])[2][1]);
    masterPorts = [...new Set((ranges as unknown[]).map(masterOf))];
    const syncDeadline = Date.now() + 15_000;
    for (const port of ports.filter((p) => !masterPorts.includes(p))) {
      while (!/master_link_status:up/.test(await withClient(port, (c) => c.info('replication')))) {
        if (Date.now() > syncDeadline) throw new Error(`cluster replica ${port} did not sync`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // ...and every node knows every replica (gossip), so that servers() names them.
    for (const port of ports) {
      const complete = async () =>
        ((await withClient(port, (c) => c.cluster('SLOTS'))) as unknown as unknown[][]).every(
          (range) => range.length === 3 + replicas,
        );
      while (!(await complete())) {
        if (Date.now() > syncDeadline) throw new Error(`cluster node ${port} does not know every replica`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await Promise.all(procs.map((p) => p.kill()));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const proc = (port: number) => procs[ports.indexOf(port)]!;
  return {
    nodes: masterPorts.map((p) => `127.0.0.1:${p}`).join(','),
    ports: masterPorts,
    pause: () => {
      for (const p of procs) p.pause();
    },
    resume: () => {
      for (const p of procs) p.resume();
    },
    async servers(key) {
      return withClient(ports[0]!, async (c) => {
        const slot = Number(await c.cluster('KEYSLOT', key));
        const ranges = (await c.cluster('SLOTS')) as unknown as [number, number, ...[string, number][]][];
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        if (!range) throw new Error(`no node serves slot ${slot}`);
        const [, , master, ...rest] = range;
        return { master: Number(master[1]), replicas: rest.map((r) => Number(r[1])) };
      });
    },
    pauseNode: (port) => proc(port).pause(),
    resumeNode: (port) => proc(port).resume(),
    killNode: (port) => proc(port).kill(),
    role: (port) => withClient(port, async (c) => String(((await c.call('ROLE')) as unknown[])[0])),
    async stop() {
      await Promise.all(procs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A primary, a replica and one sentinel (quorum 1) watching them as `name`. */
export interface OwnSentinel {
  /** REDIS_SENTINELS */
  sentinels: string;
  name: string;
  sentinelPort: number;
  /** The port of the master the sentinel names now. */
  masterPort(): Promise<number>;
  /** SENTINEL FAILOVER: the replica becomes the master; resolves when the sentinel names it. */
  failover(): Promise<number>;
  /** The server on `port` (primary or replica), for the test's inspection. */
  role(port: number): Promise<string>;
  ports: { primary: number; replica: number };
  stop(): Promise<void>;
}

export async function startSentinel(name = 'ggmaster'): Promise<OwnSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-sentinel-'));
  const procs: RedisProcess[] = [];
  const primary = await freePort();
  const replica = await freePort();
  const sentinelPort = await freePort();
  const masterPort = async () => {
    const addr = (await withClient(sentinelPort, (c) =>
      c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name),
    )) as string[];
    return Number(addr[1]);
  };
  try {
    for (const [port, extra] of [
      [primary, []],
      [replica, ['--replicaof', '127.0.0.1', String(primary)]],
    ] as const) {
      const d = join(dir, String(port));
      mkdirSync(d);
      const p = new RedisProcess('redis-server', serverArgs(port, d, [...extra]));
      p.start();
      procs.push(p);
      await waitForPing(port);
    }
    // The replica is in sync before the sentinel watches.
    const syncDeadline = Date.now() + 10_000;
    while (!/master_link_status:up/.test(await withClient(replica, (c) => c.info('replication')))) {
      if (Date.now() > syncDeadline) throw new Error('the replica did not sync');
      await new Promise((r) => setTimeout(r, 100));
    }
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${primary} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    const s = new RedisProcess('redis-sentinel', [conf]);
    s.start();
    procs.push(s);
    await waitForPing(sentinelPort);
    // The sentinel has found the replica (from the primary's INFO) before a failover can pick it.
    const foundDeadline = Date.now() + 15_000;
    for (;;) {
      const replicas = (await withClient(sentinelPort, (c) =>
        c.call('SENTINEL', 'REPLICAS', name),
      )) as string[][];
      const found = replicas.find((r) => r[r.indexOf('port') + 1] === String(replica));
      if (found && !String(found[found.indexOf('flags') + 1]).includes('disconnected')) break;
      if (Date.now() > foundDeadline) throw new Error('the sentinel did not find the replica');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await Promise.all(procs.map((p) => p.kill()));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    sentinels: `127.0.0.1:${sentinelPort}`,
    name,
    sentinelPort,
    ports: { primary, replica },
    masterPort,
    async failover() {
      const before = await masterPort();
      await withClient(sentinelPort, (c) => c.call('SENTINEL', 'FAILOVER', name));
      const deadline = Date.now() + 15_000;
      for (;;) {
        const now = await masterPort();
        if (now !== before) return now;
        if (Date.now() > deadline) throw new Error('the sentinel did not fail over within 15 s');
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    role: (port) => withClient(port, async (c) => String(((await c.call('ROLE')) as unknown[])[0])),
    async stop() {
      await Promise.all(procs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
