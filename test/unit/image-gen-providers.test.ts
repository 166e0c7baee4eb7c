import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type FakeImageProviders,
  makePng,
  startFakeImageProviders,
} from '../../fake/fake-image-providers.ts';
import { parseEnv } from '../../src/config/env.ts';
import { GatewayError, PoolExhausted, UpstreamRejected } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import { buildPrompt, TRY_ON_PROMPT } from '../../src/services/image-gen/prompt.ts';
import { createGeminiProvider, extractImage } from '../../src/services/image-gen/providers/gemini.ts';
import { createOpenAIProvider } from '../../src/services/image-gen/providers/openai.ts';
import { createImageProvider, providerNames } from '../../src/services/image-gen/providers/registry.ts';
import { createStabilityProvider } from '../../src/services/image-gen/providers/stability.ts';
import type { InputImage } from '../../src/services/image-gen/providers/types.ts';
import type { GeminiCaller } from '../../src/upstream/gemini-caller.ts';
import type { GenerateContentRequest, GenerateContentResponse } from '../../src/upstream/gemini-types.ts';

const person: InputImage = { bytes: makePng(2, 2, [1, 2, 3]), mimeType: 'image/png' };
const garment: InputImage = { bytes: makePng(2, 2, [4, 5, 6]), mimeType: 'image/png' };
const out = makePng(5, 5, [9, 9, 9]);
const ctx = { requestId: 'req-1' };

const noGemini: GeminiCaller = {
  generateContent: async () => {
    throw new Error('not used');
  },
};

async function problem(p: Promise<unknown>): Promise<HttpProblem> {
  const err = await p.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  return toProblem(err as GatewayError);
}

