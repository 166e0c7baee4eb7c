import { describe, expect, it } from 'vitest';
import { adminFetch, type Json } from '../helpers/admin.ts';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type Stack, sharedRedisPair, stackPerTest } from '../helpers/stack.ts';

/**
 * Admin-made clients shared by two instances on one Redis: made on one, usable on the other at
 * once; deleted, rotated or disabled on one, refused by the other on its very next request (a
 * keep-alive connection that presented the token before included); budgets counted together.
 */

const ADMIN = 'admin-token-for-client-tests';
const redisUrl = redisTestUrl();
const stack = stackPerTest({ env: { ADMIN_TOKEN: ADMIN } });

const admin = (s: Stack, method: string, path: string, body?: unknown) =>
  adminFetch(s, ADMIN, method, path, body);

function native(s: Stack, token: string): Promise<Response> {
  return fetch(`${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
    method: 'POST',
    headers: { 'x-goog-api-key': token, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
  });
}

async function status(res: Promise<Response>): Promise<number> {
  const r = await res;
  await r.arrayBuffer();
  return r.status;
}

async function create(s: Stack, body: Record<string, unknown>): Promise<string> {
  const res = await admin(s, 'POST', '/admin/clients', body);
  expect(res.status).toBe(201);
  return ((await res.json()) as Json).token;
}

if (!redisUrl) warnSkipped('clients shared by instances on one Redis');

describe.skipIf(!redisUrl)('clients shared by instances on one Redis', () => {
  it('made on A, served by B at once; deleted on A, refused by B on its next request', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!);
    const token = await create(a, { name: 'shared-app' });
    // B has never seen it: it asks the store before refusing an unknown token.
    expect(await status(native(b, token))).toBe(200);
    expect(await status(native(b, token))).toBe(200); // the same keep-alive connection
    const listed = ((await (await admin(b, 'GET', '/admin/clients')).json()) as Json).clients;
    expect(listed.map((c: Json) => c.name)).toContain('shared-app');

    expect((await admin(a, 'DELETE', '/admin/clients/shared-app')).status).toBe(200);
    const upstream = a.fake.stats.requests;
    expect(await status(native(b, token))).toBe(401);
    expect(await status(native(a, token))).toBe(401);
    expect(a.fake.stats.requests).toBe(upstream);
  });

  it('rotated on A: B refuses the old token and serves the new one; disabled on B: A refuses it', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!);
    const old = await create(a, { name: 'rotating' });
    expect(await status(native(b, old))).toBe(200);
    const rotated = ((await (await admin(a, 'POST', '/admin/clients/rotating/rotate')).json()) as Json).token;
    expect(await status(native(b, old))).toBe(401);
    expect(await status(native(b, rotated))).toBe(200);
    expect(await status(native(a, rotated))).toBe(200);

    expect((await admin(b, 'PATCH', '/admin/clients/rotating', { enabled: false })).status).toBe(200);
    expect(await status(native(a, rotated))).toBe(401);
    expect((await admin(a, 'PATCH', '/admin/clients/rotating', { enabled: true })).status).toBe(200);
    expect(await status(native(b, rotated))).toBe(200);
    // A name taken on one instance is taken on the other.
    expect((await admin(b, 'POST', '/admin/clients', { name: 'rotating' })).status).toBe(409);
  });

  it("a client's budget is counted by both instances together", async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!);
    const token = await create(a, { name: 'small', limits: { requests_per_day: 3 } });
    const statuses = [];
    for (const s of [a, b, a, b]) statuses.push(await status(native(s, token)));
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(a.fake.stats.requests).toBe(3);
  });
});
