import { randomUUID } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { poolKeyValues, type Stack, type StackOptions, startStack, TEST_TOKEN } from '../helpers/stack.ts';

/** The HTTP layer: request ids, security headers, CORS, limits, compression, errors, timeouts, docs. */

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected dynamically
type Json = any;

const MODEL = 'gemini-2.5-flash-lite';
const NO_LIMITS = { GLOBAL_RATE_LIMIT: '0', BURST_RATE_LIMIT: '0' };
const stacks: Stack[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
  for (const c of cleanups.splice(0)) await c();
});

async function stack(opts: StackOptions = {}): Promise<Stack> {
  const s = await startStack({ ...opts, env: { ...NO_LIMITS, ...opts.env } });
  stacks.push(s);
  return s;
}

const auth = { 'x-goog-api-key': TEST_TOKEN };
const json = { 'content-type': 'application/json' };
const userText = (text: string) => JSON.stringify({ contents: [{ role: 'user', parts: [{ text }] }] });

function generate(s: Stack, headers: Record<string, string> = {}, body = userText('hello')) {
  return fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
    method: 'POST',
    headers: { ...auth, ...json, ...headers },
    body,
  });
}

/** Writes raw bytes on a TCP connection and collects what comes back until the server closes it. */
function rawExchange(
  url: string,
  data: string,
  waitMs: number,
): Promise<{ response: string; closedByServer: boolean; elapsedMs: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname);
    let response = '';
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ response, closedByServer, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('connect', () => socket.write(data));
    socket.on('data', (d) => {
      response += d.toString('latin1');
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (err) => (done ? undefined : reject(err)));
  });
}

