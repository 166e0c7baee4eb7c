import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeImageHost, makePng, startFakeImageHost } from '../../fake/fake-image-providers.ts';
import { parseEnv } from '../../src/config/env.ts';
import { GatewayError, ProviderFailed, RateLimited } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import {
  type AccountBackend,
  createEmbeddedAccountBackend,
  type UsageWebhook,
} from '../../src/services/image-gen/backend.ts';
import { createMediaStore, MEDIA_FILE_RE } from '../../src/services/image-gen/media-store.ts';
import { TRY_ON_PROMPT } from '../../src/services/image-gen/prompt.ts';
import type { ImageProvider, InputImage } from '../../src/services/image-gen/providers/types.ts';
import { claimedUserId, parseCreateImageBody } from '../../src/services/image-gen/schema.ts';
import { createImageGenService } from '../../src/services/image-gen/service.ts';
import { enforceThrottle, FailedAttempts } from '../../src/services/image-gen/throttle.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { GeminiCaller } from '../../src/upstream/gemini-caller.ts';

async function problem(p: Promise<unknown>): Promise<HttpProblem> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GatewayError);
  return toProblem(err as GatewayError);
}

function parseProblem(body: unknown): HttpProblem {
  try {
    parseCreateImageBody(body);
  } catch (e) {
    expect(e).toBeInstanceOf(GatewayError);
    return toProblem(e as GatewayError);
  }
  throw new Error(`accepted: ${JSON.stringify(body).slice(0, 100)}`);
}

let dir: string;
let host: FakeImageHost;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'image-gen-unit-'));
  host = await startFakeImageHost();
});
afterAll(async () => {
  await host.close();
  await rm(dir, { recursive: true, force: true });
});

describe('media store', () => {
  it('creates the directory, names files by random UUID and the detected type', async () => {
    const store = createMediaStore(join(dir, 'nested', 'media'));
    const png = makePng();
    const a = await store.save(png);
    const b = await store.save(png);
    expect(a.file).toMatch(MEDIA_FILE_RE);
    expect(a.file.endsWith('.png')).toBe(true);
    expect(a.url).toBe(`/media/${a.file}`);
    expect(a.file).not.toBe(b.file);
    const read = await store.read(a.file);
    expect(read?.contentType).toBe('image/png');
    expect(read?.bytes.equals(png)).toBe(true);
  });

  it('stores JPEG output as .jpg', async () => {
    const store = createMediaStore(dir);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(32)]);
    const saved = await store.save(jpeg);
    expect(saved.file.endsWith('.jpg')).toBe(true);
    expect((await store.read(saved.file))?.contentType).toBe('image/jpeg');
  });

  it('refuses to store non-images', async () => {
    const err = await createMediaStore(dir)
      .save(Buffer.from('<svg onload=alert(1)>'))
      .catch((e: unknown) => e);
    expect(toProblem(err as GatewayError).status).toBe(502);
  });

  it('reads only names of its own shape: no traversal, no listing, no symlinks', async () => {
    const store = createMediaStore(dir);
    await writeFile(join(dir, 'notes.txt'), 'secret');
    for (const name of [
      '',
      '.',
      '..',
      '../etc/passwd',
      '..%2f..%2fetc%2fpasswd',
      'notes.txt',
      '/etc/passwd',
      'x.png',
    ]) {
      expect(await store.read(name), name).toBeNull();
    }
    const linked = '00000000-0000-4000-8000-000000000000.png';
    await symlink('/etc/passwd', join(dir, linked));
    expect(await store.read(linked)).toBeNull();
    expect(await store.read('11111111-1111-4111-8111-111111111111.png')).toBeNull();
  });
});

