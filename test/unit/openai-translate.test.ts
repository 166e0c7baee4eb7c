import { describe, expect, it } from 'vitest';
import { ChatStreamTranslator, DONE_FRAME, SseDecoder } from '../../src/openai/stream.ts';
import {
  embeddingToBase64,
  finishChunks,
  finishReason,
  type GeminiResponse,
  geminiChunkToOpenAi,
  geminiEmbeddingsToOpenAi,
  geminiModelsToOpenAi,
  geminiToOpenAi,
  googleErrorToOpenAi,
  newChunkState,
  OpenAiError,
  openAiEmbeddingsToGemini,
  openAiToGemini,
  parseDataUrl,
} from '../../src/openai/translate.ts';

const MODEL = 'gemini-2.5-flash-lite';
const user = (content: unknown) => ({ role: 'user', content });

function errorOf(fn: () => unknown): OpenAiError {
  try {
    fn();
  } catch (err) {
    if (err instanceof OpenAiError) return err;
    throw err;
  }
  throw new Error('expected an OpenAiError');
}

describe('openAiToGemini: messages', () => {
  it('maps roles: system/developer → systemInstruction, user → user, assistant → model', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Rule one.' },
        { role: 'developer', content: [{ type: 'text', text: 'Rule two.' }] },
        user('Hi'),
        { role: 'assistant', content: 'Hello!' },
        user('Bye'),
      ],
    });
    expect(call).toMatchObject({ model: MODEL, stream: false, includeUsage: false });
    expect(call.request).toEqual({
      contents: [
        { role: 'user', parts: [{ text: 'Hi' }] },
        { role: 'model', parts: [{ text: 'Hello!' }] },
        { role: 'user', parts: [{ text: 'Bye' }] },
      ],
      systemInstruction: { parts: [{ text: 'Rule one.' }, { text: 'Rule two.' }] },
    });
  });

  it('strips a leading models/ and refuses names that cannot be models', () => {
    expect(openAiToGemini({ model: 'models/gemini-2.5-pro', messages: [user('x')] }).model).toBe(
      'gemini-2.5-pro',
    );
    const e = errorOf(() => openAiToGemini({ model: '../admin', messages: [user('x')] }));
    expect(e).toMatchObject({ status: 400, param: 'model', type: 'invalid_request_error' });
  });

  it('refuses bodies without a conversation', () => {
    expect(errorOf(() => openAiToGemini('nope')).status).toBe(400);
    expect(errorOf(() => openAiToGemini({ model: MODEL })).param).toBe('messages');
    expect(errorOf(() => openAiToGemini({ model: MODEL, messages: [] })).param).toBe('messages');
    const onlySystem = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [{ role: 'system', content: 's' }] }),
    );
    expect(onlySystem).toMatchObject({ status: 400, param: 'messages', code: 'missing_messages' });
    const role = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }),
    );
    expect(role).toMatchObject({ param: 'messages[0].role' });
    expect(role.message).toContain('wizard');
    const sysImage = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [
          {
            role: 'system',
            content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }],
          },
          user('x'),
        ],
      }),
    );
    expect(sysImage.param).toBe('messages[0].content[0]');
  });

  it('image_url data: URLs become inlineData (base64 and percent-encoded)', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user([
          { type: 'text', text: 'What is this?' },
          { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } },
          { type: 'image_url', image_url: 'data:image/png;base64,iVBORw0K' },
          { type: 'image_url', image_url: { url: 'data:text/plain,hello%20world' } },
        ]),
      ],
    });
    expect(call.request.contents[0]!.parts).toEqual([
      { text: 'What is this?' },
      { inlineData: { mimeType: 'image/jpeg', data: '/9j/4AAQ' } },
      { inlineData: { mimeType: 'image/png', data: 'iVBORw0K' } },
      { inlineData: { mimeType: 'text/plain', data: Buffer.from('hello world').toString('base64') } },
    ]);
  });

  it('refuses remote image URLs (not fetched) and malformed data: URLs with the param named', () => {
    const remote = errorOf(() =>
      openAiToGemini({
        model: MODEL,
        messages: [user([{ type: 'image_url', image_url: { url: 'http://example.com/cat.png' } }])],
      }),
    );
    expect(remote).toMatchObject({
      status: 400,
      code: 'unsupported_image_url',
      param: 'messages[0].content[0].image_url.url',
    });
    expect(remote.message).toContain('data: URL');
    for (const url of [
      'data:image/png;base64,@@@',
      'data:;base64,AAAA',
      'ftp://x/y.png',
      'data:image/png;base64',
    ]) {
      const e = errorOf(() =>
        openAiToGemini({ model: MODEL, messages: [user([{ type: 'image_url', image_url: { url } }])] }),
      );
      expect(e.status, url).toBe(400);
      expect(e.param, url).toBe('messages[0].content[0].image_url.url');
    }
    expect(parseDataUrl('data:IMAGE/PNG;base64, AA BB\n==', 'p')).toEqual({
      mimeType: 'image/png',
      data: 'AABB==',
    });
  });

  it('input_audio and inline files; file ids and unknown part types are refused', () => {
    const call = openAiToGemini({
      model: MODEL,
      messages: [
        user([
          { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
          { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' } },
          { type: 'file', file: { file_data: 'JVBERi0=', filename: 'b.pdf' } },
        ]),
      ],
    });
    expect(call.request.contents[0]!.parts).toEqual([
      { inlineData: { mimeType: 'audio/wav', data: 'UklGRg==' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
    ]);
    const fileId = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user([{ type: 'file', file: { file_id: 'file-123' } }])] }),
    );
    expect(fileId).toMatchObject({
      status: 400,
      code: 'unsupported_file',
      param: 'messages[0].content[0].file',
    });
    const unknown = errorOf(() =>
      openAiToGemini({ model: MODEL, messages: [user([{ type: 'video', video: {} }])] }),
    );
    expect(unknown).toMatchObject({ status: 400, param: 'messages[0].content[0].type' });
  });
});

