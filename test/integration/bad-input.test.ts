import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * Every refusal of bad input is a 4xx with a JSON body (problem details, or Google's / OpenAI's
 * shape on their surfaces), never a 500 or a hang, and nothing of it reaches upstream.
 */
let s: Stack;
beforeAll(async () => {
  s = await startStack({ keys: 2, env: { ADMIN_TOKEN: 'admin-token-for-bad-input-tests' } });
});
afterAll(async () => {
  await s.close();
});

const json = (body: string, extra: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { authorization: `Bearer ${TOKEN()}`, 'content-type': 'application/json', ...extra },
  body,
});
const TOKEN = () => s.token;
const NATIVE = '/v1beta/models/gemini-2.5-flash:generateContent';

const cases: Array<[string, string, () => RequestInit, number]> = [
  ['invalid JSON', '/v1/generate', () => json('{bad'), 400],
  ['JSON array body', '/v1/generate', () => json('[1,2]'), 422],
  ['JSON null body', '/v1/generate', () => json('null'), 422],
  ['XML body', '/v1/generate', () => json('<a/>', { 'content-type': 'application/xml' }), 415],
  ['native: invalid JSON', NATIVE, () => json('{'), 400],
  ['native: array body', NATIVE, () => json('[]'), 400],
  [
    'native: path traversal in the model',
    '/v1beta/models/..%2F..%2Fadmin:generateContent',
    () => json('{}'),
    404,
  ],
  ['native: empty model', '/v1beta/models/:generateContent', () => json('{}'), 404],
  ['native: NUL in the model', '/v1beta/models/%00:generateContent', () => json('{}'), 404],
  ['native: unknown method', '/v1beta/models/gemini-2.5-flash:deleteEverything', () => json('{}'), 404],
  ['translate: JSON instead of multipart', '/translate', () => json('{}'), 415],
  [
    'translate: broken multipart',
    '/translate',
    () => ({
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN()}`, 'content-type': 'multipart/form-data; boundary=xx' },
      body: '--xx\r\nbroken',
    }),
    400,
  ],
  [
    'text: unknown operation',
    '/v1/text_processing/process',
    () => json('{"text":"a","operation":"nope"}'),
    422,
  ],
  ['text: batch not a list', '/v1/text_processing/batch_process', () => json('{"requests":{}}'), 422],
  ['create-image: wrong types', '/api/v1/create-image', () => json('{"user_id":1}'), 422],
  [
    'create-image: file:// and metadata URLs',
    '/api/v1/create-image',
    () =>
      json(
        JSON.stringify({
          user_id: 'u',
          api_key: TOKEN(),
          catalog_id: 'c',
          user_image_url: 'file:///etc/passwd',
          catalog_image_url: 'http://169.254.169.254/latest/meta-data/',
        }),
      ),
    422,
  ],
  [
    'openai: messages not a list',
    '/v1beta/openai/chat/completions',
    () => json('{"model":"m","messages":"x"}'),
    400,
  ],
  ['media: traversal', '/media/..%2F..%2Fetc%2Fpasswd', () => ({}), 404],
  ['oversized headers', '/v1/generate', () => json('{}', { 'x-big': 'a'.repeat(20_000) }), 431],
];

describe('bad input', () => {
  for (const [name, path, init, status] of cases) {
    it(`${name} → ${status} with a JSON body, nothing sent upstream`, async () => {
      const before = s.fake.stats.requests;
      const res = await fetch(s.url + path, init());
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/json/);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body.status ?? (body.error as { code?: number } | undefined)?.code ?? body.error).toBeTruthy();
      expect(JSON.stringify(body)).not.toContain(TOKEN());
      expect(s.fake.stats.requests).toBe(before);
    });
  }
});
