import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FakeImageHost, startFakeImageHost } from '../../fake/fake-image-providers.ts';
import { pruneInterval } from '../../src/services/image-gen/media-store.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * Generated images (create-image, MEDIA_DIR) are deleted once older than MEDIA_RETENTION_HOURS
 * by a periodic sweep, and instances sharing MEDIA_DIR serve each other's images.
 */

let images: FakeImageHost;
let dir: string;
let a: Stack;
let b: Stack;

beforeAll(async () => {
  images = await startFakeImageHost();
  dir = join(await mkdtemp(join(tmpdir(), 'media-shared-')), 'media');
  const env = {
    MEDIA_DIR: dir,
    // 3.6 s: swept every second.
    MEDIA_RETENTION_HOURS: '0.001',
    IMAGE_FETCH_ALLOW_HOSTS: `127.0.0.1:${images.port}`,
    THROTTLE_RPM: '1000',
  };
  a = await startStack({ env });
  b = await startStack({ env, fakeInstance: a.fake });
});
afterAll(async () => {
  await b?.close();
  await a?.close();
  await a?.fake.close();
  await images?.close();
  if (dir) await rm(join(dir, '..'), { recursive: true, force: true });
});

async function createImage(s: Stack): Promise<string> {
  const res = await fetch(`${s.url}/api/v1/create-image`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      user_id: 'u1',
      api_key: s.token, // embedded mode: a gateway client token
      catalog_id: 'c1',
      user_image_url: `${images.url}/person.png`,
      catalog_image_url: `${images.url}/garment.png`,
    }),
  });
  const json = (await res.json()) as { image_url?: string };
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json.image_url!;
}

describe('media retention and sharing', { timeout: 60_000 }, () => {
  it('the sweep runs a tenth of the retention apart (one second to ten minutes)', () => {
    expect(pruneInterval(168 * 3600_000)).toBe(10 * 60_000);
    expect(pruneInterval(3600_000)).toBe(6 * 60_000);
    expect(pruneInterval(3600)).toBe(1000);
  });

  it('an image made on one instance is served by another sharing MEDIA_DIR, and both stop serving it once the retention has passed', async () => {
    const url = await createImage(a);
    expect((await readdir(dir)).length).toBe(1);
    for (const s of [a, b]) {
      const res = await fetch(`${s.url}${url}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      await res.arrayBuffer();
    }
    // Made after both instances started: only the periodic sweep removes it.
    await vi.waitFor(async () => expect(await readdir(dir)).toEqual([]), { timeout: 20_000, interval: 250 });
    for (const s of [a, b]) expect((await fetch(`${s.url}${url}`)).status).toBe(404);
  });
});