describe('request id', () => {
  it('echoes a well-formed X-Request-ID, and puts it in the error body and the log line', async () => {
    const lines: string[] = [];
    const s = await stack({ logLines: lines });
    const id = `req-${randomUUID()}`;
    const ok = await fetch(`${s.url}/health`, { headers: { 'x-request-id': id } });
    expect(ok.headers.get('x-request-id')).toBe(id);
    const missing = await fetch(`${s.url}/nope`, { headers: { 'x-request-id': id } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-request-id')).toBe(id);
    expect(((await missing.json()) as Json).request_id).toBe(id);
    // Google's shape on the native routes carries it too.
    const unauth = await fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { ...json, 'x-request-id': id },
      body: userText('x'),
    });
    expect(unauth.status).toBe(401);
    expect(((await unauth.json()) as Json).error.request_id).toBe(id);
    await new Promise((r) => setTimeout(r, 50));
    const mine = lines.map((l) => JSON.parse(l)).filter((l) => l.request_id === id);
    expect(mine.filter((l) => l.msg === 'request').map((l) => l.status)).toEqual([200, 404, 401]);
  });

  it('replaces a malformed X-Request-ID with a generated UUID', async () => {
    const s = await stack();
    for (const bad of ['has spaces in it', 'x'.repeat(200), 'semi;colon']) {
      const res = await fetch(`${s.url}/health`, { headers: { 'x-request-id': bad } });
      const got = res.headers.get('x-request-id');
      expect(got).not.toBe(bad);
      expect(got).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    }
    const generated = await fetch(`${s.url}/health`);
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('writes request_id in every log line of a request, also on failures', async () => {
    const lines: string[] = [];
    const s = await stack({ logLines: lines });
    for (const k of poolKeyValues(3)) s.fake.setKeyState(k, 'invalid');
    const res = await generate(s);
    expect(res.status).toBeGreaterThanOrEqual(500);
    await fetch(`${s.url}/nope`);
    await new Promise((r) => setTimeout(r, 50));
    const parsed = lines.map((l) => JSON.parse(l));
    const requestLines = parsed.filter((l) => !/listening/.test(l.msg));
    expect(requestLines.length).toBeGreaterThanOrEqual(3);
    for (const l of requestLines) expect(l.request_id, JSON.stringify(l)).toEqual(expect.any(String));
    expect(requestLines.some((l) => l.msg === 'request failed')).toBe(true);
  });
});

describe('security headers and CORS', () => {
  it('sends the OWASP REST set on API answers and errors, and no HTML-only header', async () => {
    const s = await stack();
    for (const path of ['/health', '/nope']) {
      const res = await fetch(s.url + path);
      expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('cross-origin-opener-policy')).toBeNull();
      expect(res.headers.get('x-dns-prefetch-control')).toBeNull();
    }
  });

  it("sends helmet's full set on the pages a browser renders", async () => {
    const s = await stack();
    const res = await fetch(`${s.url}/docs/static/index.html`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self' 'unsafe-inline'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('x-dns-prefetch-control')).toBe('off');
  });

  it('is closed to cross-origin callers by default', async () => {
    const s = await stack();
    const pre = await fetch(`${s.url}/v1/generate`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(405);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const get = await fetch(`${s.url}/health`, { headers: { origin: 'https://evil.example' } });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('allows the origins of CORS_ORIGINS (JSON list), with credentials when configured', async () => {
    const s = await stack({
      env: {
        CORS_ORIGINS: '["https://app.example","https://other.example"]',
        CORS_ALLOW_CREDENTIALS: 'true',
      },
    });
    const pre = await fetch(`${s.url}/v1/generate`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,x-goog-api-key',
      },
    });
    expect(pre.status).toBeLessThan(300);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(pre.headers.get('access-control-allow-credentials')).toBe('true');
    const res = await fetch(`${s.url}/health`, { headers: { origin: 'https://other.example' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('https://other.example');
    expect(res.headers.get('access-control-expose-headers')).toContain('x-request-id');
    const denied = await fetch(`${s.url}/health`, { headers: { origin: 'https://evil.example' } });
    expect(denied.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('reads CORS_ORIGINS as a comma list too, without credentials by default', async () => {
    const s = await stack({ env: { CORS_ORIGINS: 'https://a.example, https://b.example' } });
    const res = await fetch(`${s.url}/health`, { headers: { origin: 'https://b.example' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('https://b.example');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('the CSP forbids framing by any origin', async () => {
    const s = await stack();
    const csp = (await fetch(`${s.url}/health`)).headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
  });

  it('CORS_ORIGINS=* allows any origin', async () => {
    const s = await stack({ env: { CORS_ORIGINS: '*' } });
    const res = await fetch(`${s.url}/health`, { headers: { origin: 'https://anyone.example' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('size limits', () => {
  it('refuses a body over MAX_UPLOAD_SIZE with 413 before reading it in full', async () => {
    const s = await stack({ env: { MAX_UPLOAD_SIZE: '1024' } });
    // Announces 10 MB but sends 20 bytes: the answer must come without the rest.
    const { response } = await rawExchange(
      s.url,
      'POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `x-goog-api-key: ${TEST_TOKEN}\r\nContent-Length: 10000000\r\n\r\n{"prompt":"aaaaaaaa`,
      3000,
    );
    expect(response).toMatch(/^HTTP\/1\.1 413/);
    expect(response).toContain('application/problem+json');
    expect(response).toContain('"status":413');
  });

  it('413 also for a chunked body that grows past the limit, in Google’s shape on native routes', async () => {
    // The native routes' own limit (Google's inline limit by default).
    const s = await stack({ env: { NATIVE_MAX_BODY_SIZE: '1024' } });
    const big = userText('x'.repeat(5000));
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const res = await fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    const b = (await res.json()) as Json;
    expect(b.error.code).toBe(413);
    expect(b.error.status).toBe('INVALID_ARGUMENT');
  });
});

describe('compression', () => {
  it('compresses a large JSON answer (br, gzip) and leaves small ones alone', async () => {
    const s = await stack({ env: { ADMIN_TOKEN: 'admin-token-for-tests-0001' } });
    const gz = await fetch(`${s.url}/docs/json`, { headers: { 'accept-encoding': 'gzip' } });
    expect(gz.status).toBe(200);
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(((await gz.json()) as Json).openapi).toMatch(/^3\./);
    const br = await fetch(`${s.url}/docs/json`, { headers: { 'accept-encoding': 'br, gzip' } });
    expect(br.headers.get('content-encoding')).toBe('br');
    const small = await fetch(`${s.url}/health`, { headers: { 'accept-encoding': 'gzip' } });
    expect(small.headers.get('content-encoding')).toBeNull();
  });

  it('never compresses a server-sent event stream', async () => {
    const s = await stack({ fake: { streamChunks: 4 } });
    const res = await fetch(`${s.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { ...auth, ...json, 'accept-encoding': 'gzip, br' },
      body: userText('stream please '.repeat(200)),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('content-encoding')).toBeNull();
    expect(await res.text()).toContain('data: ');
  });
});

describe('errors', () => {
  it('404 and 405 are problem details; 405 names the allowed methods', async () => {
    const s = await stack();
    const nf = await fetch(`${s.url}/no/such/path?key=secret-value-1234`);
    expect(nf.status).toBe(404);
    expect(nf.headers.get('content-type')).toContain('application/problem+json');
    const b = (await nf.json()) as Json;
    expect(b).toMatchObject({
      type: 'about:blank',
      title: 'Not Found',
      status: 404,
      instance: '/no/such/path',
    });
    expect(b.request_id).toBe(nf.headers.get('x-request-id'));
    expect(JSON.stringify(b)).not.toContain('secret-value-1234');

    const na = await fetch(`${s.url}/health`, { method: 'DELETE' });
    expect(na.status).toBe(405);
    expect(na.headers.get('allow')).toBe('GET, HEAD');
    expect(na.headers.get('content-type')).toContain('application/problem+json');
    expect(((await na.json()) as Json).title).toBe('Method Not Allowed');
  });

  it('a malformed URL is a 400 problem with a request id', async () => {
    const s = await stack();
    const res = await fetch(`${s.url}/%E0%A4%A`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.headers.get('x-request-id')).toBe(((await res.json()) as Json).request_id);
  });

  it('the native routes answer in Google’s error shape (404, 405, 400, 401)', async () => {
    const s = await stack();
    const method = await fetch(`${s.url}/v1beta/models/${MODEL}:noSuchMethod`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: userText('x'),
    });
    expect(method.status).toBe(404);
    expect(((await method.json()) as Json).error).toMatchObject({ code: 404, status: 'NOT_FOUND' });

    const wrong = await fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toContain('POST');
    expect(((await wrong.json()) as Json).error.code).toBe(405);

    const bad = await generate(s, {}, '{not json');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as Json).error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT' });

    const noToken = await fetch(`${s.url}/v1beta/models`, {});
    expect(noToken.status).toBe(401);
    expect(((await noToken.json()) as Json).error.status).toBe('UNAUTHENTICATED');
  });

  it('an application route answers invalid JSON with a 400 problem', async () => {
    const s = await stack();
    const res = await fetch(`${s.url}/v1/generate`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: '{"prompt":',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('an unexpected error is a 500 without stack trace or message', async () => {
    const s = await stack({
      keys: 1,
      routes: (app) =>
        app.get('/boom', async () => {
          throw new Error(`database exploded with ${poolKeyValues(1)[0]}`);
        }),
    });
    const res = await fetch(`${s.url}/boom`, { headers: auth });
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ status: 500, detail: 'internal error' });
    expect(text).not.toMatch(/stack|exploded|AIza|at .*\.ts/);
  });
});

describe('timeouts', () => {
  it('a native call slower than REQUEST_TIMEOUT is a 504 in Google’s shape', async () => {
    const s = await stack({ env: { REQUEST_TIMEOUT: '1' }, fake: { latencyMs: 3000 } });
    const started = Date.now();
    const res = await generate(s);
    expect(res.status).toBe(504);
    expect(((await res.json()) as Json).error.status).toBe('DEADLINE_EXCEEDED');
    expect(Date.now() - started).toBeLessThan(2500);
  });

  /** An upstream that never answers; records when each of its connections closes. */
  async function hangingUpstream(): Promise<{ url: string; closed: number[] }> {
    const closed: number[] = [];
    const hanging: Server = createServer((req: IncomingMessage) => {
      req.resume();
      req.socket.on('close', () => closed.push(Date.now()));
    });
    await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          hanging.closeAllConnections();
          hanging.close(() => r());
        }),
    );
    return { url: `http://127.0.0.1:${(hanging.address() as { port: number }).port}`, closed };
  }

  async function waitForClose(closed: number[]): Promise<number> {
    const deadline = Date.now() + 3000;
    while (closed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(closed.length).toBeGreaterThan(0);
    return closed[0]!;
  }

  it('a native call past REQUEST_TIMEOUT has its upstream call aborted', async () => {
    const upstream = await hangingUpstream();
    const s = await stack({ env: { REQUEST_TIMEOUT: '1', GEMINI_BASE_URL: upstream.url } });
    const started = Date.now();
    const res = await generate(s);
    expect(res.status).toBe(504);
    expect((await waitForClose(upstream.closed)) - started).toBeLessThan(2500);
  });

  it('a client that leaves a native call has its upstream call aborted', async () => {
    const upstream = await hangingUpstream();
    const s = await stack({ env: { REQUEST_TIMEOUT: '30', GEMINI_BASE_URL: upstream.url } });
    const controller = new AbortController();
    const started = Date.now();
    const pending = fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: userText('hello'),
      signal: controller.signal,
    }).catch(() => 'aborted');
    setTimeout(() => controller.abort(), 300);
    expect(await pending).toBe('aborted');
    expect((await waitForClose(upstream.closed)) - started).toBeLessThan(5000);
  });

  it('an application route past REQUEST_TIMEOUT is a 504 problem, and its upstream call is aborted', async () => {
    const upstream = await hangingUpstream();
    const s = await stack({ env: { REQUEST_TIMEOUT: '1', GEMINI_BASE_URL: upstream.url } });
    const started = Date.now();
    const res = await fetch(`${s.url}/v1/generate`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: JSON.stringify({ prompt: 'take your time' }),
    });
    expect(res.status).toBe(504);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect((await res.json()) as Json).toMatchObject({
      title: 'Gateway Timeout',
      detail: expect.stringContaining('REQUEST_TIMEOUT'),
    });
    expect(Date.now() - started).toBeLessThan(2500);
    expect((await waitForClose(upstream.closed)) - started).toBeLessThan(2500);
  });

  it('a handler past REQUEST_TIMEOUT gets a 504 and its request.abortSignal fires, body or not', async () => {
    const aborted: string[] = [];
    const s = await stack({
      keys: 1,
      env: { REQUEST_TIMEOUT: '0.5' },
      routes: (app) =>
        app.post('/slow', async (request) => {
          await new Promise<void>((resolve, reject) => {
            request.abortSignal.addEventListener('abort', () => {
              aborted.push(String(request.abortSignal.reason));
              reject(new Error('aborted'));
            });
            setTimeout(resolve, 5000).unref();
          });
          return { late: true };
        }),
    });
    const started = Date.now();
    const res = await fetch(`${s.url}/slow`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: JSON.stringify({ some: 'body' }),
    });
    expect(res.status).toBe(504);
    expect(((await res.json()) as Json).detail).toContain('REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(1500);
    expect(aborted).toHaveLength(1);
  });

  it('a stream that started before REQUEST_TIMEOUT is not cut by it', async () => {
    const s = await stack({ env: { REQUEST_TIMEOUT: '1' }, fake: { streamChunks: 5, chunkDelayMs: 400 } });
    const res = await fetch(`${s.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { ...auth, ...json },
      body: userText('a slow stream'),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.match(/^data: /gm)?.length).toBe(5);
    expect(text).toContain('"finishReason"');
    expect(text).not.toContain('"error"');
  });

  it('closes a connection whose headers do not arrive within HEADERS_TIMEOUT_MS', async () => {
    const s = await stack({ env: { HEADERS_TIMEOUT_MS: '500', REQUEST_READ_TIMEOUT_MS: '1000' } });
    const r = await rawExchange(s.url, 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ', 5000);
    expect(r.closedByServer).toBe(true);
    expect(r.elapsedMs).toBeLessThan(2500);
    expect(r.response).toMatch(/^HTTP\/1\.1 408|^$/);
  });

  it('closes a connection that sends nothing within HEADERS_TIMEOUT_MS', async () => {
    const s = await stack({ env: { HEADERS_TIMEOUT_MS: '500', REQUEST_READ_TIMEOUT_MS: '1000' } });
    const r = await rawExchange(s.url, '', 5000);
    expect(r.closedByServer).toBe(true);
    expect(r.elapsedMs).toBeLessThan(2000);
  });

  it('closes a connection whose body does not arrive within REQUEST_READ_TIMEOUT_MS', async () => {
    const s = await stack({ env: { HEADERS_TIMEOUT_MS: '500', REQUEST_READ_TIMEOUT_MS: '1000' } });
    const r = await rawExchange(
      s.url,
      `POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-goog-api-key: ${TEST_TOKEN}\r\nContent-Length: 100\r\n\r\n{"prompt":`,
      6000,
    );
    expect(r.closedByServer).toBe(true);
    expect(r.elapsedMs).toBeLessThan(3500);
    expect(r.response).not.toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('OpenAPI document', () => {
  it('lists every public route at /docs/json, each with tags and a summary or description', async () => {
    const s = await stack({ env: { ADMIN_TOKEN: 'admin-token-for-tests-0001' } });
    const res = await fetch(`${s.url}/docs/json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Json;
    const paths = Object.keys(doc.paths);
    for (const p of [
      '/health',
      '/health/detailed',
      '/metrics',
      '/admin/keys',
      '/admin/keys/{id}/disable',
      '/admin/reload',
      '/internal/cache',
      '/internal/circuits',
      '/v1beta/models/{*}',
      '/v1beta/models',
      '/v1/generate',
    ])
      expect(paths).toContain(p);
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.tags?.length, `${method} ${path} has tags`).toBeGreaterThan(0);
        expect(op.summary ?? op.description, `${method} ${path} is described`).toBeTruthy();
      }
    }
    const ui = await fetch(`${s.url}/docs`, { redirect: 'follow' });
    expect(ui.status).toBe(200);
    expect(ui.headers.get('content-type')).toContain('text/html');
  });
});

describe('deadline and shutdown', () => {
  it('a handler that ignores the abort signal still gets its 504 at the deadline, before it ends', async () => {
    let handlerEnded = false;
    const s = await stack({
      env: { REQUEST_TIMEOUT: '0.3' },
      routes: (app) =>
        app.get('/stubborn', async () => {
          await new Promise((r) => setTimeout(r, 4000));
          handlerEnded = true;
          return { late: true };
        }),
    });
    const res = await fetch(`${s.url}/stubborn`, { headers: { 'x-goog-api-key': TEST_TOKEN } });
    expect(res.status).toBe(504);
    expect(((await res.json()) as Json).detail).toContain('REQUEST_TIMEOUT');
    expect(handlerEnded).toBe(false);
  });

  it('close() closes a connection that never sent a byte instead of waiting for its headers timeout', async () => {
    const s = await stack({ env: { HEADERS_TIMEOUT_MS: '60000' } });
    const { port } = new URL(s.url);
    const socket: Socket = connect(Number(port), '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const socketClosed = new Promise<string>((r) => socket.once('close', () => r('socket closed')));
    const outcome = await Promise.race([
      s.gateway.close().then(() => 'gateway closed'),
      new Promise<string>((r) => setTimeout(() => r('still open'), 10_000)),
    ]);
    expect(outcome).toBe('gateway closed');
    expect(await socketClosed).toBe('socket closed');
  });

  it('an answer finished during shutdown says Connection: close', async () => {
    const s = await stack({ fake: { latencyMs: 600 } });
    const { port } = new URL(s.url);
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
    const answer = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: `/v1beta/models/${MODEL}:generateContent`,
          headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode!, connection: res.headers.connection });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    for (const until = Date.now() + 5000; s.fake.stats.requests === 0 && Date.now() < until; )
      await new Promise((r) => setTimeout(r, 20));
    const closing = s.gateway.close();
    const got = await answer;
    await closing;
    expect(got).toEqual({ status: 200, connection: 'close' });
  });
});
