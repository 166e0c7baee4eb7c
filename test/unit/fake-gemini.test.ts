import { ApiError, GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { type FakeGemini, maskSecret } from '../../fake/fake-gemini.ts';
import { FAKE_MODELS } from '../../fake/fake-gemini-content.ts';
import { fakePerTest, type Json, KEY, post } from '../helpers/fake.ts';

const start = fakePerTest();

function sdk(fake: FakeGemini, apiKey = KEY): GoogleGenAI {
  return new GoogleGenAI({ apiKey, httpOptions: { baseUrl: fake.url } });
}

const userText = (text: string) => ({ contents: [{ role: 'user', parts: [{ text }] }] });

const GEN = '/v1beta/models/gemini-2.5-flash:generateContent';
const SSE = '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse';
const ARRAY = '/v1beta/models/gemini-2.5-flash:streamGenerateContent';
const EMBED = '/v1beta/models/gemini-embedding-001:embedContent';
const BATCH = '/v1beta/models/gemini-embedding-001:batchEmbedContents';
const withImage = {
  contents: [
    {
      role: 'user',
      parts: [{ text: '12345678' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }],
    },
  ],
};

function detail(json: Json, type: string): Json {
  return json.error.details?.find((d: Json) => d['@type'] === `type.googleapis.com/google.rpc.${type}`);
}

function sseFrames(text: string): Json[] {
  expect(text).toMatch(/^(data: \{[^\r\n]*\}\r\n\r\n)+$/);
  return text
    .split('\r\n\r\n')
    .filter(Boolean)
    .map((f) => JSON.parse(f.slice('data: '.length)));
}

describe('fake Gemini through @google/genai', () => {
  it('generateContent returns the deterministic answer with usage, modelVersion and responseId', async () => {
    const fake = await start();
    const res = await sdk(fake).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Tell me about llamas',
      config: { systemInstruction: 'Be brief.' },
    });
    expect(res.text).toBe('Fake answer to: Tell me about llamas');
    expect(res.candidates?.[0]?.finishReason).toBe('STOP');
    expect(res.candidates?.[0]?.content?.role).toBe('model');
    // ceil(("Tell me about llamas" + "Be brief.").length / 4) = ceil(29 / 4)
    expect(res.usageMetadata?.promptTokenCount).toBe(8);
    expect(res.usageMetadata?.candidatesTokenCount).toBe(Math.ceil(res.text!.length / 4));
    expect(res.usageMetadata?.totalTokenCount).toBe(8 + Math.ceil(res.text!.length / 4));
    expect(res.modelVersion).toBe('gemini-2.5-flash');
    expect(res.responseId).toMatch(/^[\w-]{6,}$/);
    const again = await sdk(fake).models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' });
    expect(again.responseId).not.toBe(res.responseId);
  });

  it('answers only the first 200 chars of the last user text part', async () => {
    const fake = await start();
    const long = 'a'.repeat(250);
    const res = await sdk(fake).models.generateContent({
      model: 'gemini-2.5-flash-lite',
      contents: [
        { role: 'user', parts: [{ text: 'first question' }] },
        { role: 'model', parts: [{ text: 'first answer' }] },
        { role: 'user', parts: [{ text: 'ignored' }, { text: long }] },
      ],
    });
    expect(res.text).toBe(`Fake answer to: ${'a'.repeat(200)}`);
  });

  it('generateContentStream yields 3 chunks with cumulative usage and STOP only on the last', async () => {
    const fake = await start();
    const chunks = [];
    for await (const c of await sdk(fake).models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: 'stream please',
    })) {
      chunks.push(c);
    }
    expect(chunks).toHaveLength(3);
    expect(chunks.map((c) => c.text).join('')).toBe('Fake answer to: stream please');
    expect(chunks.map((c) => c.candidates?.[0]?.finishReason)).toEqual([undefined, undefined, 'STOP']);
    const counts = chunks.map((c) => c.usageMetadata?.candidatesTokenCount ?? 0);
    expect(counts[0]).toBeLessThan(counts[2]!);
    expect(counts[2]).toBe(Math.ceil('Fake answer to: stream please'.length / 4));
    for (const c of chunks) {
      expect(c.usageMetadata?.promptTokenCount).toBe(Math.ceil('stream please'.length / 4));
      expect(c.modelVersion).toBe('gemini-2.5-flash');
      expect(c.responseId).toBe(chunks[0]!.responseId);
    }
  });

  it('countTokens counts ceil(chars/4) plus 258 per inline image', async () => {
    const fake = await start();
    const res = await sdk(fake).models.countTokens({
      model: 'gemini-2.5-flash',
      contents: [
        {
          role: 'user',
          parts: [{ text: '123456789' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }],
        },
      ],
    });
    expect(res.totalTokens).toBe(3 + 258);
  });

  it('embedContent returns deterministic 8-float vectors', async () => {
    const fake = await start();
    const ai = sdk(fake);
    const a = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: 'the cat sat' });
    const b = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: 'the cat sat' });
    const c = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: 'quantum finance' });
    const va = a.embeddings?.[0]?.values ?? [];
    expect(va).toHaveLength(8);
    expect(va.every((x) => Number.isFinite(x))).toBe(true);
    expect(b.embeddings?.[0]?.values).toEqual(va);
    expect(c.embeddings?.[0]?.values).not.toEqual(va);
    const d = await ai.models.embedContent({
      model: 'text-embedding-004',
      contents: 'dims',
      config: { outputDimensionality: 16 },
    });
    expect(d.embeddings?.[0]?.values).toHaveLength(16);
  });

  it('image models answer with a valid PNG inlineData part and 1290 candidate tokens', async () => {
    const fake = await start();
    const res = await sdk(fake).models.generateContent({
      model: 'gemini-2.5-flash-image',
      contents: 'a cat',
    });
    const parts = res.candidates?.[0]?.content?.parts ?? [];
    const img = parts.find((p) => p.inlineData)?.inlineData;
    expect(img?.mimeType).toBe('image/png');
    const png = Buffer.from(img!.data!, 'base64');
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.subarray(12, 16).toString('ascii')).toBe('IHDR');
    expect(png.readUInt32BE(16)).toBe(8);
    expect(res.usageMetadata?.candidatesTokenCount).toBe(1290);
    // responseModalities IMAGE on another model, image only
    const r2 = await post(fake, GEN, {
      ...userText('draw'),
      generationConfig: { responseModalities: ['IMAGE'] },
    });
    expect(r2.json.candidates[0].content.parts).toHaveLength(1);
    expect(r2.json.candidates[0].content.parts[0].inlineData.mimeType).toBe('image/png');
  });

  it('midstream_error makes the SDK stream throw after the first chunk', async () => {
    const fake = await start();
    fake.script({ kind: 'midstream_error' });
    const got: string[] = [];
    const run = async () => {
      for await (const c of await sdk(fake).models.generateContentStream({
        model: 'gemini-2.5-flash',
        contents: 'hello',
      })) {
        got.push(c.text ?? '');
      }
    };
    const err = await run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(500);
    expect(got).toHaveLength(1);
  });
});