describe('request schema', () => {
  const good = {
    user_id: 'u1',
    api_key: 'k',
    catalog_id: 'c1',
    user_image_url: 'https://img.example.com/a.png',
    catalog_image_url: 'http://img.example.com/b.jpg',
  };
  it('accepts a valid body, integer ids included', () => {
    expect(parseCreateImageBody(good).user_id).toBe('u1');
    expect(parseCreateImageBody({ ...good, user_id: 42, catalog_id: 7 })).toMatchObject({
      user_id: '42',
      catalog_id: '7',
    });
  });
  it('refuses bad bodies with a 422 that names fields, never values', () => {
    const cases: unknown[] = [
      null,
      [],
      'x',
      { ...good, user_id: '' },
      { ...good, api_key: undefined },
      { ...good, user_image_url: 'file:///etc/passwd' },
      { ...good, catalog_image_url: 'not a url' },
      { ...good, prompt: 'x'.repeat(5000) },
      { ...good, user_id: { $ne: 1 } },
    ];
    for (const body of cases) {
      let err: unknown;
      try {
        parseCreateImageBody(body);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(body)).toBeInstanceOf(GatewayError);
      expect(toProblem(err as GatewayError).status).toBe(422);
    }
    try {
      parseCreateImageBody({ ...good, api_key: 12345678, user_image_url: 'ftp://secret-host/x' });
    } catch (e) {
      expect(toProblem(e as GatewayError).detail).toMatch(/api_key/);
      expect(toProblem(e as GatewayError).detail).not.toMatch(/12345678|secret-host/);
    }
  });
  it('finds the user_id a body claims, before validation (for the log line)', () => {
    expect(claimedUserId({ user_id: ' u1 ' })).toBe('u1');
    expect(claimedUserId({ user_id: 9 })).toBe('9');
    expect(claimedUserId({ user_id: '' })).toBeNull();
    expect(claimedUserId({ user_id: 'x'.repeat(500) })).toBeNull();
    expect(claimedUserId(null)).toBeNull();
  });
});

describe('request body limits', () => {
  const good = {
    user_id: 'u1',
    api_key: 'k',
    catalog_id: 'c1',
    user_image_url: 'https://img.example.com/a.png',
    catalog_image_url: 'https://img.example.com/b.png',
  };

  it('user_image_url: at most 2048 characters', () => {
    const base = 'https://img.example.com/';
    const url = (n: number) => base + 'a'.repeat(n - base.length);
    expect(url(2048)).toHaveLength(2048);
    expect(parseCreateImageBody({ ...good, user_image_url: url(2048) }).user_image_url).toBe(url(2048));
    const err = parseProblem({ ...good, user_image_url: url(2049) });
    expect(err.status).toBe(422);
    expect(err.detail).toMatch(/^user_image_url: /);
  });

  it('user_id and catalog_id: 1 to 128 characters', () => {
    expect(parseCreateImageBody({ ...good, user_id: 'u'.repeat(128) }).user_id).toHaveLength(128);
    expect(parseCreateImageBody({ ...good, catalog_id: 'c'.repeat(128) }).catalog_id).toHaveLength(128);
    const u = parseProblem({ ...good, user_id: 'u'.repeat(129) });
    expect(u.status).toBe(422);
    expect(u.detail).toMatch(/^user_id: /);
    const c = parseProblem({ ...good, catalog_id: 'c'.repeat(129) });
    expect(c.status).toBe(422);
    expect(c.detail).toMatch(/^catalog_id: /);
  });

  it('integer ids must be non-negative integers', () => {
    expect(parseCreateImageBody({ ...good, user_id: 0, catalog_id: 0 })).toMatchObject({
      user_id: '0',
      catalog_id: '0',
    });
    for (const bad of [-1, -42, 1.5]) {
      expect(parseProblem({ ...good, user_id: bad }).detail, String(bad)).toMatch(/^user_id: /);
      expect(parseProblem({ ...good, catalog_id: bad }).detail, String(bad)).toMatch(/^catalog_id: /);
    }
  });
});

describe('throttle', () => {
  it('allows rpm requests per minute, then 429 with Retry-After', async () => {
    const store = new MemoryStore();
    const t = 1_000_000_020_000;
    for (let i = 0; i < 3; i++) await enforceThrottle(store, 3, 'u1', t);
    const err = await enforceThrottle(store, 3, 'u1', t).catch((e: unknown) => e);
    expect(toProblem(err as GatewayError).status).toBe(429);
    expect(Number(toProblem(err as GatewayError).headers['retry-after'])).toBeGreaterThan(0);
    await enforceThrottle(store, 3, 'u2', t); // another user is not affected
    await enforceThrottle(store, 3, 'u1', t + 60_000); // next window
  });
  it('is off at 0', async () => {
    const store = new MemoryStore();
    for (let i = 0; i < 50; i++) await enforceThrottle(store, 0, 'u1');
  });

  it('Retry-After is the time left in the fixed minute window', async () => {
    const store = new MemoryStore();
    const windowStart = 60_000 * 16_666_667;
    const t = windowStart + 45_000; // 15 s before the window ends
    await enforceThrottle(store, 1, 'u1', t);
    const err = await problem(enforceThrottle(store, 1, 'u1', t));
    expect(err.status).toBe(429);
    expect(err.headers['retry-after']).toBe('15');
    expect(err.detail).toContain('retry in 15 s');
  });
});

