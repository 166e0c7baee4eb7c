import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { tokenDigest } from '../../src/clients/client.ts';
import { parseEnv } from '../../src/config/env.ts';
import { adminFetch, type Json } from '../helpers/admin.ts';
import { type Stack, type StackOptions, stackPerTest, startStack, TEST_TOKEN } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * The client registry end to end (embedded mode): admin-made clients with their own budgets and
 * models, CLIENTS_FILE hot reload, tokens kept out of logs and answers, a restart that keeps the
 * clients, and per-IP limits that apply to requests without a valid token only.
 */

const ADMIN = 'admin-token-for-client-tests';
const tempDir = tempDirs('gg-clients-');
const stack = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });
/** Every stack of this file keeps its embedded data in a directory of its own (never ./data). */
const withData = (opts: StackOptions = {}) => stack({ ...opts, env: { DATA_DIR: tempDir(), ...opts.env } });

const admin = (s: Stack, method: string, path: string, body?: unknown) =>
  adminFetch(s, ADMIN, method, path, body);

async function createClient(s: Stack, body: Record<string, unknown>): Promise<string> {
  const res = await admin(s, 'POST', '/admin/clients', body);
  expect(res.status).toBe(201);
  expect(res.headers.get('cache-control')).toBe('no-store');
  const json = (await res.json()) as Json;
  expect(json.client.name).toBe(body.name);
  expect(typeof json.token).toBe('string');
  return json.token as string;
}

function native(s: Stack, token: string, model = 'gemini-2.5-flash-lite'): Promise<Response> {
  return fetch(`${s.url}/v1beta/models/${model}:generateContent`, {
    method: 'POST',
    headers: { 'x-goog-api-key': token, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
  });
}

function chat(s: Stack, token: string, model = 'gemini-2.5-flash-lite'): Promise<Response> {
  return fetch(`${s.url}/v1beta/openai/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
}

/** Fixed windows: start a test early in one, so its requests all fall into the same window. */
async function freshWindow(windowMs: number, needMs: number): Promise<void> {
  const into = Date.now() % windowMs;
  if (into > windowMs - needMs) await new Promise((r) => setTimeout(r, windowMs - into + 20));
}

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

describe("a client's own budget", () => {
  it('2 requests per minute: the third call is a 429 of the client, in each route’s shape, and nothing goes upstream', async () => {
    const s = await withData();
    const token = await createClient(s, { name: 'small-app', limits: { requests_per_minute: 2 } });
    await freshWindow(60_000, 8_000);
    expect((await native(s, token)).status).toBe(200);
    expect((await native(s, token)).status).toBe(200);
    const upstream = s.fake.stats.requests;
    expect(upstream).toBe(2);

    // Native route, through the official SDK: Google's error shape, RESOURCE_EXHAUSTED.
    const ai = new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: s.url } });
    const err = await ai.models.generateContent({ model: 'gemini-2.5-flash-lite', contents: 'hi' }).then(
      () => null,
      (e: unknown) => e as { status?: number; message: string },
    );
    expect(err?.status).toBe(429);
    expect(err?.message).toMatch(/client \\?"small-app\\?" is over its own budget/);

    const third = await native(s, token);
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(third.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    const google = (await third.json()) as Json;
    expect(google.error.status).toBe('RESOURCE_EXHAUSTED');
    expect(google.error.message).toMatch(/requests_per_minute 2/);
    expect(google.error.message).toMatch(/client's limit, not the key pool's/);

    // OpenAI route: OpenAI's shape; the SDK raises its RateLimitError.
    const openai = new OpenAI({ apiKey: token, baseURL: `${s.url}/v1beta/openai`, maxRetries: 0 });
    const oerr = await openai.chat.completions
      .create({ model: 'gemini-2.5-flash-lite', messages: [{ role: 'user', content: 'hi' }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(oerr).toBeInstanceOf(OpenAI.RateLimitError);
    expect((oerr as InstanceType<typeof OpenAI.RateLimitError>).message).toContain("not the key pool's");

    // Elsewhere: problem+json that names the client's budget.
    const ops = await fetch(`${s.url}/v1/text_processing/operations`, { headers: { 'x-api-key': token } });
    expect(ops.status).toBe(429);
    expect(ops.headers.get('content-type')).toContain('application/problem+json');
    expect((await ops.json()) as Json).toMatchObject({ status: 429, budget: 'client', client: 'small-app' });

    expect(s.fake.stats.requests).toBe(upstream);
    // Another client is not affected.
    expect((await native(s, TEST_TOKEN)).status).toBe(200);
  });

  it('requests_per_day: refused past the limit with a Retry-After up to the next Pacific midnight', async () => {
    const s = await withData();
    const token = await createClient(s, { name: 'daily', limits: { requests_per_day: 1 } });
    expect((await native(s, token)).status).toBe(200);
    const refused = await native(s, token);
    expect(refused.status).toBe(429);
    const next = s.gateway.pool.calendarAt(Date.now()).nextDayMs;
    const retry = Number(refused.headers.get('retry-after'));
    expect(Math.abs(Date.now() + retry * 1000 - next)).toBeLessThan(5000);
    expect(((await refused.json()) as Json).error.message).toMatch(/requests_per_day 1/);
    const list = (await (await admin(s, 'GET', '/admin/clients/daily')).json()) as Json;
    expect(list.today).toEqual({ requests: 1, tokens: null });
  });

  it('tokens_per_day: once the usage accounting reported the day’s tokens, the client is refused', async () => {
    const s = await withData();
    const token = await createClient(s, { name: 'tokens', limits: { tokens_per_day: 100 } });
    expect((await native(s, token)).status).toBe(200);
    // What the usage module calls after each answer (prompt + output tokens).
    await s.gateway.deps.clientBudget!.recordTokens('tokens', 100);
    const upstream = s.fake.stats.requests;
    const refused = await chat(s, token);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Json).error.message).toMatch(/tokens_per_day 100/);
    expect(s.fake.stats.requests).toBe(upstream);
  });
});

describe('allowed models', () => {
  it('a model the client may not use is a 403 in the route’s shape, with nothing sent upstream', async () => {
    const s = await withData();
    const token = await createClient(s, { name: 'lite-only', models: ['gemini-2.5-flash-lite'] });
    const refused = await native(s, token, 'gemini-2.5-pro');
    expect(refused.status).toBe(403);
    const g = (await refused.json()) as Json;
    expect(g.error.status).toBe('PERMISSION_DENIED');
    expect(g.error.message).toContain('may not use model "gemini-2.5-pro"');

    const o = await chat(s, token, 'gemini-2.5-pro');
    expect(o.status).toBe(403);
    const oj = (await o.json()) as Json;
    expect(oj.error.message).toContain('may not use model');
    expect(oj.error.type).toBeDefined();

    const gen = await fetch(`${s.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hi', model: 'gemini-2.5-pro' }),
    });
    expect(gen.status).toBe(403);
    expect(gen.headers.get('content-type')).toContain('application/problem+json');
    expect(s.fake.stats.requests).toBe(0);

    expect((await native(s, token)).status).toBe(200);
    expect((await chat(s, token)).status).toBe(200);
    // PATCH widens the list; effective at once.
    const patched = await admin(s, 'PATCH', '/admin/clients/lite-only', { models: ['gemini-2.5-*'] });
    expect(patched.status).toBe(200);
    expect((await native(s, token, 'gemini-2.5-pro')).status).toBe(200);
  });
});

