import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FailoverStore } from '../../src/store/failover.ts';
import { RedisStore } from '../../src/store/redis.ts';
import { clusterPrefix, connectRedis, createRedisClientFor } from '../../src/store/redis-client.ts';
import { adminFetch, type Json } from '../helpers/admin.ts';
import { has } from '../helpers/global-setup.ts';
import { warnSkipped } from '../helpers/redis.ts';
import {
  type OwnCluster,
  type OwnSentinel,
  startCluster,
  startSentinel,
  withClient,
} from '../helpers/redis-ha.ts';
import { generateText, poolKeyValues, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';
import { DAY, key, req } from '../helpers/stores.ts';

/**
 * Redis high availability against real servers made from Debian's packages: a three-master Redis
 * Cluster (redis-server --cluster-enabled, redis-cli --cluster create) and a Sentinel group (a
 * primary, a replica, one sentinel with quorum 1). STORE_FAILURE_MODE=closed throughout: a store
 * that does not work on these topologies shows as 503s here, not as local shares.
 */

const ADMIN_TOKEN = 'admin-token-for-redis-ha-tests-000001';
const canCluster = has('redis-server') && has('redis-cli');
/** REDIS_COMMAND_TIMEOUT_MS of the stalled-cluster tests. */
const STALL_TIMEOUT_MS = 500;
const canSentinel = has('redis-server') && has('redis-sentinel');
if (!canCluster) warnSkipped('Redis Cluster (needs redis-server and redis-cli)');
if (!canSentinel) warnSkipped('Redis Sentinel (needs redis-sentinel: apt-get install -y redis-sentinel)');

const start = stackPerTest({ env: { STORE_FAILURE_MODE: 'closed', ADMIN_TOKEN } });

async function burst(stacks: Stack[], n: number): Promise<number[]> {
  return Promise.all(
    Array.from(
      { length: n },
      async (_, i) => (await generateText(stacks[i % stacks.length]!, `b${i}`)).status,
    ),
  );
}

/** One request of steadyLoad: when it started and how long it took (performance.now() ms), its status. */
type Answered = { at: number; ms: number; status: number };

/** Four clients sending requests one after another until stop(); each answer's start, time and status. */
function steadyLoad(s: Stack): { results: Answered[]; stop(): Promise<void> } {
  const results: Answered[] = [];
  let stopped = false;
  const loops = Array.from({ length: 4 }, async (_, i) => {
    while (!stopped) {
      const t0 = performance.now();
      const status = (await generateText(s, `load ${i}`)).status;
      results.push({ at: t0, ms: performance.now() - t0, status });
    }
  });
  return {
    results,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Requests in the last minute, summed over the pool's keys, as the store holds them. */
async function countedThisMinute(s: Stack): Promise<number> {
  const now = Date.now();
  const states = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
  return states.reduce((n, k) => n + k.requestsThisMinute, 0);
}

/** No request waited past the bound, and every one after the move was served. */
function expectServedAfter(results: Answered[], movedAt: number): void {
  for (const r of results) {
    expect([200, 503]).toContain(r.status);
    expect(r.ms).toBeLessThan(5000);
  }
  const after = results.filter((r) => r.at > movedAt);
  expect(after.length).toBeGreaterThan(0);
  expect(after.every((r) => r.status === 200)).toBe(true);
}

/** Nothing sent upstream is missing from the request log of the (new) master. */
async function expectEverySentCounted(s: Stack): Promise<void> {
  await vi.waitFor(
    async () => expect(await countedThisMinute(s)).toBeGreaterThanOrEqual(s.fake.stats.requests),
    { timeout: 3000, interval: 100 },
  );
}

const slowest = (results: Answered[]) => Math.round(Math.max(...results.map((r) => r.ms)));

/** Waits until the gateway's writes reach the server on `port` (its round-robin counter `rrKey` moves there). */
async function writesReach(port: number, rrKey: string): Promise<void> {
  const rr = () => withClient(port, async (c) => Number((await c.get(rrKey)) ?? 0));
  const before = await rr();
  await vi.waitFor(async () => expect(await rr()).toBeGreaterThan(before), { timeout: 10_000, interval: 20 });
}

/** A Redis Cluster for the suite: started before its tests, stopped after them. */
function clusterPerSuite(masters: number, replicas: number): () => OwnCluster {
  let cluster: OwnCluster | undefined;
  beforeAll(async () => {
    cluster = await startCluster(masters, replicas);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => cluster!;
}

describe.runIf(canCluster)('Redis Cluster (three masters)', () => {
  const cluster = clusterPerSuite(3, 0);

  it("an acquire written behind an unanswered command books nothing once that command's connection is dropped", async () => {
    // As in redis-failure.test.ts, on the node that serves the store's slot: the deadline an
    // acquire carries is cut to the moment the commands before it may have the connection dropped.
    const client = createRedisClientFor(
      { kind: 'cluster', nodes: cluster().ports.map((port) => ({ host: '127.0.0.1', port })) },
      { commandTimeoutMs: STALL_TIMEOUT_MS },
    );
    await connectRedis(client);
    const prefix = clusterPrefix(`stall${randomUUID().slice(0, 8)}:`);
    const store = new RedisStore(client, prefix);
    try {
      await store.syncKeys([key('k', { rpm: 100 })]);
      expect((await store.acquire(req(Date.now()))).ok).toBe(true);
      cluster().pause();
      // A command to the store's slot goes unanswered first.
      const other = client.get(`${prefix}gen`).then(
        () => 'answered',
        (err: Error) => err.message,
      );
      await new Promise((resolve) => setTimeout(resolve, STALL_TIMEOUT_MS / 2));
      const started = Date.now();
      // Refused when the connection is dropped, and not sent again on the next one.
      await expect(store.acquire(req(Date.now()))).rejects.toThrow('Connection is closed');
      expect(Date.now() - started).toBeLessThan(STALL_TIMEOUT_MS);
      expect(await other).not.toBe('answered');
      // Resumed within what would have been the acquire's own deadline: the node runs it now.
      cluster().resume();
      const budgets = await vi.waitFor(() => store.budgetStates(Date.now(), DAY), {
        timeout: 10_000,
        interval: 100,
      });
      expect(budgets.find((b) => b.project === 'k')?.requestsToday).toBe(1);
    } finally {
      cluster().resume();
      await store.close();
    }
  }, 30_000);

  it('two instances serve a burst exactly: admitted == limit, zero upstream 429s', async () => {
    const prefix = `cl${randomUUID().slice(0, 8)}:`;
    const env = {
      REDIS_CLUSTER_NODES: cluster().nodes,
      STATE_PREFIX: prefix,
      DEFAULT_RPM: '5',
      QUEUE_MAX_WAIT_MS: '0',
    };
    const values = poolKeyValues(2);
    const a = await start({
      keys: 2,
      env,
      fake: { keys: values.map((apiKey) => ({ apiKey })), limits: { rpm: 5 } },
    });
    const b = await start({ keys: 2, env, fakeInstance: a.fake });

    // Two keys (two projects) of 5 a minute: 10 in all, whichever instance a request reaches.
    const statuses = await burst([a, b], 16);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(6);
    expect(a.fake.stats.requests).toBe(10);
    expect(a.fake.stats.rateLimited).toBe(0);

    // The store's keys carry the prefix as a hash tag: one slot, on one master, as the scripts need.
    const client = new Cluster(
      cluster().ports.map((port) => ({ host: '127.0.0.1', port })),
      { lazyConnect: true },
    );
    try {
      const tagged = clusterPrefix(prefix);
      expect(tagged).toBe(`{${prefix.slice(0, -1)}}:`);
      expect(await client.exists(`${tagged}gen`, `${tagged}ring`, `${tagged}keys`)).toBe(3);
      expect(await client.exists(`${prefix}gen`)).toBe(0);
    } finally {
      client.disconnect();
    }
  });

  it('the response cache, the caller rate limits and the heartbeats of the local failure mode work on it', async () => {
    const s = await start({
      env: {
        REDIS_CLUSTER_NODES: cluster().nodes,
        STATE_PREFIX: `clc${randomUUID().slice(0, 8)}:`,
        CLIENT_RATE_LIMIT: '4',
        STORE_FAILURE_MODE: 'local',
      },
    });
    // The heartbeat script (with its snapshot of every budget) runs in the prefix's slot: a
    // failing one would have switched the instance to serving alone.
    const store = s.gateway.store as FailoverStore;
    await store.heartbeat();
    expect(store.status()).toMatchObject({ mode: 'redis', instances: 1, counted: true });
    const post = () =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'cluster cache' }),
      });
    const first = await post();
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('MISS');
    const second = await post();
    expect(second.headers.get('x-cache')).toBe('HIT');
    // Entries are found on whichever master holds them (a SCAN per master).
    const stats = (await (await adminFetch(s, ADMIN_TOKEN, 'GET', '/internal/cache')).json()) as Json;
    expect(stats).toMatchObject({ backend: 'redis' });
    expect(stats.entries).toBeGreaterThanOrEqual(1);
    // The client's fourth request a minute is its last; the fifth is refused by the limiter's
    // counters in the Cluster.
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(200);
    const refused = await post();
    expect(refused.status).toBe(429);
    expect(store).toBeInstanceOf(FailoverStore);
    expect(store.status().mode).toBe('redis');
  });
});

/** A gateway on `cluster` under steadyLoad, and the master and replica of its slot. */
async function loadedGateway(cluster: OwnCluster, tag: string, mode = 'closed') {
  const prefix = `${tag}${randomUUID().slice(0, 8)}:`;
  const tagged = clusterPrefix(prefix);
  const s = await start({
    keys: 3,
    env: {
      STORE_FAILURE_MODE: mode,
      REDIS_CLUSTER_NODES: cluster.nodes,
      STATE_PREFIX: prefix,
      REDIS_COMMAND_TIMEOUT_MS: '500',
      DEFAULT_RPM: '100000',
      DEFAULT_RPD: '1000000',
    },
  });
  const { master, replicas } = await cluster.servers(`${tagged}gen`);
  const load = steadyLoad(s);
  await new Promise((r) => setTimeout(r, 300));
  return { s, master, replica: replicas[0]!, load, rrKey: `${tagged}rr` };
}

// Planned maintenance: in the default mode (local) too, the moment of the swap is no outage.
describe.runIf(canCluster).each(['closed', 'local'])(
  'Redis Cluster, a manual CLUSTER FAILOVER under load, STORE_FAILURE_MODE=%s',
  (mode) => {
    const cluster = clusterPerSuite(3, 1);

    it('the replica takes over, no request hangs, nothing sent is lost', async () => {
      const { s, master, replica, load, rrKey } = await loadedGateway(cluster(), 'cg', mode);
      let movedAt = 0;
      try {
        // The graceful kind: the master holds its clients until the replica has every write, then
        // the two swap roles (redis.io, CLUSTER FAILOVER without FORCE).
        await withClient(replica, (c) => c.cluster('FAILOVER'));
        await vi.waitFor(
          async () => {
            expect(await cluster().role(replica)).toBe('master');
            expect(await cluster().role(master)).toBe('slave');
          },
          { timeout: 20_000, interval: 100 },
        );
        await writesReach(replica, rrKey);
        movedAt = performance.now();
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        await load.stop();
      }
      const results = load.results;
      expectServedAfter(results, movedAt);
      // The acquires in flight on the old master when the client drops its connection fail (503):
      // the client cannot tell whether the old master ran them, and a resend could count twice.
      // A few moments' worth of the four clients' requests (measured: 6 or 7 of 700 to 1,450).
      const refused = results.filter((r) => r.status !== 200).length;
      expect(refused).toBeLessThanOrEqual(20);
      console.info(
        `manual cluster failover under load (${mode}): ${results.length} requests, ${refused} answered 503, slowest ${slowest(results)} ms`,
      );
      await expectEverySentCounted(s);
    }, 60_000);
  },
);

describe.runIf(canCluster)('Redis Cluster failover (three masters, a replica each)', () => {
  const cluster = clusterPerSuite(3, 1);

  it('the master of the store killed under load: its replica takes over, no request hangs, and the writes it never got are counted again', async () => {
    const { s, master, replica, load, rrKey } = await loadedGateway(cluster(), 'cf');
    const results = load.results;
    let pausedAt = 0;
    let killedAt = 0;
    let promotedAt = 0;
    let movedAt = 0;
    try {
      // The replica falls behind, then the master crashes: what the master booked meanwhile never
      // reaches the replica that replaces it. (The replica is paused and its link cut: a pause
      // alone loses nothing, the stream waits in the replica's socket buffer.)
      pausedAt = performance.now();
      cluster().pauseNode(replica);
      await withClient(master, (c) => c.call('CLIENT', 'KILL', 'TYPE', 'replica'));
      await new Promise((r) => setTimeout(r, 700));
      killedAt = performance.now();
      await cluster().killNode(master);
      cluster().resumeNode(replica);
      await vi.waitFor(async () => expect(await cluster().role(replica)).toBe('master'), {
        timeout: 20_000,
        interval: 100,
      });
      promotedAt = performance.now();
      await writesReach(replica, rrKey);
      movedAt = performance.now();
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      await load.stop();
    }

    // 503 only while the slot had no master.
    expectServedAfter(results, movedAt);
    // The lagging replica slowed nothing: every request answered before the kill succeeded.
    expect(results.filter((r) => r.at + r.ms < killedAt).every((r) => r.status === 200)).toBe(true);
    const lostWindow = results.filter((r) => r.at >= pausedAt && r.at < killedAt && r.status === 200).length;
    expect(lostWindow).toBeGreaterThan(0);
    console.info(
      `cluster failover under load: ${results.length} requests, ${results.filter((r) => r.status === 503).length} ` +
        `answered 503, ${lostWindow} served while the replica lagged; the replica was promoted ` +
        `${Math.round(promotedAt - killedAt)} ms after the kill, the gateway wrote to it ` +
        `${Math.round(movedAt - promotedAt)} ms later, slowest request ${slowest(results)} ms`,
    );
    // The requests the promoted replica never got were added again when the scripts moved to it.
    await expectEverySentCounted(s);
  }, 60_000);
});

// A planned failover is a reconnect of moments: the default mode (local) must not go alone for it,
// and neither mode refuses a request (commands refused unwritten wait for the new master).
describe.runIf(canSentinel).each(['closed', 'local'])('Redis Sentinel, STORE_FAILURE_MODE=%s', (mode) => {
  let sentinel: OwnSentinel;
  beforeAll(async () => {
    sentinel = await startSentinel();
  }, 45_000);
  afterAll(async () => {
    await sentinel?.stop();
  });

  it('a failover under load: no request fails or hangs, no restart', async () => {
    const prefix = `sn${randomUUID().slice(0, 8)}:`;
    const s = await start({
      keys: 3,
      env: {
        STORE_FAILURE_MODE: mode,
        REDIS_SENTINELS: sentinel.sentinels,
        REDIS_SENTINEL_NAME: sentinel.name,
        STATE_PREFIX: prefix,
        REDIS_COMMAND_TIMEOUT_MS: '500',
        DEFAULT_RPM: '100000',
        DEFAULT_RPD: '1000000',
      },
    });
    expect(await sentinel.masterPort()).toBe(sentinel.ports.primary);

    const load = steadyLoad(s);
    const results = load.results;
    let failoverAt = 0;
    let namedAt = 0;
    let movedAt = 0;
    let newMaster = 0;
    try {
      await new Promise((r) => setTimeout(r, 500));
      failoverAt = performance.now();
      newMaster = await sentinel.failover();
      namedAt = performance.now();
      // The old master still takes writes from clients that did not move until the sentinel
      // demotes it.
      await writesReach(newMaster, `${prefix}rr`);
      movedAt = performance.now();
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      await load.stop();
    }

    expect(newMaster).toBe(sentinel.ports.replica);
    expect(await sentinel.role(newMaster)).toBe('master');
    // Served by the new master without a restart, and nothing refused on the way.
    expectServedAfter(results, movedAt);
    const failed = results.filter((r) => r.status !== 200).length;
    expect(failed).toBe(0);
    console.info(
      `sentinel failover under load (${mode}): ${results.length} requests, ${failed} refused, the sentinel named ` +
        `the new master ${Math.round(namedAt - failoverAt)} ms after SENTINEL FAILOVER, the gateway wrote ` +
        `to it ${Math.round(movedAt - namedAt)} ms later, slowest request ${slowest(results)} ms`,
    );

    // Though the old master took writes until the gateway moved (Redis replicates asynchronously):
    // after reconnecting to another server, the gateway adds its last minute again.
    await expectEverySentCounted(s);
    // And the response cache follows the master too.
    const post = () =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'sentinel cache' }),
      });
    expect((await post()).headers.get('x-cache')).toBe('MISS');
    expect((await post()).headers.get('x-cache')).toBe('HIT');
  }, 40_000);
});
