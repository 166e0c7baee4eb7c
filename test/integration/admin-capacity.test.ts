import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adminFetch, type Json } from '../helpers/admin.ts';
import { sample } from '../helpers/metrics.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { poolKeyValues, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * GET /admin/capacity and /admin/budgets, and the per (project, model) series of /metrics:
 * two projects with model_limits for two models, a few requests, and the numbers add up.
 */

const ADMIN = 'admin-token-for-capacity-0123456789';
const FLASH = 'gemini-2.5-flash';
const LITE = 'gemini-2.5-flash-lite';
const redisUrl = redisTestUrl();
const tempDir = tempDirs('gg-capacity-');
const stack = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });

const values = poolKeyValues(4);
const limits = (rpm: number, rpd: number, tpm: number) => ({
  requests_per_minute: rpm,
  requests_per_day: rpd,
  tokens_per_minute: tpm,
});
/** p1: two keys (the first one's limits count); p2: one key; p3: a key disabled in configuration. */
const KEYS = [
  {
    id: 'p1-a',
    api_key: values[0],
    project: 'p1',
    model_limits: { [FLASH]: limits(10, 200, 100_000), [`models/${LITE}`]: limits(20, 500, 200_000) },
  },
  { id: 'p1-b', api_key: values[1], project: 'p1', model_limits: { [FLASH]: limits(99, 9999, 999_999) } },
  {
    id: 'p2-a',
    api_key: values[2],
    project: 'p2',
    model_limits: { [FLASH]: limits(5, 100, 50_000), [LITE]: limits(30, 1000, 300_000) },
  },
  {
    id: 'p3-a',
    api_key: values[3],
    project: 'p3',
    enabled: false,
    model_limits: { [FLASH]: limits(7, 70, 7000) },
  },
];

async function start(env: Record<string, string> = {}): Promise<Stack> {
  const file = join(tempDir(), 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: KEYS }), { mode: 0o600 });
  return stack({ keys: 4, env: { GEMINI_API_KEYS: '', API_KEYS_FILE: file, ...env } });
}

function generate(s: Stack, model: string, text = 'hello there'): Promise<Response> {
  return fetch(`${s.url}/v1beta/models/${model}:generateContent`, {
    method: 'POST',
    headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
  });
}

