import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FakeAccountBackend, startFakeAccountBackend } from '../../fake/fake-account-backend.ts';
import { type FakeGemini, fakePng, startFakeGemini } from '../../fake/fake-gemini.ts';
import { type FakeImageHost, startFakeImageHost } from '../../fake/fake-image-providers.ts';
import { poolKeyValues, type Stack, startStack } from '../helpers/stack.ts';

/**
 * create-image as operators see it: the headers /media serves images with, the create-image log
 * line, MEDIA_RETENTION_HOURS=0, and a pending usage webhook drained at shutdown.
 */

const SERVICE_TOKEN = 'ops-service-token';
const ALICE_KEY = 'ops-alice-key';

let images: FakeImageHost;
let backend: FakeAccountBackend;
let gemini: FakeGemini;
let root: string;
const stacks: Stack[] = [];

beforeAll(async () => {
  images = await startFakeImageHost();
  backend = await startFakeAccountBackend({
    serviceToken: SERVICE_TOKEN,
    users: { alice: { apiKey: ALICE_KEY, credits: 1000 }, bob: { apiKey: 'bob-key', credits: 0 } },
  });
  gemini = await startFakeGemini({ keys: poolKeyValues(3).map((apiKey) => ({ apiKey })) });
  root = await mkdtemp(join(tmpdir(), 'create-image-ops-'));
});
afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await Promise.all([images?.close(), backend?.close(), gemini?.close()]);
  if (root) await rm(root, { recursive: true, force: true });
});

async function gateway(extra: Record<string, string>, logLines?: string[]): Promise<Stack> {
  const s = await startStack({
    env: {
      BACKEND_URL: backend.url,
      BACKEND_SERVICE_TOKEN: SERVICE_TOKEN,
      IMAGE_FETCH_ALLOW_HOSTS: `127.0.0.1:${images.port}`,
      THROTTLE_RPM: '1000',
      ...extra,
    },
    fakeInstance: gemini,
    logLines,
  });
  stacks.push(s);
  return s;
}

async function createImage(stack: Stack, over: Record<string, unknown> = {}) {
  const res = await fetch(`${stack.url}/api/v1/create-image`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      user_id: 'alice',
      api_key: ALICE_KEY,
      catalog_id: 'cat-1',
      user_image_url: `${images.url}/person.png`,
      catalog_image_url: `${images.url}/garment.png`,
      ...over,
    }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('GET /media/<file>', () => {
  it('serves with a sandboxing CSP and a long immutable cache lifetime', async () => {
    const stack = await gateway({ MEDIA_DIR: join(root, 'headers') });
    const r = await createImage(stack);
    expect(r.status).toBe(200);
    const img = await fetch(`${stack.url}${r.json.image_url}`);
    expect(img.status).toBe(200);
    expect(Buffer.from(await img.arrayBuffer()).equals(fakePng())).toBe(true);
    expect(img.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    const cache = img.headers.get('cache-control') ?? '';
    expect(cache).toContain('immutable');
    expect(Number(/max-age=(\d+)/.exec(cache)?.[1])).toBeGreaterThanOrEqual(30 * 24 * 3600);
  });
});

describe('create-image log line', () => {
  it('records what the client was told in `error`', async () => {
    const lines: string[] = [];
    const stack = await gateway({ MEDIA_DIR: join(root, 'log') }, lines);
    const r = await createImage(stack, { user_id: 'bob', api_key: 'bob-key', catalog_id: 'cat-broke' });
    expect(r.status).toBe(403);
    const line = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'create-image' && l.catalog_id === 'cat-broke');
    expect(line).toMatchObject({ status: 403, outcome: 'error', error: r.json.detail });
    expect(line?.error).toBe('no credits left');
  });
});

describe('media retention', () => {
  it('MEDIA_RETENTION_HOURS=0 keeps images forever', async () => {
    const dir = join(root, 'keep');
    await mkdir(dir);
    const ancient = '00000000-0000-4000-8000-00000000000a.png';
    await writeFile(join(dir, ancient), fakePng());
    const longAgo = new Date(Date.now() - 3650 * 24 * 3600_000);
    await utimes(join(dir, ancient), longAgo, longAgo);
    const stack = await gateway({ MEDIA_DIR: dir, MEDIA_RETENTION_HOURS: '0' });
    // A whole try-on (two image fetches, the model, a write to MEDIA_DIR) comes after the sweep
    // a start-up with retention would have run.
    const r = await createImage(stack);
    expect(r.status).toBe(200);
    const old = await fetch(`${stack.url}/media/${ancient}`);
    expect(old.status).toBe(200);
    await old.body?.cancel();
    expect((await readdir(dir)).sort()).toEqual(
      [ancient, String(r.json.image_url).slice('/media/'.length)].sort(),
    );
  });
});

describe('shutdown', () => {
  it('waits for a pending usage webhook before it finishes closing', async () => {
    const stack = await gateway({ MEDIA_DIR: join(root, 'drain') });
    backend.failWebhooks(1); // the first delivery fails: the webhook is retried after a backoff
    const r = await createImage(stack, { catalog_id: 'cat-drain' });
    expect(r.status).toBe(200);
    await stacks.splice(stacks.indexOf(stack), 1)[0]!.close();
    expect(backend.webhooks.find((w) => w.catalog_id === 'cat-drain')).toMatchObject({
      status: 'success',
      image_url: r.json.image_url,
    });
  });
});
