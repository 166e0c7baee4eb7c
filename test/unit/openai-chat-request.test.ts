import { describe, expect, it } from 'vitest';
import { openAiToGemini } from '../../src/openai/chat-request.ts';
import { errorOf, MODEL, user } from '../helpers/openai.ts';

describe('openAiToGemini: parameters', () => {
  it('strips a leading models/ and refuses names that cannot be models', () => {
    expect(openAiToGemini({ model: 'models/gemini-2.5-pro', messages: [user('x')] }).model).toBe(
      'gemini-2.5-pro',
    );
    const e = errorOf(() => openAiToGemini({ model: '../admin', messages: [user('x')] }));
    expect(e).toMatchObject({ status: 400, param: 'model', type: 'invalid_request_error' });
  });

  it('maps sampling, length, stop, n, seed and penalties to generationConfig', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [user('x')],
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 50,
      stop: 'END',
      n: 2,
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      user: 'ignored',
      logit_bias: { 1: 2 },
    });
    expect(call.request.generationConfig).toEqual({
      temperature: 0.2,
      topP: 0.9,
      maxOutputTokens: 50,
      stopSequences: ['END'],
      candidateCount: 2,
      seed: 7,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
    });
    expect(call.request).not.toHaveProperty('user');
  });

  it('max_completion_tokens wins over max_tokens; stop arrays pass; no config when nothing is set', () => {
    const a = openAiToGemini({
      model: MODEL,
      messages: [user('x')],
      max_tokens: 10,
      max_completion_tokens: 20,
      stop: ['a', 'b'],
      n: 1,
    });
    expect(a.request.generationConfig).toEqual({ maxOutputTokens: 20, stopSequences: ['a', 'b'] });
    expect(openAiToGemini({ model: MODEL, messages: [user('x')] }).request).not.toHaveProperty(
      'generationConfig',
    );
  });

  it('refuses out-of-range values naming the parameter', () => {
    expect(errorOf(() => openAiToGemini({ model: MODEL, messages: [user('x')], temperature: 3 })).param).toBe(
      'temperature',
    );
    expect(errorOf(() => openAiToGemini({ model: MODEL, messages: [user('x')], max_tokens: 0 })).param).toBe(
      'max_tokens',
    );
    expect(errorOf(() => openAiToGemini({ model: MODEL, messages: [user('x')], n: 1.5 })).param).toBe('n');
  });

  it('response_format: json_object → JSON mime type; json_schema → responseJsonSchema; text → nothing', () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] };
    expect(
      openAiToGemini({ model: MODEL, messages: [user('x')], response_format: { type: 'json_object' } })
        .request.generationConfig,
    ).toEqual({ responseMimeType: 'application/json' });
    expect(
      openAiToGemini({
        model: MODEL,
        messages: [user('x')],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema, strict: true } },
      }).request.generationConfig,
    ).toEqual({ responseMimeType: 'application/json', responseJsonSchema: schema });
    expect(
      openAiToGemini({ model: MODEL, messages: [user('x')], response_format: { type: 'text' } }).request,
    ).not.toHaveProperty('generationConfig');
    const bad = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user('x')], response_format: { type: 'xml' } }),
    );
    expect(bad.param).toBe('response_format.type');
  });

  it('stream and stream_options.include_usage', () => {
    expect(openAiToGemini({ model: MODEL, messages: [user('x')], stream: true })).toMatchObject({
      stream: true,
      includeUsage: false,
    });
    expect(
      openAiToGemini({
        model: MODEL,
        messages: [user('x')],
        stream: true,
        stream_options: { include_usage: true },
      }),
    ).toMatchObject({ stream: true, includeUsage: true });
  });

  it('reasoning_effort: a thinking budget on 2.5 models, a thinking level on 3 models', () => {
    expect(
      openAiToGemini({ model: MODEL, messages: [user('x')], reasoning_effort: 'medium' }).request
        .generationConfig,
    ).toEqual({ thinkingConfig: { thinkingBudget: 8192 } });
    expect(
      openAiToGemini({ model: 'gemini-2.5-flash', messages: [user('x')], reasoning_effort: 'none' }).request
        .generationConfig,
    ).toEqual({ thinkingConfig: { thinkingBudget: 0 } });
    expect(
      openAiToGemini({ model: 'gemini-3-pro-preview', messages: [user('x')], reasoning_effort: 'high' })
        .request.generationConfig,
    ).toEqual({ thinkingConfig: { thinkingLevel: 'high' } });
  });

  it('reasoning_effort "none" on a Gemini 3 model is thinkingLevel "minimal" (Gemini 3 has no "none")', () => {
    expect(
      openAiToGemini({ model: 'gemini-3-flash-preview', messages: [user('x')], reasoning_effort: 'none' })
        .request.generationConfig,
    ).toEqual({ thinkingConfig: { thinkingLevel: 'minimal' } });
  });

  it.each([
    ['low', 1024],
    ['medium', 8192],
    ['high', 24576],
  ] as const)(
    'reasoning_effort %s on a 2.5 model is a thinking budget of %i (as Google’s own endpoint)',
    (effort, budget) => {
      expect(
        openAiToGemini({ model: 'gemini-2.5-flash', messages: [user('x')], reasoning_effort: effort }).request
          .generationConfig,
      ).toEqual({ thinkingConfig: { thinkingBudget: budget } });
    },
  );

  it('top_p above 1 is refused, as OpenAI does', () => {
    expect(() => openAiToGemini({ model: MODEL, messages: [user('x')], top_p: 1.5 })).toThrow(
      expect.objectContaining({ status: 400, param: 'top_p' }),
    );
  });
});

