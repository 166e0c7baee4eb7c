/**
 * `npm run bench`: throughput and latency of (a) the fake Gemini directly, (b) a bare Node
 * passthrough proxy (the floor for one Node hop), (c) the gateway with the memory store and
 * (d) with Redis, all in one run on this machine. Ratios are against (b) measured in the same
 * run, so they hold across machines; absolute numbers don't.
 *
 * Each server runs in its own process; the load comes from this process over keep-alive
 * connections. The gateways carry 1,000 configured keys (RSS is reported for that).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 6000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const KEYS = 1000;
const TOKEN = 'bench-client-token';
const BODY = JSON.stringify({
  contents: [{ role: 'user', parts: [{ text: 'Benchmark prompt: say hello.' }] }],
});
const PATH = '/v1beta/models/gemini-2.5-flash-lite:generateContent';
const CLK_TCK = 100;

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'gg-bench-'));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function start(cmd: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function waitFor(url: string, headers: Record<string, string> = {}): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { headers });
      if (r.status < 500) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

/** SIGTERM, then wait for a graceful exit (profiles and logs get written). */
function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** utime+stime of a process in ms, from /proc. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuPerReqUs: number;
  rss?: number;
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
  const fake = start(node, ['scripts/fake-gemini.ts', '--port', String(fakePort)], {});
  const fakeUrl = `http://127.0.0.1:${fakePort}`;
  await waitFor(`${fakeUrl}/v1beta/models?key=x`);

  const keysFile = join(dir, 'keys.json');
  writeFileSync(
    keysFile,
    JSON.stringify({
      keys: Array.from({ length: KEYS }, (_, i) => ({
        id: `key_${i}`,
        api_key: `AIzaBench${String(i).padStart(6, '0')}`,
        limits: {
          requests_per_minute: 1_000_000,
          requests_per_day: 100_000_000,
          tokens_per_minute: 1_000_000_000,
        },
      })),
    }),
  );
  const gatewayEnv = (port: number, extra: Record<string, string>) => ({
    PORT: String(port),
    SERVER_HOST: '127.0.0.1',
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    GEMINI_BASE_URL: fakeUrl,
    API_KEYS_FILE: keysFile,
    CLIENT_API_KEYS_MAP: `${TOKEN}:bench`,
    GLOBAL_RATE_LIMIT: '0',
    BURST_RATE_LIMIT: '0',
    ...extra,
  });
  const auth = { 'x-goog-api-key': TOKEN };
  const results: Result[] = [];

  results.push(await drive('(a) fake Gemini, direct', fakeUrl, [fake.pid!], { 'x-goog-api-key': 'k' }));

  const passPort = await freePort();
  const pass = start(node, ['scripts/bench/passthrough.ts'], { PORT: String(passPort), UPSTREAM: fakeUrl });
  await waitFor(`http://127.0.0.1:${passPort}/v1beta/models`);
  results.push(await drive('(b) bare Node passthrough', `http://127.0.0.1:${passPort}`, [pass.pid!], {}));
  pass.kill();

  const memPort = await freePort();
  const nodeArgs = process.env.GATEWAY_NODE_ARGS ? process.env.GATEWAY_NODE_ARGS.split(' ') : [];
  const mem = start(node, [...nodeArgs, 'dist/main.js'], gatewayEnv(memPort, {}));
  await waitFor(`http://127.0.0.1:${memPort}/health`);
  const memResult = await drive('(c) gateway, memory store', `http://127.0.0.1:${memPort}`, [mem.pid!], auth);
  memResult.rss = rssMb(mem.pid!);
  results.push(memResult);
  await stop(mem);

  const hasRedis =
    process.env.BENCH_SKIP_REDIS !== '1' && spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;
  if (hasRedis) {
    const redisPort = await freePort();
    const redis = start(
      'redis-server',
      ['--port', String(redisPort), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'],
      {},
    );
    await new Promise((r) => setTimeout(r, 300));
    const rPort = await freePort();
    const gw = start(
      node,
      [...nodeArgs, 'dist/main.js'],
      gatewayEnv(rPort, { REDIS_URL: `redis://127.0.0.1:${redisPort}` }),
    );
    await waitFor(`http://127.0.0.1:${rPort}/health`);
    const r = await drive('(d) gateway, Redis store', `http://127.0.0.1:${rPort}`, [gw.pid!], auth);
    r.rss = rssMb(gw.pid!);
    results.push(r);
    await stop(gw);
    redis.kill();
  } else {
    console.warn('!!! redis-server not installed: (d) gateway with Redis SKIPPED');
  }

  const floor = results[1]!.rps;
  console.log(
    `\nnpm run bench — ${CONCURRENCY} connections, ${DURATION_MS / 1000}s per target, ${KEYS} keys configured, Node ${process.version}\n`,
  );
  console.log(
    'target                        req/s   ratio vs (b)   p50 ms   p99 ms   CPU µs/req   RSS MB   errors',
  );
  for (const r of results) {
    console.log(
      `${r.name.padEnd(28)} ${r.rps.toFixed(0).padStart(6)}   ${(r.rps / floor).toFixed(2).padStart(12)}   ${r.p50.toFixed(2).padStart(6)}   ${r.p99.toFixed(2).padStart(6)}   ${r.cpuPerReqUs.toFixed(0).padStart(10)}   ${(r.rss ? r.rss.toFixed(0) : '-').padStart(6)}   ${r.errors}`,
    );
  }
  const mem1 = results.find((r) => r.name.startsWith('(c)'))!;
  const red = results.find((r) => r.name.startsWith('(d)'));
  console.log(
    `\ntargets: memory ratio ${(mem1.rps / floor).toFixed(2)} (≥ 0.70), redis ratio ${red ? (red.rps / floor).toFixed(2) : 'n/a'} (≥ 0.50), RSS ${mem1.rss?.toFixed(0)} MB (< 150)`,
  );
}

try {
  await main();
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
