import { afterEach, describe, expect, it } from 'vitest';
import { redisTestUrl, warnSkipped } from '../helpers/redis.ts';
import { type Stack, type StackOptions, sharedRedisPair, startStack, TEST_TOKEN } from '../helpers/stack.ts';

/** Caller rate limits: per IP (minute + burst), per client, across instances, behind proxies. */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const redisUrl = redisTestUrl();
const stacks: Stack[] = [];
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

async function stack(opts: StackOptions = {}): Promise<Stack> {
  // The per-IP limits are tested on authenticated requests: IP_LIMIT_SCOPE=all (by default they
  // apply to requests without a valid client token only: test/integration/clients.test.ts).
  const s = await startStack({ ...opts, env: { IP_LIMIT_SCOPE: 'all', ...opts.env } });
  stacks.push(s);
  return s;
}

/** Fixed windows: start a test early in one, so its requests all fall into the same window. */
async function freshWindow(windowMs: number, needMs: number): Promise<void> {
  const into = Date.now() % windowMs;
  if (into > windowMs - needMs) await new Promise((r) => setTimeout(r, windowMs - into + 20));
}

const get = (s: Stack, path: string, headers: Record<string, string> = {}) =>
  fetch(s.url + path, { headers: { 'x-goog-api-key': TEST_TOKEN, ...headers } });

describe('per-IP limits', () => {
  it('refuses past GLOBAL_RATE_LIMIT per minute with 429, Retry-After and RateLimit headers', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '3', BURST_RATE_LIMIT: '0' } });
    await freshWindow(60_000, 5_000);
    const first = await get(s, '/v1/text_processing/operations');
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-limit')).toBe('3');
    expect(first.headers.get('ratelimit-remaining')).toBe('2');
    expect(Number(first.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
    expect(Number(first.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(60);
    await get(s, '/v1/text_processing/operations');
    await get(s, '/nope'); // 404s count too: scanning is limited like anything else
    const refused = await get(s, '/v1/text_processing/operations');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    const retry = Number(refused.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect(refused.headers.get('ratelimit-limit')).toBe('3');
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(refused.headers.get('ratelimit-reset')).toBe(String(retry));
    expect(((await refused.json()) as Json).status).toBe(429);
    // On the native routes the refusal is in Google's shape, so SDKs back off as for a quota.
    const native = await get(s, '/v1beta/models');
    expect(native.status).toBe(429);
    expect(((await native.json()) as Json).error.status).toBe('RESOURCE_EXHAUSTED');
    // Counted in the metrics, by scope.
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/gateway_rate_limit_refusals_total\{scope="ip_minute"\} 2/);
  });

  it('BURST_RATE_LIMIT caps requests within one second', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '0', BURST_RATE_LIMIT: '3' } });
    await freshWindow(1000, 700);
    const statuses = await Promise.all(
      Array.from({ length: 6 }, () => get(s, '/v1/text_processing/operations').then((r) => r.status)),
    );
    expect(statuses.filter((x) => x === 200)).toHaveLength(3);
    expect(statuses.filter((x) => x === 429)).toHaveLength(3);
    // The next second admits again.
    await new Promise((r) => setTimeout(r, 1100 - (Date.now() % 1000)));
    expect((await get(s, '/v1/text_processing/operations')).status).toBe(200);
  });

  it('health, metrics and docs are exempt', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '1', BURST_RATE_LIMIT: '1' } });
    for (let i = 0; i < 4; i++) {
      for (const path of ['/health', '/health/detailed', '/metrics', '/docs/json']) {
        const res = await fetch(s.url + path);
        expect(res.status, path).toBe(200);
        expect(res.headers.get('ratelimit-limit')).toBeNull();
      }
    }
  });

  it('without TRUSTED_PROXIES, X-Forwarded-For is ignored: every caller counts as the peer', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '2', BURST_RATE_LIMIT: '0' } });
    await freshWindow(60_000, 5_000);
    const statuses: number[] = [];
    for (const ip of ['203.0.113.1', '203.0.113.2', '203.0.113.3'])
      statuses.push((await get(s, '/v1/text_processing/operations', { 'x-forwarded-for': ip })).status);
    expect(statuses).toEqual([200, 200, 429]);
  });

  it('with the peer in TRUSTED_PROXIES, the client IP comes from X-Forwarded-For', async () => {
    const s = await stack({
      env: { GLOBAL_RATE_LIMIT: '2', BURST_RATE_LIMIT: '0', TRUSTED_PROXIES: '127.0.0.1' },
    });
    await freshWindow(60_000, 5_000);
    const call = (ip: string) =>
      get(s, '/v1/text_processing/operations', { 'x-forwarded-for': ip }).then((r) => r.status);
    expect([await call('203.0.113.1'), await call('203.0.113.1'), await call('203.0.113.1')]).toEqual([
      200, 200, 429,
    ]);
    // Another client behind the same proxy has its own allowance.
    expect(await call('203.0.113.2')).toBe(200);
  });
});