describe('failed attempts per IP', () => {
  const t = 1_000_000_020_000;
  it('refuses an IP before verification once it failed limit times in its window', async () => {
    const failed = new FailedAttempts(new MemoryStore(), 3);
    for (let i = 0; i < 3; i++) {
      failed.refuseIfLocked('203.0.113.9', t); // not yet
      await failed.record('203.0.113.9', t);
    }
    const err = (() => {
      try {
        failed.refuseIfLocked('203.0.113.9', t + 1000);
      } catch (e) {
        return toProblem(e as GatewayError);
      }
    })();
    expect(err?.status).toBe(429);
    expect(Number(err?.headers['retry-after'])).toBe(59);
    failed.refuseIfLocked('198.51.100.7', t); // another address is not affected
    failed.refuseIfLocked('203.0.113.9', t + 60_000); // next window
  });
  it('learns the lock from the shared count (another instance counted the earlier failures)', async () => {
    const store = new MemoryStore();
    const a = new FailedAttempts(store, 2);
    const b = new FailedAttempts(store, 2);
    await a.record('203.0.113.9', t);
    await a.record('203.0.113.9', t);
    expect(() => a.refuseIfLocked('203.0.113.9', t)).toThrow(RateLimited);
    b.refuseIfLocked('203.0.113.9', t); // b has not seen it yet: one more verification
    await b.record('203.0.113.9', t);
    expect(() => b.refuseIfLocked('203.0.113.9', t)).toThrow(RateLimited);
  });
  it('is off at 0', async () => {
    const failed = new FailedAttempts(new MemoryStore(), 0);
    for (let i = 0; i < 50; i++) await failed.record('203.0.113.9', t);
    failed.refuseIfLocked('203.0.113.9', t);
  });
});

