import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { poolKeyValues, type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * No pool key and no client token reaches a client, whatever the upstream echoes: in a 200
 * answer, an error body passed on, or a stream (also with the secret cut across two chunks),
 * through raw HTTP and through the official SDKs.
 */
const start = stackPerTest({ keys: 1 });
const MODEL = 'gemini-2.5-flash-lite';
const POOL_KEY = poolKeyValues(1)[0]!;

function sdk(s: Stack): GoogleGenAI {
  return new GoogleGenAI({ apiKey: s.token, httpOptions: { baseUrl: s.url } });
}

function openai(s: Stack): OpenAI {
  return new OpenAI({ apiKey: s.token, baseURL: `${s.url}/v1beta/openai`, maxRetries: 0 });
}

async function raw(s: Stack, method: string, search = ''): Promise<{ status: number; text: string }> {
  const res = await fetch(`${s.url}/v1beta/models/${MODEL}:${method}${search}`, {
    method: 'POST',
    headers: { 'x-goog-api-key': s.token, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'tell me the key' }] }] }),
  });
  return { status: res.status, text: await res.text() };
}

function expectScrubbed(text: string, secret = POOL_KEY): void {
  expect(text).not.toContain(secret);
  expect(text).toContain('[REDACTED]');
}

async function thrown(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    return `${String(err)} ${JSON.stringify(err)}`;
  }
  throw new Error('expected an error');
}

describe('an echoed pool key never reaches the client', () => {
  it('in a 200 answer (raw HTTP and @google/genai)', async () => {
    const s = await start();
    s.fake.script({ kind: 'echo' }, { method: ':generateContent', times: 2 });
    const r = await raw(s, 'generateContent');
    expect(r.status).toBe(200);
    expectScrubbed(r.text);
    expect(JSON.parse(r.text).candidates[0].content.parts[0].text).toBe("Your key is [REDACTED], isn't it?");
    const answer = await sdk(s).models.generateContent({ model: MODEL, contents: 'tell me the key' });
    expect(answer.text).toBe("Your key is [REDACTED], isn't it?");
  });

  it('in an error body passed on (raw HTTP and @google/genai), also after retries', async () => {
    const s = await start({ env: { MAX_ATTEMPTS: '1' } });
    s.fake.script({ kind: 'echo', status: 400 }, { method: ':generateContent', times: 2 });
    const r = await raw(s, 'generateContent');
    expect(r.status).toBe(400);
    expectScrubbed(r.text);
    expect(JSON.parse(r.text).error.status).toBe('INVALID_ARGUMENT');
    expectScrubbed(await thrown(() => sdk(s).models.generateContent({ model: MODEL, contents: 'x' })));

    // A 503 that no other key could answer differently is passed on too.
    s.fake.script({ kind: 'echo', status: 503 }, { method: ':generateContent' });
    const overloaded = await raw(s, 'generateContent');
    expect(overloaded.status).toBe(503);
    expectScrubbed(overloaded.text);

    // The error of a stream request, before its first byte.
    s.fake.script({ kind: 'echo', status: 400 }, { method: 'streamGenerateContent' });
    const streamError = await raw(s, 'streamGenerateContent', '?alt=sse');
    expect(streamError.status).toBe(400);
    expectScrubbed(streamError.text);
  });

  it('in a stream, cut across two chunks (SSE and JSON array, raw HTTP and @google/genai)', async () => {
    const s = await start();
    s.fake.script({ kind: 'echo' }, { method: 'streamGenerateContent', times: 3 });
    const sse = await raw(s, 'streamGenerateContent', '?alt=sse');
    expect(sse.status).toBe(200);
    expectScrubbed(sse.text);
    expect(sse.text).toMatch(/^data: \{.*"text":"Your key is \[REDACTED\], isn't it\?".*\}\r\n\r\n$/s);

    const array = await raw(s, 'streamGenerateContent');
    expectScrubbed(array.text);
    expect(JSON.parse(array.text)[0].candidates[0].content.parts[0].text).toBe(
      "Your key is [REDACTED], isn't it?",
    );

    let text = '';
    for await (const c of await sdk(s).models.generateContentStream({ model: MODEL, contents: 'key?' }))
      text += c.text ?? '';
    expect(text).toBe("Your key is [REDACTED], isn't it?");
  });

  it('through the OpenAI-compatible surface (answer, stream, error)', async () => {
    const s = await start({ env: { MAX_ATTEMPTS: '1' } });
    const messages = [{ role: 'user' as const, content: 'key?' }];
    s.fake.script({ kind: 'echo' }, { method: ':generateContent' });
    const r = await openai(s).chat.completions.create({ model: MODEL, messages });
    expect(r.choices[0]!.message.content).toBe("Your key is [REDACTED], isn't it?");

    s.fake.script({ kind: 'echo' }, { method: 'streamGenerateContent' });
    let text = '';
    for await (const c of await openai(s).chat.completions.create({ model: MODEL, messages, stream: true }))
      text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe("Your key is [REDACTED], isn't it?");

    s.fake.script({ kind: 'echo', status: 400 }, { method: ':generateContent' });
    expectScrubbed(await thrown(() => openai(s).chat.completions.create({ model: MODEL, messages })));
  });
});

describe('an echoed client token never reaches the client', () => {
  it('in an answer, an error and a stream', async () => {
    const s = await start({ env: { MAX_ATTEMPTS: '1' } });
    s.fake.script({ kind: 'echo', secret: TEST_TOKEN }, { method: ':generateContent' });
    expectScrubbed((await raw(s, 'generateContent')).text, TEST_TOKEN);
    s.fake.script({ kind: 'echo', status: 400, secret: TEST_TOKEN }, { method: ':generateContent' });
    expectScrubbed((await raw(s, 'generateContent')).text, TEST_TOKEN);
    s.fake.script({ kind: 'echo', secret: TEST_TOKEN }, { method: 'streamGenerateContent' });
    let text = '';
    for await (const c of await sdk(s).models.generateContentStream({ model: MODEL, contents: 'token?' }))
      text += c.text ?? '';
    expect(text).toBe("Your key is [REDACTED], isn't it?");
  });
});
