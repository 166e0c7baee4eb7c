import { GoogleGenAI } from '@google/genai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { poolKeyValues, type Stack, startStack } from '../helpers/stack.ts';

/** The native proxy, driven by the official @google/genai SDK against the fake Gemini. */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function sdk(s: Stack): GoogleGenAI {
  return new GoogleGenAI({ apiKey: s.token, httpOptions: { baseUrl: s.url } });
}
const MODEL = 'gemini-2.5-flash-lite';

async function keyState(s: Stack, index: number) {
  const states = await s.gateway.store.keyStates(Date.now(), s.gateway.pool.calendarAt(Date.now()).day);
  const id = s.gateway.pool.keys[index]!.id;
  return states.find((k) => k.id === id)!;
}

describe('native Gemini proxy through @google/genai', () => {
  it('generateContent, countTokens, embedContent, batchEmbedContents, models', async () => {
    stack = await startStack();
    const ai = sdk(stack);
    const r = await ai.models.generateContent({ model: MODEL, contents: 'Say hi' });
    expect(r.text).toContain('Say hi');
    expect(r.usageMetadata?.promptTokenCount).toBeGreaterThan(0);
    const count = await ai.models.countTokens({ model: MODEL, contents: 'x'.repeat(40) });
    expect(count.totalTokens).toBe(10);
    const emb = await ai.models.embedContent({ model: 'text-embedding-004', contents: 'hello' });
    expect(emb.embeddings?.[0]?.values?.length).toBeGreaterThan(0);
    const batch = await ai.models.embedContent({ model: 'text-embedding-004', contents: ['a', 'b'] });
    expect(batch.embeddings).toHaveLength(2);
    const models = await ai.models.list();
    const names: string[] = [];
    for await (const m of models) names.push(m.name ?? '');
    expect(names).toContain('models/gemini-2.5-flash-lite');
    const one = await ai.models.get({ model: 'gemini-2.5-flash' });
    expect(one.name).toBe('models/gemini-2.5-flash');
  });

  it('streams with SSE chunk by chunk, and the JSON-array stream without alt=sse', async () => {
    stack = await startStack({ fake: { streamChunks: 4 } });
    const chunks: string[] = [];
    for await (const c of await sdk(stack).models.generateContentStream({
      model: MODEL,
      contents: 'stream please',
    })) {
      chunks.push(c.text ?? '');
    }
    expect(chunks.length).toBe(4);
    expect(chunks.join('')).toBe('Fake answer to: stream please');

    const res = await fetch(`${stack.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-goog-api-key': stack.token,
        'accept-encoding': 'gzip, br',
      },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'raw' }] }] }),
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('content-encoding')).toBeNull();
    const text = await res.text();
    expect(text.startsWith('data: {')).toBe(true);
    expect(text.endsWith('\r\n\r\n')).toBe(true);

    const arr = await fetch(`${stack.url}/v1beta/models/${MODEL}:streamGenerateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'array' }] }] }),
    });
    const parsed = JSON.parse(await arr.text()) as unknown[];
    expect(parsed.length).toBe(4);
  });

  it('accepts the client token in every supported place and refuses a wrong one', async () => {
    stack = await startStack();
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
    const url = `${stack.url}/v1beta/models/${MODEL}:generateContent`;
    const json = { 'content-type': 'application/json' };
    for (const [headers, query] of [
      [{ 'x-goog-api-key': stack.token }, ''],
      [{ authorization: `Bearer ${stack.token}` }, ''],
      [{ 'x-api-key': stack.token }, ''],
      [{}, `?key=${stack.token}`],
    ] as const) {
      const res = await fetch(url + query, { method: 'POST', headers: { ...json, ...headers }, body });
      expect(res.status).toBe(200);
    }
    const wrong = await fetch(url, { method: 'POST', headers: { ...json, 'x-goog-api-key': 'nope' }, body });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED' } });
  });

  it('the client token never goes upstream; the pool key only in x-goog-api-key', async () => {
    stack = await startStack();
    await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent?key=${stack.token}&foo=bar`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
    });
    const seen = stack.fake.stats.log.at(-1)!;
    expect(JSON.stringify(seen)).not.toContain(stack.token);
    expect(seen.search).toBe('?foo=bar');
    expect(poolKeyValues(3)).toContain(seen.headers['x-goog-api-key']);
    expect(seen.headers.authorization).toBeUndefined();
  });

  it('passes a malformed-request 400 through as Google sent it, without touching the key', async () => {
    stack = await startStack({ keys: 1 });
    stack.fake.script({ kind: 'bad_request' });
    const err = (await sdk(stack)
      .models.generateContent({ model: MODEL, contents: 'x' })
      .catch((e: unknown) => e as { status: number; message: string })) as {
      status: number;
      message: string;
    };
    expect(err).toMatchObject({ status: 400 });
    expect(String(err.message)).toContain('INVALID_ARGUMENT');
    expect(await keyState(stack, 0)).toMatchObject({ enabled: true, circuit: 'closed' });
  });

  it('an unknown model is Google’s 404, passed through', async () => {
    stack = await startStack();
    const err = (await sdk(stack)
      .models.generateContent({ model: 'gemini-nope', contents: 'x' })
      .catch((e: unknown) => e as { status: number })) as { status: number };
    expect(err.status).toBe(404);
  });

  it('an invalid key is disabled and the request retried on another key', async () => {
    stack = await startStack({ keys: 2 });
    const [bad] = poolKeyValues(2);
    stack.fake.setKeyState(bad!, 'invalid');
    for (let i = 0; i < 4; i++) {
      const r = await sdk(stack).models.generateContent({ model: MODEL, contents: `n${i}` });
      expect(r.text).toContain(`n${i}`);
    }
    expect(stack.fake.stats.byKey.get(bad!)).toBe(1); // tried once, then never again
    expect(await keyState(stack, 0)).toMatchObject({ enabled: false, disabledReason: 'API_KEY_INVALID' });
  });

  it('a leaked key (403) is disabled with its reason and never shown to the client', async () => {
    stack = await startStack({ keys: 2 });
    const [leaked] = poolKeyValues(2);
    stack.fake.setKeyState(leaked!, 'suspended');
    const res = await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'a' }] }] }),
    });
    await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'b' }] }] }),
    });
    expect(res.status).toBe(200);
    expect(await keyState(stack, 0)).toMatchObject({ enabled: false, disabledReason: 'SUSPENDED' });
    // with every key dead the answer is a 503 that names no key
    stack.fake.setKeyState(poolKeyValues(2)[1]!, 'leaked');
    const dead = await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'c' }] }] }),
    });
    const text = await dead.text();
    expect(dead.status).toBe(503);
    for (const k of poolKeyValues(2)) expect(text).not.toContain(k);
    expect(await keyState(stack, 1)).toMatchObject({ enabled: false, disabledReason: 'LEAKED' });
  });

  it('an upstream 429 with RetryInfo rests the key exactly that long and retries elsewhere', async () => {
    stack = await startStack({ keys: 2 });
    const [first] = poolKeyValues(2);
    stack.fake.script({ kind: 'rate_limit', retryDelay: '42s' }, { apiKey: first });
    const before = Date.now();
    // two requests: round robin reaches the scripted key in one of them
    for (let i = 0; i < 2; i++) await sdk(stack).models.generateContent({ model: MODEL, contents: `r${i}` });
    const state = await keyState(stack, 0);
    // The key's view names the (project, model) budget that rests.
    expect(state.restReason).toBe(`${MODEL}: GenerateRequestsPerMinutePerProjectPerModel-FreeTier`);
    expect(state.restUntilMs! - before).toBeGreaterThanOrEqual(42_000);
    expect(state.restUntilMs! - Date.now()).toBeLessThanOrEqual(42_000);
    expect(state.enabled).toBe(true);
    // while it rests, the other key serves everything
    stack.fake.resetStats();
    for (let i = 0; i < 3; i++) await sdk(stack).models.generateContent({ model: MODEL, contents: `s${i}` });
    expect(stack.fake.stats.byKey.get(first!)).toBeUndefined();
  });

  it('an exhausted pool answers 429 with Retry-After and a JSON body', async () => {
    stack = await startStack({ keys: 2, env: { DEFAULT_RPM: '1', QUEUE_MAX_WAIT_MS: '0' } });
    const call = () =>
      fetch(`${stack!.url}/v1beta/models/${MODEL}:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': stack!.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
      });
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    const refused = await call();
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(59);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await refused.json()).toMatchObject({ error: { code: 429, status: 'RESOURCE_EXHAUSTED' } });
    expect(stack.fake.stats.requests).toBe(2); // the refusal never reached upstream
  });

  it('a burst above capacity: every admitted request is served, zero upstream 429s, even load', async () => {
    const keys = 4;
    const rpm = 5;
    stack = await startStack({
      keys,
      env: { DEFAULT_RPM: String(rpm), QUEUE_MAX_WAIT_MS: '0' },
      fake: { limits: { rpm } },
    });
    const results = await Promise.all(
      Array.from({ length: 35 }, (_, i) =>
        fetch(`${stack!.url}/v1beta/models/${MODEL}:generateContent`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-goog-api-key': stack!.token },
          body: JSON.stringify({ contents: [{ parts: [{ text: `burst ${i}` }] }] }),
        }).then((r) => r.status),
      ),
    );
    expect(results.filter((s) => s === 200)).toHaveLength(keys * rpm);
    expect(results.filter((s) => s === 429)).toHaveLength(35 - keys * rpm);
    expect(stack.fake.stats.rateLimited).toBe(0);
    expect([...stack.fake.stats.byKey.values()]).toEqual(Array(keys).fill(rpm));
  });

  it('queued requests wait for a key and are served in arrival order', async () => {
    stack = await startStack({ keys: 1, env: { QUEUE_MAX_WAIT_MS: '5000' } });
    const key = stack.gateway.pool.keys[0]!;
    // bench the only key for 600 ms, as an upstream 429 would
    const lease = await stack.gateway.pool.acquire(MODEL, 1, []);
    await stack.gateway.pool.report(lease, { kind: 'rest', untilMs: Date.now() + 600, reason: 'test' });
    expect(lease.keyId).toBe(key.id);
    const order: number[] = [];
    const ai = sdk(stack);
    await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        await new Promise((r) => setTimeout(r, i * 20));
        await ai.models.generateContent({ model: MODEL, contents: `q${i}` });
        order.push(i);
      }),
    );
    expect(order).toEqual([0, 1, 2, 3]);
    expect(stack.fake.stats.log.map((r) => JSON.stringify(r.body).match(/q\d/)?.[0])).toEqual([
      'q0',
      'q1',
      'q2',
      'q3',
    ]);
  });

  it('503 overloaded is retried on another key and never disables one', async () => {
    stack = await startStack({ keys: 2 });
    stack.fake.script({ kind: 'overloaded' }, { times: 1 });
    const r = await sdk(stack).models.generateContent({ model: MODEL, contents: 'o' });
    expect(r.text).toContain('o');
    expect(stack.fake.stats.byStatus.get(503)).toBe(1);
    for (const i of [0, 1])
      expect(await keyState(stack, i)).toMatchObject({ enabled: true, circuit: 'closed' });
  });

  it('when every attempt is overloaded the client gets Google’s 503, and keys stay enabled', async () => {
    stack = await startStack({ keys: 2, env: { MAX_ATTEMPTS: '2' } });
    stack.fake.script({ kind: 'overloaded' }, { times: 10 });
    const err = (await sdk(stack)
      .models.generateContent({ model: MODEL, contents: 'o' })
      .catch((e: unknown) => e as { status: number; message: string })) as {
      status: number;
      message: string;
    };
    expect(err.status).toBe(503);
    expect(err.message).toContain('overloaded');
    for (const i of [0, 1]) expect((await keyState(stack, i)).enabled).toBe(true);
  });

  it('5xx failures open a key’s circuit; the pool routes around it', async () => {
    stack = await startStack({
      keys: 2,
      env: { CIRCUIT_FAILURE_THRESHOLD: '2', CIRCUIT_COOLDOWN_MS: '60000' },
    });
    const [flaky] = poolKeyValues(2);
    stack.fake.script({ kind: 'internal' }, { apiKey: flaky, times: 2 });
    for (let i = 0; i < 6; i++) await sdk(stack).models.generateContent({ model: MODEL, contents: `c${i}` });
    expect(await keyState(stack, 0)).toMatchObject({ circuit: 'open', enabled: true, lastError: 'INTERNAL' });
    expect(stack.fake.stats.byKey.get(flaky!)).toBe(2);
  });

  it('a timed-out attempt is retried on another key', async () => {
    stack = await startStack({ keys: 2, env: { UPSTREAM_TIMEOUT_MS: '300' } });
    stack.fake.script({ kind: 'hang' }, { times: 1 });
    const r = await sdk(stack).models.generateContent({ model: MODEL, contents: 'h' });
    expect(r.text).toContain('h');
    const states = await Promise.all([keyState(stack, 0), keyState(stack, 1)]);
    expect(states.map((s) => s.lastError)).toContain('TIMEOUT');
  });

  it('an answer whose body stalls after its headers is retried on another key', async () => {
    stack = await startStack({ keys: 2, env: { UPSTREAM_TIMEOUT_MS: '300' } });
    stack.fake.script({ kind: 'stall' }, { times: 1 });
    const r = await sdk(stack).models.generateContent({ model: MODEL, contents: 'stalled' });
    expect(r.text).toContain('stalled');
    expect(stack.fake.stats.requests).toBe(2);
    const states = await Promise.all([keyState(stack, 0), keyState(stack, 1)]);
    expect(states.map((s) => s.lastError)).toContain('TIMEOUT');
  });

  it('retries stop at the request deadline: hanging upstreams give a 504, not a hang', async () => {
    stack = await startStack({
      keys: 3,
      env: { REQUEST_TIMEOUT: '0.6', UPSTREAM_TIMEOUT_MS: '250', MAX_ATTEMPTS: '10' },
    });
    stack.fake.script({ kind: 'hang' }, { times: 20 });
    const res = await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'h' }] }] }),
    });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { code: 504, status: 'DEADLINE_EXCEEDED' } });
    // bounded by the deadline: at most ceil(600 / 250) attempts, not MAX_ATTEMPTS
    expect(stack.fake.stats.requests).toBeLessThanOrEqual(3);
  });

  it('serves the same methods under /v1', async () => {
    stack = await startStack();
    const res = await fetch(`${stack.url}/v1/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'v1 path' }] }] }),
    });
    expect(res.status).toBe(200);
    expect(JSON.stringify(await res.json())).toContain('v1 path');
    expect(stack.fake.stats.log.at(-1)!.path).toBe(`/v1/models/${MODEL}:generateContent`);
    const list = await fetch(`${stack.url}/v1/models`, { headers: { 'x-goog-api-key': stack.token } });
    expect(list.status).toBe(200);
  });

  it('a stream that fails before its first byte is retried on another key', async () => {
    stack = await startStack({ keys: 2 });
    stack.fake.script({ kind: 'reset' }, { method: 'streamGenerateContent', times: 1 });
    const parts: string[] = [];
    for await (const c of await sdk(stack).models.generateContentStream({
      model: MODEL,
      contents: 'retry me',
    })) {
      parts.push(c.text ?? '');
    }
    expect(parts.join('')).toBe('Fake answer to: retry me');
    expect(stack.fake.stats.requests).toBe(2);
  });

  it('a stream that breaks after its first byte ends with an error event, not an empty 200', async () => {
    stack = await startStack({ keys: 2 });
    stack.fake.script({ kind: 'midstream_error' }, { method: 'streamGenerateContent', times: 1 });
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of await sdk(stack!).models.generateContentStream({
        model: MODEL,
        contents: 'broken',
      })) {
        got.push(c.text ?? '');
      }
    })().catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(got.length).toBeGreaterThanOrEqual(1);
    expect(stack.fake.stats.requests).toBe(1); // not retried once bytes went out
  });

  it('an upstream connection that breaks mid-stream ends the answer with our error event, in its framing', async () => {
    stack = await startStack({ keys: 2, fake: { streamChunks: 3 } });
    const post = (alt: string) =>
      fetch(`${stack!.url}/v1beta/models/${MODEL}:streamGenerateContent${alt}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': stack!.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'cut me off' }] }] }),
      });

    stack.fake.script({ kind: 'midstream_break' }, { method: 'streamGenerateContent', times: 1 });
    const sse = await post('?alt=sse');
    expect(sse.status).toBe(200);
    const events = (await sse.text()).split('\r\n\r\n').filter(Boolean);
    expect(events.length).toBe(2); // the one chunk that came through, then ours
    expect(JSON.parse(events[0]!.slice('data: '.length)).candidates).toBeDefined();
    expect(JSON.parse(events[1]!.slice('data: '.length))).toMatchObject({
      error: { code: 502, status: 'UNAVAILABLE' },
    });

    stack.fake.script({ kind: 'midstream_break' }, { method: 'streamGenerateContent', times: 1 });
    const array = await post('');
    expect(array.status).toBe(200);
    const items = JSON.parse(await array.text()) as Array<Record<string, unknown>>; // still valid JSON
    expect(items.at(0)!.candidates).toBeDefined();
    expect(items.at(-1)).toMatchObject({ error: { code: 502, status: 'UNAVAILABLE' } });

    expect(stack.fake.stats.requests).toBe(2); // neither was retried once bytes went out
    const states = await Promise.all([keyState(stack, 0), keyState(stack, 1)]);
    expect(states.map((s) => s.lastError)).toContain('STREAM_BROKEN');
  });

  it('a stream that ends without a chunk is retried on another key', async () => {
    stack = await startStack({ keys: 2 });
    stack.fake.script({ kind: 'empty_stream' }, { method: 'streamGenerateContent', times: 1 });
    const parts: string[] = [];
    for await (const c of await sdk(stack).models.generateContentStream({
      model: MODEL,
      contents: 'again',
    })) {
      parts.push(c.text ?? '');
    }
    expect(parts.join('')).toBe('Fake answer to: again');
    expect(stack.fake.stats.requests).toBe(2);
    const states = await Promise.all([keyState(stack, 0), keyState(stack, 1)]);
    expect(states.map((s) => s.lastError)).toContain('EMPTY_STREAM');
  });

  it('when every attempt fails at the network level the client gets a 502 in Google’s shape', async () => {
    stack = await startStack({ keys: 2, env: { MAX_ATTEMPTS: '2' } });
    stack.fake.script({ kind: 'reset' }, { times: 2 });
    const res = await fetch(`${stack.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'nobody home' }] }] }),
    });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({
      error: { code: 502, status: 'UNAVAILABLE', message: expect.stringContaining('network_error') },
    });
    expect(stack.fake.stats.requests).toBe(2);
  });

  it('a client leaving mid-stream is not held against the key; an upstream error event is', async () => {
    stack = await startStack({ keys: 1, fake: { streamChunks: 5, chunkDelayMs: 200 } });
    const controller = new AbortController();
    const res = await fetch(`${stack.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'leave early' }] }] }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await new Promise((r) => setTimeout(r, 300));
    expect(await keyState(stack, 0)).toMatchObject({ consecutiveFailures: 0, circuit: 'closed' });
    expect((await keyState(stack, 0)).lastError).not.toBe('STREAM_BROKEN');

    stack.fake.script({ kind: 'midstream_error' }, { method: 'streamGenerateContent' });
    const broken = await fetch(`${stack.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'broken' }] }] }),
    });
    await broken.text();
    await new Promise((r) => setTimeout(r, 50));
    expect(await keyState(stack, 0)).toMatchObject({
      consecutiveFailures: 1,
      lastError: 'STREAM_ERROR_EVENT',
    });
  });

  it('settles the token reservation with usageMetadata (streams too)', async () => {
    // The fake bills 1.5 times the gateway's estimate: 100 tokens reserved, 150 billed.
    stack = await startStack({ keys: 1, fake: { textTokenRatio: 1.5 } });
    const text = 'y'.repeat(400);
    await sdk(stack).models.generateContent({ model: MODEL, contents: text });
    await vi.waitFor(async () => expect((await keyState(stack!, 0)).tokensThisMinute).toBe(150));
    for await (const _ of await sdk(stack).models.generateContentStream({ model: MODEL, contents: text })) {
      /* drain */
    }
    await vi.waitFor(async () => expect((await keyState(stack!, 0)).tokensThisMinute).toBe(300));
  });
});
