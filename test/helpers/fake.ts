import { afterEach } from 'vitest';
import { type FakeGemini, type FakeGeminiOptions, startFakeGemini } from '../../fake/fake-gemini.ts';

/** What the fake Gemini's own suites share: a key, a fake per test, and a raw POST. */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
export type Json = any;

export const KEY = 'AIzaSyFAKE-key-000000000000000000001';

/** Returns start(): a fake Gemini that is closed after the test that started it. */
export function fakePerTest(): (opts?: FakeGeminiOptions) => Promise<FakeGemini> {
  const fakes: FakeGemini[] = [];
  afterEach(async () => {
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });
  return async (opts) => {
    const f = await startFakeGemini(opts);
    fakes.push(f);
    return f;
  };
}

/** POSTs `body` (JSON-encoded unless already a string) with `apiKey` in x-goog-api-key. */
export async function post(
  fake: FakeGemini,
  path: string,
  body: unknown,
  apiKey: string | null = KEY,
): Promise<{ status: number; text: string; json: Json }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (apiKey !== null) headers['x-goog-api-key'] = apiKey;
  const res = await fetch(fake.url + path, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}
