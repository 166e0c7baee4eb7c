/**
 * `npm run bench:saturate -- [--redis] [--pairs 3] [--requests 30000] <main.js A> <main.js B>`
 *
 * Two builds of the gateway (their compiled `dist/main.js`, e.g. one from a `git worktree` of
 * the old commit) measured at saturation, one at a time, alternating A, B, A, B...: 32
 * connections send `--requests` requests as fast as each gateway answers them. Per run it
 * prints the gateway's CPU per request (all its threads, from /proc), the fake's, their ratio
 * (the fake does the same work every time, so gateway/fake corrects for the machine's speed of
 * the moment), redis-server's CPU per request with --redis, and requests per second.
 * An entry may carry Node flags after the script, to compare settings of one build:
 * `npm run bench:saturate -- dist/main.js "dist/main.js --max-semi-space-size=8"`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { freePort } from '../../src/util/free-port.ts';
import {
  BODY,
  cpuMs,
  gatewayEnv,
  hasRedisServer,
  median,
  PATH,
  Servers,
  TOKEN,
  waitFor,
  writeBenchKeys,
} from './common.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: 'boolean', default: false },
    pairs: { type: 'string', default: '3' },
    requests: { type: 'string', default: '30000' },
  },
});
if (positionals.length !== 2) {
  console.error(
    'usage: npm run bench:saturate -- [--redis] [--pairs N] [--requests N] <main.js A> <main.js B>',
  );
  process.exit(2);
}
const REQUESTS = Number(values.requests);
const CONNECTIONS = 32;
const servers = new Servers();
const dir = mkdtempSync(join(tmpdir(), 'gg-saturate-'));

/** `requests` generateContent calls over CONNECTIONS keep-alive connections, as fast as answered. */
async function load(base: string, token: string, requests: number): Promise<void> {
  const pool = new Pool(base, { connections: CONNECTIONS });
  const headers = { 'content-type': 'application/json', 'x-goog-api-key': token };
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (let i = 0; i < requests / CONNECTIONS; i++) {
        const r = await pool.request({ path: PATH, method: 'POST', headers, body: BODY });
        await r.body.dump();
      }
    }),
  );
  await pool.close();
}

async function main(): Promise<void> {
  const node = process.execPath;
  const fakePort = await freePort();
  const fake = servers.start(node, ['scripts/fake-gemini.ts', '--port', String(fakePort)], {});
  const fakeUrl = `http://127.0.0.1:${fakePort}`;
  await waitFor(`${fakeUrl}/v1beta/models?key=x`);
  const keysFile = writeBenchKeys(dir);
  await load(fakeUrl, 'k', 20_000); // the fake's own warm-up: its CPU per request is the yardstick
  let redisPid: number | undefined;
  let redisUrl: string | undefined;
  if (values.redis) {
    if (!hasRedisServer()) throw new Error('redis-server is not installed');
    ({ pid: redisPid, url: redisUrl } = await servers.startRedis());
  }

  const ratios: Record<'A' | 'B', number[]> = { A: [], B: [] };
  for (let pair = 0; pair < Number(values.pairs); pair++) {
    for (const [label, entry] of [
      ['A', positionals[0]!],
      ['B', positionals[1]!],
    ] as const) {
      const port = await freePort();
      // Each run starts on an empty Redis database, like the other build's run.
      const env = gatewayEnv(
        port,
        fakeUrl,
        keysFile,
        redisUrl ? { REDIS_URL: redisUrl, STATE_PREFIX: `sat${pair}${label}:` } : {},
      );
      // An entry may carry Node flags after the script: "dist/main.js --max-semi-space-size=8".
      const [script, ...flags] = entry.split(' ').filter(Boolean);
      const gateway = servers.start(node, [...flags, script!], env);
      const base = `http://127.0.0.1:${port}`;
      await waitFor(`${base}/health`);
      await load(base, TOKEN, 5000); // warm-up
      const pids = [gateway.pid!, fake.pid!, ...(redisPid ? [redisPid] : [])];
      const before = pids.map(cpuMs);
      const t0 = performance.now();
      await load(base, TOKEN, REQUESTS);
      const seconds = (performance.now() - t0) / 1000;
      const [gw, fk, rd] = pids.map((pid, i) => ((cpuMs(pid) - before[i]!) / REQUESTS) * 1000);
      ratios[label].push(gw! / fk!);
      console.log(
        `${label}  gateway ${gw!.toFixed(0)} µs/req  fake ${fk!.toFixed(0)}  gateway/fake ${(gw! / fk!).toFixed(2)}${rd === undefined ? '' : `  redis ${rd.toFixed(0)}`}  ${(REQUESTS / seconds).toFixed(0)} req/s`,
      );
      await servers.stop(gateway.pid!);
    }
  }
  console.log(
    `median gateway/fake: A ${median(ratios.A).toFixed(2)}  B ${median(ratios.B).toFixed(2)}  B/A ${(median(ratios.B) / median(ratios.A)).toFixed(3)}`,
  );
}

try {
  await main();
} finally {
  servers.killAll();
  rmSync(dir, { recursive: true, force: true });
}
