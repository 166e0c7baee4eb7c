import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FakeAccountBackend, startFakeAccountBackend } from '../../fake/fake-account-backend.ts';
import { fakePng } from '../../fake/fake-gemini.ts';
import {
  type FakeImageHost,
  type FakeImageProviders,
  startFakeImageHost,
  startFakeImageProviders,
} from '../../fake/fake-image-providers.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * POST /api/v1/create-image end to end over HTTP: the gateway in-process, the fake Gemini
 * behind its key pool, a fake account backend (Django), fake OpenAI/Stability servers and image
 * hosts, all real servers on 127.0.0.1.
 */

const SERVICE_TOKEN = 'backend-service-token-SECRET-1234';
const ALICE_KEY = 'alice-api-key-SECRET-5678';
const OPENAI_KEY = 'sk-openai-SECRET-9999';
const STABILITY_KEY = 'sk-stability-SECRET-8888';

let images: FakeImageHost; // in IMAGE_FETCH_ALLOW_HOSTS
let internal: FakeImageHost; // also on 127.0.0.1, NOT in the allow list
let backend: FakeAccountBackend;
let providers: FakeImageProviders;
let mediaDir: string;
let main: Stack;
const logLines: string[] = [];

const users = () => ({
  alice: { apiKey: ALICE_KEY, credits: 100 },
  bob: { apiKey: 'bob-key', credits: 0 },
});

function gatewayEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    BACKEND_URL: backend.url,
    BACKEND_SERVICE_TOKEN: SERVICE_TOKEN,
    IMAGE_FETCH_ALLOW_HOSTS: `127.0.0.1:${images.port}`,
    IMAGE_FETCH_TIMEOUT_MS: '3000',
    MEDIA_DIR: mediaDir,
    THROTTLE_RPM: '1000',
    ...extra,
  };
}

beforeAll(async () => {
  images = await startFakeImageHost();
  internal = await startFakeImageHost();
  backend = await startFakeAccountBackend({ serviceToken: SERVICE_TOKEN, users: users() });
  providers = await startFakeImageProviders({ openaiKey: OPENAI_KEY, stabilityKey: STABILITY_KEY });
  mediaDir = join(await mkdtemp(join(tmpdir(), 'create-image-it-')), 'media'); // created on first use
  main = await startStack({ env: gatewayEnv(), logLines });
});

