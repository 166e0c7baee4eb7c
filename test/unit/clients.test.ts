import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { ClientBudget } from '../../src/clients/budget.ts';
import { allowsModel, type Client, parseClientsFile, tokenDigest } from '../../src/clients/client.ts';
import { ClientRegistry } from '../../src/clients/registry.ts';
import { ConfigError } from '../../src/config/env.ts';
import { ClientAuth } from '../../src/http/auth.ts';
import { isKnownError, toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { problemOfRejection } from '../helpers/problem.ts';
import { tempDirs } from '../helpers/temp.ts';

const tempDir = tempDirs('gg-clients-unit-');

function requestOn(connection: object, token: string): FastifyRequest {
  return {
    headers: { 'x-goog-api-key': token },
    query: {},
    raw: { socket: connection },
  } as unknown as FastifyRequest;
}

async function statusOf(run: () => unknown): Promise<number | string> {
  try {
    const r = run();
    return r instanceof Promise ? ((await r) as Client).name : (r as Client).name;
  } catch (err) {
    return isKnownError(err) ? toProblem(err).status : -1;
  }
}

function statusOrOk(refusal: Error | null | undefined): number {
  return refusal ? toProblem(refusal).status : 200;
}

function registry(env: Partial<{ CLIENT_API_KEYS_MAP: Map<string, string>; CLIENTS_FILE: string }> = {}) {
  return new ClientRegistry({
    store: new MemoryStore(),
    env: { CLIENT_API_KEYS_MAP: new Map(), DATA_DIR: tempDir(), ...env },
  });
}

describe('CLIENTS_FILE', () => {
  it('takes plain tokens and SHA-256 digests, limits, models and expiry', () => {
    const digest = tokenDigest('a-token-only-its-owner-knows');
    const { clients, plainTokens } = parseClientsFile(
      JSON.stringify({
        clients: [
          { name: 'web', token: 'web-token-0123456789abcdef' },
          {
            name: 'batch',
            token_sha256: digest.toUpperCase(),
            limits: { requests_per_minute: 5, requests_per_day: 100, tokens_per_day: 10_000 },
            models: ['models/gemini-2.5-flash', 'gemini-2.0-*'],
            expires_at: '2030-01-01T00:00:00Z',
            enabled: false,
          },
        ],
      }),
    );
    expect(plainTokens).toEqual(['web-token-0123456789abcdef']);
    expect(clients[0]).toMatchObject({ name: 'web', source: 'file', models: null, enabled: true });
    expect(clients[0]!.tokenSha256).toBe(tokenDigest('web-token-0123456789abcdef'));
    expect(clients[1]).toMatchObject({
      tokenSha256: digest,
      limits: { requestsPerMinute: 5, requestsPerDay: 100, tokensPerDay: 10_000 },
      models: ['gemini-2.5-flash', 'gemini-2.0-*'],
      expiresAtMs: Date.UTC(2030, 0, 1),
      enabled: false,
    });
  });

  it('refuses what it cannot trust, naming the entry and field, never a token', () => {
    const secret = 'secret-token-value-000111';
    const cases: unknown[] = [
      { clients: [{ name: 'a' }] },
      { clients: [{ name: 'a', token: secret, token_sha256: tokenDigest(secret) }] },
      { clients: [{ name: 'a', token: 'short' }] },
      { clients: [{ name: 'bad name', token: secret }] },
      { clients: [{ name: 'a', token: secret, limits: { requests_per_hour: 3 } }] },
      { clients: [{ name: 'a', token: secret, expires_at: 'tomorrow' }] },
      {
        clients: [
          { name: 'a', token: secret },
          { name: 'a', token: `${secret}x` },
        ],
      },
      {
        clients: [
          { name: 'a', token: secret },
          { name: 'b', token: secret },
        ],
      },
    ];
    for (const c of cases) {
      let err: unknown;
      try {
        parseClientsFile(JSON.stringify(c));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(c)).toBeInstanceOf(ConfigError);
      expect(String(err)).not.toContain(secret);
      expect(String(err)).toMatch(/CLIENTS_FILE/);
    }
    expect(() => parseClientsFile(`{"clients": [{"name": "a", "token": "${secret}"`)).toThrow(ConfigError);
  });
});

describe('allowed models', () => {
  it('exact names (with or without models/) and prefix wildcards', () => {
    const c = { models: ['gemini-2.5-flash', 'gemini-2.0-*'] } as unknown as Client;
    expect(allowsModel(c, 'gemini-2.5-flash')).toBe(true);
    expect(allowsModel(c, 'models/gemini-2.5-flash')).toBe(true);
    expect(allowsModel(c, 'gemini-2.0-flash-lite')).toBe(true);
    expect(allowsModel(c, 'gemini-2.5-flash-lite')).toBe(false);
    expect(allowsModel(c, 'gemini-2.5-pro')).toBe(false);
    expect(allowsModel({ models: null } as unknown as Client, 'anything')).toBe(true);
  });
});

describe('ClientAuth over the registry', () => {
  it('a deleted or rotated token is refused on the very next request of a keep-alive connection', async () => {
    const reg = registry({ CLIENT_API_KEYS_MAP: new Map([['env-token-0123456789', 'env']]) });
    await reg.init();
    const auth = new ClientAuth(reg, false);
    const { token } = await reg.create({ name: 'app' });
    const conn = {};
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe('app');
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe('app');
    const rotated = await reg.rotate('app');
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe(401);
    expect(await statusOf(() => auth.identify(requestOn(conn, rotated.token)))).toBe('app');
    await reg.remove('app');
    expect(await statusOf(() => auth.identify(requestOn(conn, rotated.token)))).toBe(401);
    // CLIENT_API_KEYS_MAP's clients are untouched, synchronously answered.
    const env = auth.identify(requestOn(conn, 'env-token-0123456789'));
    expect(env).not.toBeInstanceOf(Promise);
    expect((env as Client).name).toBe('env');
  });

  it('a disabled or expired client is a 401 that says so; enabling it again admits it', async () => {
    const reg = registry();
    await reg.init();
    const auth = new ClientAuth(reg, false);
    const { token } = await reg.create({ name: 'app' });
    const conn = {};
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe('app');
    await reg.update('app', { enabled: false });
    let err: unknown;
    try {
      auth.identify(requestOn(conn, token));
    } catch (e) {
      err = e;
    }
    expect((err as HttpProblem).status).toBe(401);
    expect((err as HttpProblem).detail).toMatch(/disabled/);
    await reg.update('app', { enabled: true, expires_at: new Date(Date.now() - 1000).toISOString() });
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe(401);
    await reg.update('app', { expires_at: null });
    expect(await statusOf(() => auth.identify(requestOn(conn, token)))).toBe('app');
  });

  it('clients of CLIENT_API_KEYS_MAP and CLIENTS_FILE are not changed through the admin API', async () => {
    const file = join(tempDir(), 'clients.json');
    writeFileSync(file, JSON.stringify({ clients: [{ name: 'filed', token: 'filed-token-0123456789' }] }));
    const reg = registry({
      CLIENT_API_KEYS_MAP: new Map([['env-token-0123456789', 'env']]),
      CLIENTS_FILE: file,
    });
    await reg.init();
    for (const name of ['env', 'filed']) {
      expect(await problemOfRejection(reg.remove(name))).toMatchObject({ status: 409 });
      expect(await problemOfRejection(reg.rotate(name))).toMatchObject({ status: 409 });
      expect(await problemOfRejection(reg.create({ name }))).toMatchObject({ status: 409 });
    }
    expect(await problemOfRejection(reg.remove('nobody'))).toMatchObject({ status: 404 });
    expect(reg.list().map((c) => [c.name, c.source])).toEqual([
      ['env', 'env'],
      ['filed', 'file'],
    ]);
  });
});

describe('ClientBudget', () => {
  it('tokens_per_day: refused once recordTokens brought the day to the limit, with Retry-After to the next day', async () => {
    const store = new MemoryStore();
    const client: Client = {
      name: 'heavy',
      source: 'admin',
      tokenSha256: '',
      limits: { tokensPerDay: 1000 },
      models: null,
      expiresAtMs: null,
      enabled: true,
      createdAtMs: null,
      updatedAtMs: null,
    };
    const nextDayMs = Date.now() + 3_600_000;
    const budget = new ClientBudget({
      store,
      calendar: () => ({ day: '2026-12-01', nextDayMs }),
      defaultRpm: () => 0,
      find: (n) => (n === 'heavy' ? client : undefined),
    });
    const reply = { getHeader: () => undefined, header: () => reply } as never;
    expect(await budget.admit(client, reply)).toBeNull();
    await budget.recordTokens('heavy', 999);
    expect(await budget.admit(client, reply)).toBeNull();
    await budget.recordTokens('heavy', 1);
    const refused = await budget.admit(client, reply);
    const refusal = refused ? toProblem(refused) : null;
    expect(refusal?.status).toBe(429);
    expect(refusal?.detail).toMatch(/client "heavy" is over its own budget \(tokens_per_day 1000\)/);
    expect(refusal?.detail).toMatch(/not the key pool's/);
    expect(Number(refusal?.headers['retry-after'])).toBeGreaterThan(3590);
    // Not counted for a client without a tokens_per_day limit.
    await budget.recordTokens('someone-else', 5000);
    expect(await store.readCounter('client:tpd:someone-else:2026-12-01', Date.now())).toBe(0);
  });

  it('requests_per_day: refused requests do not count into the day', async () => {
    const store = new MemoryStore();
    const client = { name: 'daily', limits: { requestsPerDay: 2 } } as unknown as Client;
    const budget = new ClientBudget({
      store,
      calendar: () => ({ day: '2026-12-01', nextDayMs: Date.now() + 1000 }),
      defaultRpm: () => 0,
      find: () => client,
    });
    const reply = { getHeader: () => undefined, header: () => reply } as never;
    const results = [];
    for (let i = 0; i < 5; i++) results.push(statusOrOk(await budget.admit(client, reply)));
    expect(results).toEqual([200, 200, 429, 429, 429]);
    expect(await budget.today(client)).toEqual({ requests: 2, tokens: null });
  });
});

describe('MemoryStore counters', () => {
  it('past 100,000 counters, a 1-second window sweep keeps live 60-second counters', async () => {
    const store = new MemoryStore();
    const t0 = 1_800_000_000_000; // a minute boundary
    expect((await store.hit('minute-counter', 60_000, t0)).count).toBe(1);
    for (let i = 0; i < 100_001; i++) await store.hit(`burst:${i}`, 1000, t0);
    // Two seconds later: every 1-second window has ended, the 60-second one has not. A new
    // 1-second counter sweeps.
    await store.hit('another-burst', 1000, t0 + 2000);
    expect((await store.hit('minute-counter', 60_000, t0 + 2500)).count).toBe(2);
    // The ended 1-second windows were swept: a counter starts again at 1 in a new window anyway,
    // but the map is small again.
    expect((store as unknown as { counters: Map<string, unknown> }).counters.size).toBeLessThan(10);
  });
});
