/**
 * `npm run bench:script -- [--batch 12] [--acquires 40000]`: redis-server's CPU per acquire of
 * the acquire script alone, in batches of --batch acquires over 1,000 single-key projects (the
 * benchmark's pool), on a redis-server of its own. Each batch is one script call; the simulated
 * clock moves 1 ms per batch, so each project meets a new second every dozen or so acquires.
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RedisStore } from '../../src/store/redis.ts';
import { hasRedisServer, Servers } from './common.ts';

const { values } = parseArgs({
  options: { batch: { type: 'string', default: '12' }, acquires: { type: 'string', default: '40000' } },
});
const BATCH = Number(values.batch);
const ACQUIRES = Number(values.acquires);
if (!hasRedisServer()) throw new Error('redis-server is not installed');

const servers = new Servers();
try {
  const { url } = await servers.startRedis();
  const admin = new Redis(url);
  // The simulated clock drives the windows (Redis's own clock would not move 1 ms per batch).
  const store = RedisStore.connect(url, 'bench:', {}, { instanceClock: true });
  await store.syncKeys(
    Array.from({ length: 1000 }, (_, i) => ({
      id: `key_${i}`,
      project: `key_${i}`,
      models: [],
      enabled: true,
      rpm: 1_000_000,
      rpd: 100_000_000,
      tpm: 1_000_000_000,
      modelLimits: {},
    })),
  );
  const cpuSeconds = async () => {
    const info = await admin.info('cpu');
    return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
  };
  const t0 = Date.now();
  const run = async (acquires: number) => {
    for (let i = 0; i < acquires / BATCH; i++) {
      const now = t0 + i;
      await Promise.all(
        Array.from({ length: BATCH }, () =>
          store.acquire({
            model: 'gemini-2.5-flash-lite',
            estimatedTokens: 7,
            nowMs: now,
            day: '2026-11-25',
            nextDayMs: t0 + 86_400_000,
            exclude: [],
            circuitProbeLeaseMs: 30_000,
          }),
        ),
      );
    }
  };
  await run(5000); // warm-up
  const before = await cpuSeconds();
  await run(ACQUIRES);
  const perAcquire = (((await cpuSeconds()) - before) / ACQUIRES) * 1e6;
  console.log(`batches of ${BATCH}: redis-server CPU ${perAcquire.toFixed(1)} µs per acquire`);
  await store.close();
  admin.disconnect();
} finally {
  servers.killAll();
}