async function getJson(s: Stack, path: string): Promise<Json> {
  const res = await adminFetch(s, ADMIN, 'GET', path);
  expect(res.status, path).toBe(200);
  return res.json();
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

const variants = [
  { name: 'memory store', env: () => ({}) },
  {
    name: 'Redis store',
    env: () => ({ REDIS_URL: redisUrl!, STATE_PREFIX: `capacity:${Date.now()}:${Math.random()}:` }),
  },
];
if (!redisUrl) warnSkipped('/admin/capacity on the Redis store');

describe.each(variants)('capacity and budgets ($name)', ({ name, env }) => {
  const skip = name === 'Redis store' && !redisUrl;

  it.skipIf(skip)('/admin/capacity sums the projects; /admin/budgets and /metrics agree', async () => {
    const s = await start(env());
    for (let i = 0; i < 3; i++) expect((await generate(s, LITE, `lite ${i}`)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await generate(s, FLASH, `flash ${i}`)).status).toBe(200);

    const budgets = (await getJson(s, '/admin/budgets')) as Json;
    expect(budgets.day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const budget = (project: string, model: string) =>
      budgets.budgets.find((b: Json) => b.project === project && b.model === model);
    // Every configured (project, model), with the project's first key's limits.
    expect(budget('p1', FLASH).limits).toEqual(limits(10, 200, 100_000));
    expect(budget('p1', LITE).limits).toEqual(limits(20, 500, 200_000));
    expect(budget('p2', FLASH).limits).toEqual(limits(5, 100, 50_000));
    expect(budget('p2', LITE).limits).toEqual(limits(30, 1000, 300_000));
    const today = (model: string) =>
      sum(
        budgets.budgets
          .filter((b: Json) => b.model === model)
          .map((b: Json) => b.usage.requests_today as number),
      );
    expect(today(LITE)).toBe(3);
    expect(today(FLASH)).toBe(2);
    for (const b of budgets.budgets) {
      expect(b.left.requests_today).toBe(Math.max(0, b.limits.requests_per_day - b.usage.requests_today));
      expect(b.resting).toBe(false);
    }
    // Project order follows the configuration.
    expect([...new Set(budgets.budgets.map((b: Json) => b.project))].slice(0, 2)).toEqual(['p1', 'p2']);

    const capacity = (await getJson(s, '/admin/capacity')) as Json;
    expect(capacity.models.map((m: Json) => m.model)).toEqual([FLASH, LITE]);
    const [flash, lite] = capacity.models;
    // p3's only key is disabled: it is not counted; p1 counts once, with p1-a's limits.
    expect(flash.projects.map((p: Json) => [p.project, p.keys])).toEqual([
      ['p1', 2],
      ['p2', 1],
    ]);
    expect(flash.total).toEqual(limits(15, 300, 150_000));
    expect(lite.total).toEqual(limits(50, 1500, 500_000));
    for (const m of capacity.models) {
      const model = m.model as string;
      const own = m.projects as Json[];
      expect(m.used.requests_today).toBe(today(model));
      expect(m.used.requests_today).toBe(sum(own.map((p) => p.used.requests_today)));
      expect(m.used.requests_this_minute).toBe(
        sum(own.map((p) => budget(p.project, model).usage.requests_this_minute)),
      );
      expect(m.used.tokens_this_minute).toBe(
        sum(own.map((p) => budget(p.project, model).usage.tokens_this_minute)),
      );
      expect(m.used.tokens_this_minute).toBeGreaterThan(0);
      expect(m.left).toEqual({
        requests_this_minute: m.total.requests_per_minute - m.used.requests_this_minute,
        requests_today: m.total.requests_per_day - m.used.requests_today,
        tokens_this_minute: m.total.tokens_per_minute - m.used.tokens_this_minute,
      });
      expect(m.available).toEqual(m.left);
      expect(m.resting).toEqual([]);
      for (const p of own) {
        expect(p.limits).toEqual(budget(p.project, model).limits);
        expect(p.used).toEqual(budget(p.project, model).usage);
      }
    }

    // /admin/keys shows each key's per-model limits.
    const keys = (await getJson(s, '/admin/keys')).keys as Json[];
    expect(keys.find((k) => k.id === 'p1-a').model_limits[LITE]).toEqual(limits(20, 500, 200_000));

    // /metrics: the per (project, model) series and the per-model capacity.
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(sample(text, 'gateway_budget_states_up')).toBe(1);
    for (const b of budgets.budgets.filter((x: Json) => x.project !== 'p3')) {
      const labels = { project: b.project, model: b.model };
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'requests_day' })).toBe(
        b.limits.requests_per_day,
      );
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'requests_minute' })).toBe(
        b.limits.requests_per_minute,
      );
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'tokens_minute' })).toBe(
        b.limits.tokens_per_minute,
      );
      expect(sample(text, 'gateway_budget_used', { ...labels, window: 'requests_day' })).toBe(
        b.usage.requests_today,
      );
      expect(sample(text, 'gateway_budget_used', { ...labels, window: 'requests_minute' })).toBe(
        b.usage.requests_this_minute,
      );
      expect(sample(text, 'gateway_budget_resting', labels)).toBe(0);
    }
    expect(sample(text, 'gateway_budget_used', { project: 'p1', model: LITE, window: 'tokens_minute' })).toBe(
      budget('p1', LITE).usage.tokens_this_minute,
    );
    expect(sample(text, 'gateway_capacity_total', { model: FLASH, window: 'requests_day' })).toBe(300);
    expect(sample(text, 'gateway_capacity_total', { model: LITE, window: 'requests_minute' })).toBe(50);
    expect(sample(text, 'gateway_capacity_total', { model: LITE, window: 'tokens_minute' })).toBe(500_000);
    expect(sample(text, 'gateway_capacity_used', { model: LITE, window: 'requests_day' })).toBe(3);
    expect(sample(text, 'gateway_capacity_left', { model: FLASH, window: 'requests_day' })).toBe(298);
    expect(sample(text, 'gateway_capacity_left', { model: LITE, window: 'requests_day' })).toBe(1497);
    expect(sample(text, 'gateway_capacity_available', { model: LITE, window: 'requests_day' })).toBe(1497);
    expect(text).toMatch(/# TYPE gateway_budget_limit gauge/);
    expect(text).toMatch(/# HELP gateway_capacity_total .+/);
    for (const v of values) expect(text).not.toContain(v);
  });

  it.skipIf(skip)('a rest on one (project, model) shows in capacity, budgets and metrics', async () => {
    const s = await start(env());
    // p2's key answers one 429 for the per-minute quota of LITE: (p2, LITE) rests, the request
    // is retried on p1; (p2, FLASH) does not rest.
    s.fake.script(
      {
        kind: 'rate_limit',
        quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
        retryDelay: '40s',
      },
      { apiKey: values[2], times: 1 },
    );
    for (let i = 0; i < 4; i++) expect((await generate(s, LITE, `lite ${i}`)).status).toBe(200);

    const budgets = (await getJson(s, '/admin/budgets')).budgets as Json[];
    const rested = budgets.find((b) => b.project === 'p2' && b.model === LITE);
    expect(rested.resting).toBe(true);
    expect(Date.parse(rested.rest_until)).toBeGreaterThan(Date.now() + 20_000);
    expect(rested.rest_reason).toEqual(expect.any(String));
    expect(budgets.find((b) => b.project === 'p2' && b.model === FLASH).resting).toBe(false);

    const capacity = (await getJson(s, '/admin/capacity')).models as Json[];
    const lite = capacity.find((m) => m.model === LITE);
    expect(lite.resting).toEqual([{ project: 'p2', until: rested.rest_until, reason: rested.rest_reason }]);
    const p2 = lite.projects.find((p: Json) => p.project === 'p2');
    expect(p2).toMatchObject({ resting: true, rest_until: rested.rest_until });
    const p1 = lite.projects.find((p: Json) => p.project === 'p1');
    expect(lite.available).toEqual(p1.left);
    expect(lite.left.requests_today).toBe(p1.left.requests_today + p2.left.requests_today);
    expect(capacity.find((m) => m.model === FLASH).resting).toEqual([]);

    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(sample(text, 'gateway_budget_resting', { project: 'p2', model: LITE })).toBe(1);
    expect(sample(text, 'gateway_budget_resting', { project: 'p2', model: FLASH })).toBe(0);
    expect(sample(text, 'gateway_budget_resting', { project: 'p1', model: LITE })).toBe(0);
    expect(sample(text, 'gateway_capacity_available', { model: LITE, window: 'requests_day' })).toBe(
      p1.left.requests_today,
    );
  });
});