afterAll(async () => {
  await main?.close();
  await Promise.all([images?.close(), internal?.close(), backend?.close(), providers?.close()]);
  if (mediaDir) await rm(join(mediaDir, '..'), { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
  text: string;
}

async function createImage(
  stack: Stack,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${stack.url}/api/v1/create-image`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, json, text };
}

const request = (over: Record<string, unknown> = {}) => ({
  user_id: 'alice',
  api_key: ALICE_KEY,
  catalog_id: 'cat-42',
  user_image_url: `${images.url}/person.png`,
  catalog_image_url: `${images.url}/garment.png`,
  ...over,
});

function expectNoSecrets(text: string): void {
  for (const s of [ALICE_KEY, SERVICE_TOKEN, OPENAI_KEY, STABILITY_KEY]) expect(text).not.toContain(s);
}

describe('create-image with the gemini provider and the account backend', () => {
  it('generates through the key pool, stores, serves, logs, and reports usage after answering', async () => {
    const webhooksBefore = backend.webhooks.length;
    const geminiBefore = main.fake.stats.log.length;
    backend.failWebhooks(2); // delivery needs retries: it must not delay the answer

    const r = await createImage(main, request({ prompt: 'plain white studio background' }));
    expect(r.status, r.text).toBe(200);
    expect(r.json.status).toBe('success');
    expect(r.json.image_url).toMatch(
      /^\/media\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.png$/,
    );
    expect(typeof r.json.latency_ms).toBe('number');
    expect(r.json.latency_ms as number).toBeGreaterThan(0);
    expect(Object.keys(r.json).sort()).toEqual(['image_url', 'latency_ms', 'status']);
    // answered before the webhook got through
    expect(backend.webhooks.length).toBe(webhooksBefore);

    // Gemini was called through the pool with both images and the try-on prompt
    const calls = main.fake.stats.log.slice(geminiBefore).filter((c) => c.path.includes(':generateContent'));
    expect(calls).toHaveLength(1);
    expect(calls[0]!.path).toContain('/models/gemini-2.5-flash-image:generateContent');
    const sent = calls[0]!.body as {
      contents: { parts: Record<string, unknown>[] }[];
      generationConfig: { responseModalities: string[] };
    };
    expect(sent.generationConfig.responseModalities).toEqual(['IMAGE']);
    const parts = sent.contents[0]!.parts;
    expect((parts[0]!.inlineData as { data: string }).data).toBe(images.person.toString('base64'));
    expect((parts[1]!.inlineData as { data: string }).data).toBe(images.garment.toString('base64'));
    expect(parts[2]!.text).toMatch(
      /^take the person from the first reference image.*plain white studio background/s,
    );

    // the stored image is served with its type and nosniff, without a client token
    const img = await fetch(`${main.url}${r.json.image_url}`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/png');
    expect(img.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await img.arrayBuffer()).equals(fakePng())).toBe(true);
    expect(await readdir(mediaDir)).toContain(String(r.json.image_url).slice('/media/'.length));

    // the usage webhook arrives (after two failed attempts), with the service token
    const hooks = await backend.waitForWebhooks(webhooksBefore + 1);
    expect(hooks[webhooksBefore]).toEqual({
      user_id: 'alice',
      catalog_id: 'cat-42',
      status: 'success',
      image_url: r.json.image_url,
      latency_ms: r.json.latency_ms,
      provider: 'gemini',
    });
    expect(backend.failedWebhookAttempts).toBeGreaterThanOrEqual(2);
    for (const c of backend.calls) expect(c.authorization).toBe(`Bearer ${SERVICE_TOKEN}`);

    // one structured log line, without secrets
    const line = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'create-image' && l.status === 200);
    expect(line).toMatchObject({
      user_id: 'alice',
      catalog_id: 'cat-42',
      provider: 'gemini',
      outcome: 'success',
    });
    expect(typeof line!.latency_ms).toBe('number');
    expectNoSecrets(logLines.join('\n'));
  });

  it('401 for a wrong api_key, without echoing it and without a webhook', async () => {
    const before = backend.webhooks.length;
    const r = await createImage(main, request({ api_key: 'wrong-key-SECRET-0000' }));
    expect(r.status).toBe(401);
    expect(r.json.detail).toMatch(/invalid user_id or api_key/);
    expect(r.text).not.toContain('wrong-key-SECRET-0000');
    const unknown = await createImage(main, request({ user_id: 'mallory' }));
    expect(unknown.status).toBe(401);
    await new Promise((res) => setTimeout(res, 100));
    expect(backend.webhooks.length).toBe(before);
  });

  it('403 without credits', async () => {
    const r = await createImage(main, request({ user_id: 'bob', api_key: 'bob-key' }));
    expect(r.status).toBe(403);
    expect(r.json.detail).toMatch(/credits/);
  });

  it('422 for a bad body, 400 for a body that is not JSON', async () => {
    const missing = await createImage(main, { user_id: 'alice' });
    expect(missing.status).toBe(422);
    expect(missing.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(missing.json.detail).toMatch(/api_key/);
    const scheme = await createImage(main, request({ user_image_url: 'file:///etc/passwd' }));
    expect(scheme.status).toBe(422);
    expect((await createImage(main, '{not json')).status).toBe(400);
  });

  it('refuses private addresses, a host name resolving to 127.0.0.1, and redirects to them', async () => {
    const cases = [
      `http://127.0.0.1:${internal.port}/person.png`, // 127.0.0.1 but a port outside the allow list
      `http://localhost:${images.port}/person.png`, // a name that resolves to 127.0.0.1
      `http://[::ffff:7f00:1]:${internal.port}/person.png`,
      'http://169.254.169.254/latest/meta-data/',
      `${images.url}/redirect?to=${encodeURIComponent(`http://127.0.0.1:${internal.port}/person.png`)}`,
      `${images.url}/redirect?to=${encodeURIComponent(`http://localhost:${internal.port}/text`)}`,
      `${images.url}/redirect?to=${encodeURIComponent('http://169.254.169.254/latest/meta-data/')}`,
    ];
    for (const url of cases) {
      const r = await createImage(main, request({ user_image_url: url }));
      expect(r.status, url).toBe(400);
      expect(r.json.detail, url).toMatch(/^user_image_url: the URL is not allowed/);
      expect(r.text, url).not.toMatch(/127\.0\.0\.1|169\.254|secret/);
    }
    expect(internal.hits).toEqual([]);
  });

  it('415 for content that is not an image, without echoing it', async () => {
    for (const path of ['/text', '/fake-png']) {
      const r = await createImage(main, request({ catalog_image_url: `${images.url}${path}` }));
      expect(r.status).toBe(415);
      expect(r.json.detail).toMatch(/^catalog_image_url: /);
      expect(r.text).not.toMatch(/secret/);
    }
  });

  it('sends a failed webhook when generation fails after verification (502)', async () => {
    // Google refuses the request once (a 400 is not retried on another key)
    main.fake.script({ kind: 'bad_request' }, { method: 'generateContent', times: 1 });
    const r = await createImage(main, request({ catalog_id: 'cat-fail' }));
    expect(r.status).toBe(502);
    expect(r.json.detail).toMatch(/image provider gemini failed/);
    const failed = await backend.waitForWebhook((h) => h.catalog_id === 'cat-fail');
    expect(failed).toMatchObject({ user_id: 'alice', status: 'failed', image_url: null, provider: 'gemini' });
    expect(String(failed.error)).toMatch(/image provider gemini failed/);
  });

  it('503 when the account backend is down', async () => {
    backend.setDown(true);
    try {
      const r = await createImage(main, request());
      expect(r.status).toBe(503);
      expect(r.json.detail).toMatch(/account backend is unavailable/);
      expectNoSecrets(r.text);
    } finally {
      backend.setDown(false);
    }
  });

  it('serves nothing but stored files under /media', async () => {
    for (const path of [
      '/media/',
      '/media',
      '/media/..%2fpackage.json',
      '/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      '/media/package.json',
      '/media/00000000-0000-4000-8000-000000000000.png',
    ]) {
      const res = await fetch(`${main.url}${path}`);
      expect(res.status, path).toBe(404);
      await res.body?.cancel();
    }
  });
});

