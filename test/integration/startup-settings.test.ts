import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { buildGateway } from '../../src/app/build.ts';
import { freePort } from '../../src/util/free-port.ts';
import { has } from '../helpers/global-setup.ts';
import { poolKeyValues, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * Settings the process reads at start: SERVER_PORT as an alias of PORT, a Redis URL made of
 * REDIS_HOST/PORT/DB/PASSWORD, and every configured secret kept out of the log files.
 */

// biome-ignore lint/suspicious/noExplicitAny: log lines are inspected dynamically
type Json = any;

const MODEL = 'gemini-2.5-flash-lite';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gg-startup-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function fake(): Promise<FakeGemini> {
  const f = await startFakeGemini({ keys: poolKeyValues(2).map((apiKey) => ({ apiKey })) });
  cleanups.push(() => f.close());
  return f;
}

const accessLines = (lines: string[]) =>
  lines.map((l) => JSON.parse(l) as Json).filter((l) => l.msg === 'request');

/** Waits until the log files of LOG_DIR hold `n` access lines; returns their whole text. */
async function logText(dir: string, n: number): Promise<string> {
  let text = '';
  for (const until = Date.now() + 5000; Date.now() < until; ) {
    text = readdirSync(dir)
      .filter((f) => f.endsWith('.log'))
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('');
    if ((text.match(/"msg":"request"/g) ?? []).length >= n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return text;
}

/** A private redis-server that requires a password (the shared test one has none). */
async function passwordRedis(password: string): Promise<number> {
  const port = await freePort();
  const dir = tempDir();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  cleanups.push(() => {
    child.kill('SIGKILL');
  });
  const probe = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => {}); // refused until the server listens
  for (const until = Date.now() + 10_000; ; ) {
    try {
      await probe.connect();
      await probe.config('SET', 'requirepass', password);
      break;
    } catch (err) {
      if (Date.now() > until) throw err;
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  probe.disconnect();
  return port;
}

/** A gateway built in-process that logs only to files in `dir`, listening on a free port; closed once. */
async function loggedGateway(fakeUrl: string, dir: string, env: Record<string, string>) {
  const gateway = await buildGateway({
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    LOG_DIR: dir,
    LOG_STDOUT: 'false',
    GEMINI_BASE_URL: fakeUrl,
    GEMINI_API_KEYS: poolKeyValues(2).join(','),
    CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
    ...env,
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= gateway.close();
    return closing;
  };
  cleanups.push(close);
  await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  return { url: `http://127.0.0.1:${(gateway.app.server.address() as { port: number }).port}`, close };
}

describe('configuration of the process', () => {
  it('SERVER_PORT is an alias of PORT', async () => {
    const f = await fake();
    const port = await freePort();
    const child = spawn(process.execPath, ['src/main.ts'], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        LOG_LEVEL: 'silent',
        SERVER_PORT: String(port),
        SERVER_HOST: '127.0.0.1',
        GEMINI_BASE_URL: f.url,
        GEMINI_API_KEYS: poolKeyValues(2).join(','),
        CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
      },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    let status = 0;
    for (const until = Date.now() + 20_000; status !== 200 && Date.now() < until; ) {
      if (child.exitCode !== null) break;
      status = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });

  it.skipIf(!has('redis-server'))(
    'REDIS_HOST, REDIS_PORT, REDIS_DB and REDIS_PASSWORD make one Redis URL; the password stays out of the logs',
    async () => {
      const password = 'redis-pass-word-4b9d7e1f';
      const port = await passwordRedis(password);
      const f = await fake();
      const dir = tempDir();
      const prefix = 'startup-redis-host:';
      const gateway = await loggedGateway(f.url, dir, {
        REDIS_HOST: '127.0.0.1',
        REDIS_PORT: String(port),
        REDIS_DB: '5',
        REDIS_PASSWORD: password,
        STATE_PREFIX: prefix,
      });
      const url = gateway.url;
      const res = await fetch(`${url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
      });
      expect(res.status).toBe(200);
      expect((await fetch(`${url}/no/such/${password}`)).status).toBe(404);

      // The gateway's state is in database 5 of that server, not in database 0.
      const client = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true });
      await client.connect();
      try {
        expect((await client.keys(`${prefix}*`)).length).toBe(0);
        await client.select(5);
        expect((await client.keys(`${prefix}*`)).length).toBeGreaterThan(0);
      } finally {
        client.disconnect();
      }

      await gateway.close();
      const text = await logText(dir, 2);
      expect(accessLines(text.trim().split('\n'))).toHaveLength(2);
      expect(text).not.toContain(password);
    },
  );

  it.skipIf(!has('redis-server'))(
    'every configured secret is scrubbed from the logs, wherever it appears (REDIS_URL password, admin and provider tokens)',
    async () => {
      const redisPassword = 'url-redis-pass-8c2f6a0d';
      const port = await passwordRedis(redisPassword);
      const f = await fake();
      const dir = tempDir();
      const secrets = {
        ADMIN_TOKEN: 'admin-token-secret-5e1c9b3a',
        METRICS_TOKEN: 'metrics-token-secret-0a7d2f4e',
        BACKEND_SERVICE_TOKEN: 'backend-token-secret-6b8e1c3d',
        OPENAI_API_KEY: 'sk-openai-secret-9f4a2b7c',
        STABILITY_API_KEY: 'sk-stability-secret-3d5e7f9a',
      };
      const gateway = await loggedGateway(f.url, dir, {
        REDIS_URL: `redis://:${redisPassword}@127.0.0.1:${port}/0`,
        STATE_PREFIX: 'startup-scrub:',
        GLOBAL_RATE_LIMIT: '0',
        BURST_RATE_LIMIT: '0',
        ...secrets,
      });
      const url = gateway.url;
      const all = [redisPassword, ...Object.values(secrets)];
      for (const s of all) expect((await fetch(`${url}/no/such/${s}`)).status).toBe(404);
      await gateway.close();
      const text = await logText(dir, all.length);
      expect(accessLines(text.trim().split('\n'))).toHaveLength(all.length);
      for (const s of all) expect(text).not.toContain(s);
    },
  );
});