describe('admin API', () => {
  it('rotation: a new token, the old one refused at once; delete: refused at once; 404 and 409 where due', async () => {
    const s = await withData();
    const old = await createClient(s, { name: 'rotating' });
    expect((await native(s, old)).status).toBe(200);
    const res = await admin(s, 'POST', '/admin/clients/rotating/rotate');
    expect(res.status).toBe(200);
    const { token: fresh } = (await res.json()) as Json;
    expect(fresh).not.toBe(old);
    expect((await native(s, old)).status).toBe(401);
    expect((await native(s, fresh)).status).toBe(200);

    expect((await admin(s, 'POST', '/admin/clients', { name: 'rotating' })).status).toBe(409);
    expect((await admin(s, 'POST', '/admin/clients', { name: 'tests' })).status).toBe(409);
    const bad = await admin(s, 'POST', '/admin/clients', { name: 'x', limits: { requests_per_minute: -1 } });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as Json).detail).toMatch(/limits\.requests_per_minute/);
    expect((await admin(s, 'PATCH', '/admin/clients/tests', { enabled: false })).status).toBe(409);
    expect((await admin(s, 'DELETE', '/admin/clients/nobody')).status).toBe(404);
    expect((await adminFetch(s, 'wrong-admin-token', 'GET', '/admin/clients')).status).toBe(401);
    // A client token is not an admin token.
    expect((await adminFetch(s, fresh, 'GET', '/admin/clients')).status).toBe(401);

    const disabled = await admin(s, 'PATCH', '/admin/clients/rotating', { enabled: false });
    expect(((await disabled.json()) as Json).state).toBe('disabled');
    const refused = await native(s, fresh);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as Json).error.message).toMatch(/disabled/);
    await admin(s, 'PATCH', '/admin/clients/rotating', { enabled: true });
    expect((await native(s, fresh)).status).toBe(200);

    const expired = await admin(s, 'PATCH', '/admin/clients/rotating', {
      expires_at: new Date(Date.now() - 60_000).toISOString(),
    });
    expect(((await expired.json()) as Json).state).toBe('expired');
    expect((await native(s, fresh)).status).toBe(401);

    expect((await admin(s, 'DELETE', '/admin/clients/rotating')).status).toBe(200);
    expect((await native(s, fresh)).status).toBe(401);
    expect(s.fake.stats.requests).toBe(3);
  });

  it('an admin-made client survives a restart in embedded mode; the data file holds no token', async () => {
    const dataDir = tempDir();
    const opts = { env: { DATA_DIR: dataDir } };
    const first = await startStack({ ...opts, env: { ...opts.env, ADMIN_TOKEN: ADMIN } });
    let token: string;
    let gone: string;
    try {
      token = await createClient(first, {
        name: 'kept',
        limits: { requests_per_day: 1000 },
        models: ['gemini-2.5-flash-lite'],
        expires_at: '2099-01-01T00:00:00Z',
      });
      gone = await createClient(first, { name: 'deleted-later' });
      expect((await admin(first, 'DELETE', '/admin/clients/deleted-later')).status).toBe(200);
      expect((await native(first, token)).status).toBe(200);
    } finally {
      await first.close();
    }
    const text = readFileSync(join(dataDir, 'clients.json'), 'utf8');
    expect(text).not.toContain(token);
    expect(text).toContain(tokenDigest(token));

    const second = await stack(opts);
    expect((await native(second, token)).status).toBe(200);
    expect((await native(second, gone)).status).toBe(401);
    const list = ((await (await admin(second, 'GET', '/admin/clients')).json()) as Json).clients;
    expect(list.find((c: Json) => c.name === 'kept')).toMatchObject({
      source: 'admin',
      state: 'active',
      limits: { requests_per_minute: null, requests_per_day: 1000, tokens_per_day: null },
      models: ['gemini-2.5-flash-lite'],
      expires_at: '2099-01-01T00:00:00.000Z',
    });
    expect(list.some((c: Json) => c.name === 'deleted-later')).toBe(false);
  });

  it('tokens never appear in logs, in GET answers, nor as their digest', async () => {
    const lines: string[] = [];
    const fileToken = 'file-client-token-0123456789';
    const dir = tempDir();
    const file = join(dir, 'clients.json');
    writeFileSync(file, JSON.stringify({ clients: [{ name: 'filed', token: fileToken }] }));
    const s = await withData({ logLines: lines, env: { CLIENTS_FILE: file } });
    const token = await createClient(s, { name: 'secretive' });
    const rotated = ((await (await admin(s, 'POST', '/admin/clients/secretive/rotate')).json()) as Json)
      .token;
    for (const t of [token, rotated, fileToken]) {
      await native(s, t);
      await fetch(`${s.url}/v1beta/models?key=${t}`);
      await fetch(`${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent?key=${t}x`, {
        method: 'POST',
      });
    }
    const answers = [
      await (await admin(s, 'GET', '/admin/clients')).text(),
      await (await admin(s, 'GET', '/admin/clients/secretive')).text(),
      await (await admin(s, 'PATCH', '/admin/clients/secretive', { limits: { requests_per_day: 9 } })).text(),
      await (await admin(s, 'GET', '/admin/clients/filed')).text(),
    ];
    const log = lines.join('\n');
    expect(log).toContain('client_created');
    expect(log).toContain('secretive');
    for (const t of [token, rotated, fileToken, TEST_TOKEN]) {
      for (const text of [...answers, log]) {
        expect(text).not.toContain(t);
        expect(text).not.toContain(tokenDigest(t));
      }
    }
    expect(answers[0]).toContain('"name":"filed"');
  });
});