describe('media retention', () => {
  it('images older than MEDIA_RETENTION_HOURS are deleted when the gateway starts (and every 10 min)', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'media-retention-')), 'media');
    await mkdir(dir);
    const old = '00000000-0000-4000-8000-000000000001.png';
    const recent = '00000000-0000-4000-8000-000000000002.png';
    for (const name of [old, recent]) await writeFile(join(dir, name), 'x');
    const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
    await utimes(join(dir, old), twoDaysAgo, twoDaysAgo);
    const stack = await startStack({
      env: gatewayEnv({ MEDIA_DIR: dir, MEDIA_RETENTION_HOURS: '24' }),
      fakeInstance: main.fake,
    });
    try {
      await vi.waitFor(async () => expect(await readdir(dir)).toEqual([recent]), { timeout: 3000 });
    } finally {
      await stack.close();
      await rm(join(dir, '..'), { recursive: true, force: true });
    }
  });
});

describe('create-image with the other providers', () => {
  it('openai: images edits against the fake OpenAI server', async () => {
    const stack = await startStack({
      env: gatewayEnv({
        AI_PROVIDER: 'openai',
        OPENAI_API_KEY: OPENAI_KEY,
        OPENAI_BASE_URL: providers.openaiBaseUrl,
      }),
      fakeInstance: main.fake,
    });
    try {
      const before = providers.requests.length;
      const r = await createImage(stack, request({ catalog_id: 'cat-openai' }));
      expect(r.status, r.text).toBe(200);
      const rec = providers.requests[before]!;
      expect(rec).toMatchObject({ provider: 'openai', authorized: true, fields: { model: 'gpt-image-1' } });
      expect(rec.files.filter((f) => f.field === 'image[]')).toHaveLength(2);
      const img = await fetch(`${stack.url}${r.json.image_url}`);
      expect(Buffer.from(await img.arrayBuffer()).equals(providers.png)).toBe(true);
      const hook = await backend.waitForWebhook((h) => h.catalog_id === 'cat-openai');
      expect(hook).toMatchObject({ provider: 'openai', status: 'success', image_url: r.json.image_url });

      providers.failNext(500);
      const failed = await createImage(stack, request());
      expect(failed.status).toBe(502);
      expectNoSecrets(failed.text);
    } finally {
      await stack.close();
    }
  });

  it('stability: style transfer against the fake Stability server', async () => {
    const stack = await startStack({
      env: gatewayEnv({
        AI_PROVIDER: 'stability',
        STABILITY_API_KEY: STABILITY_KEY,
        STABILITY_BASE_URL: providers.stabilityBaseUrl,
      }),
      fakeInstance: main.fake,
    });
    try {
      const before = providers.requests.length;
      const r = await createImage(stack, request({ catalog_id: 'cat-stability' }));
      expect(r.status, r.text).toBe(200);
      const rec = providers.requests[before]!;
      expect(rec).toMatchObject({
        provider: 'stability',
        authorized: true,
        fields: { output_format: 'png' },
      });
      expect(rec.files.map((f) => f.field)).toEqual(['init_image', 'style_image']);
      const img = await fetch(`${stack.url}${r.json.image_url}`);
      expect(Buffer.from(await img.arrayBuffer()).equals(providers.png)).toBe(true);
    } finally {
      await stack.close();
    }
  });
});

