import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CREATE_IMAGE_EXAMPLE,
  DEMO_POOL,
  type Demo,
  demoBanner,
  demoExports,
  startDemo,
} from '../../scripts/demo-setup.ts';

/** `npm run demo` as a new user meets it: the README's examples must work against it. */

const run = promisify(execFile);
let demo: Demo;
let mediaDir: string;

beforeAll(async () => {
  mediaDir = await mkdtemp(join(tmpdir(), 'gg-demo-'));
  demo = await startDemo({ port: 0, logLevel: 'silent', nodeEnv: 'test', mediaDir });
});
afterAll(async () => {
  await demo?.close();
  if (mediaDir) await rm(mediaDir, { recursive: true, force: true });
});

/** Runs a README example in a shell, after the banner's export line. */
async function shell(example: string): Promise<string> {
  const { stdout } = await run('sh', ['-c', `${demoExports(demo)}\n${example}`], { timeout: 20_000 });
  return stdout;
}

describe('the demo', () => {
  it("the README's create-image example answers 200 with an image the gateway serves", async () => {
    const out = JSON.parse(await shell(CREATE_IMAGE_EXAMPLE)) as Record<string, unknown>;
    expect(out, JSON.stringify(out)).toMatchObject({ status: 'success' });
    expect(out.image_url).toMatch(/^\/media\/[0-9a-f-]{36}\.png$/);
    const img = await fetch(`${demo.url}${out.image_url}`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/png');
  });

  it('serves only its two sample images', async () => {
    expect((await fetch(`${demo.imagesUrl}/person.png`)).headers.get('content-type')).toBe('image/png');
    expect((await fetch(`${demo.imagesUrl}/garment.png`)).status).toBe(200);
    expect((await fetch(`${demo.imagesUrl}/etc/passwd`)).status).toBe(404);
  });

  it('has room for SDK scripts: 120 requests at once all answer 200 (the old pool allowed 45 a minute)', async () => {
    expect(DEMO_POOL.keys * DEMO_POOL.rpm).toBeGreaterThanOrEqual(1000);
    const one = () =>
      fetch(`${demo.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
        method: 'POST',
        headers: { 'x-goog-api-key': demo.token, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'Hello' }] }] }),
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    const statuses = await Promise.all(Array.from({ length: 120 }, one));
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  it('the banner says the capacity, the exports and the create-image example', () => {
    const banner = demoBanner(demo);
    expect(banner).toContain('10 demo keys, each 300 requests/minute');
    expect(banner).toContain('= 3,000 requests/minute in all');
    expect(banner).toContain(demoExports(demo));
    expect(banner).toContain(`${demo.imagesUrl}/person.png`);
    expect(banner).toContain('$GW/api/v1/create-image');
  });

  it('the demo keys are told apart in masked form', () => {
    const masked = demo.gateway.pool.keys.map((k) => `${k.apiKey.slice(0, 4)}…${k.apiKey.slice(-4)}`);
    expect(new Set(masked).size).toBe(DEMO_POOL.keys);
  });
});
