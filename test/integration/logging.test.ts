import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { buildGateway, type Gateway } from '../../src/app/build.ts';
import { poolKeyValues, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * Logging to files (LOG_DIR, rotated by pino-roll) with every secret kept out: client tokens
 * (?key=, headers), pool keys, the admin token. The test plants them and greps the files.
 */

// biome-ignore lint/suspicious/noExplicitAny: log lines are inspected dynamically
type Json = any;

const MODEL = 'gemini-2.5-flash-lite';
const CLIENT_TOKEN = 'client-secret-token-7f3a9c1e5b';
const ADMIN_TOKEN = 'admin-secret-token-2d8e4b6a0c';
const NEW_POOL_KEY = 'AIzaBrandNewPoolKey000000000000000001';

const stack = stackPerTest();
const tempDir = tempDirs('gg-access-log-');
const accessLines = (lines: string[]) =>
  lines.map((l) => JSON.parse(l) as Json).filter((l) => l.msg === 'request');

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function readLogs(dir: string): string {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('');
}

describe('log files', () => {
  it('one JSON line per request in LOG_DIR, and no secret anywhere in them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gg-logs-'));
    const pool = poolKeyValues(2);
    const fake: FakeGemini = await startFakeGemini({
      keys: [...pool, NEW_POOL_KEY].map((apiKey) => ({ apiKey })),
    });
    let gateway: Gateway | undefined;
    cleanups.push(async () => {
      await gateway?.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    });
    gateway = await buildGateway({
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      LOG_DIR: dir,
      LOG_STDOUT: 'false',
      GEMINI_BASE_URL: fake.url,
      GEMINI_API_KEYS: pool.join(','),
      CLIENT_API_KEYS_MAP: `${CLIENT_TOKEN}:webapp`,
      ADMIN_TOKEN,
      GLOBAL_RATE_LIMIT: '0',
      BURST_RATE_LIMIT: '0',
    });
    await gateway.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(gateway.app.server.address() as { port: number }).port}`;
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hello' }] }] });
    const json = { 'content-type': 'application/json' };

    const statuses = [
      // The client token as ?key=, as a header, as Bearer, and in a query parameter nobody redacts by name.
      await fetch(`${url}/v1beta/models?key=${CLIENT_TOKEN}`),
      await fetch(`${url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { ...json, 'x-goog-api-key': CLIENT_TOKEN },
        body,
      }),
      await fetch(`${url}/v1/generate`, {
        method: 'POST',
        headers: { ...json, authorization: `Bearer ${CLIENT_TOKEN}` },
        body: JSON.stringify({ prompt: 'hi' }),
      }),
      await fetch(`${url}/v1beta/models?pageSize=5&secret=${CLIENT_TOKEN}`, {
        headers: { 'x-api-key': CLIENT_TOKEN },
      }),
      // The admin token as Bearer and as X-Admin-Token; a new pool key in an admin body.
      await fetch(`${url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
      await fetch(`${url}/admin/keys`, {
        method: 'POST',
        headers: { ...json, 'x-admin-token': ADMIN_TOKEN },
        body: JSON.stringify({ id: 'fresh', api_key: NEW_POOL_KEY }),
      }),
      // Pool keys where they do not belong: as a client token, in a path, in a wrong admin token.
      await fetch(`${url}/v1beta/models`, { headers: { 'x-goog-api-key': pool[0]! } }),
      await fetch(`${url}/no/such/${pool[1]}/path?key=${NEW_POOL_KEY}`),
      await fetch(`${url}/admin/keys`, { headers: { 'x-admin-token': `${ADMIN_TOKEN}x` } }),
    ].map((r) => r.status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 201, 401, 404, 401]);
    // Upstream answers that name the key are not logged either.
    fake.setKeyState(pool[0]!, 'suspended');
    fake.setKeyState(pool[1]!, 'leaked');
    for (let i = 0; i < 3; i++)
      await fetch(`${url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { ...json, 'x-goog-api-key': CLIENT_TOKEN },
        body,
      });

    await gateway.close();
    gateway = undefined;
    let text = '';
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      text = readLogs(dir);
      if ((text.match(/"msg":"request"/g) ?? []).length >= 12) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const files = readdirSync(dir).filter((f) => f.endsWith('.log'));
    expect(files.length).toBeGreaterThan(0);
    expect(files[0]).toMatch(/^gateway\.\d{4}-\d{2}-\d{2}\.\d+\.log$/);

    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(12);
    for (const r of requests) {
      expect(r).toMatchObject({
        request_id: expect.any(String),
        method: expect.any(String),
        route: expect.any(String),
        status: expect.any(Number),
        duration_ms: expect.any(Number),
      });
    }
    const generated = requests.find((r) => r.route === '/v1beta/models/*' && r.status === 200);
    expect(generated).toMatchObject({ client: 'webapp', key_id: expect.stringMatching(/^env_/) });
    expect(generated.upstream_ms).toEqual(expect.any(Number));
    const app = requests.find((r) => r.route === '/v1/generate');
    expect(app).toMatchObject({
      client: 'webapp',
      key_id: expect.stringMatching(/^env_/),
      upstream_ms: expect.any(Number),
    });
    expect(text).toContain('[REDACTED]');

    for (const secret of [CLIENT_TOKEN, ADMIN_TOKEN, NEW_POOL_KEY, ...pool])
      expect(text).not.toContain(secret);
  });
});

describe('access log line', () => {
  it('masks a ?key= value even when it is no configured secret', async () => {
    const lines: string[] = [];
    const s = await stack({ logLines: lines });
    const stray = 'AIzaSomeoneElsesGoogleKey0000000000001';
    await fetch(`${s.url}/v1beta/models?key=${stray}`);
    await new Promise((r) => setTimeout(r, 50));
    const [line] = accessLines(lines);
    expect(line.url).toBe('/v1beta/models?key=[REDACTED]');
    expect(lines.join('')).not.toContain(stray);
  });

  it('the client IP: the peer, or X-Forwarded-For when the peer is one of TRUSTED_PROXIES', async () => {
    const direct: string[] = [];
    const a = await stack({ logLines: direct });
    await fetch(`${a.url}/health`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    const proxied: string[] = [];
    const b = await stack({ logLines: proxied, env: { TRUSTED_PROXIES: '127.0.0.1' } });
    await fetch(`${b.url}/health`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    await new Promise((r) => setTimeout(r, 50));
    expect(accessLines(direct)[0]).toMatchObject({ ip: '127.0.0.1', method: 'GET', status: 200 });
    expect(accessLines(proxied)[0]).toMatchObject({ ip: '203.0.113.7' });
  });

  it('follows a LOG_LEVEL changed through CONFIG_FILE', async () => {
    const dir = tempDir();
    const file = join(dir, 'config.json');
    writeFileSync(file, '{}');
    const lines: string[] = [];
    const s = await stack({ logLines: lines, env: { CONFIG_FILE: file } });
    await fetch(`${s.url}/health`, { headers: { 'x-request-id': 'before-reload' } });
    writeFileSync(file, '{"LOG_LEVEL": "warn"}');
    expect((await s.gateway.reloader.reloadConfig()).ok).toBe(true);
    await fetch(`${s.url}/health`, { headers: { 'x-request-id': 'after-reload' } });
    await new Promise((r) => setTimeout(r, 50));
    expect(accessLines(lines).map((l) => l.request_id)).toEqual(['before-reload']);
  });
});