describe('usage details', () => {
  // Mutant: the IMAGE entry of usageMetadata.promptTokensDetails dropped.
  it('usageMetadata.promptTokensDetails has a TEXT and an IMAGE entry for a prompt with an image', async () => {
    const fake = await start();
    const r = await post(fake, GEN, withImage);
    expect(r.status).toBe(200);
    expect(r.json.usageMetadata.promptTokenCount).toBe(2 + 258);
    expect(r.json.usageMetadata.promptTokensDetails).toEqual([
      { modality: 'TEXT', tokenCount: 2 },
      { modality: 'IMAGE', tokenCount: 258 },
    ]);
  });

  // Mutant: countTokens ignores the `generateContentRequest` wrapper and counts the outer body.
  it('countTokens counts a wrapped generateContentRequest, with per-modality details', async () => {
    const fake = await start();
    const r = await post(fake, '/v1beta/models/gemini-2.5-flash:countTokens', {
      generateContentRequest: { model: 'models/gemini-2.5-flash', ...withImage },
    });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      totalTokens: 2 + 258,
      promptTokensDetails: [
        { modality: 'TEXT', tokenCount: 2 },
        { modality: 'IMAGE', tokenCount: 258 },
      ],
    });
  });
});

describe('stream framing (raw HTTP)', () => {
  it('SSE: each chunk is exactly "data: {json}\\r\\n\\r\\n", no event names, no [DONE]', async () => {
    const fake = await start();
    const res = await fetch(fake.url + SSE, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify(userText('framing')),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const text = await res.text();
    expect(text).not.toContain('event:');
    expect(text).not.toContain('[DONE]');
    const frames = sseFrames(text);
    expect(frames).toHaveLength(3);
    expect(frames.map((f) => f.candidates[0].finishReason)).toEqual([undefined, undefined, 'STOP']);
    expect(new Set(frames.map((f) => f.responseId)).size).toBe(1);
    expect(frames.every((f) => f.modelVersion === 'gemini-2.5-flash')).toBe(true);
    expect(frames.every((f) => typeof f.usageMetadata.promptTokenCount === 'number')).toBe(true);
  });

  it('streamChunks option controls the number of chunks', async () => {
    const fake = await start({ streamChunks: 5 });
    const r = await post(fake, SSE, userText('five chunks please'));
    expect(sseFrames(r.text)).toHaveLength(5);
  });

  it('without alt=sse: one JSON array streamed progressively', async () => {
    const fake = await start({ chunkDelayMs: 150 });
    const res = await fetch(fake.url + ARRAY, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify(userText('array')),
    });
    expect(res.headers.get('content-type')).toContain('application/json');
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    const first = dec.decode((await reader.read()).value);
    expect(first.startsWith('[{')).toBe(true);
    expect(first).not.toContain('STOP'); // the rest has not been sent yet
    let text = first;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    expect(text).toMatch(/^\[\{.*\}\r\n,\{.*\}\r\n,\{.*\}\r\n\]$/s);
    const arr = JSON.parse(text);
    expect(arr).toHaveLength(3);
    expect(arr.map((c: Json) => c.candidates[0].content.parts[0].text).join('')).toBe(
      'Fake answer to: array',
    );
    expect(arr[2].candidates[0].finishReason).toBe('STOP');
  });

  it('midstream_error over SSE and JSON array: first chunk then an error chunk', async () => {
    const fake = await start();
    fake.script({ kind: 'midstream_error' }, { times: 3 });
    const sse = await post(fake, SSE, userText('x'));
    expect(sse.status).toBe(200);
    const frames = sseFrames(sse.text);
    expect(frames).toHaveLength(2);
    expect(frames[0].candidates[0].content.parts[0].text).toBeTypeOf('string');
    expect(frames[1]).toEqual({ error: { code: 500, message: expect.any(String), status: 'INTERNAL' } });
    const arr = await post(fake, ARRAY, userText('x'));
    expect(arr.json).toHaveLength(2);
    expect(arr.json[1].error.code).toBe(500);
    const unary = await post(fake, GEN, userText('x'));
    expect(unary.status).toBe(500);
    expect(unary.json.error.status).toBe('INTERNAL');
  });
});