describe('openAiToGemini: tools', () => {
  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather now',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
    { type: 'function', function: { name: 'get_time' } },
  ];

  it('function tools → functionDeclarations; tool_choice → functionCallingConfig', () => {
    const call = openAiToGemini({ model: MODEL, messages: [user('x')], tools, tool_choice: 'required' });
    expect(call.request.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Weather now',
            parametersJsonSchema: tools[0]!.function.parameters,
          },
          { name: 'get_time' },
        ],
      },
    ]);
    expect(call.request.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } });
    const choice = (tool_choice: unknown) =>
      openAiToGemini({ model: MODEL, messages: [user('x')], tools, tool_choice }).request.toolConfig;
    expect(choice('auto')).toEqual({ functionCallingConfig: { mode: 'AUTO' } });
    expect(choice('none')).toEqual({ functionCallingConfig: { mode: 'NONE' } });
    expect(choice({ type: 'function', function: { name: 'get_time' } })).toEqual({
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_time'] },
    });
    expect(openAiToGemini({ model: MODEL, messages: [user('x')], tools }).request).not.toHaveProperty(
      'toolConfig',
    );
  });

  it('refuses non-function tools, tool_choice without tools, and unknown tool_choice shapes', () => {
    const hosted = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user('x')], tools: [{ type: 'web_search' }] }),
    );
    expect(hosted).toMatchObject({ status: 400, param: 'tools[0].type' });
    expect(hosted.message).toContain('only "function" tools');
    expect(
      errorOf(() => openAiToGemini({ model: MODEL, messages: [user('x')], tool_choice: 'auto' })).param,
    ).toBe('tool_choice');
    expect(
      errorOf(() =>
        openAiToGemini({
          model: MODEL,
          messages: [user('x')],
          tools,
          tool_choice: { type: 'allowed_tools' },
        }),
      ).param,
    ).toBe('tool_choice');
  });

  it('assistant tool_calls → functionCall parts; tool results → one user turn of functionResponse parts', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user('Weather and time in Paris?'),
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'c1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
              extra_content: { google: { thought_signature: 'sig-A' } },
            },
            { id: 'c2', type: 'function', function: { name: 'get_time', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: '{"temp_c":21}' },
        { role: 'tool', tool_call_id: 'c2', content: '12:00' },
        user('Thanks'),
      ],
      tools,
    });
    expect(call.request.contents).toEqual([
      { role: 'user', parts: [{ text: 'Weather and time in Paris?' }] },
      {
        role: 'model',
        parts: [
          { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'sig-A' },
          { functionCall: { name: 'get_time', args: {} } },
        ],
      },
      {
        role: 'user',
        parts: [
          { functionResponse: { name: 'get_weather', response: { temp_c: 21 } } },
          { functionResponse: { name: 'get_time', response: { result: '12:00' } } },
        ],
      },
      { role: 'user', parts: [{ text: 'Thanks' }] },
    ]);
  });

  it('refuses tool results without a matching call and arguments that are not a JSON object', () => {
    const orphan = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [user('x'), { role: 'tool', tool_call_id: 'nope', content: '1' }],
      }),
    );
    expect(orphan).toMatchObject({ status: 400, param: 'messages[1].tool_call_id' });
    const args = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [
          user('x'),
          {
            role: 'assistant',
            tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '[1' } }],
          },
        ],
      }),
    );
    expect(args.param).toBe('messages[1].tool_calls[0].function.arguments');
    const noId = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user('x'), { role: 'tool', content: '1' }] }),
    );
    expect(noId).toMatchObject({ status: 400, param: 'messages[1].tool_call_id' });
  });

  it('the legacy function-calling messages (function_call, role "function") still translate', () => {
    const g = openAiToGemini({
      model: MODEL,
      messages: [
        user('weather?'),
        {
          role: 'assistant',
          content: null,
          function_call: { name: 'weather', arguments: '{"city":"Oslo"}' },
        },
        { role: 'function', name: 'weather', content: '{"temp":3}' },
        { role: 'function', name: 'clock', content: 'noon' },
      ],
    });
    expect(g.request.contents).toEqual([
      { role: 'user', parts: [{ text: 'weather?' }] },
      { role: 'model', parts: [{ functionCall: { name: 'weather', args: { city: 'Oslo' } } }] },
      {
        role: 'user',
        parts: [
          { functionResponse: { name: 'weather', response: { temp: 3 } } },
          { functionResponse: { name: 'clock', response: { result: 'noon' } } },
        ],
      },
    ]);
    const nameless = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user('x'), { role: 'function', content: '1' }] }),
    );
    expect(nameless).toMatchObject({ status: 400, param: 'messages[1].name' });
  });

  it('assistant content: text and refusal parts pass, anything else is refused with its place', () => {
    const g = openAiToGemini({
      model: MODEL,
      messages: [
        user('a'),
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'part one' },
            { type: 'refusal', refusal: 'I cannot' },
          ],
        },
        user('b'),
      ],
    });
    expect(g.request.contents[1]).toEqual({
      role: 'model',
      parts: [{ text: 'part one' }, { text: 'I cannot' }],
    });
    const imagePart = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [
          user('a'),
          { role: 'assistant', content: [{ type: 'image_url', image_url: { url: 'x' } }] },
        ],
      }),
    );
    expect(imagePart.param).toBe('messages[1].content[0]');
    const numeric = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user('a'), { role: 'assistant', content: 42 }] }),
    );
    expect(numeric.param).toBe('messages[1].content');
  });
});
