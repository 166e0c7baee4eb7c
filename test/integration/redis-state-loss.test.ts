import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/util/free-port.ts';
import { has } from '../helpers/global-setup.ts';
import { warnSkipped } from '../helpers/redis.ts';
import { generateText, poolKeyValues, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * Redis restarted empty under load: every instance re-seeds what it spent (its journal), so no
 * (project, model) budget is spent twice across the loss. The fake counts quotas per project and
 * model as Google does and answers 429 past them: it must never have to.
 */
const LITE = 'gemini-2.5-flash-lite';
const start = stackPerTest();
const tempDir = tempDirs('gg-state-loss-');

/** A redis-server on a fixed port that the test can kill and start again, empty, on that port. */
function redisOn(port: number): { proc: ChildProcess; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gg-loss-redis-'));
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  return { proc, dir };
}

async function waitForRedis(url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
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
        if (Date.now() > deadline) throw new Error('redis-server did not start');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    client.disconnect();
  }
}

async function kill(server: { proc: ChildProcess; dir: string }): Promise<void> {
  if (server.proc.exitCode === null && server.proc.signalCode === null) {
    const exited = new Promise((r) => server.proc.once('exit', r));
    server.proc.kill('SIGKILL');
    await exited;
  }
  rmSync(server.dir, { recursive: true, force: true });
}

const servers: Array<{ proc: ChildProcess; dir: string }> = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map(kill));
});

const hasRedis = has('redis-server');
if (!hasRedis) warnSkipped('Redis restarted empty under load');

describe.runIf(hasRedis)('Redis restarted empty under load', () => {
  it('two instances overstep no (project, model) limit across the restart', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    servers.push(redisOn(port));
    await waitForRedis(url);

    const values = poolKeyValues(4);
    const projects = ['proj-a', 'proj-a', 'proj-b', 'proj-b'];
    const file = join(tempDir(), 'keys.json');
    writeFileSync(
      file,
      JSON.stringify({
        defaults: { model_limits: { [LITE]: { requests_per_minute: 6 } } },
        keys: values.map((api_key, i) => ({ id: `k${i}`, api_key, project: projects[i] })),
      }),
    );
    const [a, b] = await sharedRedisPair(start, url, {
      // closed: until each gateway has reconnected it answers 503 (the local failure mode, where
      // each serves its share meanwhile: redis-failover.test.ts).
      env: { API_KEYS_FILE: file, GEMINI_API_KEYS: '', QUEUE_MAX_WAIT_MS: '0', STORE_FAILURE_MODE: 'closed' },
      fake: {
        keys: values.map((apiKey, i) => ({ apiKey, project: projects[i] })),
        modelLimits: { [LITE]: { rpm: 6 } },
      },
    });
    const statuses: number[] = [];
    /** Why each refusal was refused, for the failure message. */
    const refusals: string[] = [];
    const ask = async (stack: typeof a, text: string) => {
      const r = await generateText(stack, text);
      const body = await r.text();
      if (r.status !== 200) refusals.push(`${r.status} ${body.slice(0, 160)}`);
      return r.status;
    };
    const send = async (n: number) => {
      for (let i = 0; i < n; i++) statuses.push(await ask(i % 2 ? b : a, `q${i}`));
    };

    await send(8);
    expect(statuses.filter((s) => s === 200)).toHaveLength(8);

    // Redis dies and comes back empty on the same address.
    await kill(servers.pop()!);
    servers.push(redisOn(port));
    await waitForRedis(url);
    // Until each gateway has reconnected it answers 503 (no key is used without its budget check).
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const ra = await ask(a, 'probe a');
      const rb = await ask(b, 'probe b');
      statuses.push(ra, rb);
      if (ra !== 503 && rb !== 503) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await send(10);

    // Two projects x 6 flash-lite requests a minute: 12 in all, before and after the loss.
    expect(
      statuses.filter((s) => s === 200),
      refusals.join('\n'),
    ).toHaveLength(12);
    expect(statuses.every((s) => s === 200 || s === 429 || s === 503)).toBe(true);
    expect(a.fake.stats.rateLimited).toBe(0);
    expect(a.fake.stats.byStatus.get(429) ?? 0).toBe(0);
  });
});