describe('stream framing of a mid-stream error without alt=sse', () => {
  // Mutant: the error element of the JSON array joined with "," instead of Google's "\r\n,".
  it('the error element is separated like every other element: "\\r\\n,"', async () => {
    const fake = await start();
    fake.script({ kind: 'midstream_error' });
    const r = await post(fake, ARRAY, userText('x'));
    expect(r.status).toBe(200);
    expect(r.text.startsWith('[{')).toBe(true);
    expect(r.text).toMatch(/\}\r\n,\{"error":\{"code":500,[^\r\n]*\}\}\r\n\]$/);
    expect(r.json).toHaveLength(2);
  });
});

describe('structured output', () => {
  it('responseSchema (OpenAPI subset, upper-case types) yields conforming JSON', async () => {
    const fake = await start();
    const r = await post(fake, GEN, {
      ...userText('extract'),
      generationConfig: {
        responseMimeType: 'application/json',
        responseSchema: {
          type: 'OBJECT',
          properties: {
            name: { type: 'STRING' },
            score: { type: 'NUMBER', minimum: 0, maximum: 1 },
            count: { type: 'INTEGER', minimum: 3, maximum: 8 },
            ok: { type: 'BOOLEAN' },
            kind: { type: 'STRING', enum: ['alpha', 'beta'] },
            tags: { type: 'ARRAY', items: { type: 'STRING' }, maxItems: '1' },
            items: {
              type: 'ARRAY',
              items: { type: 'OBJECT', properties: { id: { type: 'INTEGER' } }, required: ['id'] },
            },
          },
          required: ['name'],
        },
      },
    });
    const value = JSON.parse(r.json.candidates[0].content.parts[0].text);
    expect(value).toEqual({
      name: 'sample name',
      score: 0.5,
      count: 5,
      ok: true,
      kind: 'alpha',
      tags: ['sample tags'],
      items: [{ id: 1 }, { id: 1 }],
    });
  });

  it('responseJsonSchema (JSON Schema with $ref, anyOf, minItems) yields conforming JSON, streamed too', async () => {
    const fake = await start();
    const schema = {
      type: 'object',
      $defs: { Person: { type: 'object', properties: { age: { type: 'integer', minimum: 18 } } } },
      properties: {
        people: { type: 'array', items: { $ref: '#/$defs/Person' }, minItems: 3 },
        note: { anyOf: [{ type: 'null' }, { type: 'string' }] },
      },
      required: ['people'],
    };
    const expected = { people: [{ age: 19 }, { age: 19 }, { age: 19 }], note: 'sample note' };
    const r = await post(fake, GEN, {
      ...userText('x'),
      generationConfig: { responseMimeType: 'application/json', responseJsonSchema: schema },
    });
    expect(JSON.parse(r.json.candidates[0].content.parts[0].text)).toEqual(expected);
    const s = await post(fake, SSE, {
      ...userText('x'),
      generation_config: { response_mime_type: 'application/json', response_json_schema: schema },
    });
    const joined = sseFrames(s.text)
      .map((f) => f.candidates[0].content.parts[0].text)
      .join('');
    expect(JSON.parse(joined)).toEqual(expected);
  });
});

