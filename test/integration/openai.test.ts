import OpenAI, {
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
} from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import type { RecordedRequest } from '../../fake/fake-gemini.ts';
import { FAKE_MODELS } from '../../fake/fake-gemini-content.ts';
import { type Stack, stackPerTest, startStack } from '../helpers/stack.ts';

/** The OpenAI-compatible surface, driven by the official `openai` SDK against the gateway + fake Gemini. */
let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

const MODEL = 'gemini-2.5-flash-lite';
const PNG_DATA =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==';

function client(s: Stack, opts: { apiKey?: string } = {}): OpenAI {
  return new OpenAI({ apiKey: opts.apiKey ?? s.token, baseURL: `${s.url}/v1beta/openai`, maxRetries: 0 });
}

function upstream(s: Stack, method: string): RecordedRequest[] {
  return s.fake.stats.log.filter((r) => r.path.endsWith(`:${method}`));
}

function post(s: Stack, path: string, body: unknown): Promise<Response> {
  return fetch(`${s.url}/v1beta/openai${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${s.token}` },
    body: JSON.stringify(body),
  });
}

describe('OpenAI-compatible surface through the official openai SDK', () => {
  it('chat completion: translated request upstream, OpenAI-shaped answer with usage', async () => {
    stack = await startStack();
    const r = await client(stack).chat.completions.create({
      model: `models/${MODEL}`,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello there' },
        { role: 'assistant', content: 'Hi! How can I help?' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe this image' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_DATA}` } },
          ],
        },
      ],
      temperature: 0.3,
      max_tokens: 100,
      stop: ['END'],
    });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe(MODEL);
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message).toMatchObject({
      role: 'assistant',
      content: 'Fake answer to: Describe this image',
    });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);

    const sent = upstream(stack, 'generateContent');
    expect(sent).toHaveLength(1);
    expect(sent[0]!.path).toBe(`/v1beta/models/${MODEL}:generateContent`);
    expect(sent[0]!.apiKey).not.toBe(stack.token);
    expect(sent[0]!.headers.authorization).toBeUndefined();
    expect(sent[0]!.body).toEqual({
      contents: [
        { role: 'user', parts: [{ text: 'Hello there' }] },
        { role: 'model', parts: [{ text: 'Hi! How can I help?' }] },
        {
          role: 'user',
          parts: [{ text: 'Describe this image' }, { inlineData: { mimeType: 'image/png', data: PNG_DATA } }],
        },
      ],
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      generationConfig: { temperature: 0.3, maxOutputTokens: 100, stopSequences: ['END'] },
    });
  });

  it('json_schema response_format becomes responseJsonSchema and the answer is that JSON', async () => {
    stack = await startStack();
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, population: { type: 'integer', minimum: 1 } },
      required: ['city', 'population'],
    };
    const r = await client(stack).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Largest city?' }],
      response_format: { type: 'json_schema', json_schema: { name: 'city', schema, strict: true } },
    });
    const parsed = JSON.parse(r.choices[0]!.message.content!);
    expect(parsed).toEqual({ city: 'sample city', population: 2 });
    const body = upstream(stack, 'generateContent')[0]!.body as { generationConfig: unknown };
    expect(body.generationConfig).toEqual({
      responseMimeType: 'application/json',
      responseJsonSchema: schema,
    });
  });

  it('function calling: tools go up as functionDeclarations, tool results as functionResponse', async () => {
    stack = await startStack();
    await client(stack).chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c":21}' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Current weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
          },
        },
      ],
      tool_choice: 'auto',
    });
    const body = upstream(stack, 'generateContent')[0]!.body as Record<string, unknown>;
    expect(body.contents).toEqual([
      { role: 'user', parts: [{ text: 'Weather in Paris?' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp_c: 21 } } }] },
    ]);
    expect(body.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Current weather',
            parametersJsonSchema: { type: 'object', properties: { city: { type: 'string' } } },
          },
        ],
      },
    ]);
    expect(body.toolConfig).toEqual({ functionCallingConfig: { mode: 'AUTO' } });
  });

  it('streams chunk by chunk, ends with finish_reason, the usage chunk and [DONE]', async () => {
    stack = await startStack({ fake: { streamChunks: 4, chunkDelayMs: 120 } });
    const s = await client(stack).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'stream please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    const arrived: number[] = [];
    for await (const c of s) {
      chunks.push(c);
      if (c.choices[0]?.delta.content) arrived.push(Date.now());
    }
    // Relayed as the upstream sends them (120 ms apart), not buffered until its end.
    expect(arrived[arrived.length - 1]! - arrived[0]!).toBeGreaterThanOrEqual(250);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('Fake answer to: stream please');
    // One content chunk per upstream chunk (not buffered into one), then finish, then usage.
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBe(4);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finish).toHaveLength(1);
    expect(finish[0]!.choices[0]!.finish_reason).toBe('stop');
    const last = chunks[chunks.length - 1]!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(last.usage!.total_tokens).toBe(last.usage!.prompt_tokens + last.usage!.completion_tokens);
    const sent = upstream(stack, 'streamGenerateContent');
    expect(sent).toHaveLength(1);
    expect(sent[0]!.search).toBe('?alt=sse');

    // On the wire: SSE frames, [DONE] last; no usage chunk without include_usage.
    const res = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'raw' }], stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const raw = await res.text();
    const frames = raw.split('\n\n').filter(Boolean);
    expect(frames[frames.length - 1]).toBe('data: [DONE]');
    expect(frames.every((f) => f.startsWith('data: '))).toBe(true);
    expect(raw).not.toContain('"usage"');
  });

  // An error event from Google, and a connection that breaks without one: both end the stream
  // with an error chunk the SDK raises, never [DONE].
  it.each([
    { kind: 'midstream_error', message: 'internal error', code: 'internal' },
    { kind: 'midstream_break', message: 'upstream stream broke off', code: 'upstream_stream_error' },
  ] as const)(
    'a stream whose upstream fails midway ($kind) ends with an error chunk the SDK raises',
    async ({ kind, message, code }) => {
      stack = await startStack({ fake: { streamChunks: 3 } });
      stack.fake.script({ kind }, { method: 'streamGenerateContent', times: 2 });
      const s = await client(stack).chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'break please' }],
        stream: true,
      });
      const got: string[] = [];
      const err = await (async () => {
        try {
          for await (const c of s) got.push(c.choices[0]?.delta.content ?? '');
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as Error).message).toContain(message);
      expect(got.join('')).not.toBe('');

      const raw = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], stream: true }),
      }).then((r) => r.text());
      const frames = raw.split('\n\n').filter(Boolean);
      expect(JSON.parse(frames[frames.length - 1]!.slice(6))).toMatchObject({
        error: { type: 'server_error', code },
      });
      expect(raw).not.toContain('[DONE]');
    },
  );

  it('embeddings: string and list input, float and the SDK default (base64) encoding', async () => {
    stack = await startStack();
    const openai = client(stack);
    const one = await openai.embeddings.create({ model: 'text-embedding-004', input: 'hello world' });
    expect(one.object).toBe('list');
    expect(one.model).toBe('text-embedding-004');
    expect(one.data).toHaveLength(1);
    expect(one.data[0]!.object).toBe('embedding');
    expect(one.data[0]!.embedding).toHaveLength(8);
    expect(one.usage.prompt_tokens).toBeGreaterThan(0);

    const many = await openai.embeddings.create({
      model: 'text-embedding-004',
      input: ['alpha beta', 'gamma'],
      encoding_format: 'float',
      dimensions: 4,
    });
    expect(many.data.map((d) => d.index)).toEqual([0, 1]);
    expect(many.data[0]!.embedding).toHaveLength(4);
    const sent = upstream(stack, 'batchEmbedContents');
    expect(sent).toHaveLength(2);
    expect(sent[1]!.body).toEqual({
      requests: [
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'alpha beta' }] },
          outputDimensionality: 4,
        },
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'gamma' }] },
          outputDimensionality: 4,
        },
      ],
    });
    // The SDK asked for base64 the first time and decoded it: the values survive as float32.
    const { embedText } = await import('../../fake/fake-gemini.ts');
    const expected = embedText('hello world', 8);
    for (const [i, v] of one.data[0]!.embedding.entries()) expect(v).toBeCloseTo(expected[i]!, 5);
  });

  it('models list and one model', async () => {
    stack = await startStack();
    const openai = client(stack);
    const ids: string[] = [];
    for await (const m of openai.models.list()) {
      expect(m).toMatchObject({ object: 'model', owned_by: 'google' });
      ids.push(m.id);
    }
    expect(ids).toContain('gemini-2.5-flash-lite');
    expect(ids).toContain('text-embedding-004');
    const one = await openai.models.retrieve('gemini-2.5-flash');
    expect(one).toMatchObject({ id: 'gemini-2.5-flash', object: 'model', owned_by: 'google' });
    const missing = await openai.models.retrieve('no-such-model').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
  });

  it('a 400 from upstream is rendered in OpenAI’s error shape', async () => {
    stack = await startStack();
    stack.fake.script({ kind: 'bad_request' }, { method: 'generateContent' });
    const err = await client(stack)
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    const e = err as BadRequestError;
    expect(e.status).toBe(400);
    expect(e.type).toBe('invalid_request_error');
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain('Invalid JSON payload received');

    // The same before the first byte of a stream: an error answer, not a broken stream.
    stack.fake.script({ kind: 'bad_request' }, { method: 'streamGenerateContent' });
    const streamErr = await client(stack)
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true })
      .catch((e: unknown) => e);
    expect(streamErr).toBeInstanceOf(BadRequestError);
    expect((streamErr as BadRequestError).status).toBe(400);
    expect((streamErr as BadRequestError).message).toContain('Invalid JSON payload received');

    const res = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found', param: null });
  });

  it('request errors of the gateway itself: validation, remote image URL, auth, unknown path', async () => {
    stack = await startStack();
    const openai = client(stack);
    const remote = await openai.chat.completions
      .create({
        model: MODEL,
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] },
        ],
      })
      .catch((e: unknown) => e as BadRequestError);
    expect(remote).toBeInstanceOf(BadRequestError);
    expect((remote as BadRequestError).param).toBe('messages[0].content[0].image_url.url');
    expect((remote as BadRequestError).code).toBe('unsupported_image_url');

    const bad = await openai.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 5 })
      .catch((e: unknown) => e as BadRequestError);
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as BadRequestError).param).toBe('temperature');
    // Nothing went upstream for requests refused here.
    expect(upstream(stack, 'generateContent')).toHaveLength(0);

    const unauth = await client(stack, { apiKey: 'wrong-token' })
      .models.list()
      .catch((e: unknown) => e);
    expect(unauth).toBeInstanceOf(AuthenticationError);
    expect((unauth as AuthenticationError).code).toBe('invalid_api_key');
    expect((unauth as AuthenticationError).type).toBe('invalid_request_error'); // as OpenAI answers it

    const res = await fetch(`${stack.url}/v1beta/openai/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'unknown_url' } });
    const wrongMethod = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      headers: { authorization: `Bearer ${stack.token}` },
    });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');

    const notJson = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
      body: '{"model":',
    });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('an exhausted pool answers 429 RateLimitError with Retry-After', async () => {
    stack = await startStack({ keys: 1, env: { DEFAULT_RPM: '1', QUEUE_MAX_WAIT_MS: '0' } });
    const openai = client(stack);
    const first = await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'one' }],
    });
    expect(first.choices[0]!.message.content).toBe('Fake answer to: one');
    const err = await openai.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'two' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    const e = err as RateLimitError;
    expect(e.status).toBe(429);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(upstream(stack, 'generateContent')).toHaveLength(1);
  });

  it('past REQUEST_TIMEOUT the answer is a 504 in OpenAI’s shape', async () => {
    stack = await startStack({ env: { REQUEST_TIMEOUT: '0.5' } });
    stack.fake.script({ kind: 'hang' }, { method: 'generateContent', times: 10 });
    const started = Date.now();
    const res = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'slow' }] }),
    });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { type: 'server_error', code: 'timeout', param: null } });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a client that leaves mid-stream stops the upstream transfer; the gateway keeps serving', async () => {
    stack = await startStack({ fake: { streamChunks: 20, chunkDelayMs: 100 } });
    // Watch the stream answers the route gets from the forwarder.
    const forwarder = stack.gateway.deps.forwarder;
    const forward = forwarder.forward.bind(forwarder);
    const events: string[] = [];
    forwarder.forward = async (call) => {
      const answer = await forward(call);
      if (answer.kind === 'stream') {
        const { abort, finish } = answer;
        answer.abort = () => {
          events.push('abort');
          abort();
        };
        answer.finish = (ok) => {
          events.push(`finish:${ok}`);
          finish(ok);
        };
      }
      return answer;
    };
    const controller = new AbortController();
    const res = await fetch(`${stack.url}/v1beta/openai/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.token}` },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: 'a long answer please' }],
        stream: true,
      }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"role":"assistant"');
    controller.abort();
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual(['abort', 'finish:client_gone']);
    const after = await client(stack).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'still there?' }],
    });
    expect(after.choices[0]!.message.content).toBe('Fake answer to: still there?');
  });
});

describe('OpenAI surface: stream headers, model pages, embeddings alignment, models/{id}', () => {
  // Each test here starts its own stack, closed after it.
  const startStackPerTest = stackPerTest();

  it('a stream answer tells caches and proxies not to hold it back', async () => {
    const stack = await startStackPerTest();
    const res = await post(stack, '/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    await res.text();
  });

  it('the model list follows the upstream’s page tokens to the last page', async () => {
    // Google pages models.list; the fake here hands out 4 models a page.
    const stack = await startStackPerTest({ fake: { maxPageSize: 4 } });
    const ids: string[] = [];
    for await (const m of client(stack).models.list()) ids.push(m.id);
    expect(ids).toEqual(FAKE_MODELS.map((m) => m.name));
    expect(ids.length).toBeGreaterThan(8); // three pages at least
    const listings = stack.fake.stats.log.filter((r) => r.path === '/v1beta/models').map((r) => r.search);
    const pages = Array.from({ length: Math.ceil(ids.length / 4) }, (_, i) => i * 4);
    expect(listings).toEqual(
      pages.map((at) => (at === 0 ? '?pageSize=1000' : `?pageSize=1000&pageToken=${at}`)),
    );
  });

  it('an embeddings answer with fewer vectors than inputs is a 502, never a misaligned list', async () => {
    const stack = await startStackPerTest();
    stack.fake.script({ kind: 'missing_embedding' }, { method: 'batchEmbedContents' });
    const err = await client(stack)
      .embeddings.create({ model: 'text-embedding-004', input: ['one', 'two'], encoding_format: 'float' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(502);
    expect((err as InternalServerError).code).toBe('bad_upstream_response');
  });

  it('models/{id}: a models/ prefix is accepted, a name that cannot be a model is a 400 that stays here', async () => {
    const stack = await startStackPerTest();
    const openai = client(stack);
    expect(await openai.models.retrieve('models/gemini-2.5-flash')).toMatchObject({
      id: 'gemini-2.5-flash',
      object: 'model',
    });
    const before = stack.fake.stats.log.length;
    const bad = await openai.models.retrieve('no such model!').catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as BadRequestError).param).toBe('model');
    expect(stack.fake.stats.log.length).toBe(before);
  });

  it('a wrong method on models/{id} is a 405 naming GET and HEAD', async () => {
    const stack = await startStackPerTest();
    const res = await post(stack, '/models/gemini-2.5-flash', {});
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(await res.json()).toMatchObject({ error: { code: 'method_not_allowed' } });
  });
});
