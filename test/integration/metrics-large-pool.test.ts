import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sample } from '../helpers/metrics.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * /metrics with a pool of 10,000 keys, each its own project (as a pool of free-tier keys is):
 * per-key series are off by default at that size (METRICS_PER_KEY=auto), per-model series stay,
 * (project, model) budget series are kept to METRICS_MAX_PROJECTS projects, so a scrape stays
 * small; METRICS_TOKEN keeps it private.
 */

const KEYS = 10_000;
const TOKEN = 'metrics-token-7f3a9c21e0b4';
const MODELS = ['gemini-2.5-flash-lite', 'gemini-2.5-flash', 'gemini-2.5-pro'];
let s: Stack;

beforeAll(async () => {
  s = await startStack({ keys: KEYS, env: { METRICS_TOKEN: TOKEN } });
  // Traffic over many keys and projects, three models.
  for (let i = 0; i < 300; i += 30)
    await Promise.all(
      Array.from({ length: 30 }, (_, j) =>
        fetch(`${s.url}/v1beta/models/${MODELS[(i + j) % 3]}:generateContent`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-goog-api-key': s.token },
          body: JSON.stringify({ contents: [{ parts: [{ text: `q${i + j}` }] }] }),
        }).then(async (r) => {
          expect(r.status).toBe(200);
          await r.body?.cancel();
        }),
      ),
    );
}, 120_000);
afterAll(async () => {
  await s?.close();
  await s?.fake.close();
});

async function scrape(): Promise<string> {
  const r = await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(r.status).toBe(200);
  return r.text();
}

describe('/metrics of a 10,000-key pool', { timeout: 60_000 }, () => {
  it('is small: no per-key series, per-model series kept, budgets of at most 100 projects', async () => {
    const text = await scrape();
    expect(sample(text, 'gateway_key_states_up')).toBe(1);
    expect(Buffer.byteLength(text)).toBeLessThan(200 * 1024);
    expect(text).not.toMatch(/^gateway_key_state\{/m);
    expect(text).not.toMatch(/^gateway_key_remaining\{/m);
    expect(text).not.toMatch(/key_id="env_/);
    // Keys counted by state instead.
    expect(sample(text, 'gateway_keys', { state: 'available' })).toBe(KEYS);
    // Upstream attempts per model and outcome, whatever key served them.
    const successes = MODELS.map((model) =>
      sample(text, 'gateway_upstream_requests_total', { model, outcome: 'success' }),
    );
    expect(successes).toEqual([100, 100, 100]);
    // Capacity per model counts every project.
    for (const model of MODELS) {
      expect(sample(text, 'gateway_capacity_used', { model, window: 'requests_day' })).toBe(100);
      expect(sample(text, 'gateway_capacity_total', { model, window: 'requests_minute' })).toBe(KEYS * 60);
    }
    const projects = new Set(
      [...text.matchAll(/^gateway_budget_used\{project="([^"]+)"/gm)].map((m) => m[1]),
    );
    expect(projects.size).toBe(100);
  });

  it('METRICS_TOKEN is enforced: no token or a wrong one reads nothing', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-the-token' }, { authorization: TOKEN }]) {
      const r = await fetch(`${s.url}/metrics`, { headers });
      expect(r.status).toBe(401);
      const body = await r.text();
      expect(body).not.toContain('gateway_');
      expect(body).toContain('"status":401');
    }
  });
});