describe('capacity: failures and limits', () => {
  it('a store that cannot answer is a 503 problem; /metrics says so in gateway_budget_states_up', async () => {
    const s = await start();
    s.gateway.store.budgetStates = async () => {
      throw new Error('store down');
    };
    for (const path of ['/admin/capacity', '/admin/budgets']) {
      const res = await adminFetch(s, ADMIN, 'GET', path);
      expect(res.status, path).toBe(503);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(sample(text, 'gateway_budget_states_up')).toBe(0);
    expect(sample(text, 'gateway_budget_limit')).toBeUndefined();
  });

  it('a key added through the admin API with model_limits adds its project to the capacity', async () => {
    const s = await start();
    const before = (await getJson(s, '/admin/capacity')).models.find((m: Json) => m.model === FLASH);
    const extra = 'AIzaCapacityExtraKey00000000000000000000';
    const added = await adminFetch(s, ADMIN, 'POST', '/admin/keys', {
      id: 'p4-a',
      api_key: extra,
      project: 'p4',
      models: [FLASH],
      model_limits: { [FLASH]: limits(3, 30, 3000) },
    });
    expect(added.status).toBe(201);
    expect(((await added.json()) as Json).model_limits).toEqual({ [FLASH]: limits(3, 30, 3000) });
    const models = (await getJson(s, '/admin/capacity')).models as Json[];
    const flash = models.find((m) => m.model === FLASH);
    expect(flash.total).toEqual({
      requests_per_minute: before.total.requests_per_minute + 3,
      requests_per_day: before.total.requests_per_day + 30,
      tokens_per_minute: before.total.tokens_per_minute + 3000,
    });
    expect(flash.projects.at(-1)).toMatchObject({ project: 'p4', keys: 1 });
    // Its key serves FLASH only: LITE's capacity is unchanged.
    expect(models.find((m) => m.model === LITE).projects.map((p: Json) => p.project)).toEqual(['p1', 'p2']);
  });

  it('is documented in the OpenAPI description', async () => {
    const s = await start();
    const doc = (await (await fetch(`${s.url}/docs/json`)).json()) as Json;
    for (const path of ['/admin/capacity', '/admin/budgets']) {
      const op = doc.paths[path].get;
      expect(op.tags, path).toEqual(['admin']);
      expect(op.summary, path).toEqual(expect.any(String));
      expect(op.responses['200'].content['application/json'].schema.properties, path).toBeDefined();
    }
  });

  it('needs the admin token', async () => {
    const s = await start();
    for (const path of ['/admin/capacity', '/admin/budgets']) {
      expect((await fetch(`${s.url}${path}`)).status, path).toBe(401);
      expect((await adminFetch(s, TEST_TOKEN, 'GET', path)).status, path).toBe(401);
    }
  });

  it('models seen only in traffic get series up to a cap; configured models always do', async () => {
    const s = await start();
    const real = s.gateway.store.budgetStates.bind(s.gateway.store);
    // 30 models used once each, beyond the 20 traffic-only models that get series.
    s.gateway.store.budgetStates = async (now, day) => [
      ...(await real(now, day)),
      ...Array.from({ length: 30 }, (_, i) => ({
        project: 'p1',
        model: `traffic-${String(i).padStart(2, '0')}`,
        rpm: 60,
        rpd: 1440,
        tpm: 32000,
        requestsThisMinute: 0,
        requestsToday: i === 29 ? 5 : 1,
        tokensThisMinute: 0,
        restUntilMs: null,
        restReason: null,
      })),
    ];
    const text = await (await fetch(`${s.url}/metrics`)).text();
    const models = new Set(
      text
        .split('\n')
        .filter((l) => l.startsWith('gateway_budget_limit{'))
        .map((l) => /model="([^"]*)"/.exec(l)![1]),
    );
    expect(models.has(FLASH) && models.has(LITE)).toBe(true);
    const traffic = [...models].filter((m) => m.startsWith('traffic-'));
    expect(traffic).toHaveLength(20);
    // The most used first, then by name.
    expect(traffic).toContain('traffic-29');
    expect(traffic).toContain('traffic-00');
    expect(traffic).not.toContain('traffic-28');
    expect(sample(text, 'gateway_capacity_total', { model: 'traffic-28' })).toBeUndefined();
    // The admin API lists them all.
    expect((await getJson(s, '/admin/capacity')).models).toHaveLength(32);
  });
});
