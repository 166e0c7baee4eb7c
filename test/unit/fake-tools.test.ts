import { GoogleGenAI, type Model } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { FakeGemini } from '../../fake/fake-gemini.ts';
import { planFunctionCalls } from '../../fake/fake-gemini-tools.ts';
import { fakePerTest, type Json, KEY, post } from '../helpers/fake.ts';

/** The fake Gemini's model list (as the Gemini CLI needs it) and its function calling. */

const start = fakePerTest();

function sdk(fake: FakeGemini): GoogleGenAI {
  return new GoogleGenAI({ apiKey: KEY, httpOptions: { baseUrl: fake.url } });
}

/**
 * What @google/gemini-cli 0.61 asks for with an API key (found in its bundle and seen on the
 * wire): `auto`/`pro` resolve to gemini-3.1-pro-preview, its router classifies with
 * gemini-3.5-flash-lite and routes to gemini-3.8-flash, its helpers use gemini-3-flash-preview,
 * and its other aliases and fallbacks name the rest.
 */
const CLI_MODELS = [
  'gemini-3.1-pro-preview',
  'gemini-3-pro-preview',
  'gemini-3-flash-preview',
  'gemini-3.5-flash-lite',
  'gemini-3.8-flash',
  'gemini-3.5-flash',
  'gemini-3.1-flash-lite',
  'gemini-2.5-pro',
  'gemini-2.5-flash',
  'gemini-2.5-flash-lite',
];

const WEATHER = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parametersJsonSchema: {
    type: 'object',
    properties: {
      city: { type: 'string', minLength: 2 },
      days: { type: 'integer', minimum: 1, maximum: 7 },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      note: { type: 'string' },
    },
    required: ['city', 'days', 'unit'],
    additionalProperties: false,
  },
};
const LIST_DIR = {
  name: 'list_directory',
  description: 'Lists a directory',
  parametersJsonSchema: {
    type: 'object',
    properties: { dir_path: { type: 'string' }, ignore: { type: 'array', items: { type: 'string' } } },
    required: ['dir_path'],
  },
};
const READ_FILE = {
  name: 'read_file',
  parametersJsonSchema: {
    type: 'object',
    properties: { file_path: { type: 'string' } },
    required: ['file_path'],
  },
};
const TOOLS = [{ functionDeclarations: [READ_FILE, LIST_DIR, WEATHER] }];

const user = (text: string) => ({ role: 'user', parts: [{ text }] });

function fits(schema: object, args: unknown): boolean {
  return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]).safeParse(args).success;
}

describe('fake Gemini models.list: current names, the Gemini CLI defaults among them', () => {
  it('lists every model the CLI asks for, with Google’s fields, and serves them', async () => {
    const fake = await start();
    const models: Model[] = [];
    for await (const m of await sdk(fake).models.list({ config: { pageSize: 7 } })) models.push(m);
    const byName = new Map(models.map((m) => [m.name, m]));
    for (const name of CLI_MODELS) {
      const m = byName.get(`models/${name}`);
      expect(m, name).toBeDefined();
      expect(m!.displayName).toMatch(/^Gemini \d/);
      expect(m!.supportedActions).toEqual(
        expect.arrayContaining(['generateContent', 'countTokens', 'batchGenerateContent']),
      );
      expect(m!.inputTokenLimit).toBe(1048576);
      expect(m!.outputTokenLimit).toBe(65536);
      const r = await sdk(fake).models.generateContent({ model: name, contents: 'hi' });
      expect(r.text).toBe('Fake answer to: hi');
    }
    expect(byName.get('models/gemini-3.1-pro-preview')).toMatchObject({ thinking: true });
  });

  it('image, embedding, Imagen and Veo models carry the methods Google lists for them', async () => {
    const fake = await start();
    const res = await fetch(`${fake.url}/v1beta/models?pageSize=1000`, {
      headers: { 'x-goog-api-key': KEY },
    });
    const list = (await res.json()) as Json;
    const get = (n: string) => list.models.find((m: Json) => m.name === `models/${n}`);
    expect(get('gemini-3-pro-image-preview')).toMatchObject({
      displayName: 'Nano Banana Pro',
      supportedGenerationMethods: ['generateContent', 'countTokens', 'batchGenerateContent'],
    });
    expect(get('gemini-2.5-flash-image').displayName).toBe('Nano Banana');
    expect(get('gemini-embedding-001')).toMatchObject({
      supportedGenerationMethods: [
        'embedContent',
        'countTextTokens',
        'countTokens',
        'asyncBatchEmbedContent',
      ],
      inputTokenLimit: 2048,
      outputTokenLimit: 1,
    });
    for (const n of [
      'imagen-4.0-generate-001',
      'imagen-4.0-ultra-generate-001',
      'imagen-4.0-fast-generate-001',
    ])
      expect(get(n)?.supportedGenerationMethods).toEqual(['predict']);
    for (const n of ['veo-3.1-generate-preview', 'veo-3.0-generate-001', 'veo-2.0-generate-001'])
      expect(get(n)?.supportedGenerationMethods).toEqual(['predictLongRunning']);
    expect(get('imagen-4.0-generate-001')).not.toHaveProperty('temperature');
    // Google lists batchEmbedContents for no model, yet serves it for embedding models.
    const batch = await sdk(fake).models.embedContent({
      model: 'gemini-embedding-001',
      contents: ['a', 'b'],
    });
    expect(batch.embeddings).toHaveLength(2);
    // An Imagen model does not generate content: Google's 404.
    const gen = await post(fake, '/v1beta/models/imagen-4.0-generate-001:generateContent', {
      contents: [user('x')],
    });
    expect(gen.status).toBe(404);
    expect(gen.json.error.message).toContain('is not supported for generateContent');
  });
});

