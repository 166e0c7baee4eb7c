import { type Content, FunctionCallingConfigMode, GoogleGenAI } from '@google/genai';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Stack, stackPerTest } from '../helpers/stack.ts';

/**
 * Function calling through the gateway's native proxy, driven by @google/genai against the fake
 * Gemini: what a tool-using client (the Gemini CLI, an agent) does in the demo.
 */
const start = stackPerTest();

function sdk(s: Stack): GoogleGenAI {
  return new GoogleGenAI({ apiKey: s.token, httpOptions: { baseUrl: s.url } });
}

/** The Gemini CLI's default model with an API key (@google/gemini-cli 0.61). */
const CLI_MODEL = 'gemini-3.1-pro-preview';

const FLIGHTS = {
  type: 'object',
  properties: {
    origin: { type: 'string', minLength: 3, maxLength: 3 },
    destination: { type: 'string', minLength: 3, maxLength: 3 },
    date: { type: 'string', format: 'date' },
    passengers: { type: 'integer', minimum: 1, maximum: 9 },
    cabin: { type: 'string', enum: ['economy', 'business'] },
    flexible: { type: 'boolean' },
  },
  required: ['origin', 'destination', 'date', 'passengers', 'cabin'],
  additionalProperties: false,
};
const TOOLS = [
  {
    functionDeclarations: [
      {
        name: 'get_time',
        description: 'Current time',
        parametersJsonSchema: { type: 'object', properties: {} },
      },
      { name: 'search_flights', description: 'Search flights', parametersJsonSchema: FLIGHTS },
    ],
  },
];
const PROMPT = 'Search flights from Hanoi to Paris for two';

function fitsFlights(args: unknown): boolean {
  return z.fromJSONSchema(FLIGHTS as Parameters<typeof z.fromJSONSchema>[0]).safeParse(args).success;
}

describe('function calling through the gateway', () => {
  it('the Gemini CLI’s default model is listed and answers', async () => {
    const s = await start();
    const names: string[] = [];
    for await (const m of await sdk(s).models.list()) names.push(m.name ?? '');
    expect(names).toContain(`models/${CLI_MODEL}`);
    const r = await sdk(s).models.generateContent({ model: CLI_MODEL, contents: 'Say hello' });
    expect(r.text).toBe('Fake answer to: Say hello');
  });

  it('a tools request gets a functionCall whose arguments fit the declared schema', async () => {
    const s = await start();
    const r = await sdk(s).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: PROMPT,
      config: { tools: TOOLS },
    });
    expect(r.functionCalls).toHaveLength(1);
    const call = r.functionCalls![0]!;
    expect(call.name).toBe('search_flights');
    expect(fitsFlights(call.args)).toBe(true);
    // The request went upstream with its declarations, through a pool key.
    const up = s.fake.stats.log.find((q) => q.path.endsWith(':generateContent'))!;
    expect(up.apiKey).not.toBe(s.token);
    expect((up.body as { tools: unknown }).tools).toEqual(TOOLS);
  });

  it('toolConfig ANY with allowedFunctionNames forces that function', async () => {
    const s = await start();
    const r = await sdk(s).models.generateContent({
      model: 'gemini-2.5-flash-lite',
      contents: 'Say hello',
      config: {
        tools: TOOLS,
        toolConfig: {
          functionCallingConfig: {
            mode: FunctionCallingConfigMode.ANY,
            allowedFunctionNames: ['search_flights'],
          },
        },
      },
    });
    expect(r.functionCalls?.map((c) => c.name)).toEqual(['search_flights']);
    expect(fitsFlights(r.functionCalls![0]!.args)).toBe(true);
  });

  it('streamed: the call arrives in a chunk of its own; the functionResponse turn gets text', async () => {
    const s = await start();
    const ai = sdk(s);
    const first = [];
    for await (const c of await ai.models.generateContentStream({
      model: CLI_MODEL,
      contents: PROMPT,
      config: { tools: TOOLS },
    })) {
      first.push(c);
    }
    const withCall = first.filter((c) => c.functionCalls?.length);
    expect(withCall).toHaveLength(1);
    const call = withCall[0]!.functionCalls![0]!;
    expect(call.name).toBe('search_flights');
    expect(fitsFlights(call.args)).toBe(true);
    const modelTurn = withCall[0]!.candidates![0]!.content!;
    // Gemini 3 signs its calls; the caller sends the turn back as it came.
    const signature = modelTurn.parts![0]!.thoughtSignature;
    expect(signature).toBeTruthy();

    const contents: Content[] = [
      { role: 'user', parts: [{ text: PROMPT }] },
      modelTurn,
      {
        role: 'user',
        parts: [{ functionResponse: { name: call.name!, response: { flights: ['VN19 08:15'] } } }],
      },
    ];
    const pieces: string[] = [];
    for await (const c of await ai.models.generateContentStream({
      model: CLI_MODEL,
      contents,
      config: { tools: TOOLS },
    })) {
      expect(c.functionCalls).toBeUndefined();
      pieces.push(c.text ?? '');
    }
    expect(pieces.join('')).toBe(
      `Fake answer to: ${PROMPT} (search_flights returned {"flights":["VN19 08:15"]})`,
    );
    // The signature went back upstream untouched.
    const second = s.fake.stats.log.filter((q) => q.path.endsWith(':streamGenerateContent'))[1]!;
    const sent = (second.body as { contents: Content[] }).contents[1]!;
    expect(sent.parts![0]!.thoughtSignature).toBe(signature);

    // Not streamed: the same text.
    const r = await ai.models.generateContent({ model: CLI_MODEL, contents, config: { tools: TOOLS } });
    expect(r.functionCalls).toBeUndefined();
    expect(r.text).toBe(pieces.join(''));
  });
});