describe('CLIENTS_FILE', () => {
  it('is hot-reloaded: new tokens work, removed ones are refused, an invalid version keeps the clients in force', async () => {
    const dir = tempDir();
    const file = join(dir, 'clients.json');
    const a = 'client-a-token-0123456789';
    const b = 'client-b-token-0123456789';
    writeFileSync(file, JSON.stringify({ clients: [{ name: 'a', token: a }] }));
    const lines: string[] = [];
    const s = await withData({ logLines: lines, env: { CLIENTS_FILE: file } });
    expect((await native(s, a)).status).toBe(200);
    expect((await native(s, b)).status).toBe(401);

    // b as its digest only; a gone; b limited to one model.
    replaceFile(
      file,
      JSON.stringify({
        clients: [{ name: 'b', token_sha256: tokenDigest(b), models: ['gemini-2.5-flash-lite'] }],
      }),
    );
    await until(async () => (await native(s, b)).status === 200);
    expect((await native(s, a)).status).toBe(401);
    expect((await native(s, b, 'gemini-2.5-pro')).status).toBe(403);

    // An edit in place (not a rename) is seen too; then a broken version changes nothing.
    writeFileSync(file, JSON.stringify([{ name: 'b', token_sha256: tokenDigest(b), enabled: false }]));
    await until(async () => (await native(s, b)).status === 401);
    const before = lines.length;
    replaceFile(
      file,
      JSON.stringify({
        clients: [
          { name: 'b', token: b },
          { name: 'b', token: a },
        ],
      }),
    );
    await until(() => lines.slice(before).some((l) => l.includes('CLIENTS_FILE reload rejected')));
    expect(lines.slice(before).join('\n')).not.toContain(a);
    expect((await native(s, a)).status).toBe(401);

    // Other files in the folder do not wake a reload.
    writeFileSync(join(dir, 'unrelated.log'), 'x');
    const reload = await admin(s, 'POST', '/admin/clients/reload');
    expect(reload.status).toBe(422);
    expect(((await reload.json()) as Json).detail).toMatch(/same name/);
  });
});

