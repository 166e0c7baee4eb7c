import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAccountBackend, startFakeAccountBackend } from '../../fake/fake-account-backend.ts';
import { GatewayError } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import {
  createEmbeddedAccountBackend,
  createRemoteAccountBackend,
  type RemoteBackendOptions,
  type UsageWebhook,
} from '../../src/services/image-gen/backend.ts';

const SERVICE_TOKEN = 'svc-token-SECRET';

function collectingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
  return { logger, lines };
}

const webhook = (over: Partial<UsageWebhook> = {}): UsageWebhook => ({
  user_id: 'u1',
  catalog_id: 'c1',
  status: 'success',
  image_url: '/media/x.png',
  latency_ms: 12.5,
  provider: 'gemini',
  ...over,
});

describe('remote account backend (against the fake Django backend)', () => {
  let fake: FakeAccountBackend;
  beforeAll(async () => {
    fake = await startFakeAccountBackend({
      serviceToken: SERVICE_TOKEN,
      users: { u1: { apiKey: 'user-key-1', credits: 5 }, broke: { apiKey: 'user-key-2', credits: 0 } },
    });
  });
  afterAll(async () => {
    await fake.close();
  });

  const backend = (over: Partial<RemoteBackendOptions> = {}) =>
    createRemoteAccountBackend({
      baseUrl: fake.url,
      serviceToken: SERVICE_TOKEN,
      logger: pino({ level: 'silent' }),
      retryBaseMs: 5,
      webhookRetryBaseMs: 5,
      ...over,
    });

  it('verifies a user and sends the service token', async () => {
    fake.calls.length = 0;
    expect(await backend().verifyUser('u1', 'user-key-1')).toBe(true);
    expect(fake.calls[0]).toEqual({
      path: '/api/v1/auth/verify/',
      body: { user_id: 'u1', api_key: 'user-key-1' },
      authorization: `Bearer ${SERVICE_TOKEN}`,
    });
  });

  it('refuses a wrong key or unknown user', async () => {
    expect(await backend().verifyUser('u1', 'wrong')).toBe(false);
    expect(await backend().verifyUser('nobody', 'user-key-1')).toBe(false);
  });

  it('checks credits', async () => {
    expect(await backend().checkCredits('u1')).toEqual({ hasCredits: true, credits: 5 });
    expect(await backend().checkCredits('broke')).toEqual({ hasCredits: false, credits: 0 });
  });

  it('a backend that is down is a 503 after retries, and the log has no secret', async () => {
    const { logger, lines } = collectingLogger();
    fake.setDown(true);
    try {
      const err = await backend({ logger })
        .verifyUser('u1', 'user-key-1')
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect(toProblem(err as GatewayError).status).toBe(503);
      expect(toProblem(err as GatewayError).detail).toMatch(/account backend is unavailable/);
    } finally {
      fake.setDown(false);
    }
    expect(lines.join('\n')).not.toMatch(/SECRET|user-key-1/);
  });

  it('an unreachable backend is a 503', async () => {
    const b = createRemoteAccountBackend({
      baseUrl: 'http://127.0.0.1:1',
      logger: pino({ level: 'silent' }),
      retryBaseMs: 1,
    });
    const err = await b.checkCredits('u1').catch((e: unknown) => e);
    expect(toProblem(err as GatewayError).status).toBe(503);
  });

  it('retries network errors with backoff, then succeeds', async () => {
    let failures = 2;
    let attempts = 0;
    const flaky: typeof fetch = async (input, init) => {
      attempts++;
      if (failures-- > 0) throw new TypeError('fetch failed');
      return fetch(input, init);
    };
    expect(await backend({ fetch: flaky }).verifyUser('u1', 'user-key-1')).toBe(true);
    expect(attempts).toBe(3);
  });

  it('gives up after `attempts` tries', async () => {
    let attempts = 0;
    const dead: typeof fetch = async () => {
      attempts++;
      throw new TypeError('fetch failed');
    };
    const err = await backend({ fetch: dead, attempts: 4 })
      .verifyUser('u1', 'k')
      .catch((e: unknown) => e);
    expect(toProblem(err as GatewayError).status).toBe(503);
    expect(attempts).toBe(4);
  });

  it('a backend answering 503 is retried, then a 503 for the client', async () => {
    let attempts = 0;
    const busy: typeof fetch = async () => {
      attempts++;
      return new Response('{}', { status: 503 });
    };
    const err = await backend({ fetch: busy })
      .checkCredits('u1')
      .catch((e: unknown) => e);
    expect(toProblem(err as GatewayError).status).toBe(503);
    expect(attempts).toBe(3);
  });

  it('odd answers from the backend are a 503 for the client, never a crash or a guess', async () => {
    const answering =
      (body: string, status = 200): typeof fetch =>
      async () =>
        new Response(body, { status, headers: { 'content-type': 'application/json' } });
    const failsWith503 = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GatewayError);
      expect(toProblem(err as GatewayError).status).toBe(503);
    };
    await failsWith503(backend({ fetch: answering('<html>oops</html>') }).verifyUser('u1', 'user-key-1'));
    await failsWith503(backend({ fetch: answering('[true]') }).verifyUser('u1', 'user-key-1'));
    await failsWith503(backend({ fetch: answering('{"valid":true}', 409) }).verifyUser('u1', 'user-key-1'));
    await failsWith503(backend({ fetch: answering('{"credits":3}') }).checkCredits('u1'));
    await failsWith503(backend({ fetch: answering('{}', 409) }).checkCredits('u1'));
    // What the contract does define: 402/403 mean no credits, 401/403/404 an unknown user or key.
    expect(await backend({ fetch: answering('{}', 402) }).checkCredits('u1')).toEqual({
      hasCredits: false,
      credits: 0,
    });
    expect(await backend({ fetch: answering('{}', 404) }).verifyUser('u1', 'user-key-1')).toBe(false);
  });

  it('delivers the usage webhook in the background, retrying failures with backoff', async () => {
    fake.webhooks.length = 0;
    fake.failedWebhookAttempts = 0;
    fake.failWebhooks(2);
    const b = backend();
    const t0 = Date.now();
    b.reportUsage(webhook());
    expect(Date.now() - t0).toBeLessThan(20); // returns at once
    await b.drain(5000);
    expect(fake.failedWebhookAttempts).toBe(2);
    expect(fake.webhooks).toEqual([webhook()]);
  });

  it('gives up a webhook after webhookAttempts', async () => {
    fake.webhooks.length = 0;
    fake.failedWebhookAttempts = 0;
    fake.failWebhooks(10);
    const { logger, lines } = collectingLogger();
    const b = backend({ webhookAttempts: 3, logger });
    b.reportUsage(webhook());
    await b.drain(5000);
    expect(fake.failedWebhookAttempts).toBe(3);
    expect(fake.webhooks).toEqual([]);
    expect(lines.some((l) => l.includes('usage webhook given up'))).toBe(true);
    fake.failWebhooks(0);
  });

  it('does not retry a webhook the backend refuses with a 4xx', async () => {
    fake.failedWebhookAttempts = 0;
    fake.failWebhooks(5, 400);
    const b = backend();
    b.reportUsage(webhook());
    await b.drain(5000);
    expect(fake.failedWebhookAttempts).toBe(1);
    fake.failWebhooks(0);
  });
});

