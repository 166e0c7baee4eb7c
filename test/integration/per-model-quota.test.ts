import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { QUOTA_IDS } from '../../fake/fake-gemini.ts';
import { poolKeyValues, stackPerTest } from '../helpers/stack.ts';
import { tempDirs } from '../helpers/temp.ts';

/**
 * Google counts quotas per project AND model: through @google/genai against the fake, which
 * counts the same way and answers Google's 429 bodies, the gateway spends each model's budget
 * exactly and a model's daily quota running out leaves the other models serving.
 */
const PRO = 'gemini-2.5-pro';
const LITE = 'gemini-2.5-flash-lite';
const FLASH = 'gemini-2.5-flash';
const start = stackPerTest();
const tempDir = tempDirs('gg-per-model-');

/** Four keys, two per project, written to a keys file with `model_limits` for pro and flash-lite. */
function keysFile(modelLimits: Record<string, { requests_per_minute: number; requests_per_day: number }>) {
  const values = poolKeyValues(4);
  const projects = ['proj-a', 'proj-a', 'proj-b', 'proj-b'];
  const file = join(tempDir(), 'keys.json');
  writeFileSync(
    file,
    JSON.stringify({
      defaults: { limits: { requests_per_minute: 100, requests_per_day: 1000 }, model_limits: modelLimits },
      keys: values.map((api_key, i) => ({ id: `k${i}`, api_key, project: projects[i] })),
    }),
  );
  return { file, fakeKeys: values.map((apiKey, i) => ({ apiKey, project: projects[i] })) };
}

function sdk(url: string, token: string): GoogleGenAI {
  return new GoogleGenAI({ apiKey: token, httpOptions: { baseUrl: url, retryOptions: { attempts: 1 } } });
}

async function outcome(p: Promise<unknown>): Promise<'ok' | number> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
}

describe('per (project, model) budgets through the SDK', () => {
  it('model_limits for pro and flash-lite are spent exactly side by side in one burst, with zero upstream 429s', async () => {
    const { file, fakeKeys } = keysFile({
      [PRO]: { requests_per_minute: 3, requests_per_day: 1000 },
      [`models/${LITE}`]: { requests_per_minute: 5, requests_per_day: 1000 },
    });
    const s = await start({
      env: { API_KEYS_FILE: file, GEMINI_API_KEYS: '', QUEUE_MAX_WAIT_MS: '300' },
      fake: { keys: fakeKeys, modelLimits: { [PRO]: { rpm: 3 }, [LITE]: { rpm: 5 } } },
    });
    const ai = sdk(s.url, s.token);
    const call = (model: string) => outcome(ai.models.generateContent({ model, contents: 'hello' }));
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => call(PRO)),
      ...Array.from({ length: 14 }, () => call(LITE)),
    ]);
    const pro = results.slice(0, 10);
    const lite = results.slice(10);
    // Two projects: 2 x 3 pro and 2 x 5 flash-lite, each model's budget to the last request.
    expect(pro.filter((r) => r === 'ok')).toHaveLength(6);
    expect(lite.filter((r) => r === 'ok')).toHaveLength(10);
    expect([...pro, ...lite].filter((r) => r !== 'ok').every((r) => r === 429)).toBe(true);
    expect(s.fake.stats.rateLimited).toBe(0);
    expect(s.fake.stats.byStatus.get(429) ?? 0).toBe(0);
  });

  it('a per-day 429 for pro rests pro only: flash goes on serving on the same keys', async () => {
    const { file, fakeKeys } = keysFile({});
    const s = await start({
      keys: 4,
      env: { API_KEYS_FILE: file, GEMINI_API_KEYS: '', QUEUE_MAX_WAIT_MS: '0' },
      fake: { keys: fakeKeys },
    });
    const ai = sdk(s.url, s.token);
    // Pro's daily quota runs out in both projects (Google's per-day body, quotaDimensions.model = pro).
    s.fake.script({ kind: 'rate_limit', quotaId: QUOTA_IDS.generate.rpd }, { times: 2 });
    expect(await outcome(ai.models.generateContent({ model: PRO, contents: 'hello' }))).toBe(429);
    const upstreamBefore = s.fake.stats.requests;
    // Pro is refused by the gateway itself now (nothing sent upstream) ...
    expect(await outcome(ai.models.generateContent({ model: PRO, contents: 'again' }))).toBe(429);
    expect(s.fake.stats.requests).toBe(upstreamBefore);
    // ... while flash and flash-lite are served by the same keys.
    for (let i = 0; i < 6; i++) {
      const r = await ai.models.generateContent({ model: i % 2 ? FLASH : LITE, contents: `q${i}` });
      expect(r.text).toBeTruthy();
    }
    const budgets = await s.gateway.store.budgetStates(Date.now(), s.gateway.pool.calendarAt(Date.now()).day);
    const resting = budgets.filter((b) => b.restUntilMs !== null).map((b) => `${b.project}/${b.model}`);
    expect(resting.sort()).toEqual([`proj-a/${PRO}`, `proj-b/${PRO}`]);
  });
});