describe('openAiToGemini: parameters', () => {
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

describe('geminiToOpenAi', () => {
  const ids = { id: 'chatcmpl-test', created: 1700000000 };

  it('builds a chat.completion with text (thoughts left out), finish reason and usage', () => {
    const res: GeminiResponse = {
      candidates: [
        {
          content: {
            role: 'model',
            parts: [{ text: 'thinking…', thought: true }, { text: 'Hello' }, { text: ', world' }],
          },
          finishReason: 'STOP',
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: 10,
        candidatesTokenCount: 5,
        thoughtsTokenCount: 3,
        totalTokenCount: 18,
      },
      responseId: 'abc',
    };
    expect(geminiToOpenAi(res, MODEL, ids)).toEqual({
      id: 'chatcmpl-test',
      object: 'chat.completion',
      created: 1700000000,
      model: MODEL,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello, world', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: 10,
        completion_tokens: 8,
        total_tokens: 18,
        completion_tokens_details: { reasoning_tokens: 3 },
      },
    });
    const dflt = geminiToOpenAi(res, MODEL);
    expect(dflt.id).toBe('chatcmpl-abc');
    expect(Math.abs(dflt.created - Date.now() / 1000)).toBeLessThan(5);
  });

  it('one choice per candidate (n), by candidate index', () => {
    const out = geminiToOpenAi(
      {
        candidates: [
          { content: { parts: [{ text: 'B' }] }, finishReason: 'MAX_TOKENS', index: 1 },
          { content: { parts: [{ text: 'A' }] }, finishReason: 'STOP', index: 0 },
        ],
        usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 2, totalTokenCount: 3 },
      },
      MODEL,
      ids,
    );
    expect(out.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, 'A', 'stop'],
      [1, 'B', 'length'],
    ]);
    expect(out.usage).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
  });

  it('functionCall parts → tool_calls with JSON arguments, finish_reason tool_calls, content null', () => {
    const out = geminiToOpenAi(
      {
        candidates: [
          {
            content: {
              parts: [
                { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'sig-1' },
                { functionCall: { name: 'get_time', id: 'given-id' } },
              ],
            },
            finishReason: 'STOP',
          },
        ],
        responseId: 'r1',
      },
      MODEL,
      ids,
    );
    const choice = out.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toEqual([
      {
        id: 'call_r1_0_0',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        extra_content: { google: { thought_signature: 'sig-1' } },
      },
      { id: 'given-id', type: 'function', function: { name: 'get_time', arguments: '{}' } },
    ]);
  });

  it('a blocked prompt (no candidates) is a content_filter choice; cached tokens are reported', () => {
    const out = geminiToOpenAi(
      {
        promptFeedback: { blockReason: 'SAFETY' },
        usageMetadata: { promptTokenCount: 4, totalTokenCount: 4, cachedContentTokenCount: 2 },
      } as GeminiResponse,
      MODEL,
      ids,
    );
    expect(out.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        logprobs: null,
        finish_reason: 'content_filter',
      },
    ]);
    expect(out.usage).toEqual({
      prompt_tokens: 4,
      completion_tokens: 0,
      total_tokens: 4,
      prompt_tokens_details: { cached_tokens: 2 },
    });
  });
});