function stubGemini(answer: GenerateContentResponse | Error) {
  const calls: { model: string; request: GenerateContentRequest }[] = [];
  const caller: GeminiCaller = {
    async generateContent(model, request) {
      calls.push({ model, request });
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  return { caller, calls };
}

const imageAnswer = (part: Record<string, unknown>): GenerateContentResponse => ({
  candidates: [{ content: { role: 'model', parts: [part] }, finishReason: 'STOP' }],
});

describe('prompt', () => {
  it('extends the seed prompt, never replaces it', () => {
    expect(buildPrompt()).toBe(TRY_ON_PROMPT);
    expect(buildPrompt('  ')).toBe(TRY_ON_PROMPT);
    const p = buildPrompt('red background');
    expect(p.startsWith(TRY_ON_PROMPT)).toBe(true);
    expect(p).toContain('red background');
  });

  it('appends the request prompt as "\\n\\nAdditional instructions: <prompt>", trimmed', () => {
    const expected = `${TRY_ON_PROMPT}\n\nAdditional instructions: red background`;
    expect(buildPrompt('red background')).toBe(expected);
    expect(buildPrompt('  red background \n')).toBe(expected);
  });
});

describe('gemini provider', () => {
  const env = parseEnv({});

  it('sends both images inline, then the prompt, asking for an IMAGE through the pool', async () => {
    const { caller, calls } = stubGemini(
      imageAnswer({ inlineData: { mimeType: 'image/png', data: out.toString('base64') } }),
    );
    const provider = createGeminiProvider({ env, gemini: caller });
    const img = await provider.generateImage([person, garment], 'PROMPT', ctx);
    expect(img.mimeType).toBe('image/png');
    expect(img.bytes.equals(out)).toBe(true);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.model).toBe('gemini-2.5-flash-image');
    const req = calls[0]!.request;
    expect(req.generationConfig?.responseModalities).toEqual(['IMAGE']);
    const parts = req.contents[0]!.parts;
    expect(parts[0]!.inlineData).toEqual({ mimeType: 'image/png', data: person.bytes.toString('base64') });
    expect(parts[1]!.inlineData).toEqual({ mimeType: 'image/png', data: garment.bytes.toString('base64') });
    expect(parts[2]!.text).toBe('PROMPT');
  });

  it('uses IMAGE_MODEL', async () => {
    const { caller, calls } = stubGemini(
      imageAnswer({ inlineData: { mimeType: 'image/png', data: out.toString('base64') } }),
    );
    await createGeminiProvider({
      env: parseEnv({ IMAGE_MODEL: 'gemini-3-pro-image-preview' }),
      gemini: caller,
    }).generateImage([person, garment], 'x', ctx);
    expect(calls[0]!.model).toBe('gemini-3-pro-image-preview');
  });

  it('accepts inline_data (snake case) and skips thought images', () => {
    expect(
      extractImage(
        imageAnswer({ inline_data: { mime_type: 'image/png', data: out.toString('base64') } }),
      )?.equals(out),
    ).toBe(true);
    const thought = makePng(1, 1, [0, 0, 0]);
    const res: GenerateContentResponse = {
      candidates: [
        {
          content: {
            parts: [
              { text: 'thinking' },
              { inlineData: { mimeType: 'image/png', data: thought.toString('base64') }, thought: true },
              { inlineData: { mimeType: 'image/png', data: out.toString('base64') } },
            ],
          },
        },
      ],
    };
    expect(extractImage(res)?.equals(out)).toBe(true);
  });

  it('answers 502 when the model returns no image', async () => {
    const { caller } = stubGemini({
      candidates: [{ content: { parts: [{ text: 'I cannot do that' }] }, finishReason: 'IMAGE_SAFETY' }],
    });
    const err = await problem(
      createGeminiProvider({ env, gemini: caller }).generateImage([person, garment], 'x', ctx),
    );
    expect(err.status).toBe(502);
    expect(err.detail).toMatch(/no image.*IMAGE_SAFETY/);
    const empty = stubGemini({ candidates: [] });
    expect(
      (
        await problem(
          createGeminiProvider({ env, gemini: empty.caller }).generateImage([person, garment], 'x', ctx),
        )
      ).status,
    ).toBe(502);
  });

  it('answers 502 when the "image" is not one', async () => {
    const { caller } = stubGemini(
      imageAnswer({
        inlineData: { mimeType: 'image/png', data: Buffer.from('not an image at all').toString('base64') },
      }),
    );
    expect(
      (
        await problem(
          createGeminiProvider({ env, gemini: caller }).generateImage([person, garment], 'x', ctx),
        )
      ).status,
    ).toBe(502);
  });

  it('keeps a pool 429 (with Retry-After), maps other failures to 502', async () => {
    const exhausted = new PoolExhausted('every key is busy', 7);
    const e1 = await problem(
      createGeminiProvider({ env, gemini: stubGemini(exhausted).caller }).generateImage(
        [person, garment],
        'x',
        ctx,
      ),
    );
    expect(e1.status).toBe(429);
    expect(e1.headers['retry-after']).toBe('7');
    const bad = new UpstreamRejected(400, 'upstream refused the request');
    const e2 = await problem(
      createGeminiProvider({ env, gemini: stubGemini(bad).caller }).generateImage(
        [person, garment],
        'x',
        ctx,
      ),
    );
    expect(e2.status).toBe(502);
    expect(e2.detail).toBe('image provider gemini failed: 400 upstream refused the request');
    const e3 = await problem(
      createGeminiProvider({ env, gemini: stubGemini(new Error('socket hang up')).caller }).generateImage(
        [person, garment],
        'x',
        ctx,
      ),
    );
    expect(e3.status).toBe(502);
    expect(e3.detail).not.toMatch(/socket/);
  });
});

describe('openai and stability providers (against the fake HTTP server)', () => {
  let fake: FakeImageProviders;
  const OPENAI_KEY = 'sk-test-openai-SECRET';
  const STABILITY_KEY = 'sk-test-stability-SECRET';

  beforeAll(async () => {
    fake = await startFakeImageProviders({ openaiKey: OPENAI_KEY, stabilityKey: STABILITY_KEY });
  });
  afterAll(async () => {
    await fake.close();
  });

  const openaiEnv = (key = OPENAI_KEY) =>
    parseEnv({ OPENAI_API_KEY: key, OPENAI_BASE_URL: fake.openaiBaseUrl });
  const stabilityEnv = (key = STABILITY_KEY) =>
    parseEnv({ STABILITY_API_KEY: key, STABILITY_BASE_URL: fake.stabilityBaseUrl });
  const noGemini = stubGemini(new Error('not used')).caller;

  it('openai: multipart images edits with gpt-image-1, image[] files and the prompt', async () => {
    fake.requests.length = 0;
    const provider = createOpenAIProvider({ env: openaiEnv(), gemini: noGemini });
    expect(provider.model).toBe('gpt-image-1');
    const img = await provider.generateImage([person, garment], 'PROMPT', ctx);
    expect(img.bytes.equals(fake.png)).toBe(true);
    expect(img.mimeType).toBe('image/png');
    const rec = fake.requests[0]!;
    expect(rec.provider).toBe('openai');
    expect(rec.path).toBe('/v1/images/edits');
    expect(rec.authorized).toBe(true);
    expect(rec.fields.model).toBe('gpt-image-1');
    expect(rec.fields.prompt).toBe('PROMPT');
    expect(rec.files.map((f) => [f.field, f.type, f.size])).toEqual([
      ['image[]', 'image/png', person.bytes.length],
      ['image[]', 'image/png', garment.bytes.length],
    ]);
  });

  it('openai: a refused key is a 502 that does not echo the key or the error body', async () => {
    const provider = createOpenAIProvider({ env: openaiEnv('sk-wrong-SECRET'), gemini: noGemini });
    const err = await problem(provider.generateImage([person, garment], 'x', ctx));
    expect(err.status).toBe(502);
    expect(err.detail).toMatch(/HTTP 401/);
    expect(err.detail).not.toMatch(/SECRET|Incorrect/);
  });

  it('openai: server errors and answers without an image are 502', async () => {
    const provider = createOpenAIProvider({ env: openaiEnv(), gemini: noGemini });
    fake.failNext(500);
    expect((await problem(provider.generateImage([person, garment], 'x', ctx))).status).toBe(502);
    fake.answerWithoutImage(true);
    try {
      expect((await problem(provider.generateImage([person, garment], 'x', ctx))).detail).toMatch(/no image/);
    } finally {
      fake.answerWithoutImage(false);
    }
  });

  it('openai: an unreachable endpoint is a 502', async () => {
    const env = parseEnv({ OPENAI_API_KEY: OPENAI_KEY, OPENAI_BASE_URL: 'http://127.0.0.1:1/v1' });
    const err = await problem(
      createOpenAIProvider({ env, gemini: noGemini }).generateImage([person, garment], 'x', ctx),
    );
    expect(err.status).toBe(502);
  });

  it('openai: needs OPENAI_API_KEY', () => {
    expect(() => createOpenAIProvider({ env: parseEnv({}), gemini: noGemini })).toThrow(/OPENAI_API_KEY/);
  });

  it('stability: style transfer with init_image (person), style_image (garment), prompt, png out', async () => {
    fake.requests.length = 0;
    const provider = createStabilityProvider({ env: stabilityEnv(), gemini: noGemini });
    const img = await provider.generateImage([person, garment], 'PROMPT', ctx);
    expect(img.bytes.equals(fake.png)).toBe(true);
    const rec = fake.requests[0]!;
    expect(rec.provider).toBe('stability');
    expect(rec.path).toBe('/v2beta/stable-image/control/style-transfer');
    expect(rec.authorized).toBe(true);
    expect(rec.fields).toMatchObject({ prompt: 'PROMPT', output_format: 'png' });
    expect(rec.files.map((f) => [f.field, f.size])).toEqual([
      ['init_image', person.bytes.length],
      ['style_image', garment.bytes.length],
    ]);
  });

  it('stability: wrong key, server error, no image and a filtered result are 502 without secrets', async () => {
    const wrong = createStabilityProvider({ env: stabilityEnv('sk-wrong-SECRET'), gemini: noGemini });
    const err = await problem(wrong.generateImage([person, garment], 'x', ctx));
    expect(err.status).toBe(502);
    expect(err.detail).not.toMatch(/SECRET/);
    const provider = createStabilityProvider({ env: stabilityEnv(), gemini: noGemini });
    fake.failNext(500);
    expect((await problem(provider.generateImage([person, garment], 'x', ctx))).status).toBe(502);
    fake.answerWithoutImage(true);
    try {
      expect((await problem(provider.generateImage([person, garment], 'x', ctx))).status).toBe(502);
    } finally {
      fake.answerWithoutImage(false);
    }
    // Stability sends a (blurred) image with finish-reason CONTENT_FILTERED: not a result.
    fake.contentFiltered(true);
    try {
      const filtered = await problem(provider.generateImage([person, garment], 'x', ctx));
      expect(filtered.status).toBe(502);
      expect(filtered.detail).toContain('content-filtered');
    } finally {
      fake.contentFiltered(false);
    }
  });

  it('stability: needs STABILITY_API_KEY', () => {
    expect(() => createStabilityProvider({ env: parseEnv({}), gemini: noGemini })).toThrow(
      /STABILITY_API_KEY/,
    );
  });
});

describe('openai provider settings', () => {
  let fake: FakeImageProviders;
  const KEY = 'sk-openai-settings';
  beforeAll(async () => {
    fake = await startFakeImageProviders({ openaiKey: KEY });
  });
  afterAll(async () => {
    await fake.close();
  });
  const images: InputImage[] = [
    { bytes: makePng(2, 2, [1, 2, 3]), mimeType: 'image/png' },
    { bytes: makePng(2, 2, [4, 5, 6]), mimeType: 'image/png' },
  ];

  it('asks for exactly one image (n=1)', async () => {
    fake.requests.length = 0;
    const env = parseEnv({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.openaiBaseUrl });
    await createOpenAIProvider({ env, gemini: noGemini }).generateImage(images, 'P', { requestId: 'r' });
    expect(fake.requests[0]!.fields.n).toBe('1');
  });

  it('uses IMAGE_MODEL when it does not name a Gemini model', async () => {
    fake.requests.length = 0;
    const env = parseEnv({
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: fake.openaiBaseUrl,
      IMAGE_MODEL: 'gpt-image-1-mini',
    });
    const provider = createOpenAIProvider({ env, gemini: noGemini });
    expect(provider.model).toBe('gpt-image-1-mini');
    await provider.generateImage(images, 'P', { requestId: 'r' });
    expect(fake.requests[0]!.fields.model).toBe('gpt-image-1-mini');
  });
});

describe('provider registry', () => {
  it('knows every provider and refuses unknown names', () => {
    expect(providerNames().sort()).toEqual(['gemini', 'openai', 'stability']);
    const gemini = stubGemini(new Error('x')).caller;
    expect(createImageProvider('gemini', { env: parseEnv({}), gemini }).name).toBe('gemini');
    expect(() => createImageProvider('dall-e-9', { env: parseEnv({}), gemini })).toThrow(/unknown provider/);
    expect(() => createImageProvider('__proto__', { env: parseEnv({}), gemini })).toThrow(/unknown provider/);
  });
});
