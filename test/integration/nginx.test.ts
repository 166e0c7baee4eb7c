import { readFileSync } from 'node:fs';
import { GoogleGenAI } from '@google/genai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasNginx, type Nginx, startNginx } from '../helpers/nginx.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/** The shipped nginx configuration in front of the gateway, with a real nginx. */
const available = hasNginx();
if (!available) {
  if (process.env.REQUIRE_REAL_SERVERS === '1')
    throw new Error('REQUIRE_REAL_SERVERS=1 but nginx is not installed');
  console.warn(
    '\n!!! SKIPPED (no nginx): nginx integration tests. Install it with: apt-get install -y nginx\n',
  );
}

describe.skipIf(!available)('behind nginx (deploy/nginx/gateway.conf)', () => {
  let stack: Stack;
  let nginx: Nginx;
  beforeAll(async () => {
    stack = await startStack({
      keys: 2,
      fake: { streamChunks: 3, chunkDelayMs: 400 },
      env: { TRUSTED_PROXIES: '127.0.0.1' },
    });
    const port = Number(new URL(stack.url).port);
    nginx = await startNginx(port, readFileSync('deploy/nginx/gateway.conf', 'utf8'));
  });
  afterAll(async () => {
    await nginx?.close();
    await stack?.close();
  });

  it('the SDK works through nginx', async () => {
    const ai = new GoogleGenAI({ apiKey: stack.token, httpOptions: { baseUrl: nginx.url } });
    const r = await ai.models.generateContent({ model: 'gemini-2.5-flash-lite', contents: 'via nginx' });
    expect(r.text).toContain('via nginx');
  });

  it('streams pass through unbuffered: the first chunk arrives while the stream is still open', async () => {
    const res = await fetch(
      `${nginx.url}/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': stack.token },
        body: JSON.stringify({ contents: [{ parts: [{ text: 'chunked' }] }] }),
      },
    );
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstText = new TextDecoder().decode(first.value);
    // The fake sends three events 400 ms apart: a buffering proxy would deliver them together.
    expect(firstText).toMatch(/^data: \{/);
    expect(firstText.split('data: ').length - 1).toBe(1);
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read())
      rest += new TextDecoder().decode(r.value);
    expect(rest.split('data: ').length - 1).toBe(2);
  });

  it('passes the request id through and keeps problem+json errors', async () => {
    const res = await fetch(`${nginx.url}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'nginx-test-123' },
      body: '{}',
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBe('nginx-test-123');
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });
});
