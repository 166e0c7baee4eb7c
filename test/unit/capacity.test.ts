import { describe, expect, it } from 'vitest';
import { type KeyEntry, keyFromEntry } from '../../src/config/keys.ts';
import { capacityModels, computeCapacity } from '../../src/pool/capacity.ts';
import type { BudgetState, KeyState } from '../../src/store/types.ts';

/** The pool's capacity per model (src/pool/capacity.ts): sums over projects of (project, model) budgets. */

const ENV = { DEFAULT_RPM: 60, DEFAULT_RPD: 1440, DEFAULT_TPM: 32000 };
const NOW = Date.UTC(2026, 2, 10, 12, 0, 0);
const FLASH = 'gemini-2.5-flash';
const LITE = 'gemini-2.5-flash-lite';

function key(entry: Partial<KeyEntry> & { id: string }) {
  return keyFromEntry({ api_key: `AIza-${entry.id}`, ...entry }, ENV);
}

function state(id: string, project: string, over: Partial<KeyState> = {}): KeyState {
  return {
    id,
    project,
    enabled: true,
    disabledReason: null,
    disabledAtMs: null,
    verified: true,
    restUntilMs: null,
    restReason: null,
    circuit: 'closed',
    consecutiveFailures: 0,
    requestsThisMinute: 0,
    requestsToday: 0,
    tokensThisMinute: 0,
    lastError: null,
    lastErrorAtMs: null,
    ...over,
  };
}

function budget(project: string, model: string, over: Partial<BudgetState> = {}): BudgetState {
  return {
    project,
    model,
    rpm: 0,
    rpd: 0,
    tpm: 0,
    requestsThisMinute: 0,
    requestsToday: 0,
    tokensThisMinute: 0,
    restUntilMs: null,
    restReason: null,
    ...over,
  };
}

const modelLimits = {
  [FLASH]: { requests_per_minute: 10, requests_per_day: 250, tokens_per_minute: 250_000 },
  [`models/${LITE}`]: { requests_per_minute: 15, requests_per_day: 1000, tokens_per_minute: 200_000 },
};

describe('capacityModels', () => {
  it('lists models named in any modelLimits or with a budget state, sorted, without the no-model budget', () => {
    const configs = [
      key({ id: 'a', model_limits: { 'models/zeta': { requests_per_day: 5 } } }),
      key({ id: 'b' }),
    ];
    const budgets = [budget('a', 'alpha'), budget('b', ''), budget('b', 'zeta')];
    expect(capacityModels(configs, budgets)).toEqual(['alpha', 'zeta']);
  });
});

