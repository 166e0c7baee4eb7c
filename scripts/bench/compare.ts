/**
 * `npm run bench:compare -- <git-ref> [--rate N] [--rounds N] [--redis]`: CPU per request of the
 * gateway built from <git-ref> (A) against the working tree's build (B).
 *
 * Both gateways run side by side and get the same fixed-rate load at the same time, so whatever
 * else the machine does hits them alike: on a shared 2-core machine, throughput ratios measured
 * one after the other swing by ±0.1 from round to round, while this B/A ratio holds to a few
 * percent. Use it to see whether a change makes the hot path cheaper; `npm run bench` gives the
 * absolute figures.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { freePort } from '../../src/util/free-port.ts';
import {
  BODY,
  cpuMs,
  gatewayEnv,
  median,
  PATH,
  REQUEST_HEADERS,
  Servers,
  waitFor,
  writeBenchKeys,
} from './common.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rate: { type: 'string', default: '1500' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    redis: { type: 'boolean', default: false },
  },
});
const ref = positionals[0];
if (!ref) {
  console.error('usage: npm run bench:compare -- <git-ref> [--rate N] [--rounds N] [--seconds N] [--redis]');
  process.exit(2);
}
const RATE = Number(values.rate);
const ROUNDS = Number(values.rounds);
const MS = Number(values.seconds) * 1000;

const root = process.cwd();
const servers = new Servers();
const dir = mkdtempSync(join(tmpdir(), 'gg-compare-'));
const worktree = join(dir, 'a');

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}`);
}

/** Sends `rate` requests a second to each pool for `ms`, all at once; resolves when all are answered. */
async function drive(pools: Pool[], rate: number, ms: number): Promise<number> {
  const total = Math.round((rate * ms) / 1000);
  let errors = 0;
  let sent = 0;
  const inFlight: Promise<void>[] = [];
  const started = performance.now();
  await new Promise<void>((done) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.round(((performance.now() - started) * rate) / 1000));
      for (; sent < due; sent++) {
        for (const pool of pools) {
          inFlight.push(
            pool.request({ path: PATH, method: 'POST', headers: REQUEST_HEADERS, body: BODY }).then(
              async (r) => {
                await r.body.dump();
                if (r.statusCode !== 200) errors += 1;
              },
              () => {
                errors += 1;
              },
            ),
          );
        }
      }
      if (sent >= total) {
        clearInterval(tick);
        done();
      }
    }, 2);
  });
  await Promise.all(inFlight);
  return errors;
}

async function main(): Promise<void> {
  const node = process.execPath;
  // B: the working tree, as `npm start` runs it. A: <ref>, built the same way in a worktree.
  run('npm', ['run', 'build'], root);
  run('git', ['worktree', 'add', '--detach', worktree, ref], root);
  symlinkSync(join(root, 'node_modules'), join(worktree, 'node_modules'));
  run(node, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], worktree);
  run(node, ['scripts/copy-assets.ts'], worktree);

  const fakePort = await freePort();
  servers.start(node, ['scripts/fake-gemini.ts', '--port', String(fakePort)], {});
  const fakeUrl = `http://127.0.0.1:${fakePort}`;
  await waitFor(`${fakeUrl}/v1beta/models?key=x`);
  const keysFile = writeBenchKeys(dir);

  let redisUrl: string | null = null;
  if (values.redis) redisUrl = (await servers.startRedis()).url;

  const gateways: Array<{ name: string; pid: number; pool: Pool }> = [];
  for (const [name, main] of [
    [`A (${ref})`, join(worktree, 'dist/main.js')],
    ['B (working tree)', resolve(root, 'dist/main.js')],
  ] as const) {
    const port = await freePort();
    const extra: Record<string, string> = redisUrl
      ? { REDIS_URL: redisUrl, STATE_PREFIX: `cmp${gateways.length}:` }
      : {};
    const child = servers.start(node, [main], gatewayEnv(port, fakeUrl, keysFile, extra));
    await waitFor(`http://127.0.0.1:${port}/health`);
    gateways.push({
      name,
      pid: child.pid!,
      pool: new Pool(`http://127.0.0.1:${port}`, { connections: 32, pipelining: 1 }),
    });
  }
  const pools = gateways.map((g) => g.pool);

  console.log(
    `\n${RATE} requests/s to each gateway at once, ${ROUNDS} rounds of ${MS / 1000}s, ${redisUrl ? 'Redis' : 'memory'} store\n`,
  );
  await drive(pools, RATE, 2000); // warm-up: JIT, connection pools
  const ratios: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const before = gateways.map((g) => cpuMs(g.pid));
    const errors = await drive(pools, RATE, MS);
    const count = Math.round((RATE * MS) / 1000);
    const [a, b] = gateways.map((g, i) => ((cpuMs(g.pid) - before[i]!) / count) * 1000) as [number, number];
    ratios.push(b / a);
    console.log(
      `round ${round}: A ${a.toFixed(0)} µs/req   B ${b.toFixed(0)} µs/req   B/A ${(b / a).toFixed(2)}${errors ? `   (${errors} errors)` : ''}`,
    );
  }
  console.log(
    `\nmedian B/A: ${median(ratios).toFixed(2)} (below 1: the working tree spends less CPU per request)`,
  );
  await Promise.all(pools.map((p) => p.close()));
}

try {
  await main();
} finally {
  servers.killAll();
  spawnSync('git', ['worktree', 'remove', '--force', worktree], { cwd: root });
  rmSync(dir, { recursive: true, force: true });
}