describe('failures', () => {
  it('overloaded → 503 UNAVAILABLE with Google message; only the scripted number of times', async () => {
    const fake = await start();
    fake.script({ kind: 'overloaded' }, { times: 2 });
    const a = await post(fake, GEN, userText('x'));
    const b = await post(fake, GEN, userText('x'));
    const c = await post(fake, GEN, userText('x'));
    expect(a.json).toEqual({
      error: {
        code: 503,
        message: 'The model is overloaded. Please try again later.',
        status: 'UNAVAILABLE',
      },
    });
    expect([a.status, b.status, c.status]).toEqual([503, 503, 200]);
  });

  it('internal → 500 INTERNAL', async () => {
    const fake = await start();
    fake.script({ kind: 'internal' });
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(500);
    expect(r.json.error).toMatchObject({ code: 500, status: 'INTERNAL' });
  });

  it('rate_limit → 429 with Help, QuotaFailure and RetryInfo (defaults and overrides)', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit' });
    const r = await post(fake, '/v1beta/models/gemini-2.5-flash-lite:generateContent', userText('x'));
    expect(r.status).toBe(429);
    expect(r.json.error.status).toBe('RESOURCE_EXHAUSTED');
    expect(r.json.error.details.map((d: Json) => d['@type'])).toEqual([
      'type.googleapis.com/google.rpc.Help',
      'type.googleapis.com/google.rpc.QuotaFailure',
      'type.googleapis.com/google.rpc.RetryInfo',
    ]);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toEqual({
      quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
      quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaDimensions: { location: 'global', model: 'gemini-2.5-flash-lite' },
      quotaValue: '15',
    });
    expect(detail(r.json, 'RetryInfo').retryDelay).toBe('23s');
    expect(r.json.error.message).toBe(
      'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 15, model: gemini-2.5-flash-lite\nPlease retry in 23.0s.',
    );

    fake.script({
      kind: 'rate_limit',
      quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
      retryDelay: '54.05s',
    });
    const d = await post(fake, GEN, userText('x'));
    expect(detail(d.json, 'QuotaFailure').violations[0].quotaId).toBe(
      'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
    );
    expect(detail(d.json, 'RetryInfo').retryDelay).toBe('54.05s');
    expect(d.json.error.message).toContain('Please retry in 54.05s.');
    expect(fake.stats.rateLimited).toBe(0); // scripted 429s are not the fake's own limits
  });

  it('rate_limit bare → 429 without details', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit', bare: true });
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(429);
    expect(r.json).toEqual({
      error: {
        code: 429,
        message: 'Resource has been exhausted (e.g. check quota).',
        status: 'RESOURCE_EXHAUSTED',
      },
    });
  });

  it('invalid_key → 400 API_KEY_INVALID with ErrorInfo', async () => {
    const fake = await start();
    fake.script({ kind: 'invalid_key' });
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(400);
    expect(r.json.error.message).toBe('API key not valid. Please pass a valid API key.');
    expect(r.json.error.status).toBe('INVALID_ARGUMENT');
    expect(detail(r.json, 'ErrorInfo')).toEqual({
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'API_KEY_INVALID',
      domain: 'googleapis.com',
      metadata: { service: 'generativelanguage.googleapis.com' },
    });
    expect(detail(r.json, 'LocalizedMessage')).toBeDefined();
  });

  it('leaked → 403 PERMISSION_DENIED', async () => {
    const fake = await start();
    fake.script({ kind: 'leaked' });
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({
      code: 403,
      status: 'PERMISSION_DENIED',
      message: 'Your API key was reported as leaked. Please use another API key.',
    });
  });

  it('bad_request → 400 INVALID_ARGUMENT about the payload', async () => {
    const fake = await start();
    fake.script({ kind: 'bad_request' });
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(400);
    expect(r.json.error.status).toBe('INVALID_ARGUMENT');
    expect(r.json.error.message).toMatch(/^Invalid JSON payload received/);
  });

  it('hang → no answer; close() still finishes', async () => {
    const fake = await start();
    fake.script({ kind: 'hang' });
    const t0 = Date.now();
    const err = await fetch(fake.url + GEN, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY },
      body: JSON.stringify(userText('x')),
      signal: AbortSignal.timeout(300),
    }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('TimeoutError');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(fake.stats.requests).toBe(1);
    // a second hung request is open while closing
    fake.script({ kind: 'hang' });
    const pending = fetch(fake.url + GEN, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY },
      body: '{}',
    }).catch((e: unknown) => e);
    while (fake.stats.requests < 2) await new Promise((r) => setTimeout(r, 5));
    await fake.close();
    expect(await pending).toBeInstanceOf(Error);
  });

  it('reset → the socket is destroyed without an answer', async () => {
    const fake = await start();
    fake.script({ kind: 'reset' });
    const err = await fetch(fake.url + GEN, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY },
      body: JSON.stringify(userText('x')),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError); // fetch failed (ECONNRESET / socket closed)
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
  });

  it('scripts can target one key and one method', async () => {
    const fake = await start();
    fake.script({ kind: 'overloaded' }, { apiKey: 'key-b' });
    fake.script({ kind: 'internal' }, { method: 'streamGenerateContent' });
    expect((await post(fake, GEN, userText('x'), 'key-a')).status).toBe(200);
    expect((await post(fake, SSE, userText('x'), 'key-a')).status).toBe(500);
    expect((await post(fake, SSE, userText('x'), 'key-a')).status).toBe(200);
    expect((await post(fake, GEN, userText('x'), 'key-b')).status).toBe(503);
    expect((await post(fake, GEN, userText('x'), 'key-b')).status).toBe(200);
  });
});