describe('computeCapacity', () => {
  it('sums each project once, with its first key limits, and its use', () => {
    const configs = [
      key({ id: 'p1-a', project: 'p1', model_limits: modelLimits }),
      // A second key of p1 with other numbers: p1 still counts once, with its first key's limits.
      key({ id: 'p1-b', project: 'p1', model_limits: { [FLASH]: { requests_per_day: 9999 } } }),
      key({ id: 'p2-a', project: 'p2', model_limits: modelLimits }),
    ];
    const budgets = [
      budget('p1', FLASH, { requestsThisMinute: 2, requestsToday: 30, tokensThisMinute: 1000 }),
      budget('p2', FLASH, { requestsThisMinute: 1, requestsToday: 20, tokensThisMinute: 500 }),
      budget('p1', LITE, { requestsToday: 1000 }),
    ];
    const keyStates = configs.map((k) => state(k.id, k.project));
    const caps = computeCapacity({ configs, keyStates, budgets, nowMs: NOW });
    expect(caps.map((c) => c.model)).toEqual([FLASH, LITE]);

    const flash = caps[0]!;
    expect(flash.total).toEqual({ rpm: 20, rpd: 500, tpm: 500_000 });
    expect(flash.used).toEqual({ requestsThisMinute: 3, requestsToday: 50, tokensThisMinute: 1500 });
    expect(flash.left).toEqual({ requestsThisMinute: 17, requestsToday: 450, tokensThisMinute: 498_500 });
    expect(flash.available).toEqual(flash.left);
    expect(flash.resting).toEqual([]);
    expect(flash.projects.map((p) => [p.project, p.keys])).toEqual([
      ['p1', 2],
      ['p2', 1],
    ]);
    expect(flash.projects[0]).toMatchObject({
      limits: { rpm: 10, rpd: 250, tpm: 250_000 },
      used: { requestsThisMinute: 2, requestsToday: 30, tokensThisMinute: 1000 },
      left: { requestsThisMinute: 8, requestsToday: 220, tokensThisMinute: 249_000 },
      resting: false,
      restUntilMs: null,
    });

    // The model named with models/ is normalized; a used-up day leaves nothing (never below 0).
    const lite = caps[1]!;
    expect(lite.total).toEqual({ rpm: 30, rpd: 2000, tpm: 400_000 });
    expect(lite.used.requestsToday).toBe(1000);
    expect(lite.left.requestsToday).toBe(1000);
    expect(lite.projects[0]!.left.requestsToday).toBe(0);
  });

  it('a model seen only in traffic gets the default limits; no state means no use', () => {
    const configs = [key({ id: 'a', limits: { requests_per_minute: 7 } }), key({ id: 'b' })];
    const caps = computeCapacity({
      configs,
      keyStates: [],
      budgets: [budget('a', 'gemini-x', { requestsToday: 3 })],
      nowMs: NOW,
    });
    expect(caps).toHaveLength(1);
    expect(caps[0]).toMatchObject({
      model: 'gemini-x',
      total: { rpm: 67, rpd: 2880, tpm: 64_000 },
      used: { requestsToday: 3, requestsThisMinute: 0 },
      left: { requestsToday: 2877, requestsThisMinute: 67 },
    });
  });

  it('leaves out projects without a usable key for the model: disabled, disabled at runtime, models restrict', () => {
    const configs = [
      key({ id: 'off', project: 'p-off', enabled: false, model_limits: modelLimits }),
      key({ id: 'dead', project: 'p-dead', model_limits: modelLimits }),
      key({ id: 'lite-only', project: 'p-lite', models: [LITE], model_limits: modelLimits }),
      key({ id: 'ok', project: 'p-ok', model_limits: modelLimits }),
    ];
    const keyStates = [
      state('off', 'p-off', { enabled: false }),
      state('dead', 'p-dead', { enabled: false, disabledReason: 'API key not valid' }),
      state('lite-only', 'p-lite'),
      state('ok', 'p-ok'),
    ];
    const budgets = [
      budget('p-dead', FLASH, { requestsToday: 40 }),
      budget('p-ok', FLASH, { requestsToday: 4 }),
    ];
    const caps = computeCapacity({ configs, keyStates, budgets, nowMs: NOW });
    const flash = caps.find((c) => c.model === FLASH)!;
    expect(flash.projects.map((p) => p.project)).toEqual(['p-ok']);
    expect(flash.total).toEqual({ rpm: 10, rpd: 250, tpm: 250_000 });
    expect(flash.used.requestsToday).toBe(4);
    const lite = caps.find((c) => c.model === LITE)!;
    expect(lite.projects.map((p) => p.project)).toEqual(['p-lite', 'p-ok']);
    expect(lite.total.rpd).toBe(2000);
  });

  it('a project whose first key is disabled still counts with that key limits when another key serves', () => {
    const configs = [
      key({
        id: 'first',
        project: 'p',
        enabled: false,
        model_limits: { [FLASH]: { requests_per_day: 100 } },
      }),
      key({ id: 'second', project: 'p', model_limits: { [FLASH]: { requests_per_day: 500 } } }),
    ];
    const caps = computeCapacity({ configs, keyStates: [], budgets: [], nowMs: NOW });
    expect(caps[0]).toMatchObject({ model: FLASH, total: { rpd: 100 } });
    expect(caps[0]!.projects).toMatchObject([{ project: 'p', keys: 1 }]);
  });

  it('a resting project counts in total and left, not in available; an ended rest is no rest', () => {
    const configs = [
      key({ id: 'a', project: 'pa', model_limits: modelLimits }),
      key({ id: 'b', project: 'pb', model_limits: modelLimits }),
    ];
    const budgets = [
      budget('pa', FLASH, {
        requestsToday: 10,
        restUntilMs: NOW + 30_000,
        restReason: 'rate limited (per minute)',
      }),
      budget('pb', FLASH, { requestsToday: 5, restUntilMs: NOW - 1, restReason: 'old' }),
    ];
    const [flash] = computeCapacity({ configs, keyStates: [], budgets, nowMs: NOW });
    expect(flash!.model).toBe(FLASH);
    expect(flash!.total.rpd).toBe(500);
    expect(flash!.left.requestsToday).toBe(240 + 245);
    expect(flash!.available.requestsToday).toBe(245);
    expect(flash!.available.requestsThisMinute).toBe(10);
    expect(flash!.resting).toEqual([
      { project: 'pa', untilMs: NOW + 30_000, reason: 'rate limited (per minute)' },
    ]);
    expect(flash!.projects.map((p) => [p.project, p.resting, p.restUntilMs, p.restReason])).toEqual([
      ['pa', true, NOW + 30_000, 'rate limited (per minute)'],
      ['pb', false, null, null],
    ]);
  });

  it('a model nobody can serve is listed with zero capacity', () => {
    const configs = [key({ id: 'a', models: [LITE], model_limits: modelLimits })];
    const caps = computeCapacity({ configs, keyStates: [], budgets: [], nowMs: NOW });
    const flash = caps.find((c) => c.model === FLASH)!;
    expect(flash.total).toEqual({ rpm: 0, rpd: 0, tpm: 0 });
    expect(flash.projects).toEqual([]);
  });
});
