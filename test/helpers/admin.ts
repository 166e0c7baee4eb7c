import { expect } from 'vitest';
import type { Stack } from './stack.ts';

// biome-ignore lint/suspicious/noExplicitAny: admin JSON is inspected dynamically in tests
export type Json = any;

/** A call to the admin API with the admin token as a Bearer token. */
export function adminFetch(
  s: Stack,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  return fetch(s.url + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
}

/** GET /admin/keys, expecting a 200. */
export async function listKeys(s: Stack, token: string): Promise<Json[]> {
  const res = await adminFetch(s, token, 'GET', '/admin/keys');
  expect(res.status).toBe(200);
  return ((await res.json()) as Json).keys;
}
