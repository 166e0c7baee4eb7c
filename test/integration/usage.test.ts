import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GoogleGenAI } from '@google/genai';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { zeroCounts } from '../../src/usage/counts.ts';
import { RedisUsageStore } from '../../src/usage/redis-store.ts';
import { addDays } from '../../src/usage/store.ts';
import { pacificDay } from '../../src/util/pacific.ts';
import type { Json } from '../helpers/admin.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { startFlakyLink } from '../helpers/redis-server.ts';
import { type Stack, type StackOptions, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';

/**
 * Usage accounting against the fake Gemini, which reports usageMetadata like Google (every chunk
 * of a stream repeats the cumulative usage; thinking requests report thoughtsTokenCount): the
 * expected sums are read from the answers the clients received, then compared with
 * GET /admin/usage, to the token.
 */

const ADMIN = 'usage-admin-token-0123456789';
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const LITE = 'gemini-2.5-flash-lite';
const FLASH = 'gemini-2.5-flash';
const ENV = {
  ADMIN_TOKEN: ADMIN,
  CLIENT_API_KEYS_MAP: `${ALICE}:alice,${BOB}:bob`,
  CACHE_ENABLED: 'false',
};
const PRICES = JSON.parse(readFileSync(new URL('../../src/usage/prices.json', import.meta.url), 'utf8'));

const start = stackPerTest({ env: ENV });
const redisUrl = redisTestUrl();
if (!redisUrl) warnSkipped('usage shared by two instances on Redis');

interface Sums {
  requests: number;
  prompt_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  thought_tokens: number;
  errors: number;
}
/** What the clients were told, per client and model. */
class Expected {
  readonly rows = new Map<string, Sums>();
  add(client: string, model: string, u: Partial<Sums>): void {
    const key = `${client}|${model}`;
    const s = this.rows.get(key) ?? {
      requests: 0,
      prompt_tokens: 0,
      output_tokens: 0,
      cached_tokens: 0,
      thought_tokens: 0,
      errors: 0,
    };
    s.requests += 1;
    for (const [k, v] of Object.entries(u)) s[k as keyof Sums] += v ?? 0;
    this.rows.set(key, s);
  }
  /** From a native answer's usageMetadata. */
  native(client: string, model: string, meta: Json): void {
    expect(meta?.promptTokenCount).toBeGreaterThan(0);
    this.add(client, model, {
      prompt_tokens: meta.promptTokenCount,
      output_tokens: meta.candidatesTokenCount ?? 0,
      cached_tokens: meta.cachedContentTokenCount ?? 0,
      thought_tokens: meta.thoughtsTokenCount ?? 0,
    });
  }
  /** From an OpenAI-shaped usage (completion tokens include the reasoning ones). */
  openai(client: string, model: string, usage: Json): void {
    expect(usage?.prompt_tokens).toBeGreaterThan(0);
    const thoughts = usage.completion_tokens_details?.reasoning_tokens ?? 0;
    this.add(client, model, {
      prompt_tokens: usage.prompt_tokens,
      output_tokens: usage.completion_tokens - thoughts,
      cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
      thought_tokens: thoughts,
    });
  }
  tokens(client: string): number {
    let n = 0;
    for (const [key, s] of this.rows)
      if (key.startsWith(`${client}|`)) n += s.prompt_tokens + s.output_tokens + s.thought_tokens;
    return n;
  }
}

/** Cost of sums at prices.json's price of the model, computed here from the file. */
function costFromTable(model: string, s: Sums): number {
  const p = PRICES.models[model];
  return (
    ((s.prompt_tokens - s.cached_tokens) * p.input +
      s.cached_tokens * (p.cached ?? p.input) +
      (s.output_tokens + s.thought_tokens) * p.output) /
    1e6
  );
}

function admin(s: Stack, path: string): Promise<Response> {
  return fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
}

const today = () => pacificDay(Date.now());
/** Yesterday to tomorrow: a test that runs across Pacific midnight still sees all its rows. */
const around = () => `from=${addDays(today(), -1)}&to=${addDays(today(), 1)}`;

/** Rows summed per client|model over days, the cost of each kept aside. */
function byClientModel(rows: Json[]): Map<string, Sums & { cost_usd: number }> {
  const out = new Map<string, Sums & { cost_usd: number }>();
  for (const r of rows) {
    const key = `${r.client}|${r.model}`;
    const s = out.get(key) ?? {
      requests: 0,
      prompt_tokens: 0,
      output_tokens: 0,
      cached_tokens: 0,
      thought_tokens: 0,
      errors: 0,
      cost_usd: 0,
    };
    for (const k of [
      'requests',
      'prompt_tokens',
      'output_tokens',
      'cached_tokens',
      'thought_tokens',
      'errors',
    ] as const)
      s[k] += r[k];
    s.cost_usd += r.cost_usd;
    out.set(key, s);
  }
  return out;
}

async function usageRows(s: Stack, query = around()): Promise<Json[]> {
  const res = await admin(s, `/admin/usage?${query}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as Json).rows;
}

/** The rows equal the expected sums exactly (no other client|model), and each cost is the table's. */
function expectRowsEqual(rows: Json[], expected: Expected): void {
  const got = byClientModel(rows);
  expect([...got.keys()].sort()).toEqual([...expected.rows.keys()].sort());
  for (const [key, want] of expected.rows) {
    const { cost_usd, ...sums } = got.get(key)!;
    expect(sums, key).toEqual(want);
    expect(cost_usd, `${key} cost`).toBeCloseTo(costFromTable(key.split('|')[1]!, want), 9);
  }
}

const genai = (s: Stack, token: string) =>
  new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: s.url } });
const openai = (s: Stack, token: string) =>
  new OpenAI({ apiKey: token, baseURL: `${s.url}/v1beta/openai`, maxRetries: 0 });

/** Calls of every kind by `client` (token) on `s`, each answer's usage added to `expected`. */
async function traffic(s: Stack, client: string, token: string, expected: Expected, tag: string) {
  const ai = genai(s, token);
  // Unary, twice (different prompts: different counts).
  for (const text of [`Hello from ${tag}`, `A longer question from ${tag} about the weather in Hanoi`]) {
    const r = await ai.models.generateContent({ model: LITE, contents: text });
    expected.native(client, LITE, r.usageMetadata);
  }
  // Thinking (gemini-2.5-flash with a thinking budget): thoughtsTokenCount counts.
  const thinking = await ai.models.generateContent({
    model: FLASH,
    contents: `Think about ${tag}`,
    config: { thinkingConfig: { thinkingBudget: 64 } },
  });
  expect(thinking.usageMetadata?.thoughtsTokenCount).toBeGreaterThan(0);
  expected.native(client, FLASH, thinking.usageMetadata);
  // A stream (SSE): its usage is the last chunk's, cumulative.
  let last: Json;
  let chunks = 0;
  for await (const chunk of await ai.models.generateContentStream({
    model: LITE,
    contents: `Stream a story for ${tag}`,
  })) {
    chunks++;
    if (chunk.usageMetadata) last = chunk.usageMetadata;
  }
  expect(chunks).toBeGreaterThan(1);
  expected.native(client, LITE, last);
  // OpenAI chat, unary and streamed with include_usage.
  const oa = openai(s, token);
  const chat = await oa.chat.completions.create({
    model: LITE,
    messages: [{ role: 'user', content: `OpenAI hello from ${tag}` }],
  });
  expected.openai(client, LITE, chat.usage);
  let streamed: Json;
  for await (const c of await oa.chat.completions.create({
    model: FLASH,
    messages: [{ role: 'user', content: `OpenAI stream from ${tag}` }],
    stream: true,
    stream_options: { include_usage: true },
  })) {
    if (c.usage) streamed = c.usage;
  }
  expected.openai(client, FLASH, streamed);
}

describe('usage accounting per client, model and day', () => {
  it('counts generate, stream, thinking and OpenAI calls of two clients exactly, with cost; /v1/usage shows only the caller', async () => {
    const s = await start();
    const expected = new Expected();
    await traffic(s, 'alice', ALICE, expected, 'alice');
    await traffic(s, 'bob', BOB, expected, 'bob');
    // An application endpoint (through the services' GeminiCaller) counts for its client too.
    const gen = await fetch(`${s.url}/v1/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ALICE}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Write a haiku about usage accounting' }),
    });
    expect(gen.status).toBe(200);
    const genUsage = ((await gen.json()) as Json).usage;
    expected.add('alice', LITE, {
      prompt_tokens: genUsage.prompt_tokens,
      output_tokens: genUsage.completion_tokens,
    });
    // An error answer (Google's 400, passed through) counts as a request and an error.
    s.fake.script({ kind: 'bad_request' }, { times: 1 });
    const bad = await fetch(`${s.url}/v1beta/models/${LITE}:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': BOB, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'bad' }] }] }),
    });
    expect(bad.status).toBe(400);
    expected.add('bob', LITE, { errors: 1 });

    // Streams settle when their relay ends, just after the client read the last byte.
    await expect.poll(async () => byClientModel(await usageRows(s)).get(`bob|${FLASH}`)?.requests).toBe(2);
    const rows = await usageRows(s);
    expectRowsEqual(rows, expected);
    for (const r of rows) {
      expect(r.day).toBe(today());
      expect(Object.keys(r).sort()).toEqual(
        [
          'client',
          'cost_usd',
          'cached_tokens',
          'day',
          'errors',
          'model',
          'output_tokens',
          'prompt_tokens',
          'requests',
          'thought_tokens',
        ].sort(),
      );
    }
    const aliceFlash = rows.find((r: Json) => r.client === 'alice' && r.model === FLASH);
    expect(aliceFlash.thought_tokens).toBeGreaterThan(0);
    expect(aliceFlash.cost_usd).toBeGreaterThan(0);

    // Filters.
    const onlyBob = await usageRows(s, `${around()}&client=bob&model=${LITE}`);
    expect(onlyBob.map((r: Json) => `${r.client}|${r.model}`)).toEqual([`bob|${LITE}`]);

    // A client reads its own rows with its own token, and only those.
    for (const [name, token] of [
      ['alice', ALICE],
      ['bob', BOB],
    ] as const) {
      const res = await fetch(`${s.url}/v1/usage?${around()}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as Json;
      expect(body.client).toBe(name);
      expect(body.rows.length).toBeGreaterThan(0);
      expect(new Set(body.rows.map((r: Json) => r.client))).toEqual(new Set([name]));
      const own = new Expected();
      for (const [key, v] of expected.rows) if (key.startsWith(`${name}|`)) own.rows.set(key, v);
      expectRowsEqual(body.rows, own);
    }

    // Tokens today per client, for client budgets.
    const usage = s.gateway.deps.usage!;
    expect(usage.tokensToday('alice')).toBe(expected.tokens('alice'));
    expect(usage.tokensToday('bob')).toBe(expected.tokens('bob'));

    // Prometheus: usage and cost per client and model.
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const lite = expected.rows.get(`alice|${LITE}`)!;
    expect(metrics).toContain(
      `gateway_usage_tokens_total{client="alice",model="${LITE}",kind="prompt"} ${lite.prompt_tokens}`,
    );
    expect(metrics).toContain(
      `gateway_usage_requests_total{client="bob",model="${LITE}"} ${expected.rows.get(`bob|${LITE}`)!.requests}`,
    );
    expect(metrics).toContain(`gateway_usage_errors_total{client="bob",model="${LITE}"} 1`);
    const cost = /gateway_usage_cost_usd_total\{client="alice",model="gemini-2\.5-flash"\} (\S+)/.exec(
      metrics,
    );
    expect(Number(cost?.[1])).toBeCloseTo(costFromTable(FLASH, expected.rows.get(`alice|${FLASH}`)!), 9);
  });

  it('answers bad dates and missing tokens with 4xx problems, never a 500', async () => {
    const s = await start();
    for (const q of [
      'from=2026-13-01&to=2026-12-31',
      'from=2026-02-30',
      'from=yesterday',
      'from=2026-12-05&to=2026-12-01',
      'from=2020-01-01&to=2026-01-01',
      'to=2026-1-1',
    ]) {
      const res = await admin(s, `/admin/usage?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const body = (await res.json()) as Json;
      expect(body.status).toBe(400);
      expect(typeof body.detail).toBe('string');
    }
    const own = await fetch(`${s.url}/v1/usage?from=bad`, { headers: { authorization: `Bearer ${ALICE}` } });
    expect(own.status).toBe(400);
    expect((await admin(s, '/admin/usage/hourly?hours=0')).status).toBe(400);
    expect((await admin(s, '/admin/usage/hourly?hours=24')).status).toBe(200);
    expect((await fetch(`${s.url}/admin/usage`)).status).toBe(401);
    expect(
      (await fetch(`${s.url}/admin/usage`, { headers: { authorization: `Bearer ${ALICE}` } })).status,
    ).toBe(401);
    expect((await fetch(`${s.url}/v1/usage`)).status).toBe(401);
    // A client token is not an admin token, nor the other way round.
    expect((await fetch(`${s.url}/v1/usage`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(
      401,
    );
    // Default range: the last 30 days, today included.
    expect((await usageRows(s, '')).length).toBe(0);
    const prices = (await (await admin(s, '/admin/usage/prices')).json()) as Json;
    expect(prices.source).toBe('https://ai.google.dev/gemini-api/docs/pricing');
    expect(prices.models[LITE]).toMatchObject({ input: 0.1, output: 0.4 });
  });

  it('shows the last 24 hours per hour', async () => {
    const s = await start();
    const expected = new Expected();
    const r = await genai(s, ALICE).models.generateContent({ model: LITE, contents: 'hourly' });
    expected.native('alice', LITE, r.usageMetadata);
    const res = await admin(s, '/admin/usage/hourly?hours=24');
    const rows = ((await res.json()) as Json).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0].hour).toBe(new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString());
    expectRowsEqual(rows, expected);
  });

  it('keeps the history across a restart in embedded mode (same DATA_DIR)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gg-usage-restart-'));
    try {
      const opts: StackOptions = { env: { ...ENV, DATA_DIR: dataDir } };
      const first = await start(opts);
      const expected = new Expected();
      await traffic(first, 'alice', ALICE, expected, 'before restart');
      await expect
        .poll(async () => byClientModel(await usageRows(first)).get(`alice|${FLASH}`)?.requests)
        .toBe(2);
      const before = await usageRows(first);
      expectRowsEqual(before, expected);
      await first.close();

      const second = await start(opts);
      expect(await usageRows(second)).toEqual(before);
      expect(second.gateway.deps.usage!.tokensToday('alice')).toBe(expected.tokens('alice'));
      // And it goes on counting on top.
      const r = await genai(second, ALICE).models.generateContent({ model: LITE, contents: 'after restart' });
      expected.native('alice', LITE, r.usageMetadata);
      expectRowsEqual(await usageRows(second), expected);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!redisUrl)('usage in Redis, shared by instances', () => {
  const redis = redisUrl ? new Redis(redisUrl, { lazyConnect: true }) : null;
  afterAll(async () => {
    await redis?.quit().catch(() => redis.disconnect());
  });

  it('two instances count into one history, exactly; each sees the other within seconds', async () => {
    const [a, b] = await sharedRedisPair(start, redisUrl!, { env: ENV });
    const expected = new Expected();
    await traffic(a, 'alice', ALICE, expected, 'on A');
    await traffic(b, 'alice', ALICE, expected, 'on B');
    await traffic(b, 'bob', BOB, expected, 'bob on B');
    // B flushes every second; A's query flushes A's own counts.
    await expect
      .poll(async () => byClientModel(await usageRows(a)).get(`bob|${FLASH}`)?.requests, { timeout: 10_000 })
      .toBe(2);
    await expect.poll(async () => byClientModel(await usageRows(a)).get(`alice|${FLASH}`)?.requests).toBe(4);
    expectRowsEqual(await usageRows(a), expected);
    expectRowsEqual(await usageRows(b), expected);
    // Today's tokens of a client, as either instance tells them (the other's within a few seconds).
    await expect
      .poll(() => a.gateway.deps.usage!.tokensToday('alice'), { timeout: 10_000 })
      .toBe(expected.tokens('alice'));
    await expect
      .poll(() => a.gateway.deps.usage!.tokensToday('bob'), { timeout: 10_000 })
      .toBe(expected.tokens('bob'));
    expect(b.gateway.deps.usage!.tokensToday('alice')).toBe(expected.tokens('alice'));
  });

  it('a flush whose answer is lost (Redis ran it) is sent again and counted once; a warning says so', async () => {
    const link = await startFlakyLink(Number(new URL(redisUrl!).port));
    try {
      const lines: string[] = [];
      const s = await start({
        env: { ...ENV, REDIS_URL: link.url, STATE_PREFIX: `usage-lost:${randomUUID()}:` },
        logLines: lines,
      });
      const expected = new Expected();
      const r = await genai(s, ALICE).models.generateContent({ model: LITE, contents: 'before the loss' });
      expected.native('alice', LITE, r.usageMetadata);
      expectRowsEqual(await usageRows(s), expected);
      // Counts of a call, then a flush whose answer never comes back (Redis ran the script).
      const usage = s.gateway.deps.usage!;
      link.dropReplies = true;
      usage.record(
        'alice',
        LITE,
        { prompt: 1000, output: 100, cached: 0, thought: 10, imageOutput: 0 },
        false,
      );
      expected.add('alice', LITE, { prompt_tokens: 1000, output_tokens: 100, thought_tokens: 10 });
      await expect(usage.flush()).rejects.toThrow(/unavailable/);
      link.dropReplies = false;
      // Sent again on the next connection: the store adds it once.
      await expect.poll(async () => (await usageRows(s).catch(() => [])).length, { timeout: 10_000 }).toBe(1);
      expectRowsEqual(await usageRows(s), expected);
      expect(usage.tokensToday('alice')).toBe(expected.tokens('alice'));
      const messages = lines.map((l) => JSON.parse(l).msg as string);
      expect(messages.filter((m) => m.startsWith('usage: counts could not be written'))).toHaveLength(1);
      expect(messages.filter((m) => m.startsWith('usage: the store is writable again'))).toHaveLength(1);
    } finally {
      await link.close();
    }
  });

  it('a batch written again (its answer lost) is counted once; history keys expire', async () => {
    const prefix = `usage-test:${Date.now()}:`;
    const store = new RedisUsageStore(redis!, prefix, 90);
    const now = Date.now();
    const hour = Math.floor(now / 3_600_000);
    const day = pacificDay(now);
    const counts = { ...zeroCounts(), requests: 1, prompt_tokens: 100, output_tokens: 7 };
    const batch = { seq: 1, entries: [{ hour, day, client: 'c\twith tab', model: 'm', counts }] };
    await store.write(batch, day);
    const totals = await store.write(batch, day);
    expect(totals.get('c\twith tab')).toBe(107);
    await store.write({ seq: 2, entries: batch.entries }, day);
    const rows = await store.days([day]);
    expect(rows).toEqual([
      {
        day,
        client: 'c\twith tab',
        model: 'm',
        counts: { ...counts, requests: 2, prompt_tokens: 200, output_tokens: 14 },
      },
    ]);
    expect((await store.hours([hour]))[0]!.counts.prompt_tokens).toBe(200);
    const ttl = await redis!.ttl(`${prefix}usage:d:${day}`);
    expect(ttl).toBeGreaterThan(90 * 86_400);
    expect(ttl).toBeLessThanOrEqual(92 * 86_400);
    expect(await redis!.ttl(`${prefix}usage:h:${hour}`)).toBeLessThanOrEqual(8 * 86_400);
    const keys = await redis!.keys(`${prefix}*`);
    await redis!.del(...keys);
  });
});
