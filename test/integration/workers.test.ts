import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { freePort } from '../../src/util/free-port.ts';
import { sample } from '../helpers/metrics.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { poolKeyValues, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * WORKERS=2: the real `node src/main.ts` as a primary and two workers on one port, against the
 * fake Gemini. Connections are dealt to the workers in turn, so requests each on a connection of
 * their own reach both.
 */

const MODEL = 'gemini-2.5-flash-lite';
const GENERATE = `/v1beta/models/${MODEL}:generateContent`;
const redisUrl = redisTestUrl();
const children: ChildProcess[] = [];
const fakes: FakeGemini[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(fakes.splice(0).map((f) => f.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Group {
  child: ChildProcess;
  url: string;
  exit: Promise<{ code: number | null; signal: string | null }>;
  /** Every JSON line the group wrote (the primary's and the workers'). */
  lines: () => Array<Record<string, unknown>>;
  output: () => string;
}

async function fake(opts: Parameters<typeof startFakeGemini>[0] = {}): Promise<FakeGemini> {
  const f = await startFakeGemini({ keys: poolKeyValues(3).map((apiKey) => ({ apiKey })), ...opts });
  fakes.push(f);
  return f;
}

/** A temporary DATA_DIR (embedded-mode files), removed after the test. */
function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'gg-workers-data-'));
  dirs.push(d);
  return d;
}

async function startGroup(f: FakeGemini, env: Record<string, string> = {}): Promise<Group> {
  const port = await freePort();
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: process.cwd(),
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      WORKERS: '2',
      PORT: String(port),
      SERVER_HOST: '127.0.0.1',
      GEMINI_BASE_URL: f.url,
      GEMINI_API_KEYS: poolKeyValues(2).join(','),
      CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
      GLOBAL_RATE_LIMIT: '0',
      BURST_RATE_LIMIT: '0',
      VERIFY_KEYS: 'false',
      DATA_DIR: dataDir(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const lines = () =>
    output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const group: Group = { child, url: `http://127.0.0.1:${port}`, exit, lines, output: () => output };
  await vi.waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`the group exited early:\n${output}`);
      expect(serving(group).size, output).toBe(2);
    },
    { timeout: 60_000, interval: 100 },
  );
  return group;
}

/** worker number → pid of the workers the primary said are serving (the latest of each number). */
function serving(g: Group): Map<number, number> {
  const out = new Map<number, number>();
  for (const l of g.lines())
    if (l.role === 'primary' && l.msg === 'worker serving') out.set(l.worker as number, l.pid as number);
  return out;
}