describe('scripted 429 bodies', () => {
  // Mutant: an Embed* quotaId reported with the generate metric.
  it('an Embed quotaId gets the embed metric', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit', quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier' });
    const r = await post(fake, EMBED, { content: { parts: [{ text: 'x' }] } });
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_requests',
      quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaDimensions: { location: 'global', model: 'gemini-embedding-001' },
    });
  });

  // Mutant: a per-day quotaId reported with the per-minute default limit (15 instead of 20).
  it('default limits follow the quota: 20 per day, 250000 tokens, or the configured limits', async () => {
    const fake = await start();
    fake.script({ kind: 'rate_limit', quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' });
    const day = await post(fake, GEN, userText('x'));
    expect(detail(day.json, 'QuotaFailure').violations[0].quotaValue).toBe('20');
    expect(day.json.error.message).toContain('limit: 20, model: gemini-2.5-flash');
    fake.script({ kind: 'rate_limit', quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier' });
    const tok = await post(fake, GEN, userText('x'));
    expect(detail(tok.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count',
      quotaValue: '250000',
    });

    const limited = await start({ limits: { rpm: 7, rpd: 70, tpm: 700 } });
    limited.script({ kind: 'rate_limit', quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' });
    const d2 = await post(limited, GEN, userText('x'));
    expect(detail(d2.json, 'QuotaFailure').violations[0].quotaValue).toBe('70');
  });
});

describe('authentication and key states', () => {
  it('no key → 403 unregistered callers; ?key= works', async () => {
    const fake = await start();
    const r = await post(fake, GEN, userText('x'), null);
    expect(r.status).toBe(403);
    expect(r.json.error.message).toBe(
      "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
    );
    expect(r.json.error.status).toBe('PERMISSION_DENIED');
    const q = await post(fake, `${GEN}?key=${KEY}`, userText('x'), null);
    expect(q.status).toBe(200);
    expect(fake.stats.log.at(-1)?.apiKey).toBe(KEY);
  });

  it('with a key list, unknown keys get 400 API_KEY_INVALID; addKey admits them', async () => {
    const fake = await start({ keys: [{ apiKey: 'known' }] });
    expect((await post(fake, GEN, userText('x'), 'known')).status).toBe(200);
    const r = await post(fake, GEN, userText('x'), 'stranger');
    expect(r.status).toBe(400);
    expect(detail(r.json, 'ErrorInfo').reason).toBe('API_KEY_INVALID');
    fake.addKey('stranger');
    expect((await post(fake, GEN, userText('x'), 'stranger')).status).toBe(200);
  });

  it('persistent key states: invalid, leaked, suspended (masked), service_disabled, ok again', async () => {
    const fake = await start();
    fake.setKeyState(KEY, 'invalid');
    const inv = await post(fake, GEN, userText('x'));
    expect(inv.status).toBe(400);
    expect(detail(inv.json, 'ErrorInfo').reason).toBe('API_KEY_INVALID');
    expect((await post(fake, GEN, userText('x'))).status).toBe(400);

    fake.setKeyState(KEY, 'leaked');
    const leaked = await post(fake, GEN, userText('x'));
    expect(leaked.status).toBe(403);
    expect(leaked.json.error.message).toContain('reported as leaked');

    fake.setKeyState(KEY, 'suspended');
    const sus = await post(fake, GEN, userText('x'));
    expect(sus.status).toBe(403);
    expect(sus.json.error.status).toBe('PERMISSION_DENIED');
    expect(sus.json.error.message).toMatch(/^Consumer 'api_key:.+' has been suspended\.$/);
    expect(sus.text).not.toContain(KEY);

    fake.setKeyState(KEY, 'service_disabled');
    const dis = await post(fake, GEN, userText('x'));
    expect(dis.status).toBe(403);
    expect(detail(dis.json, 'ErrorInfo').reason).toBe('SERVICE_DISABLED');
    expect(dis.text).not.toContain(KEY);

    fake.setKeyState(KEY, 'ok');
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
  });
});

describe('API key precedence', () => {
  // Mutant: ?key= preferred over the x-goog-api-key header.
  it('the x-goog-api-key header wins over ?key=', async () => {
    const fake = await start({ keys: [{ apiKey: KEY }] });
    const r = await post(fake, `${GEN}?key=not-a-known-key`, userText('x'), KEY);
    expect(r.status).toBe(200);
    expect(fake.stats.log.at(-1)?.apiKey).toBe(KEY);
    const bad = await post(fake, `${GEN}?key=${KEY}`, userText('x'), 'not-a-known-key');
    expect(bad.status).toBe(400);
    expect(detail(bad.json, 'ErrorInfo').reason).toBe('API_KEY_INVALID');
  });
});

describe('maskSecret', () => {
  // Mutant: `length <= 10` → `< 10` (a 10-character secret would show 8 of its characters).
  it('hides secrets of 10 characters or fewer entirely; longer ones keep 4 + 4 characters', () => {
    expect(maskSecret('0123456789')).toBe('***');
    expect(maskSecret('short')).toBe('***');
    expect(maskSecret('0123456789a')).toBe('0123...789a');
  });
});

describe('routes and validation', () => {
  it('unknown model → 404 NOT_FOUND with Google message', async () => {
    const fake = await start();
    const r = await post(fake, '/v1beta/models/gemini-9-ultra:generateContent', userText('x'));
    expect(r.status).toBe(404);
    expect(r.json).toEqual({
      error: {
        code: 404,
        message:
          'models/gemini-9-ultra is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.',
        status: 'NOT_FOUND',
      },
    });
    const viaSdk = await sdk(fake)
      .models.generateContent({ model: 'gemini-9-ultra', contents: 'x' })
      .catch((e: unknown) => e);
    expect((viaSdk as ApiError).status).toBe(404);
    const embedOnly = await post(fake, '/v1/models/text-embedding-004:generateContent', userText('x'));
    expect(embedOnly.status).toBe(404);
    expect(embedOnly.json.error.message).toContain('API version v1,');
  });

  it('unknown paths → 404 in Google shape', async () => {
    const fake = await start();
    const r = await post(fake, '/v1beta/tunedModels/x:frobnicate', {});
    expect(r.status).toBe(404);
    expect(r.json.error).toMatchObject({ code: 404, status: 'NOT_FOUND' });
    const r2 = await post(fake, '/v1beta/models/gemini-2.5-flash:frobnicate', {});
    expect(r2.status).toBe(404);
  });

  it('GET /models and /models/{model} under v1beta and v1', async () => {
    const fake = await start();
    for (const v of ['v1beta', 'v1']) {
      const list = await fetch(`${fake.url}/${v}/models`, { headers: { 'x-goog-api-key': KEY } });
      expect(list.status).toBe(200);
      const { models } = (await list.json()) as { models: Json[] };
      const names = models.map((m) => m.name);
      for (const n of [
        'gemini-2.5-flash',
        'gemini-2.5-flash-lite',
        'gemini-2.5-flash-image',
        'text-embedding-004',
        'gemini-embedding-001',
      ]) {
        expect(names).toContain(`models/${n}`);
      }
      const one = await fetch(`${fake.url}/${v}/models/gemini-2.5-flash`, {
        headers: { 'x-goog-api-key': KEY },
      });
      const m = (await one.json()) as Json;
      expect(m).toMatchObject({ name: 'models/gemini-2.5-flash', displayName: 'Gemini 2.5 Flash' });
      expect(m.supportedGenerationMethods).toContain('generateContent');
      expect(m.inputTokenLimit).toBeGreaterThan(0);
    }
    const missing = await fetch(`${fake.url}/v1beta/models/nope`, { headers: { 'x-goog-api-key': KEY } });
    expect(missing.status).toBe(404);
    const noKey = await fetch(`${fake.url}/v1beta/models`);
    expect(noKey.status).toBe(403);
  });

  it('invalid JSON and missing contents → 400 INVALID_ARGUMENT', async () => {
    const fake = await start();
    const bad = await post(fake, GEN, '{"contents": [');
    expect(bad.status).toBe(400);
    expect(bad.json.error.status).toBe('INVALID_ARGUMENT');
    expect(bad.json.error.message).toContain('Invalid JSON payload received');
    const missing = await post(fake, GEN, { generationConfig: {} });
    expect(missing.status).toBe(400);
    expect(missing.json.error.status).toBe('INVALID_ARGUMENT');
    expect(missing.json.error.message).toContain('contents');
  });

  it('countTokens and batchEmbedContents over raw HTTP, snake_case inline_data accepted', async () => {
    const fake = await start();
    const ct = await post(fake, '/v1beta/models/gemini-2.5-flash:countTokens', {
      contents: [{ parts: [{ text: 'abcde' }, { inline_data: { mime_type: 'image/jpeg', data: 'AAAA' } }] }],
    });
    expect(ct.json.totalTokens).toBe(2 + 258);
    const gen = await post(fake, GEN, {
      contents: [{ parts: [{ text: 'abcde' }, { inline_data: { mime_type: 'image/jpeg', data: 'AAAA' } }] }],
      system_instruction: { parts: [{ text: 'abc' }] },
    });
    expect(gen.json.usageMetadata.promptTokenCount).toBe(2 + 258);
    const be = await post(fake, '/v1beta/models/text-embedding-004:batchEmbedContents', {
      requests: [
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'one' }] } },
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'two' }] } },
      ],
    });
    expect(be.json.embeddings).toHaveLength(2);
    expect(be.json.embeddings[0].values).toHaveLength(8);
    const single = await post(fake, '/v1beta/models/text-embedding-004:embedContent', {
      content: { parts: [{ text: 'one' }] },
    });
    expect(single.json.embedding.values).toEqual(be.json.embeddings[0].values);
  });
});

