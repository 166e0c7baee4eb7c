import { afterEach, describe, expect, it } from 'vitest';
import { poolKeyValues, type Stack, type StackOptions, startStack } from '../helpers/stack.ts';

/** Liveness (/health) and readiness (/health/detailed). */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const ADMIN = 'admin-token-for-health-0123456';
const stacks: Stack[] = [];
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

async function stack(opts: StackOptions = {}): Promise<Stack> {
  const s = await startStack({ ...opts, env: { ADMIN_TOKEN: ADMIN, ...opts.env } });
  stacks.push(s);
  return s;
}

describe('health', () => {
  it('/health answers without a token and without touching the store', async () => {
    const s = await stack();
    s.gateway.store.ping = () => Promise.reject(new Error('store down'));
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('/health/detailed is ready with usable keys, and says how many', async () => {
    const s = await stack({ keys: 3 });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(200);
    expect((await res.json()) as Json).toMatchObject({
      status: 'ready',
      store: { kind: 'memory', reachable: true },
      keys: { configured: 3, usable: 3, disabled: 0, resting: 0, circuit_open: 0 },
      circuits: { closed: 3, open: 0, half_open: 0 },
      queue_length: 0,
    });
  });

  it('503 when every key is disabled', async () => {
    const s = await stack({ keys: 2 });
    const list = (await (
      await fetch(`${s.url}/admin/keys`, { headers: { 'x-admin-token': ADMIN } })
    ).json()) as Json;
    for (const k of list.keys)
      await fetch(`${s.url}/admin/keys/${k.id}/disable`, {
        method: 'POST',
        headers: { 'x-admin-token': ADMIN },
      });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({
      status: 'not_ready',
      keys: { usable: 0, disabled: 2 },
    });
  });

  it('503 when every key was found dead upstream', async () => {
    const s = await stack({ keys: 2 });
    for (const k of poolKeyValues(2)) s.fake.setKeyState(k, 'invalid');
    await fetch(`${s.url}/v1beta/models`, { headers: { 'x-goog-api-key': s.token } });
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as Json).keys.disabled).toBe(2);
  });

  it('503 when the state store does not answer', async () => {
    const s = await stack();
    s.gateway.store.ping = () => Promise.reject(new Error('ECONNREFUSED'));
    const res = await fetch(`${s.url}/health/detailed`);
    expect(res.status).toBe(503);
    expect((await res.json()) as Json).toMatchObject({ status: 'not_ready', store: { reachable: false } });
  });
});
