import OpenAI, { BadRequestError, InternalServerError } from 'openai';
import { describe, expect, it } from 'vitest';
import { FAKE_MODELS } from '../../fake/fake-gemini-content.ts';
import { type Stack, stackPerTest } from '../helpers/stack.ts';

/**
 * Behaviours of the OpenAI-compatible routes that mutation testing showed no test pinned down,
 * driven through the official `openai` SDK (or raw fetch where the wire itself is the point).
 */
const startStack = stackPerTest();
const MODEL = 'gemini-2.5-flash-lite';

function client(s: Stack): OpenAI {
  return new OpenAI({ apiKey: s.token, baseURL: `${s.url}/v1beta/openai`, maxRetries: 0 });
}

function post(s: Stack, path: string, body: unknown): Promise<Response> {
  return fetch(`${s.url}/v1beta/openai${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${s.token}` },
    body: JSON.stringify(body),
  });
}

describe('OpenAI surface: what mutation testing found unpinned', () => {
  it('a stream answer tells caches and proxies not to hold it back', async () => {
    const stack = await startStack();
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
    const stack = await startStack({ fake: { maxPageSize: 4 } });
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
    const stack = await startStack();
    stack.fake.script({ kind: 'missing_embedding' }, { method: 'batchEmbedContents' });
    const err = await client(stack)
      .embeddings.create({ model: 'text-embedding-004', input: ['one', 'two'], encoding_format: 'float' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(502);
    expect((err as InternalServerError).code).toBe('bad_upstream_response');
  });

  it('models/{id}: a models/ prefix is accepted, a name that cannot be a model is a 400 that stays here', async () => {
    const stack = await startStack();
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
    const stack = await startStack();
    const res = await post(stack, '/models/gemini-2.5-flash', {});
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(await res.json()).toMatchObject({ error: { code: 'method_not_allowed' } });
  });
});