describe('create-image in embedded mode (no BACKEND_URL) and the throttle', () => {
  let embedded: Stack;
  beforeAll(async () => {
    // X-Forwarded-For from 127.0.0.1 is trusted: each test speaks from its own client addresses.
    const env = gatewayEnv({ THROTTLE_RPM: '2', TRUSTED_PROXIES: '127.0.0.1' });
    delete env.BACKEND_URL;
    delete env.BACKEND_SERVICE_TOKEN;
    embedded = await startStack({ env, fakeInstance: main.fake });
  });
  afterAll(async () => {
    await embedded?.close();
  });

  it('accepts a gateway client token as api_key, with unlimited credits', async () => {
    const callsBefore = backend.calls.length;
    const ok = await createImage(embedded, request({ user_id: 'embedded-1', api_key: embedded.token }));
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json.image_url).toMatch(/^\/media\//);
    const bad = await createImage(embedded, request({ user_id: 'embedded-2', api_key: ALICE_KEY }));
    expect(bad.status).toBe(401);
    expect(backend.calls.length).toBe(callsBefore); // the account backend is not used
  });

  const from = (ip: string) => ({ 'x-forwarded-for': ip });

  it('throttles per verified user: THROTTLE_RPM requests per minute, then 429 with Retry-After', async () => {
    const body = request({ user_id: 'throttled-user', api_key: embedded.token });
    expect((await createImage(embedded, body, from('192.0.2.10'))).status).toBe(200);
    expect((await createImage(embedded, body, from('192.0.2.10'))).status).toBe(200);
    const third = await createImage(embedded, body, from('192.0.2.11')); // the user, from anywhere
    expect(third.status).toBe(429);
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(third.json.detail).toMatch(/too many/);
    // another user is not affected
    const other = await createImage(
      embedded,
      request({ user_id: 'someone-else', api_key: embedded.token }),
      from('192.0.2.10'),
    );
    expect(other.status).toBe(200);
  });

  it("a stranger's wrong api_key does not lock the user out: failures count per IP", async () => {
    const guess = request({ user_id: 'victim-42', api_key: 'guess' });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++)
      statuses.push((await createImage(embedded, guess, from('203.0.113.9'))).status);
    // THROTTLE_RPM failed attempts are verified, then the address is refused before verification.
    expect(statuses).toEqual([401, 401, ...Array(9).fill(429)]);
    const locked = await createImage(
      embedded,
      request({ user_id: 'someone', api_key: embedded.token }),
      from('203.0.113.9'),
    );
    expect(locked.status).toBe(429);
    expect(locked.json.detail).toMatch(/failed image requests from this address/);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);

    // The real user, from their own address, is served.
    const victim = await createImage(
      embedded,
      request({ user_id: 'victim-42', api_key: embedded.token }),
      from('198.51.100.7'),
    );
    expect(victim.status, victim.text).toBe(200);
  });

  it('counts invalid bodies as failed attempts of their IP', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++)
      statuses.push((await createImage(embedded, { nothing: true }, from('192.0.2.20'))).status);
    expect(statuses).toEqual([422, 422, 429]);
    // another address is not affected
    expect((await createImage(embedded, { nothing: true }, from('192.0.2.21'))).status).toBe(422);
  });
});
