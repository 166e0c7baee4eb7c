import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeImageHost, startFakeImageHost } from '../../fake/fake-image-providers.ts';
import { sample } from '../helpers/metrics.ts';
import { stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * A request whose client leaves before the answer: recorded once, with nginx's 499 ("client
 * closed request"), in the access log and in http_requests_total. (Fastify's onResponse runs on
 * the response's 'finish', which never comes for such a request.)
 */

const stack = stackPerTest();
let images: FakeImageHost;
beforeAll(async () => {
  images = await startFakeImageHost();
});
afterAll(async () => {
  await images?.close();
});

type Line = Record<string, unknown>;
const parse = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);
const accessLines = (lines: string[], requestId: string) =>
  parse(lines).filter((l) => l.msg === 'request' && l.request_id === requestId);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** Sends the request and leaves after `afterMs`, before any answer. */
async function leave(url: string, init: RequestInit, afterMs: number): Promise<void> {
  const controller = new AbortController();
  const pending = fetch(url, { ...init, signal: controller.signal });
  await sleep(afterMs);
  controller.abort();
  await expect(pending).rejects.toThrow();
}

async function requestsTotal(url: string, labels: Record<string, string>): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return sample(text, 'http_requests_total', labels);
}

describe('a client that leaves before the answer', () => {
  it('an aborted generateContent: one access line and one http_requests_total count, status 499', async () => {
    const lines: string[] = [];
    const s = await stack({ logLines: lines, fake: { latencyMs: 800 } });
    const id = 'left-generate-1';
    await leave(
      `${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`,
      {
        method: 'POST',
        headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'hello' }] }] }),
      },
      150,
    );
    await until(() => accessLines(lines, id).length > 0);
    const [line] = accessLines(lines, id);
    expect(line).toMatchObject({
      status: 499,
      method: 'POST',
      url: '/v1beta/models/gemini-2.5-flash-lite:generateContent',
      client: 'tests',
    });
    expect(line!.duration_ms as number).toBeGreaterThanOrEqual(100);
    expect(await requestsTotal(s.url, { method: 'POST', status: '499' })).toBe(1);

    // Once the upstream call ends too, nothing more is recorded for it.
    await sleep(1000);
    expect(accessLines(lines, id)).toHaveLength(1);
    expect(await requestsTotal(s.url, { method: 'POST', status: '499' })).toBe(1);
    expect(await requestsTotal(s.url, { method: 'POST', status: '200' })).toBeUndefined();
  });

  it('a create-image whose client gave up (image fetch still waiting): status 499', async () => {
    const lines: string[] = [];
    const s = await stack({
      logLines: lines,
      env: {
        IMAGE_FETCH_ALLOW_HOSTS: `127.0.0.1:${images.port}`,
        IMAGE_FETCH_TIMEOUT_MS: '700',
        THROTTLE_RPM: '100',
      },
    });
    const id = 'left-create-image-1';
    await leave(
      `${s.url}/api/v1/create-image`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify({
          user_id: 'u1',
          api_key: TEST_TOKEN,
          catalog_id: 'c1',
          user_image_url: `${images.url}/slow-headers`,
          catalog_image_url: `${images.url}/garment.png`,
        }),
      },
      200,
    );
    await until(() => accessLines(lines, id).length > 0);
    expect(accessLines(lines, id)[0]).toMatchObject({
      status: 499,
      route: '/api/v1/create-image',
      url: '/api/v1/create-image',
    });
    expect(await requestsTotal(s.url, { route: '/api/v1/create-image', status: '499' })).toBe(1);

    // The handler ends later (the fetch times out): still one record.
    await sleep(1000);
    expect(accessLines(lines, id)).toHaveLength(1);
    expect(await requestsTotal(s.url, { route: '/api/v1/create-image' })).toBe(1);
  });

  it('an answer that completes is recorded once with its own status, not 499', async () => {
    const lines: string[] = [];
    const s = await stack({ logLines: lines });
    const res = await fetch(`${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': TEST_TOKEN,
        'content-type': 'application/json',
        'x-request-id': 'whole-1',
      },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hello' }] }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    await until(() => accessLines(lines, 'whole-1').length > 0);
    await sleep(100);
    expect(accessLines(lines, 'whole-1').map((l) => l.status)).toEqual([200]);
    expect(await requestsTotal(s.url, { method: 'POST', status: '499' })).toBeUndefined();
  });
});