describe('per-IP limits where they belong', () => {
  const defaults = parseEnv({});
  const ipDefaults = {
    GLOBAL_RATE_LIMIT: String(defaults.GLOBAL_RATE_LIMIT),
    BURST_RATE_LIMIT: String(defaults.BURST_RATE_LIMIT),
  };

  /** `n` requests at `perSecond` from this one address; their statuses. */
  async function paced(n: number, perSecond: number, send: () => Promise<Response>): Promise<number[]> {
    const started = Date.now();
    const pending: Promise<number>[] = [];
    for (let i = 0; i < n; i++) {
      const due = started + (i * 1000) / perSecond;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      pending.push(
        send().then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        }),
      );
    }
    return Promise.all(pending);
  }

  it('an authenticated client at 30 requests a second is not throttled by the per-IP defaults; an unauthenticated flood is', async () => {
    expect(defaults.GLOBAL_RATE_LIMIT).toBe(100);
    expect(defaults.BURST_RATE_LIMIT).toBe(20);
    expect(defaults.IP_LIMIT_SCOPE).toBe('unauthenticated');
    const s = await withData({ keys: 5, env: ipDefaults });
    // 150 requests in 5 s: past both 20 a second (no: 30 > 20) and 100 a minute.
    const statuses = await paced(150, 30, () => native(s, TEST_TOKEN));
    expect(statuses.filter((x) => x !== 200)).toEqual([]);

    // The same address without a valid token: limited (then refused with 429, not 401).
    await freshWindow(1000, 400);
    const flood = await paced(40, 200, () => native(s, 'guessed-token-0123456789'));
    expect(flood.filter((x) => x === 429).length).toBeGreaterThan(0);
    expect(flood.filter((x) => x !== 429 && x !== 401)).toEqual([]);
    await freshWindow(1000, 500);
    const missing = await Promise.all(
      Array.from({ length: 30 }, () => fetch(`${s.url}/v1/text_processing/operations`).then((r) => r.status)),
    );
    expect(missing.filter((x) => x === 429).length).toBeGreaterThan(0);
    // The client is still served meanwhile.
    expect((await native(s, TEST_TOKEN)).status).toBe(200);
  });

  it('IP_LIMIT_SCOPE=all applies them to authenticated requests too', async () => {
    const s = await withData({ keys: 5, env: { ...ipDefaults, IP_LIMIT_SCOPE: 'all' } });
    await freshWindow(1000, 900);
    const statuses = await Promise.all(
      Array.from({ length: 30 }, () =>
        fetch(`${s.url}/v1/text_processing/operations`, { headers: { 'x-api-key': TEST_TOKEN } }).then(
          (r) => r.status,
        ),
      ),
    );
    expect(statuses.filter((x) => x === 429).length).toBeGreaterThan(0);
  });
});