describe('embedded account backend', () => {
  const b = createEmbeddedAccountBackend(['client-token-a', 'client-token-b']);
  it('accepts a gateway client token as api_key', async () => {
    expect(await b.verifyUser('anyone', 'client-token-b')).toBe(true);
    expect(await b.verifyUser('anyone', 'client-token-c')).toBe(false);
    expect(await b.verifyUser('anyone', '')).toBe(false);
    expect(await b.verifyUser('anyone', 'client-token-a ')).toBe(false);
  });
  it('has unlimited credits', async () => {
    expect(await b.checkCredits('anyone')).toEqual({ hasCredits: true, credits: null });
  });
  it('refuses everything without client tokens', async () => {
    expect(await createEmbeddedAccountBackend([]).verifyUser('u', 'x')).toBe(false);
  });
});

describe('account backend: the contract beyond the happy path', () => {
  /** A backend URL that is never reached: every call goes to `fetchImpl`. */
  const remote = (fetchImpl: typeof fetch) =>
    createRemoteAccountBackend({
      baseUrl: 'http://backend.invalid',
      logger: pino({ level: 'silent' }),
      retryBaseMs: 1,
      webhookRetryBaseMs: 1,
      fetch: fetchImpl,
    });
  const answers = (...list: [number, string][]) => {
    const seen: string[] = [];
    const f: typeof fetch = async (input) => {
      seen.push(String(input));
      const [status, body] = list[Math.min(seen.length, list.length) - 1]!;
      return new Response(status === 204 ? null : body, {
        status,
        headers: { 'content-type': 'application/json' },
      });
    };
    return { f, seen };
  };

  it('verify: a 400 means refused (not a 503)', async () => {
    expect(await remote(answers([400, '{"detail":"bad"}']).f).verifyUser('u1', 'k')).toBe(false);
  });

  it('verify: only `valid: true` accepts; a 200 without it, or with a look-alike, is refused', async () => {
    expect(await remote(answers([200, '{"valid":true}']).f).verifyUser('u1', 'k')).toBe(true);
    expect(await remote(answers([200, '{}']).f).verifyUser('u1', 'k')).toBe(false);
    expect(await remote(answers([200, '{"valid":"true"}']).f).verifyUser('u1', 'k')).toBe(false);
    expect(await remote(answers([200, '{"valid":1}']).f).verifyUser('u1', 'k')).toBe(false);
  });

  it('credits: a 403 also means no credits', async () => {
    expect(await remote(answers([403, '{}']).f).checkCredits('u1')).toEqual({
      hasCredits: false,
      credits: 0,
    });
  });

  it('credits: an answer without a number of credits reports them as unknown (null)', async () => {
    expect(await remote(answers([200, '{"has_credits":true}']).f).checkCredits('u1')).toEqual({
      hasCredits: true,
      credits: null,
    });
  });

  it('502 and 504 are retried like 503', async () => {
    const { f, seen } = answers([502, '{}'], [504, '{}'], [200, '{"valid":true}']);
    expect(await remote(f).verifyUser('u1', 'k')).toBe(true);
    expect(seen).toHaveLength(3);
    const credits = answers([502, ''], [200, '{"has_credits":true,"credits":2}']);
    expect(await remote(credits.f).checkCredits('u1')).toEqual({ hasCredits: true, credits: 2 });
    expect(credits.seen).toHaveLength(2);
  });

  const hook: UsageWebhook = {
    user_id: 'u1',
    catalog_id: 'c1',
    status: 'success',
    image_url: '/media/x.png',
    latency_ms: 1,
    provider: 'gemini',
  };

  it('webhook: a 429 is retried (like 408 and 5xx)', async () => {
    const { f, seen } = answers([429, '{}'], [200, '{}']);
    const b = remote(f);
    b.reportUsage(hook);
    await b.drain(5000);
    expect(seen).toHaveLength(2);
  });

  it('webhook: any 2xx is a delivery (a 204 is not sent again)', async () => {
    const { f, seen } = answers([204, ''], [200, '{}']);
    const b = remote(f);
    b.reportUsage(hook);
    await b.drain(5000);
    expect(seen).toHaveLength(1);
  });

  it('embedded mode: every client token is accepted, not only the last one', async () => {
    const b = createEmbeddedAccountBackend(['token-a', 'token-b', 'token-c']);
    for (const t of ['token-a', 'token-b', 'token-c']) expect(await b.verifyUser('u', t), t).toBe(true);
    expect(await b.verifyUser('u', 'token-d')).toBe(false);
  });
});
