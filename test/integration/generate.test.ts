import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postApp, type Stack, startStack } from '../helpers/stack.ts';

// biome-ignore lint/suspicious/noExplicitAny: loosely typed JSON answers and recorded bodies
type Json = any;

async function generate(stack: Stack, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { res, status: res.status, json: (await res.json()) as Json };
}

describe('POST /v1/generate', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { TEXT_MAX_LENGTH: '100' } });
  });
  afterAll(async () => {
    await stack?.close();
  });
  const post = (path: string, body: FormData | unknown) => postApp(stack, path, body);

  it('answers {text, model, usage, cached} and forwards system, temperature and max_tokens', async () => {
    const { res, status, json } = await generate(stack, {
      prompt: 'Write a haiku about keys',
      system: 'You are terse.',
      temperature: 0.4,
      max_tokens: 64,
      model: 'gemini-2.5-flash',
    });
    expect(status).toBe(200);
    expect(res.headers.get('x-cache')).toBe('MISS');
    expect(json).toMatchObject({
      text: 'Fake answer to: Write a haiku about keys',
      model: 'gemini-2.5-flash',
      cached: false,
    });
    expect(json.usage).toEqual({
      prompt_tokens: expect.any(Number),
      completion_tokens: expect.any(Number),
      total_tokens: expect.any(Number),
    });
    const up = stack.fake.stats.log.filter((r) => r.path.includes(':generateContent')).at(-1)!;
    expect(up.path).toBe('/v1beta/models/gemini-2.5-flash:generateContent');
    expect(up.body).toEqual({
      contents: [{ role: 'user', parts: [{ text: 'Write a haiku about keys' }] }],
      systemInstruction: { parts: [{ text: 'You are terse.' }] },
      generationConfig: { temperature: 0.4, maxOutputTokens: 64 },
    });
  });

  it.each([
    ['missing prompt', { model: 'gemini-2.5-flash' }, 422],
    ['empty prompt', { prompt: '' }, 422],
    ['temperature out of range', { prompt: 'x', temperature: 5 }, 422],
    ['prompt over TEXT_MAX_LENGTH', { prompt: 'x'.repeat(101) }, 413],
    ['bad model', { prompt: 'x', model: 'a b' }, 422],
  ])('refuses %s (%j) with %i, without upstream calls', async (_name, body, expected) => {
    const before = stack.fake.stats.requests;
    const { status } = await generate(stack, body);
    expect(status).toBe(expected);
    expect(stack.fake.stats.requests).toBe(before);
  });

  it('passes an upstream 4xx through as a problem', async () => {
    stack.fake.script({ kind: 'bad_request' }, { times: 1 });
    const { status, res } = await generate(stack, { prompt: 'provoke a bad request' });
    expect(status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
  });

  it('when every key is overloaded the answer is a 502 problem naming the upstream error', async () => {
    const busy = await startStack({ keys: 2, env: { MAX_ATTEMPTS: '2' } });
    try {
      busy.fake.script({ kind: 'overloaded' }, { times: 2 });
      const { status, json } = await generate(busy, { prompt: 'everyone is busy' });
      expect(status).toBe(502);
      expect(json).toMatchObject({
        status: 502,
        detail: expect.stringMatching(/^upstream error: .*overloaded/i),
      });
      expect(busy.fake.stats.requests).toBe(2);
    } finally {
      await busy.close();
    }
  });

  it('/v1/generate echoes the request id in the body', async () => {
    const { res, json } = await post('/v1/generate', { prompt: `request id probe ${Date.now()}` });
    expect(json.request_id).toBe(res.headers.get('x-request-id'));
  });
});