/** One request on a connection of its own (so connections, and requests, go to both workers). */
async function call(
  g: Group,
  path = GENERATE,
  opts: { method?: 'GET' | 'POST'; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string }> {
  const client = new Client(g.url);
  try {
    const method = opts.method ?? 'POST';
    const r = await client.request({
      path,
      method,
      headers: { 'content-type': 'application/json', 'x-goog-api-key': TEST_TOKEN, ...opts.headers },
      body:
        method === 'POST'
          ? JSON.stringify(opts.body ?? { contents: [{ parts: [{ text: randomUUID() }] }] })
          : undefined,
    });
    return { status: r.statusCode, text: await r.body.text() };
  } finally {
    await client.close();
  }
}

/** Waits until both workers wrote an access line for `url` (log lines leave in batches). */
async function expectBothWorkersServed(g: Group, url: string): Promise<void> {
  await vi.waitFor(
    () => {
      const workers = new Set(
        g
          .lines()
          .filter((l) => l.msg === 'request' && String(l.url).startsWith(url))
          .map((l) => l.worker),
      );
      expect(workers).toEqual(new Set([1, 2]));
    },
    { timeout: 5000, interval: 100 },
  );
}

async function metrics(g: Group): Promise<string> {
  const r = await call(g, '/metrics', { method: 'GET' });
  expect(r.status).toBe(200);
  return r.text;
}

describe('WORKERS=2 (embedded state in the primary)', { timeout: 120_000 }, () => {
  it('a burst over both workers admits exactly the limit: zero 429s at the fake with equal limits', async () => {
    const rpm = 5;
    const f = await fake({ limits: { rpm } });
    const g = await startGroup(f, { DEFAULT_RPM: String(rpm), QUEUE_MAX_WAIT_MS: '0' });
    const statuses = (await Promise.all(Array.from({ length: 30 }, () => call(g)))).map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2 * rpm);
    expect(statuses.filter((s) => s === 429)).toHaveLength(30 - 2 * rpm);
    expect(f.stats.rateLimited).toBe(0);
    expect([...f.stats.byKey.values()]).toEqual([rpm, rpm]);
    // Both workers took part (separate stores would have admitted 2 × the limit).
    await expectBothWorkersServed(g, GENERATE);
  });

  it('/metrics shows the whole group, and a keys-file and CONFIG_FILE change reach both workers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-workers-'));
    dirs.push(dir);
    const [k1, k2] = poolKeyValues(2);
    const keysFile = join(dir, 'keys.json');
    const configFile = join(dir, 'config.json');
    writeFileSync(keysFile, JSON.stringify({ keys: [{ id: 'one', api_key: k1 }] }));
    writeFileSync(configFile, JSON.stringify({ CLIENT_RATE_LIMIT: 0 }));
    const f = await fake();
    const g = await startGroup(f, {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: keysFile,
      CONFIG_FILE: configFile,
    });
    for (let i = 0; i < 10; i++) expect((await call(g)).status).toBe(200);
    await expectBothWorkersServed(g, GENERATE);
    let text = await metrics(g);
    // Every answer counted once, whichever worker gave it and whichever worker is scraped.
    expect(sample(text, 'http_requests_total', { route: '/v1beta/models/*', status: '200' })).toBe(10);
    expect(sample(text, 'gateway_upstream_requests_total', { key_id: 'one', outcome: 'success' })).toBe(10);
    expect(sample(text, 'gateway_workers', { state: 'serving' })).toBe(2);
    // The store's view is shown once, not once per worker.
    expect(sample(text, 'gateway_key_state', { key_id: 'one', state: 'available' })).toBe(1);

    // The new keys file replaces key one with key two; the config file sets a client limit.
    writeFileSync(keysFile, JSON.stringify({ keys: [{ id: 'two', api_key: k2 }] }));
    writeFileSync(configFile, JSON.stringify({ CLIENT_RATE_LIMIT: 1000 }));
    await vi.waitFor(
      async () => {
        text = await metrics(g);
        expect(sample(text, 'gateway_config_reloads_total', { source: 'keys_file', result: 'applied' })).toBe(
          2,
        );
        expect(
          sample(text, 'gateway_config_reloads_total', { source: 'config_file', result: 'applied' }),
        ).toBe(2);
      },
      { timeout: 15_000, interval: 200 },
    );
    f.resetStats();
    for (let i = 0; i < 10; i++) expect((await call(g)).status).toBe(200);
    expect([...f.stats.byKey.entries()]).toEqual([[k2, 10]]);
  });

  it('SIGHUP to the primary, and an admin reload on one worker, reach both workers', async () => {
    // The keys file is a symlink to a file in another folder: a change to the target is invisible
    // to the workers' file watchers, so only the signal or the admin API makes them read it.
    const watched = mkdtempSync(join(tmpdir(), 'gg-workers-hup-'));
    const hidden = mkdtempSync(join(tmpdir(), 'gg-workers-hup-target-'));
    dirs.push(watched, hidden);
    const [k1, k2] = poolKeyValues(2);
    const target = join(hidden, 'keys.json');
    writeFileSync(target, JSON.stringify({ keys: [{ id: 'one', api_key: k1 }] }));
    symlinkSync(target, join(watched, 'keys.json'));
    const f = await fake();
    const g = await startGroup(f, {
      GEMINI_API_KEYS: '',
      API_KEYS_FILE: join(watched, 'keys.json'),
      ADMIN_TOKEN: 'admin-token-for-workers-0001',
    });
    const reloads = async (source: string) =>
      sample(await metrics(g), 'gateway_config_reloads_total', { source, result: 'applied' }) ?? 0;

    writeFileSync(target, JSON.stringify({ keys: [{ id: 'two', api_key: k2 }] }));
    g.child.kill('SIGHUP');
    await vi.waitFor(async () => expect(await reloads('signal')).toBe(2), { timeout: 15_000, interval: 200 });

    writeFileSync(target, JSON.stringify({ keys: [{ id: 'one', api_key: k1 }] }));
    const admin = await call(g, '/admin/reload', {
      body: {},
      headers: { authorization: 'Bearer admin-token-for-workers-0001' },
    });
    expect(admin.status, admin.text).toBe(200);
    await vi.waitFor(async () => expect(await reloads('admin')).toBe(2), { timeout: 15_000, interval: 200 });
    f.resetStats();
    for (let i = 0; i < 6; i++) expect((await call(g)).status).toBe(200);
    expect([...f.stats.byKey.entries()]).toEqual([[k1, 6]]);
  });

  it('a worker that dies is replaced, and the service goes on', async () => {
    const f = await fake();
    const g = await startGroup(f);
    const before = serving(g);
    const victim = before.get(1)!;
    process.kill(victim, 'SIGKILL');
    await vi.waitFor(
      () => {
        const now = serving(g);
        expect(now.get(1)).toBeDefined();
        expect(now.get(1)).not.toBe(victim);
      },
      { timeout: 60_000, interval: 100 },
    );
    expect(g.lines().some((l) => l.msg === 'worker died; starting a new one' && l.pid === victim)).toBe(true);
    const statuses = (await Promise.all(Array.from({ length: 10 }, () => call(g)))).map((r) => r.status);
    expect(statuses).toEqual(Array(10).fill(200));
    const text = await metrics(g);
    expect(sample(text, 'gateway_worker_restarts_total')).toBe(1);
    expect(sample(text, 'gateway_workers', { state: 'serving' })).toBe(2);
  });

  it('a primary that is killed takes its workers with it (none outlives it, streams in flight or not)', async () => {
    const f = await fake({ streamChunks: 8, chunkDelayMs: 300 });
    const g = await startGroup(f);
    const pids = [...serving(g).values()];
    const streams = await Promise.all([openStream(g), openStream(g)]);
    // Answers just given: their log lines are still in the workers' buffers when the primary goes.
    await Promise.all(Array.from({ length: 6 }, () => call(g)));
    g.child.kill('SIGKILL');
    for (const s of streams) expect((await s.rest).complete).toBe(false);
    await vi.waitFor(() => expect(pids.filter(alive)).toEqual([]), { timeout: 15_000, interval: 200 });
  });

  it('SIGTERM to the primary: slow streams on both workers arrive whole, then exit 0', async () => {
    const f = await fake({ streamChunks: 5, chunkDelayMs: 300 });
    const g = await startGroup(f, { SHUTDOWN_TIMEOUT_MS: '15000' });
    const streams = await Promise.all([openStream(g), openStream(g)]);
    for (const s of streams) expect(s.first).toContain('data: ');
    g.child.kill('SIGTERM');
    const results = await Promise.all(streams.map((s) => s.rest));
    for (const { text, complete } of results) {
      expect(complete).toBe(true);
      expect(text.match(/^data: /gm)?.length).toBe(5);
      expect(text).toContain('"finishReason"');
      expect(text).not.toContain('"error"');
    }
    const { code } = await g.exit;
    expect(code, g.output()).toBe(0);
    // One stream per worker: both drained.
    await expectBothWorkersServed(g, `/v1beta/models/${MODEL}:streamGenerateContent`);
    expect(g.lines().filter((l) => l.msg === 'stopped' && l.worker !== undefined)).toHaveLength(2);
  });
});