describe('per-client limits', () => {
  it('CLIENT_RATE_LIMIT by default, CLIENT_RATE_LIMITS per client name', async () => {
    const vip = 'vip-client-token-0123456789';
    const s = await stack({
      env: {
        GLOBAL_RATE_LIMIT: '0',
        BURST_RATE_LIMIT: '0',
        CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests,${vip}:vip`,
        CLIENT_RATE_LIMIT: '2',
        CLIENT_RATE_LIMITS: 'vip:4',
      },
    });
    await freshWindow(60_000, 5_000);
    const run = async (token: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++)
        out.push(
          (
            await fetch(`${s.url}/v1/text_processing/operations`, {
              headers: { authorization: `Bearer ${token}` },
            })
          ).status,
        );
      return out;
    };
    expect(await run(TEST_TOKEN, 3)).toEqual([200, 200, 429]);
    expect(await run(vip, 5)).toEqual([200, 200, 200, 200, 429]);
    const refused = await fetch(`${s.url}/v1/text_processing/operations`, { headers: { 'x-api-key': vip } });
    expect(refused.headers.get('ratelimit-limit')).toBe('4');
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    const body = await refused.text();
    expect(body).not.toContain(vip);
  });
});

if (!redisUrl) warnSkipped('caller rate limits across instances');

describe.skipIf(!redisUrl)('limits shared by instances on one Redis', () => {
  it('two gateways count one caller together', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!, {
      env: { GLOBAL_RATE_LIMIT: '4', BURST_RATE_LIMIT: '0', CLIENT_RATE_LIMIT: '0' },
    });
    await freshWindow(60_000, 5_000);
    const statuses: number[] = [];
    for (const s of [a, b, a, b, a, b])
      statuses.push((await get(s, '/v1/text_processing/operations')).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });

  it('a client limit holds across instances', async () => {
    const [a, b] = await sharedRedisPair(stack, redisUrl!, {
      env: { GLOBAL_RATE_LIMIT: '0', BURST_RATE_LIMIT: '0', CLIENT_RATE_LIMIT: '3' },
    });
    await freshWindow(60_000, 5_000);
    const statuses: number[] = [];
    for (const s of [b, a, b, a]) statuses.push((await get(s, '/v1/text_processing/operations')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});

describe('caller rate limits', () => {
  const operations = (s: Stack) =>
    fetch(`${s.url}/v1/text_processing/operations`, { headers: { 'x-goog-api-key': TEST_TOKEN } });

  it('the RateLimit headers show whichever of the IP and client limits has less room', async () => {
    await freshWindow(60_000, 5_000);
    const clientTighter = await stack({
      env: { GLOBAL_RATE_LIMIT: '100', CLIENT_RATE_LIMIT: '5', IP_LIMIT_SCOPE: 'all' },
    });
    const a = await operations(clientTighter);
    expect(a.status).toBe(200);
    expect(a.headers.get('ratelimit-limit')).toBe('5');
    expect(a.headers.get('ratelimit-remaining')).toBe('4');

    const ipTighter = await stack({
      env: { GLOBAL_RATE_LIMIT: '5', CLIENT_RATE_LIMIT: '100', IP_LIMIT_SCOPE: 'all' },
    });
    const b = await operations(ipTighter);
    expect(b.status).toBe(200);
    expect(b.headers.get('ratelimit-limit')).toBe('5');
  });

  it('a burst refusal says its limit is per second', async () => {
    const s = await stack({ env: { BURST_RATE_LIMIT: '1', IP_LIMIT_SCOPE: 'all' } });
    let refused: Response | undefined;
    for (let i = 0; i < 20 && !refused; i++) {
      const res = await operations(s);
      if (res.status === 429) refused = res;
    }
    expect(refused).toBeDefined();
    expect(((await refused!.json()) as Json).detail).toContain('(1 requests per second)');
  });

  it('Retry-After of a per-minute refusal reaches the end of the window', async () => {
    const s = await stack({ env: { GLOBAL_RATE_LIMIT: '1', IP_LIMIT_SCOPE: 'all' } });
    await freshWindow(60_000, 5_000);
    // Mid-second, so the time left in the window is not a whole number of seconds.
    await new Promise((r) => setTimeout(r, (1_500 - (Date.now() % 1_000)) % 1_000));
    const windowEnd = Math.ceil(Date.now() / 60_000) * 60_000;
    expect((await operations(s)).status).toBe(200);
    const refused = await operations(s);
    const answeredAt = Date.now();
    expect(refused.status).toBe(429);
    const retry = Number(refused.headers.get('retry-after'));
    expect(answeredAt + retry * 1000).toBeGreaterThanOrEqual(windowEnd);
    expect(refused.headers.get('ratelimit-reset')).toBe(String(retry));
  });
});
