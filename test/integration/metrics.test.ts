import { describe, expect, it } from 'vitest';
import { sample } from '../helpers/metrics.ts';
import { generateText, poolKeyValues, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/** /metrics: Prometheus exposition of requests, upstream attempts, keys, limits, cache, overhead. */

const ADMIN = 'admin-token-for-metrics-0123456';
const MODEL = 'gemini-2.5-flash-lite';

const stack = stackPerTest();

describe('/metrics', () => {
  it('exposes request, upstream, key, queue, overhead, cache and process metrics', async () => {
    const s = await stack({ keys: 2, env: { ADMIN_TOKEN: ADMIN } });
    for (let i = 0; i < 4; i++) expect((await generateText(s, `m${i}`)).status).toBe(200);
    await fetch(`${s.url}/nope`);
    s.fake.script({ kind: 'rate_limit', retryDelay: '30s' }, { times: 1 });
    await generateText(s, 'limited');
    const gen = () =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'count me' }),
      });
    await gen();
    await gen();
    const keys = (await (
      await fetch(`${s.url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN}` } })
    ).json()) as {
      keys: Array<{ id: string }>;
    };
    const disabledId = keys.keys[1]!.id;
    await fetch(`${s.url}/admin/keys/${disabledId}/disable`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}` },
    });

    const res = await fetch(`${s.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();

    const route = '/v1beta/models/*';
    expect(
      sample(text, 'http_requests_total', { method: 'POST', route, status: '200' }),
    ).toBeGreaterThanOrEqual(4);
    expect(sample(text, 'http_requests_total', { route: 'not_found', status: '404' })).toBe(1);
    expect(
      sample(text, 'http_request_duration_seconds_count', { route, status: '200' }),
    ).toBeGreaterThanOrEqual(4);
    expect(text).toMatch(
      /http_request_duration_seconds_bucket\{le="0\.005",method="POST",route="\/v1beta\/models\/\*",status="200"\}/,
    );

    expect(
      sample(text, 'gateway_upstream_requests_total', { model: MODEL, outcome: 'success' }),
    ).toBeGreaterThan(0);
    expect(sample(text, 'gateway_upstream_requests_total', { outcome: 'rate_limited' })).toBe(1);
    expect(text).toMatch(
      /gateway_upstream_requests_total\{key_id="env_[0-9a-f]+",model="gemini-2\.5-flash-lite",outcome="success"\}/,
    );
    expect(
      sample(text, 'gateway_upstream_request_duration_seconds_count', { outcome: 'success' }),
    ).toBeGreaterThan(0);

    expect(sample(text, 'gateway_key_state', { key_id: disabledId, state: 'disabled' })).toBe(1);
    expect(sample(text, 'gateway_key_state', { key_id: disabledId, state: 'available' })).toBe(0);
    expect(sample(text, 'gateway_key_state', { state: 'resting' })).toBeDefined();
    const remaining = sample(text, 'gateway_key_remaining', { window: 'requests_day' });
    expect(remaining).toBeGreaterThan(0);
    expect(remaining).toBeLessThanOrEqual(1440);
    expect(sample(text, 'gateway_key_states_up')).toBe(1);

    expect(sample(text, 'gateway_queue_wait_seconds_count')).toBeGreaterThanOrEqual(5);
    expect(sample(text, 'gateway_queue_length')).toBe(0);
    expect(sample(text, 'gateway_overhead_seconds_count', { route })).toBeGreaterThanOrEqual(4);
    expect(sample(text, 'gateway_overhead_seconds_count', { route: '/v1/generate' })).toBe(1);
    expect(sample(text, 'gateway_cache_lookups_total', { result: 'hit' })).toBe(1);
    expect(sample(text, 'gateway_cache_lookups_total', { result: 'miss' })).toBe(1);
    expect(sample(text, 'gateway_cache_entries')).toBe(1);
    expect(sample(text, 'gateway_rate_limit_refusals_total')).toBeUndefined();

    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // Conventions: every metric has HELP and TYPE lines.
    expect(text).toMatch(/# HELP http_requests_total .+\n# TYPE http_requests_total counter/);
    expect(text).toMatch(/# TYPE gateway_key_state gauge/);
    for (const secret of [...poolKeyValues(2), TEST_TOKEN, ADMIN]) expect(text).not.toContain(secret);
  });

  it('per (project, model) budgets and per-model capacity, from the state store at scrape time', async () => {
    const s = await stack({ keys: 2 });
    const { store, pool } = s.gateway;
    for (let i = 0; i < 3; i++) expect((await generateText(s, `b${i}`)).status).toBe(200);
    const text = await (await fetch(`${s.url}/metrics`)).text();
    const now = Date.now();
    const budgets = (await store.budgetStates(now, pool.calendarAt(now).day)).filter(
      (b) => b.model === MODEL,
    );
    // GEMINI_API_KEYS keys: one project each (the key id), default limits for every model.
    expect(budgets.map((b) => b.project).sort()).toEqual(pool.keys.map((k) => k.project).sort());
    let used = 0;
    for (const b of budgets) {
      const labels = { project: b.project, model: MODEL };
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'requests_day' })).toBe(1440);
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'requests_minute' })).toBe(60);
      expect(sample(text, 'gateway_budget_limit', { ...labels, window: 'tokens_minute' })).toBe(32000);
      const day = sample(text, 'gateway_budget_used', { ...labels, window: 'requests_day' });
      expect(day).toBe(b.requestsToday);
      expect(sample(text, 'gateway_budget_used', { ...labels, window: 'tokens_minute' })).toBe(
        b.tokensThisMinute,
      );
      expect(sample(text, 'gateway_budget_resting', labels)).toBe(0);
      used += day ?? 0;
    }
    expect(used).toBe(3);
    expect(sample(text, 'gateway_capacity_total', { model: MODEL, window: 'requests_day' })).toBe(2880);
    expect(sample(text, 'gateway_capacity_used', { model: MODEL, window: 'requests_day' })).toBe(3);
    expect(sample(text, 'gateway_capacity_left', { model: MODEL, window: 'requests_day' })).toBe(2877);
    expect(sample(text, 'gateway_capacity_available', { model: MODEL, window: 'requests_minute' })).toBe(117);
    expect(sample(text, 'gateway_budget_states_up')).toBe(1);
    for (const name of [
      'gateway_budget_limit',
      'gateway_budget_used',
      'gateway_budget_resting',
      'gateway_capacity_total',
    ])
      expect(text).toMatch(new RegExp(`# HELP ${name} .+\n# TYPE ${name} gauge`));
  });

  it('with METRICS_TOKEN, a Bearer token is required', async () => {
    const token = 'metrics-token-0123456789';
    const s = await stack({ env: { METRICS_TOKEN: token } });
    const none = await fetch(`${s.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toContain('application/problem+json');
    expect((await fetch(`${s.url}/metrics`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const ok = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('http_requests_total');
  });
});

describe('metrics token', () => {
  it('is accepted only as a Bearer token (scheme case-insensitive), not as X-Admin-Token', async () => {
    const token = 'metrics-token-scheme-test-0123';
    const s = await stack({ env: { METRICS_TOKEN: token } });
    const header = await fetch(`${s.url}/metrics`, { headers: { 'x-admin-token': token } });
    expect(header.status).toBe(401);
    const lower = await fetch(`${s.url}/metrics`, { headers: { authorization: `bearer ${token}` } });
    expect(lower.status).toBe(200);
  });
});