describe('limits (fake clock)', () => {
  const T0 = Date.UTC(2025, 5, 1, 12, 0, 0); // 05:00 Pacific

  it('rpm: rolling 60 s window, 429 body fields, refused requests not counted', async () => {
    let now = T0;
    const fake = await start({ limits: { rpm: 2 }, now: () => now });
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    now += 10_000;
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    now += 10_000;
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaValue: '2',
      quotaDimensions: { model: 'gemini-2.5-flash' },
    });
    expect(detail(r.json, 'RetryInfo').retryDelay).toBe('40s'); // the first request leaves at T0+60s
    expect(r.json.error.message).toContain('limit: 2, model: gemini-2.5-flash');
    expect(r.json.error.message).toContain('Please retry in 40.0s.');
    expect(fake.stats.rateLimited).toBe(1);
    // fractional delays
    now += 543;
    const frac = await post(fake, GEN, userText('x'));
    expect(detail(frac.json, 'RetryInfo').retryDelay).toBe('39.457s');
    // another model has its own window
    expect(
      (await post(fake, '/v1beta/models/gemini-2.5-flash-lite:generateContent', userText('x'))).status,
    ).toBe(200);
    // the first request leaves the window; the refused ones were not counted, so exactly one slot opens
    now = T0 + 60_000;
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    expect((await post(fake, GEN, userText('x'))).status).toBe(429);
    expect(fake.stats.rateLimited).toBe(3);
    expect(fake.stats.byStatus.get(429)).toBe(3);
  });

  it('rpm applies to streaming too and two keys of one project share the limit', async () => {
    let now = T0;
    const fake = await start({
      keys: [
        { apiKey: 'k1', project: 'proj-a' },
        { apiKey: 'k2', project: 'proj-a' },
        { apiKey: 'k3', project: 'proj-b' },
      ],
      limits: { rpm: 1 },
      now: () => now,
    });
    expect((await post(fake, SSE, userText('x'), 'k1')).status).toBe(200);
    expect((await post(fake, GEN, userText('x'), 'k2')).status).toBe(429);
    expect((await post(fake, GEN, userText('x'), 'k3')).status).toBe(200);
    fake.addKey('k4', 'proj-b');
    expect((await post(fake, GEN, userText('x'), 'k4')).status).toBe(429);
    now += 60_000;
    expect((await post(fake, GEN, userText('x'), 'k2')).status).toBe(200);
    expect(fake.stats.rateLimited).toBe(2);
  });

  it('rpd: requests per Pacific calendar day', async () => {
    // 2025-03-10T06:58:30Z is 23:58:30 PDT on March 9
    let now = Date.UTC(2025, 2, 10, 6, 58, 30);
    const fake = await start({ limits: { rpd: 2 }, now: () => now });
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    const r = await post(fake, GEN, userText('x'));
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0].quotaId).toBe(
      'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
    );
    expect(detail(r.json, 'RetryInfo').retryDelay).toBe('90s'); // until Pacific midnight
    now += 60 * 60_000; // 07:58:30Z = 00:58:30 PDT on March 10: a new Pacific day
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    // UTC midnight passes (16:59 → 17:01 PDT), the Pacific day does not change
    now = Date.UTC(2025, 2, 10, 23, 59, 0);
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    now = Date.UTC(2025, 2, 11, 0, 1, 0);
    expect((await post(fake, GEN, userText('x'))).status).toBe(429);
    expect(fake.stats.rateLimited).toBe(2);
  });

  it('tpm: input tokens in a rolling 60 s window', async () => {
    let now = T0;
    const fake = await start({ limits: { tpm: 10 }, now: () => now });
    expect((await post(fake, GEN, userText('a'.repeat(32)))).status).toBe(200); // 8 tokens
    now += 5_000;
    const r = await post(fake, GEN, userText('a'.repeat(12))); // 3 tokens: 11 > 10
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier',
      quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count',
      quotaValue: '10',
    });
    expect(detail(r.json, 'RetryInfo').retryDelay).toBe('55s');
    expect((await post(fake, GEN, userText('a'.repeat(8)))).status).toBe(200); // 2 tokens: exactly 10
    now = T0 + 60_000;
    expect((await post(fake, GEN, userText('a'.repeat(32)))).status).toBe(200);
    expect(fake.stats.rateLimited).toBe(1);
  });
});