describe('fake Gemini function calling: which function, which arguments', () => {
  it('calls the function whose name the prompt mentions, with arguments that fit its schema', () => {
    const calls = planFunctionCalls(
      'gemini-2.5-flash',
      { contents: [user('What is the weather in Paris?')], tools: TOOLS },
      'What is the weather in Paris?',
    );
    expect(calls).not.toBeNull();
    const fc = calls!.parts[0]!.functionCall as { name: string; args: Record<string, unknown> };
    expect(fc.name).toBe('get_weather');
    expect(fits(WEATHER.parametersJsonSchema, fc.args)).toBe(true);
    // Required parameters only (a model leaves most optional ones out).
    expect(Object.keys(fc.args).sort()).toEqual(['city', 'days', 'unit']);
    expect(calls!.parts[0]).not.toHaveProperty('thoughtSignature');
    expect(calls!.tokens).toBe(Math.ceil(JSON.stringify(fc).length / 4));
  });

  it('the function naming most of the prompt’s words wins; a quoted string fills the first plain string parameter', () => {
    const prompt = 'List the files in the directory "src/app"';
    const calls = planFunctionCalls(
      'gemini-3.1-pro-preview',
      { contents: [user(prompt)], tools: TOOLS },
      prompt,
    );
    expect(calls!.parts[0]).toMatchObject({
      functionCall: { name: 'list_directory', args: { dir_path: 'src/app' } },
    });
    // Gemini 3 models sign their function calls.
    expect(typeof calls!.parts[0]!.thoughtSignature).toBe('string');
    // An apostrophe is not a quote; a quoted word never lands in an enum parameter.
    const w = "What's the weather in 'Hanoi'?";
    const weather = planFunctionCalls('gemini-2.5-flash', { contents: [user(w)], tools: TOOLS }, w);
    const args = (weather!.parts[0]!.functionCall as { args: Record<string, unknown> }).args;
    expect(args.city).toBe('Hanoi');
    expect(args.unit).toBe('celsius');
    expect(fits(WEATHER.parametersJsonSchema, args)).toBe(true);
  });

  it('AUTO answers in text when no function fits the prompt; ANY calls one; NONE never does', () => {
    const req = (mode?: string, allowed?: string[]) => ({
      contents: [user('Say hello')],
      tools: TOOLS,
      ...(mode ? { toolConfig: { functionCallingConfig: { mode, allowedFunctionNames: allowed } } } : {}),
    });
    expect(planFunctionCalls('gemini-2.5-flash', req(), 'Say hello')).toBeNull();
    expect(planFunctionCalls('gemini-2.5-flash', req('AUTO'), 'Say hello')).toBeNull();
    const any = planFunctionCalls('gemini-2.5-flash', req('ANY'), 'Say hello');
    expect(any!.parts[0]).toMatchObject({ functionCall: { name: 'read_file' } });
    const allowed = planFunctionCalls('gemini-2.5-flash', req('ANY', ['get_weather']), 'Say hello');
    expect(allowed!.parts[0]).toMatchObject({ functionCall: { name: 'get_weather' } });
    const weatherNone = { ...req('NONE'), contents: [user('weather?')] };
    expect(planFunctionCalls('gemini-2.5-flash', weatherNone, 'weather?')).toBeNull();
    expect(planFunctionCalls('gemini-2.5-flash', { contents: [user('weather?')] }, 'weather?')).toBeNull();
  });

  it('after a functionResponse AUTO answers in text, ANY calls again', () => {
    const contents = [
      user('weather in Paris?'),
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21 } } }] },
    ];
    expect(planFunctionCalls('gemini-2.5-flash', { contents, tools: TOOLS }, 'weather in Paris?')).toBeNull();
    const any = { contents, tools: TOOLS, toolConfig: { functionCallingConfig: { mode: 'ANY' } } };
    expect(planFunctionCalls('gemini-2.5-flash', any, 'weather in Paris?')).not.toBeNull();
  });

  it('reads snake_case requests and Gemini’s OpenAPI-style `parameters`', () => {
    const req = {
      contents: [user('weather please')],
      tools: [
        {
          function_declarations: [
            {
              name: 'getWeather',
              parameters: {
                type: 'OBJECT',
                properties: { city: { type: 'STRING' }, days: { type: 'INTEGER', minimum: 3 } },
                required: ['city', 'days'],
              },
            },
          ],
        },
      ],
      tool_config: { function_calling_config: { mode: 'any' } },
    };
    const calls = planFunctionCalls('gemini-2.5-flash', req, 'weather please');
    expect(calls!.parts[0]).toEqual({
      functionCall: { name: 'getWeather', args: { city: 'sample city', days: 4 } },
    });
  });
});