describe('finishReason', () => {
  it.each([
    ['STOP', false, 'stop'],
    ['STOP', true, 'tool_calls'],
    ['MAX_TOKENS', false, 'length'],
    ['MAX_TOKENS', true, 'length'],
    ['SAFETY', false, 'content_filter'],
    ['RECITATION', false, 'content_filter'],
    ['PROHIBITED_CONTENT', false, 'content_filter'],
    ['BLOCKLIST', false, 'content_filter'],
    ['OTHER', false, 'stop'],
    [undefined, false, 'stop'],
  ] as const)('%s (tool calls: %s) → %s', (reason, tools, expected) => {
    expect(finishReason(reason, tools)).toBe(expected);
  });
});

describe('geminiChunkToOpenAi / finishChunks', () => {
  const chunkOf = (parts: unknown[], extra: Record<string, unknown> = {}): GeminiResponse =>
    ({ candidates: [{ content: { role: 'model', parts }, index: 0, ...extra }] }) as GeminiResponse;

  it('role on the first delta, content deltas after, a finish chunk, usage from the last chunk', () => {
    const state = newChunkState(MODEL, { id: 'chatcmpl-s', created: 1, includeUsage: true });
    const usage1 = { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 };
    const usage2 = { promptTokenCount: 3, candidatesTokenCount: 2, totalTokenCount: 5 };
    const a = geminiChunkToOpenAi({ ...chunkOf([{ text: 'Hel' }]), usageMetadata: usage1 }, state);
    expect(a).toEqual([
      {
        id: 'chatcmpl-s',
        object: 'chat.completion.chunk',
        created: 1,
        model: MODEL,
        choices: [
          { index: 0, delta: { role: 'assistant', content: 'Hel' }, logprobs: null, finish_reason: null },
        ],
        usage: null,
      },
    ]);
    const b = geminiChunkToOpenAi(
      {
        candidates: [{ content: { parts: [{ text: 'lo' }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: usage2,
      },
      state,
    );
    expect(b.map((c) => c.choices[0])).toEqual([
      { index: 0, delta: { content: 'lo' }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' },
    ]);
    const end = finishChunks(state);
    expect(end).toEqual([
      {
        id: 'chatcmpl-s',
        object: 'chat.completion.chunk',
        created: 1,
        model: MODEL,
        choices: [],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      },
    ]);
  });

  it('tool calls: numbered across chunks, finish_reason tool_calls', () => {
    const state = newChunkState(MODEL, { id: 'x', created: 1 });
    const a = geminiChunkToOpenAi(chunkOf([{ functionCall: { name: 'f', args: { a: 1 } } }]), state);
    expect(a[0]!.choices[0]!.delta).toMatchObject({
      role: 'assistant',
      tool_calls: [{ index: 0, type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
    });
    expect(a[0]!.choices[0]!.delta).not.toHaveProperty('content');
    expect(a[0]).not.toHaveProperty('usage');
    const b = geminiChunkToOpenAi(
      chunkOf([{ functionCall: { name: 'g', args: {} } }], { finishReason: 'STOP' }),
      state,
    );
    expect(b[0]!.choices[0]!.delta.tool_calls![0]).toMatchObject({ index: 1, function: { name: 'g' } });
    expect(b[0]!.choices[0]!.delta.tool_calls![0]!.id).not.toBe(a[0]!.choices[0]!.delta.tool_calls![0]!.id);
    expect(b[1]!.choices[0]!.finish_reason).toBe('tool_calls');
    expect(finishChunks(state)).toEqual([]);
  });

  it('a choice the upstream left open is finished with stop at the end', () => {
    const state = newChunkState(MODEL, { id: 'x', created: 1 });
    geminiChunkToOpenAi(chunkOf([{ text: 'partial' }]), state);
    expect(finishChunks(state).map((c) => c.choices[0]!.finish_reason)).toEqual(['stop']);
  });
});

describe('SseDecoder', () => {
  const events = ['data: {"a":1}', 'data: {"b":"é ü 日本"}', ': comment', 'event: x\ndata: {"c":3}'];
  const wire = `${events.join('\r\n\r\n')}\r\n\r\n`;

  it('gives the same events however the bytes are split (even inside CRLF and multi-byte characters)', () => {
    const bytes = Buffer.from(wire, 'utf8');
    const expected = ['{"a":1}', '{"b":"é ü 日本"}', '{"c":3}'];
    for (const size of [1, 2, 3, 5, 7, bytes.length]) {
      const d = new SseDecoder();
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...d.push(bytes.subarray(i, i + size)));
      got.push(...d.end());
      expect(got, `split every ${size}`).toEqual(expected);
    }
  });

  it('handles \\n and \\r framings, several events per chunk, multi-line data, and a last event without blank line', () => {
    const d = new SseDecoder();
    expect(d.push('data: 1\n\ndata: 2\r\rdata:3\ndata: 4\n\ndata: 5')).toEqual(['1', '2', '3\n4']);
    expect(d.end()).toEqual(['5']);
  });

  it('waits for the end of an event', () => {
    const d = new SseDecoder();
    expect(d.push('data: {"par')).toEqual([]);
    expect(d.push('tial":true}\r\n')).toEqual([]);
    expect(d.push('\r\n')).toEqual(['{"partial":true}']);
  });
});

describe('ChatStreamTranslator', () => {
  const frame = (obj: unknown) => `data: ${JSON.stringify(obj)}\r\n\r\n`;
  const g = (text: string, last = false) => ({
    candidates: [
      { content: { role: 'model', parts: [{ text }] }, index: 0, ...(last ? { finishReason: 'STOP' } : {}) },
    ],
    usageMetadata: { promptTokenCount: 2, candidatesTokenCount: 1, totalTokenCount: 3 },
  });
  const parse = (out: string) =>
    out
      .split('\n\n')
      .filter(Boolean)
      .map((f) => f.replace(/^data: /, ''))
      .map((d) => (d === '[DONE]' ? d : JSON.parse(d)));

  it('translates as chunks arrive, split anywhere, and ends with finish, usage, [DONE]', () => {
    const t = new ChatStreamTranslator(MODEL, { id: 'chatcmpl-1', created: 5, includeUsage: true });
    const wire = frame(g('Hel')) + frame(g('lo', true));
    const cut = wire.indexOf('lo"') + 1;
    const first = t.push(Buffer.from(wire.slice(0, cut)));
    expect(parse(first).map((c) => c.choices[0].delta)).toEqual([{ role: 'assistant', content: 'Hel' }]);
    const rest = t.push(Buffer.from(wire.slice(cut)));
    expect(parse(rest).map((c) => [c.choices[0].delta, c.choices[0].finish_reason])).toEqual([
      [{ content: 'lo' }, null],
      [{}, 'stop'],
    ]);
    const end = t.end();
    expect(end.endsWith(DONE_FRAME)).toBe(true);
    const tail = parse(end);
    expect(tail[0]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
    });
    expect(tail[1]).toBe('[DONE]');
    expect(t.end()).toBe('');
  });

  it('an upstream error event becomes an OpenAI error frame and ends the stream (no [DONE])', () => {
    const t = new ChatStreamTranslator(MODEL);
    const out = t.push(
      frame(g('Hi')) +
        frame({ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } }),
    );
    const frames = parse(out);
    expect(frames[0].choices[0].delta.content).toBe('Hi');
    expect(frames[1]).toEqual({
      error: { message: 'The model is overloaded.', type: 'server_error', code: 'unavailable', param: null },
    });
    expect(t.failed).toBe(true);
    expect(t.push(frame(g('more')))).toBe('');
    expect(t.end()).toBe('');
  });

  it('fail() after a break gives one error frame; unreadable events are errors too', () => {
    const t = new ChatStreamTranslator(MODEL);
    t.push(frame(g('Hi')));
    expect(parse(t.fail())).toEqual([
      {
        error: {
          message: 'upstream stream broke off; the answer is incomplete',
          type: 'server_error',
          code: 'upstream_stream_error',
          param: null,
        },
      },
    ]);
    expect(t.fail()).toBe('');
    const u = new ChatStreamTranslator(MODEL);
    expect(parse(u.push('data: {not json\n\n'))[0].error.code).toBe('bad_upstream_response');
  });
});

describe('googleErrorToOpenAi', () => {
  it.each([
    [400, 'INVALID_ARGUMENT', 'Invalid value at contents', 'invalid_request_error', 'invalid_argument'],
    [
      400,
      'INVALID_ARGUMENT',
      'The input token count (2000000) exceeds the maximum number of tokens allowed (1048576).',
      'invalid_request_error',
      'context_length_exceeded',
    ],
    [
      404,
      'NOT_FOUND',
      'models/x is not found for API version v1beta',
      'invalid_request_error',
      'model_not_found',
    ],
    [403, 'PERMISSION_DENIED', 'denied', 'permission_error', 'permission_denied'],
    [429, 'RESOURCE_EXHAUSTED', 'quota', 'rate_limit_error', 'rate_limit_exceeded'],
    [500, 'INTERNAL', 'oops', 'server_error', 'internal'],
    [503, 'UNAVAILABLE', 'The model is overloaded.', 'server_error', 'unavailable'],
  ])('%i %s', (status, googleStatus, message, type, code) => {
    const e = googleErrorToOpenAi(
      status,
      Buffer.from(JSON.stringify({ error: { code: status, message, status: googleStatus } })),
    );
    expect(e.status).toBe(status);
    expect(e.body()).toEqual({ error: { message, type, code, param: null } });
  });

  it('reads the array form of Google’s OpenAI endpoint and survives a body that is not JSON', () => {
    expect(
      googleErrorToOpenAi(400, [{ error: { message: 'bad', status: 'INVALID_ARGUMENT' } }]).message,
    ).toBe('bad');
    const e = googleErrorToOpenAi(502, '<html>bad gateway</html>');
    expect(e.body()).toEqual({
      error: { message: 'upstream answered HTTP 502', type: 'server_error', code: null, param: null },
    });
  });
});

describe('embeddings', () => {
  it('input (string or list), dimensions → batchEmbedContents requests', () => {
    expect(openAiEmbeddingsToGemini({ model: 'models/text-embedding-004', input: 'hi' })).toEqual({
      model: 'text-embedding-004',
      request: { requests: [{ model: 'models/text-embedding-004', content: { parts: [{ text: 'hi' }] } }] },
      encoding: 'float',
      inputs: ['hi'],
    });
    const many = openAiEmbeddingsToGemini({
      model: 'gemini-embedding-001',
      input: ['a', 'b'],
      dimensions: 256,
      encoding_format: 'base64',
    });
    expect(many.encoding).toBe('base64');
    expect(many.request.requests.map((r) => [r.content.parts[0]!.text, r.outputDimensionality])).toEqual([
      ['a', 256],
      ['b', 256],
    ]);
  });

  it('refuses token arrays, empty lists and unknown encodings', () => {
    expect(errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: [1, 2, 3] }))).toMatchObject({
      status: 400,
      param: 'input[0]',
      code: 'unsupported_input',
    });
    expect(errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: [] })).param).toBe('input');
    expect(
      errorOf(() => openAiEmbeddingsToGemini({ model: 'm', input: 'x', encoding_format: 'hex' })).param,
    ).toBe('encoding_format');
  });

  it('answer → OpenAI list, as floats or base64 float32', () => {
    const res = { embeddings: [{ values: [0.5, -0.25] }, { values: [1, 0] }] };
    expect(geminiEmbeddingsToOpenAi(res, 'm', 'float', 7, 2)).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [0.5, -0.25] },
        { object: 'embedding', index: 1, embedding: [1, 0] },
      ],
      model: 'm',
      usage: { prompt_tokens: 7, total_tokens: 7 },
    });
    const b64 = geminiEmbeddingsToOpenAi(res, 'm', 'base64', 7).data[0]!.embedding as string;
    expect(b64).toBe(embeddingToBase64([0.5, -0.25]));
    const buf = Buffer.from(b64, 'base64');
    expect([buf.readFloatLE(0), buf.readFloatLE(4)]).toEqual([0.5, -0.25]);
    expect(errorOf(() => geminiEmbeddingsToOpenAi(res, 'm', 'float', 1, 3)).status).toBe(502);
    expect(errorOf(() => geminiEmbeddingsToOpenAi({}, 'm', 'float', 1)).status).toBe(502);
  });
});

describe('models', () => {
  it('native pages → OpenAI list, ids without models/', () => {
    expect(
      geminiModelsToOpenAi([
        { models: [{ name: 'models/gemini-2.5-flash', displayName: 'Gemini 2.5 Flash' }, { bogus: true }] },
        { models: [{ name: 'models/text-embedding-004' }] },
      ]),
    ).toEqual({
      object: 'list',
      data: [
        {
          id: 'gemini-2.5-flash',
          object: 'model',
          created: 0,
          owned_by: 'google',
          display_name: 'Gemini 2.5 Flash',
        },
        { id: 'text-embedding-004', object: 'model', created: 0, owned_by: 'google' },
      ],
    });
  });
});