describe('embedding quotas', () => {
  // Mutants: embedContent / batchEmbedContents admitted under the generate quota family.
  it('embedContent and batchEmbedContents hit the EmbedContent quota ids and metrics', async () => {
    const fake = await start({ limits: { rpm: 1 } });
    const one = { content: { parts: [{ text: 'hello' }] } };
    expect((await post(fake, EMBED, one)).status).toBe(200);
    const r = await post(fake, EMBED, one);
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_requests',
      quotaId: 'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
      quotaValue: '1',
    });
    const b = await post(fake, BATCH, { requests: [one, one] });
    expect(b.status).toBe(429);
    expect(detail(b.json, 'QuotaFailure').violations[0].quotaId).toBe(
      'EmbedContentRequestsPerMinutePerProjectPerModel-FreeTier',
    );
  });

  it('batchEmbedContents alone is limited under the EmbedContent token quota', async () => {
    const fake = await start({ limits: { tpm: 2 } });
    const r = await post(fake, BATCH, {
      requests: [{ content: { parts: [{ text: 'abcdefgh' }] } }, { content: { parts: [{ text: 'ab' }] } }],
    });
    expect(r.status).toBe(429);
    expect(detail(r.json, 'QuotaFailure').violations[0]).toMatchObject({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_free_tier_input_token_count',
      quotaId: 'EmbedContentInputTokensPerModelPerMinute-FreeTier',
      quotaValue: '2',
    });
  });
});