describe('fake Gemini function calling over the wire', () => {
  it('generateContent answers a functionCall part (STOP), usage counting the declarations and the call', async () => {
    const fake = await start();
    const plain = await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', {
      contents: [user('weather in Paris?')],
    });
    const r = await post(fake, '/v1beta/models/gemini-2.5-flash:generateContent', {
      contents: [user('weather in Paris?')],
      tools: TOOLS,
    });
    expect(r.status).toBe(200);
    const cand = r.json.candidates[0];
    expect(cand.finishReason).toBe('STOP');
    expect(cand.content.parts).toHaveLength(1);
    const fc = cand.content.parts[0].functionCall;
    expect(fc.name).toBe('get_weather');
    expect(fits(WEATHER.parametersJsonSchema, fc.args)).toBe(true);
    expect(r.json.usageMetadata.candidatesTokenCount).toBe(Math.ceil(JSON.stringify(fc).length / 4));
    // The function declarations are part of the prompt Google bills.
    expect(r.json.usageMetadata.promptTokenCount).toBeGreaterThan(
      plain.json.usageMetadata.promptTokenCount + 50,
    );
  });

  it('a stream carries the call in one chunk, the last, with STOP', async () => {
    const fake = await start();
    const chunks = [];
    for await (const c of await sdk(fake).models.generateContentStream({
      model: 'gemini-3-flash-preview',
      contents: 'List the directory `.`',
      config: { tools: TOOLS },
    })) {
      chunks.push(c);
    }
    expect(chunks).toHaveLength(1);
    expect(chunks[0]!.functionCalls).toEqual([{ name: 'list_directory', args: { dir_path: '.' } }]);
    expect(chunks[0]!.candidates?.[0]?.finishReason).toBe('STOP');
    expect(chunks[0]!.candidates?.[0]?.content?.parts?.[0]?.thoughtSignature).toBeTruthy();
  });

  it('the turn after a functionResponse is a text answer that uses the result, streamed too', async () => {
    const fake = await start();
    const contents = [
      user('weather in Paris?'),
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21 } } }] },
    ];
    const r = await sdk(fake).models.generateContent({
      model: 'gemini-2.5-flash',
      contents,
      config: { tools: TOOLS },
    });
    expect(r.functionCalls).toBeUndefined();
    expect(r.text).toBe('Fake answer to: weather in Paris? (get_weather returned {"temp_c":21})');
    const pieces: string[] = [];
    for await (const c of await sdk(fake).models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents,
      config: { tools: TOOLS },
    })) {
      expect(c.functionCalls).toBeUndefined();
      pieces.push(c.text ?? '');
    }
    expect(pieces.length).toBe(3);
    expect(pieces.join('')).toBe(r.text);
  });
});