describe('model names Google does not know', () => {
  it('get Google’s 404, are counted in no budget and leave none behind', async () => {
    const s = await start({ keys: 2 });
    const ai = sdk(s.url, s.token);
    for (let i = 0; i < 5; i++)
      expect(
        await outcome(ai.models.generateContent({ model: `gemini-9-made-up-${i}`, contents: 'hi' })),
      ).toBe(404);
    expect((await ai.models.generateContent({ model: FLASH, contents: 'hello' })).text).toBeTruthy();
    const now = Date.now();
    const budgets = await s.gateway.store.budgetStates(now, s.gateway.pool.calendarAt(now).day);
    const used = budgets.filter((b) => b.requestsToday > 0 || b.model.includes('made-up'));
    expect(used.map((b) => [b.model, b.requestsToday])).toEqual([[FLASH, 1]]);
  });
});

describe('model fallback (opt-in)', () => {
  const generate = (url: string, token: string, model: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/v1beta/models/${model}:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': token, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hello' }] }] }),
    });

  it('when the pool cannot serve pro, the next model of the chain serves a request that asks, and says so', async () => {
    const { file, fakeKeys } = keysFile({ [PRO]: { requests_per_minute: 1, requests_per_day: 1000 } });
    const s = await start({
      env: {
        API_KEYS_FILE: file,
        GEMINI_API_KEYS: '',
        QUEUE_MAX_WAIT_MS: '0',
        MODEL_FALLBACKS: `${PRO}>${FLASH}>${LITE}`,
      },
      fake: { keys: fakeKeys },
    });
    // Two projects, one pro request a minute each.
    for (let i = 0; i < 2; i++) {
      const r = await generate(s.url, s.token, PRO, { 'x-gateway-fallback': 'on' });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-gateway-model')).toBe(PRO);
    }
    const fellBack = await generate(s.url, s.token, PRO, { 'x-gateway-fallback': 'on' });
    expect(fellBack.status).toBe(200);
    expect(fellBack.headers.get('x-gateway-model')).toBe(FLASH);
    expect(((await fellBack.json()) as { modelVersion: string }).modelVersion).toContain(FLASH);
    // Off by default: without the header the request is refused, nothing goes upstream.
    const before = s.fake.stats.requests;
    expect((await generate(s.url, s.token, PRO)).status).toBe(429);
    expect(s.fake.stats.requests).toBe(before);
    // The OpenAI route falls back the same way and names the model that answered.
    const chat = await fetch(`${s.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${s.token}`,
        'content-type': 'application/json',
        'x-gateway-fallback': 'on',
      },
      body: JSON.stringify({ model: PRO, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(chat.status).toBe(200);
    expect(chat.headers.get('x-gateway-model')).toBe(FLASH);
    expect(((await chat.json()) as { model: string }).model).toBe(FLASH);
    expect(s.fake.stats.rateLimited).toBe(0);
  });
});