describe('stats and latency', () => {
  it('counts requests per key and status, logs requests, resets', async () => {
    const fake = await start();
    await post(fake, GEN, userText('logged'), 'key-a');
    await post(fake, GEN, userText('x'), 'key-b');
    await post(fake, '/v1beta/models/nope:generateContent', userText('x'), 'key-b');
    expect(fake.stats.requests).toBe(3);
    expect(fake.stats.byKey.get('key-a')).toBe(1);
    expect(fake.stats.byKey.get('key-b')).toBe(2);
    expect(fake.stats.byStatus.get(200)).toBe(2);
    expect(fake.stats.byStatus.get(404)).toBe(1);
    const first = fake.stats.log[0]!;
    expect(first).toMatchObject({
      method: 'POST',
      path: GEN,
      search: '',
      apiKey: 'key-a',
      body: userText('logged'),
    });
    expect(first.headers['x-goog-api-key']).toBe('key-a');
    fake.resetStats();
    expect(fake.stats.requests).toBe(0);
    expect(fake.stats.byKey.size).toBe(0);
    expect(fake.stats.log).toHaveLength(0);
  });

  it('keeps only the last 1000 requests in the log', async () => {
    const fake = await start();
    for (let i = 0; i < 1005; i++) await post(fake, GEN, userText(`n${i}`));
    expect(fake.stats.log).toHaveLength(1000);
    expect(fake.stats.log[0]!.body).toEqual(userText('n5'));
  });

  it('setLatency delays the answer', async () => {
    const fake = await start();
    fake.setLatency(200);
    const t0 = Date.now();
    expect((await post(fake, GEN, userText('x'))).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    fake.setLatency(0);
    const t1 = Date.now();
    await post(fake, GEN, userText('x'));
    expect(Date.now() - t1).toBeLessThan(150);
  });
});

describe('models.list paging (Google: pageSize, pageToken, nextPageToken)', () => {
  it('the official SDK pages through every model', async () => {
    const fake = await start();
    const names: string[] = [];
    for await (const m of await sdk(fake).models.list({ config: { pageSize: 3 } })) names.push(m.name ?? '');
    expect(names.length).toBe(FAKE_MODELS.length);
    expect(names).toEqual(FAKE_MODELS.map((m) => `models/${m.name}`));
    const pages = fake.stats.log.filter((r) => r.path === '/v1beta/models');
    expect(pages.length).toBe(Math.ceil(FAKE_MODELS.length / 3));
  });

  it('answers 50 a page by default, at most maxPageSize, and a last page without nextPageToken', async () => {
    const fake = await start({ maxPageSize: 4 });
    const page = async (search: string) =>
      (
        await fetch(`${fake.url}/v1beta/models${search}`, { headers: { 'x-goog-api-key': KEY } })
      ).json() as Promise<Json>;
    const first = await page('?pageSize=1000');
    expect(first.models).toHaveLength(4);
    expect(first.nextPageToken).toEqual(expect.any(String));
    const last = await page(`?pageSize=1000&pageToken=${FAKE_MODELS.length - 1}`);
    expect(last.models).toHaveLength(1);
    expect(last.nextPageToken).toBeUndefined();
    const whole = await start();
    const all = (await (
      await fetch(`${whole.url}/v1beta/models`, { headers: { 'x-goog-api-key': KEY } })
    ).json()) as Json;
    expect(all.models).toHaveLength(Math.min(50, FAKE_MODELS.length));
    expect(all.nextPageToken).toBeUndefined();
  });
});