describe('WORKERS: refusals', { timeout: 120_000 }, () => {
  const run = async (env: Record<string, string>) => {
    const child = spawn(process.execPath, ['src/main.ts'], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        PORT: String(await freePort()),
        SERVER_HOST: '127.0.0.1',
        CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
        VERIFY_KEYS: 'false',
        DATA_DIR: dataDir(),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (d) => {
      output += d;
    });
    child.stderr!.on('data', (d) => {
      output += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    return { code, output };
  };

  it('a bad WORKERS value stops start-up with exit 2 and says why', async () => {
    const r = await run({ WORKERS: 'many', GEMINI_API_KEYS: poolKeyValues(1).join(',') });
    expect(r.code).toBe(2);
    expect(r.output).toContain('WORKERS');
  });

  it('a configuration every worker refuses stops the group with exit 2 (no restart loop)', async () => {
    const r = await run({ WORKERS: '2', GEMINI_API_KEYS: '' });
    expect(r.code).toBe(2);
    expect(r.output).toContain('no pool keys');
    expect(r.output).toContain('a worker refused the configuration');
    expect(r.output).not.toContain('starting a new one');
  });
});

describe.skipIf(!redisUrl)('WORKERS=2 with Redis', { timeout: 120_000 }, () => {
  it('a burst over both workers admits exactly the limit', async () => {
    const rpm = 4;
    const f = await fake({ limits: { rpm } });
    const g = await startGroup(f, {
      REDIS_URL: redisUrl!,
      STATE_PREFIX: `workers:${randomUUID()}:`,
      DEFAULT_RPM: String(rpm),
      QUEUE_MAX_WAIT_MS: '0',
    });
    const statuses = (await Promise.all(Array.from({ length: 24 }, () => call(g)))).map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(2 * rpm);
    expect(f.stats.rateLimited).toBe(0);
    await expectBothWorkersServed(g, GENERATE);
    expect((await call(g, '/health/detailed', { method: 'GET' })).text).toContain('"redis"');
  });
});
if (!redisUrl) warnSkipped('WORKERS=2 with Redis');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A slow SSE stream on a connection of its own: its first chunk, and the rest when it ends. */
async function openStream(g: Group) {
  const client = new Client(g.url);
  const r = await client.request({
    path: `/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`,
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-goog-api-key': TEST_TOKEN },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'a long story' }] }] }),
  });
  expect(r.statusCode).toBe(200);
  // Streams tell nginx (and proxies that honour it) not to buffer them.
  expect(r.headers['x-accel-buffering']).toBe('no');
  const chunks = r.body[Symbol.asyncIterator]();
  const first = await chunks.next();
  let text = Buffer.from(first.value as Buffer).toString('utf8');
  const rest = (async () => {
    try {
      for (let c = await chunks.next(); !c.done; c = await chunks.next())
        text += Buffer.from(c.value).toString();
      return { text, complete: true };
    } catch {
      return { text, complete: false };
    } finally {
      await client.close();
    }
  })();
  return { first: text, rest };
}