describe('image generation service (stubs)', () => {
  const noGemini: GeminiCaller = {
    generateContent: async () => {
      throw new Error('unused');
    },
  };

  function stubBackend(opts: { valid?: boolean; credits?: boolean } = {}) {
    const reported: UsageWebhook[] = [];
    const backend: AccountBackend = {
      mode: 'remote',
      verifyUser: async () => opts.valid ?? true,
      checkCredits: async () => ({ hasCredits: opts.credits ?? true, credits: 3 }),
      reportUsage: (w) => void reported.push(w),
      drain: async () => {},
    };
    return { backend, reported };
  }

  function stubProvider(fail?: GatewayError) {
    const seen: { images: InputImage[]; prompt: string }[] = [];
    const provider: ImageProvider = {
      name: 'stub',
      model: 'stub-1',
      async generateImage(images, prompt) {
        seen.push({ images, prompt });
        if (fail) throw fail;
        return { bytes: makePng(6, 6, [1, 1, 1]), mimeType: 'image/png' };
      },
    };
    return { provider, seen };
  }

  const makeService = (backend: AccountBackend, provider: ImageProvider) =>
    createImageGenService({
      env: parseEnv({ IMAGE_FETCH_ALLOW_HOSTS: `127.0.0.1:${host.port}`, MEDIA_DIR: dir }),
      gemini: noGemini,
      store: new MemoryStore(),
      logger: pino({ level: 'silent' }),
      backend,
      provider,
    });

  const body = (over: Record<string, unknown> = {}) =>
    parseCreateImageBody({
      user_id: 'u1',
      api_key: 'k',
      catalog_id: 'c1',
      user_image_url: `${host.url}/person.png`,
      catalog_image_url: `${host.url}/garment.png`,
      ...over,
    });

  it('generates, stores, and returns the success webhook', async () => {
    const { backend } = stubBackend();
    const { provider, seen } = stubProvider();
    const r = await makeService(backend, provider).run(body({ prompt: 'studio light' }), { requestId: 'r' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.imageUrl).toMatch(/^\/media\/[0-9a-f-]{36}\.png$/);
    expect(r.latencyMs).toBeGreaterThan(0);
    expect(r.webhook).toMatchObject({
      user_id: 'u1',
      catalog_id: 'c1',
      status: 'success',
      image_url: r.imageUrl,
      provider: 'stub',
    });
    expect(seen[0]!.images[0]!.bytes.equals(host.person)).toBe(true);
    expect(seen[0]!.images[1]!.bytes.equals(host.garment)).toBe(true);
    expect(seen[0]!.prompt.startsWith(TRY_ON_PROMPT)).toBe(true);
    expect(seen[0]!.prompt).toContain('studio light');
    expect((await readdir(dir)).some((f) => r.imageUrl.endsWith(f))).toBe(true);
  });

  it('401 for a bad key, 403 without credits, no webhook for either', async () => {
    const bad = await makeService(stubBackend({ valid: false }).backend, stubProvider().provider).run(
      body(),
      { requestId: 'r' },
    );
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(toProblem(bad.error).status).toBe(401);
    expect(bad.webhook).toBeUndefined();
    const broke = await makeService(stubBackend({ credits: false }).backend, stubProvider().provider).run(
      body(),
      { requestId: 'r' },
    );
    expect(!broke.ok && toProblem(broke.error).status).toBe(403);
    expect(broke.webhook).toBeUndefined();
  });

  it('onVerified (the per-user throttle) runs only after verification, before credits and work', async () => {
    const order: string[] = [];
    const { backend, reported } = stubBackend();
    const verify = backend.verifyUser;
    backend.verifyUser = async (...args) => {
      order.push('verify');
      return verify(...args);
    };
    const credits = backend.checkCredits;
    backend.checkCredits = async (...args) => {
      order.push('credits');
      return credits(...args);
    };
    const { provider, seen } = stubProvider();
    const throttled = await makeService(backend, provider).run(body(), {
      requestId: 'r',
      onVerified: async () => {
        order.push('onVerified');
        throw new RateLimited('too many image requests', { retryAfterSeconds: 5 });
      },
    });
    expect(order).toEqual(['verify', 'onVerified']);
    expect(!throttled.ok && toProblem(throttled.error).status).toBe(429);
    expect(!throttled.ok && toProblem(throttled.error).headers['retry-after']).toBe('5');
    expect(throttled.webhook).toBeUndefined(); // nothing was done: nothing to report
    expect(reported).toHaveLength(0);
    expect(seen).toHaveLength(0);

    let called = false;
    const bad = await makeService(stubBackend({ valid: false }).backend, provider).run(body(), {
      requestId: 'r',
      onVerified: async () => {
        called = true;
      },
    });
    expect(!bad.ok && toProblem(bad.error).status).toBe(401);
    expect(called).toBe(false); // a wrong api_key never counts against the user
  });

  it('a provider failure after verification is a 502 with a failed webhook', async () => {
    const { provider } = stubProvider(new ProviderFailed('stub', 'boom'));
    const r = await makeService(stubBackend().backend, provider).run(body(), { requestId: 'r' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(toProblem(r.error).status).toBe(502);
    expect(r.webhook).toMatchObject({
      status: 'failed',
      image_url: null,
      error: 'image provider stub failed: boom',
    });
  });

  it('a refused image URL names the field, keeps the address for the log only, and sends a failed webhook', async () => {
    const { provider, seen } = stubProvider();
    const r = await makeService(stubBackend().backend, provider).run(
      body({ catalog_image_url: 'http://169.254.169.254/latest/meta-data/' }),
      { requestId: 'r' },
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(toProblem(r.error).status).toBe(400);
    expect(toProblem(r.error).detail).toMatch(/^catalog_image_url: /);
    expect(toProblem(r.error).detail).not.toMatch(/169\.254/);
    expect(r.internal).toMatch(/169\.254\.169\.254/);
    expect(r.webhook?.status).toBe('failed');
    expect(seen).toHaveLength(0);
  });

  it('an unexpected error is a 500 that says nothing about it', async () => {
    const provider: ImageProvider = {
      name: 'stub',
      model: 'x',
      generateImage: async () => {
        throw new Error('ENOSPC /secret/path');
      },
    };
    const r = await makeService(stubBackend().backend, provider).run(body(), { requestId: 'r' });
    expect(!r.ok && toProblem(r.error).status).toBe(500);
    expect(!r.ok && toProblem(r.error).detail).not.toMatch(/secret/);
  });

  it('when both image URLs are refused, the user image is named (deterministically)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'image-gen-urls-'));
    try {
      const service = createImageGenService({
        env: parseEnv({ MEDIA_DIR: dir }),
        gemini: noGemini,
        store: new MemoryStore(),
        logger: pino({ level: 'silent' }),
        backend: createEmbeddedAccountBackend(['tok']),
      });
      const body = parseCreateImageBody({
        user_id: 'u1',
        api_key: 'tok',
        catalog_id: 'c1',
        user_image_url: 'http://169.254.169.254/latest/meta-data/',
        catalog_image_url: 'http://10.0.0.1/garment.png',
      });
      for (let i = 0; i < 3; i++) {
        const r = await service.run(body, { requestId: `r${i}` });
        expect(r.ok).toBe(false);
        if (r.ok) return;
        expect(toProblem(r.error).status).toBe(400);
        expect(toProblem(r.error).detail).toMatch(/^user_image_url: /);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
