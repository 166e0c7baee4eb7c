/**
 * `npm run bench`: throughput and latency of (a) the fake Gemini directly, (b) a bare Node
 * passthrough proxy (the floor for one Node hop), (c) the gateway with the memory store and
 * (d) with Redis, all in one run on this machine. Ratios are against (b) measured in the same
 * run, so they hold across machines; absolute numbers don't.
 *
 * Each server runs in its own process; the load comes from this process over keep-alive
 * connections. The gateways carry 1,000 configured keys (RSS is reported for that).
 * (e) is (c) with WORKERS=2: a primary and two workers on one port (CPU and RSS are the whole
 * group's); on a 2-core machine the load generator and the fake share the same two cores.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort } from '../src/util/free-port.ts';
import {
  BODY,
  cpuMs,
  gatewayEnv,
  hasRedisServer,
  KEYS,
  median,
  nodeArgs,
  PATH,
  peakRssMb,
  rssMb,
  Servers,
  TOKEN,
  waitFor,
  writeBenchKeys,
} from './bench/common.ts';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 4000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

const servers = new Servers();
const dir = mkdtempSync(join(tmpdir(), 'gg-bench-'));

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuPerReqUs: number;
}

async function drive(
  name: string,
  base: string,
  pids: number[],
  headers: Record<string, string>,
): Promise<Result> {
  const pool = new Pool(base, { connections: CONCURRENCY, pipelining: 1, keepAliveTimeout: 60_000 });
  const reqHeaders = { 'content-type': 'application/json', ...headers };
  const run = async (ms: number, latencies: number[] | null) => {
    let errors = 0;
    let count = 0;
    const until = performance.now() + ms;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (performance.now() < until) {
          const t = performance.now();
          const r = await pool.request({ path: PATH, method: 'POST', headers: reqHeaders, body: BODY });
          await r.body.dump();
          if (r.statusCode !== 200) errors += 1;
          count += 1;
          latencies?.push(performance.now() - t);
        }
      }),
    );
    return { errors, count };
  };
  await run(WARMUP_MS, null);
  const latencies: number[] = [];
  const cpuBefore = pids.map(cpuMs);
  const t0 = performance.now();
  const { errors, count } = await run(DURATION_MS, latencies);
  const elapsed = performance.now() - t0;
  const cpuUsed = pids.map(cpuMs).reduce((s, v, i) => s + v - cpuBefore[i]!, 0);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))]!;
  return {
    name,
    rps: (count / elapsed) * 1000,
    p50: pct(50),
    p99: pct(99),
    errors,
    cpuPerReqUs: (cpuUsed / count) * 1000,
  };
}

async function main(): Promise<void> {
  const node = process.execPath;
  // The gateways run what `npm start` runs: the compiled build.
  if (spawnSync('npm', ['run', 'build'], { stdio: 'inherit' }).status !== 0) throw new Error('build failed');
  const fakePort = await freePort();
  const fake = servers.start(node, ['scripts/fake-gemini.ts', '--port', String(fakePort)], {});
  const fakeUrl = `http://127.0.0.1:${fakePort}`;
  await waitFor(`${fakeUrl}/v1beta/models?key=x`);

  const keysFile = writeBenchKeys(dir);
  const env = (port: number, extra: Record<string, string> = {}) =>
    gatewayEnv(port, fakeUrl, keysFile, extra);
  const auth = { 'x-goog-api-key': TOKEN };

  // Every server runs for the whole benchmark; the targets are driven in interleaved rounds so
  // that background noise hits each of them alike. Reported: the median round.
  const targets: Array<{
    name: string;
    base: string;
    pid: number;
    headers: Record<string, string>;
    gateway: boolean;
    /** A WORKERS group: CPU and memory are its primary's and its workers'. */
    group?: boolean;
  }> = [
    {
      name: '(a) fake Gemini, direct',
      base: fakeUrl,
      pid: fake.pid!,
      headers: { 'x-goog-api-key': 'k' },
      gateway: false,
    },
  ];
  const passPort = await freePort();
  const pass = servers.start(node, [...nodeArgs('PASSTHROUGH_NODE_ARGS'), 'scripts/bench/passthrough.ts'], {
    PORT: String(passPort),
    UPSTREAM: fakeUrl,
  });
  await waitFor(`http://127.0.0.1:${passPort}/v1beta/models`);
  targets.push({
    name: '(b) bare Node passthrough',
    base: `http://127.0.0.1:${passPort}`,
    pid: pass.pid!,
    headers: {},
    gateway: false,
  });

  const memPort = await freePort();
  const mem = servers.start(node, [...nodeArgs('GATEWAY_NODE_ARGS'), 'dist/main.js'], env(memPort));
  await waitFor(`http://127.0.0.1:${memPort}/health`);
  targets.push({
    name: '(c) gateway, memory store',
    base: `http://127.0.0.1:${memPort}`,
    pid: mem.pid!,
    headers: auth,
    gateway: true,
  });

  const hasRedis = process.env.BENCH_SKIP_REDIS !== '1' && hasRedisServer();
  let redisPid: number | undefined;
  if (hasRedis) {
    const redis = await servers.startRedis();
    redisPid = redis.pid;
    const rPort = await freePort();
    const gw = servers.start(
      node,
      [...nodeArgs('GATEWAY_REDIS_NODE_ARGS'), 'dist/main.js'],
      env(rPort, { REDIS_URL: redis.url }),
    );
    await waitFor(`http://127.0.0.1:${rPort}/health`);
    targets.push({
      name: '(d) gateway, Redis store',
      base: `http://127.0.0.1:${rPort}`,
      pid: gw.pid!,
      headers: auth,
      gateway: true,
    });
  } else {
    console.warn('!!! redis-server not installed: (d) gateway with Redis SKIPPED');
  }
  const wPort = await freePort();
  const group = servers.start(
    node,
    [...nodeArgs('GATEWAY_NODE_ARGS'), 'dist/main.js'],
    env(wPort, { WORKERS: '2' }),
  );
  await waitForWorkers(`http://127.0.0.1:${wPort}`, 2);
  targets.push({
    name: '(e) gateway, memory, WORKERS=2',
    base: `http://127.0.0.1:${wPort}`,
    pid: group.pid!,
    headers: auth,
    gateway: true,
    group: true,
  });
  const pidsOf = (t: (typeof targets)[number]) => (t.group ? groupPids(t.pid) : [t.pid]);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const idleRss = new Map(targets.filter((t) => t.gateway).map((t) => [t.name, sum(pidsOf(t).map(rssMb))]));

  const rounds: Result[][] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const results: Result[] = [];
    for (const t of targets) {
      const pids = t.name.startsWith('(d)') && redisPid ? [t.pid, redisPid] : pidsOf(t);
      results.push(await drive(t.name, t.base, pids, t.headers));
    }
    rounds.push(results);
    const floor = results[1]!.rps;
    console.log(
      `round ${round + 1}: ${results.map((r) => `${r.name.slice(0, 3)} ${(r.rps / floor).toFixed(2)}`).join('  ')}`,
    );
  }
  const ratios = targets.map((_, i) => median(rounds.map((r) => r[i]!.rps / r[1]!.rps)));

  console.log(
    `\nnpm run bench — ${CONCURRENCY} connections, ${ROUNDS} interleaved rounds of ${DURATION_MS / 1000}s per target, ${KEYS} keys configured, Node ${process.version}\n`,
  );
  console.log(
    'target                        req/s   ratio vs (b)   p50 ms   p99 ms   CPU µs/req   RSS MB idle/peak',
  );
  targets.forEach((t, i) => {
    const r = (k: keyof Result) => median(rounds.map((round) => round[i]![k] as number));
    const rss = t.gateway
      ? `${idleRss.get(t.name)!.toFixed(0)} / ${sum(pidsOf(t).map(peakRssMb)).toFixed(0)}`
      : '-';
    console.log(
      `${t.name.padEnd(28)} ${r('rps').toFixed(0).padStart(6)}   ${ratios[i]!.toFixed(2).padStart(12)}   ${r('p50').toFixed(2).padStart(6)}   ${r('p99').toFixed(2).padStart(6)}   ${r('cpuPerReqUs').toFixed(0).padStart(10)}   ${rss.padStart(16)}`,
    );
  });
  const errors = rounds.flat().reduce((s, r) => s + r.errors, 0);
  console.log(`\nerrors (non-200 answers): ${errors}`);
  // The targets (README, "Benchmark"): throughput ratios from issue 15 (medians of the rounds),
  // idle RSS with 1,000 keys from the first benchmark.
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT MET');
  const rss = idleRss.get(targets[2]!.name)!;
  console.log(
    `targets: memory ratio ${ratios[2]!.toFixed(2)} (>= 0.80: ${verdict(ratios[2]! >= 0.8)}), redis ratio ${hasRedis ? `${ratios[3]!.toFixed(2)} (>= 0.55: ${verdict(ratios[3]! >= 0.55)})` : 'n/a'}, RSS with ${KEYS} keys ${rss.toFixed(0)} MB idle (< 150: ${verdict(rss < 150)})`,
  );
  const c = targets.findIndex((t) => t.name.startsWith('(c)'));
  const e = targets.findIndex((t) => t.name.startsWith('(e)'));
  const speedup = median(rounds.map((r) => r[e]!.rps / r[c]!.rps));
  console.log(
    `workers: WORKERS=2 / WORKERS=1 throughput ${speedup.toFixed(2)} (median of rounds; this machine has ${availableParallelism()} cores, shared with the load generator and the fake)`,
  );
  for (const t of targets.slice(1)) await servers.stop(t.pid);
}

/** A WORKERS group's processes: the primary and its children. */
function groupPids(primary: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    /* gone */
  }
  return [primary, ...children];
}

/** Waits until a WORKERS group has `n` workers serving (its gateway_workers metric). */
async function waitForWorkers(base: string, n: number): Promise<void> {
  await waitFor(`${base}/health`);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const text = await fetch(`${base}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    if (text.includes(`gateway_workers{state="serving"} ${n}`)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${base}: ${n} workers did not come up`);
}

try {
  await main();
} finally {
  servers.killAll();
  rmSync(dir, { recursive: true, force: true });
}
