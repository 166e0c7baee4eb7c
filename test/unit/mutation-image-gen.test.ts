import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type FakeImageProviders,
  makePng,
  startFakeImageProviders,
} from '../../fake/fake-image-providers.ts';
import { parseEnv } from '../../src/config/env.ts';
import { HttpProblem } from '../../src/http/problem.ts';
import {
  createEmbeddedAccountBackend,
  createRemoteAccountBackend,
  type UsageWebhook,
} from '../../src/services/image-gen/backend.ts';
import { createMediaStore } from '../../src/services/image-gen/media-store.ts';
import { buildPrompt, TRY_ON_PROMPT } from '../../src/services/image-gen/prompt.ts';
import { createOpenAIProvider } from '../../src/services/image-gen/providers/openai.ts';
import type { InputImage } from '../../src/services/image-gen/providers/types.ts';
import { parseCreateImageBody } from '../../src/services/image-gen/schema.ts';
import { createImageGenService } from '../../src/services/image-gen/service.ts';
import { enforceThrottle } from '../../src/services/image-gen/throttle.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { GeminiCaller } from '../../src/upstream/gemini-caller.ts';

/** Tests written to kill mutants of src/services/image-gen that the suite let live. */

const DAY = 24 * 3600_000;
const UUID = '0b6e2c1e-4f5d-4a8e-9a39-3d2f1c0e7a11';

const noGemini: GeminiCaller = {
  generateContent: async () => {
    throw new Error('not used');
  },
};

async function problem(p: Promise<unknown>): Promise<HttpProblem> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HttpProblem);
  return err as HttpProblem;
}

function parseProblem(body: unknown): HttpProblem {
  try {
    parseCreateImageBody(body);
  } catch (e) {
    expect(e).toBeInstanceOf(HttpProblem);
    return e as HttpProblem;
  }
  throw new Error(`accepted: ${JSON.stringify(body).slice(0, 100)}`);
}

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

describe('prompt', () => {
  it('appends the request prompt as "\\n\\nAdditional instructions: <prompt>", trimmed', () => {
    const expected = `${TRY_ON_PROMPT}\n\nAdditional instructions: red background`;
    expect(buildPrompt('red background')).toBe(expected);
    expect(buildPrompt('  red background \n')).toBe(expected);
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

describe('media store: only its own names, content type from the bytes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mut-media-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const age = async (name: string) => {
    const old = new Date(Date.now() - 30 * DAY);
    await utimes(join(dir, name), old, old);
  };

  it('prune and read leave alone names that merely contain a media name', async () => {
    const media = createMediaStore(dir);
    const png = makePng(2, 2, [1, 2, 3]);
    const own = await media.save(png);
    const foreign = [`backup-${UUID}.png`, `${UUID}.png.bak`, `x${UUID}.png`, `${UUID}.pngx`];
    for (const name of foreign) {
      await writeFile(join(dir, name), png);
      await age(name);
      expect(await media.read(name), name).toBeNull();
    }
    await age(own.file);
    expect(await media.prune(Date.now() - DAY)).toBe(1);
    expect((await readdir(dir)).sort()).toEqual([...foreign].sort());
  });

  it('prune skips a directory that has a media name (and still deletes old images)', async () => {
    const media = createMediaStore(dir);
    const own = await media.save(makePng(2, 2, [1, 2, 3]));
    await age(own.file);
    const dirName = `${UUID}.png`;
    await mkdir(join(dir, dirName));
    await age(dirName);
    expect(await media.prune(Date.now() - DAY)).toBe(1);
    expect(await readdir(dir)).toEqual([dirName]);
  });

  it('serves the content type of the bytes, not of the extension', async () => {
    const media = createMediaStore(dir);
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(32)]);
    await writeFile(join(dir, `${UUID}.png`), jpeg);
    expect((await media.read(`${UUID}.png`))?.contentType).toBe('image/jpeg');
  });
});

describe('service: which image URL error is reported', () => {
  it('when both image URLs are refused, the user image is named (deterministically)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mut-svc-'));
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
        expect(r.error.status).toBe(400);
        expect(r.error.detail).toMatch(/^user_image_url: /);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('openai provider settings', () => {
  let fake: FakeImageProviders;
  const KEY = 'sk-mut-openai';
  beforeAll(async () => {
    fake = await startFakeImageProviders({ openaiKey: KEY });
  });
  afterAll(async () => {
    await fake.close();
  });
  const images: InputImage[] = [
    { bytes: makePng(2, 2, [1, 2, 3]), mimeType: 'image/png' },
    { bytes: makePng(2, 2, [4, 5, 6]), mimeType: 'image/png' },
  ];

  it('asks for exactly one image (n=1)', async () => {
    fake.requests.length = 0;
    const env = parseEnv({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.openaiBaseUrl });
    await createOpenAIProvider({ env, gemini: noGemini }).generateImage(images, 'P', { requestId: 'r' });
    expect(fake.requests[0]!.fields.n).toBe('1');
  });

  it('uses IMAGE_MODEL when it does not name a Gemini model', async () => {
    fake.requests.length = 0;
    const env = parseEnv({
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: fake.openaiBaseUrl,
      IMAGE_MODEL: 'gpt-image-1-mini',
    });
    const provider = createOpenAIProvider({ env, gemini: noGemini });
    expect(provider.model).toBe('gpt-image-1-mini');
    await provider.generateImage(images, 'P', { requestId: 'r' });
    expect(fake.requests[0]!.fields.model).toBe('gpt-image-1-mini');
  });
});
