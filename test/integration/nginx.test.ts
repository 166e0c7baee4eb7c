import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { connect as h2connect } from 'node:http2';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { GoogleGenAI } from '@google/genai';
import type { FastifyInstance } from 'fastify';
import { Agent, type Dispatcher, getGlobalDispatcher, setGlobalDispatcher, WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnv } from '../../src/config/env.ts';
import { hasNginx, type Nginx, startNginx, TLS_CA, TLS_SERVERNAME } from '../helpers/nginx.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * The shipped nginx site (deploy/nginx/gateway.conf) with a real nginx, over TLS, in front of two
 * gateway instances: load spread, passive health checks, unbuffered streams, WebSocket upgrades,
 * body limits answered with a readable 413, limit_req, TLS settings and security headers.
 */
const available = hasNginx();
if (!available) {
  if (process.env.REQUIRE_REAL_SERVERS === '1')
    throw new Error('REQUIRE_REAL_SERVERS=1 but nginx is not installed');
  console.warn(
    '\n!!! SKIPPED (no nginx): nginx integration tests. Install it with: apt-get install -y nginx\n',
  );
}

const MODEL = 'gemini-2.5-flash-lite';
const HSTS = 'max-age=63072000; includeSubDomains';

/**
 * A tiny WebSocket echo server on the gateway's own HTTP server (Node's 'upgrade' event), standing
 * in for the Live API the gateway does not serve yet: text frames come back as they were sent.
 */
function wsEcho(instance: string, seen: IncomingMessage[], sockets: Set<Duplex>) {
  return (app: FastifyInstance) => {
    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      seen.push(req);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\nX-Instance: ${instance}\r\n\r\n`,
      );
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          if (buf.length < 2) return;
          const opcode = buf[0]! & 0x0f;
          let len = buf[1]! & 0x7f;
          let at = 2;
          if (len === 126) {
            if (buf.length < 4) return;
            len = buf.readUInt16BE(2);
            at = 4;
          }
          const masked = (buf[1]! & 0x80) !== 0;
          const need = at + (masked ? 4 : 0) + len;
          if (buf.length < need) return;
          const mask = masked ? buf.subarray(at, at + 4) : null;
          const payload = Buffer.from(buf.subarray(need - len, need));
          if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
          buf = buf.subarray(need);
          const head =
            payload.length < 126
              ? Buffer.from([0x80 | opcode, payload.length])
              : Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 0xff]);
          socket.write(Buffer.concat([head, payload]));
          if (opcode === 0x8) socket.end();
        }
      });
      socket.on('error', () => {});
    });
  };
}

describe.skipIf(!available)('behind nginx with TLS (deploy/nginx/gateway.conf), two instances', () => {
  let a: Stack;
  let b: Stack;
  let bClosed = false;
  let nginx: Nginx;
  let agent: Agent;
  let previousDispatcher: Dispatcher;
  const upgrades: IncomingMessage[] = [];
  const wsSockets = new Set<Duplex>();
  const portOf = (s: Stack) => Number(new URL(s.url).port);

  beforeAll(async () => {
    // The gateway's own limits (MAX_UPLOAD_SIZE 10 MiB, NATIVE_MAX_BODY_SIZE 100 MiB) equal
    // nginx's client_max_body_size, so nginx refuses every oversized body itself (tests below).
    const env = { TRUSTED_PROXIES: '127.0.0.1' };
    a = await startStack({
      keys: 2,
      fake: { streamChunks: 3, chunkDelayMs: 400 },
      env,
      routes: wsEcho('a', upgrades, wsSockets),
    });
    b = await startStack({ keys: 2, fakeInstance: a.fake, env, routes: wsEcho('b', upgrades, wsSockets) });
    nginx = await startNginx([portOf(a), portOf(b)], readFileSync('deploy/nginx/gateway.conf', 'utf8'));
    // fetch (and so the SDK) trusts the test CA and checks the certificate's name.
    agent = new Agent({ connect: { ca: TLS_CA, servername: TLS_SERVERNAME } });
    previousDispatcher = getGlobalDispatcher();
    setGlobalDispatcher(agent);
  });
  afterAll(async () => {
    if (previousDispatcher) setGlobalDispatcher(previousDispatcher);
    for (const s of wsSockets) s.destroy();
    await nginx?.close();
    if (!bClosed) await b?.close();
    await a?.close();
    await agent?.close();
  });

  const generate = (text: string, headers: Record<string, string> = {}) =>
    fetch(`${nginx.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': a.token, ...headers },
      body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
    });

  it('the SDK works through nginx over TLS', async () => {
    const ai = new GoogleGenAI({ apiKey: a.token, httpOptions: { baseUrl: nginx.url } });
    const r = await ai.models.generateContent({ model: MODEL, contents: 'via nginx' });
    expect(r.text).toContain('via nginx');
  });

  it('spreads requests over both instances and logs each as JSON with its request id and upstream time', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await generate(`spread ${i}`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      ids.push(res.headers.get('x-request-id')!);
    }
    const lines = nginx.accessLog().filter((l) => ids.includes(l.request_id as string));
    expect(lines).toHaveLength(10);
    const served = new Map<string, number>();
    for (const l of lines) {
      expect(l).toMatchObject({
        method: 'POST',
        path: `/v1beta/models/${MODEL}:generateContent`,
        status: 200,
      });
      expect(l.upstream_response_time).toMatch(/^\d+\.\d{3}$/);
      expect(l.upstream_connect_time).toMatch(/^\d+\.\d{3}$/);
      expect(typeof l.request_time).toBe('number');
      expect(l.ssl_protocol).toBe('TLSv1.3');
      served.set(l.upstream_addr as string, (served.get(l.upstream_addr as string) ?? 0) + 1);
    }
    expect([...served.keys()].sort()).toEqual([`127.0.0.1:${portOf(a)}`, `127.0.0.1:${portOf(b)}`].sort());
    for (const n of served.values()) expect(n).toBeGreaterThanOrEqual(3);
  });

  it('streams pass through TLS unbuffered: the first chunk arrives while the stream is still open', async () => {
    const started = Date.now();
    const res = await fetch(`${nginx.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': a.token },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'chunked' }] }] }),
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const arrivals: { at: number; events: number }[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      const text = new TextDecoder().decode(r.value);
      arrivals.push({ at: Date.now() - started, events: text.split('data: ').length - 1 });
    }
    // The fake sends three events 400 ms apart: a buffering proxy would deliver them together.
    expect(arrivals.reduce((n, x) => n + x.events, 0)).toBe(3);
    expect(arrivals[0]!.events).toBe(1);
    const last = arrivals.at(-1)!;
    expect(last.at - arrivals[0]!.at).toBeGreaterThanOrEqual(600);
  });

  it('passes the request id through, keeps problem+json errors and writes the id in its log', async () => {
    const res = await fetch(`${nginx.url}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'nginx-test-123' },
      body: '{}',
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBe('nginx-test-123');
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(nginx.accessLog().some((l) => l.request_id === 'nginx-test-123' && l.status === 401)).toBe(true);
    // An id the gateway would not accept is replaced by nginx's own, the same on both sides.
    const bad = await generate('bad id', { 'x-request-id': 'has spaces and "quotes"' });
    const id = bad.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(nginx.accessLog().some((l) => l.request_id === id)).toBe(true);
  });

  it('the access log never holds a ?key= query string', async () => {
    const res = await fetch(`${nginx.url}/v1beta/models/${MODEL}:generateContent?key=${a.token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'query key' }] }] }),
    });
    await res.arrayBuffer();
    const id = res.headers.get('x-request-id');
    const line = nginx.accessLog().find((l) => l.request_id === id);
    expect(line).toBeDefined();
    expect(JSON.stringify(nginx.accessLog())).not.toContain(a.token);
  });

  it('an upload past the application limit reads nginx 413 as problem+json, not a broken connection', async () => {
    const body = Buffer.alloc(16 * 1024 * 1024, 0x61);
    const res = await fetch(`${nginx.url}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` },
      body,
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('strict-transport-security')).toBe(HSTS);
    const problem = (await res.json()) as Record<string, unknown>;
    expect(problem).toMatchObject({ status: 413, title: 'Payload Too Large' });
    expect(res.headers.get('x-request-id')).toBe(problem.request_id);
  });

  it("a native request past Google's 100 MB reads 413 in Google's error shape", async () => {
    const body = Buffer.alloc(100 * 1024 * 1024 + 1, 0x61);
    const res = await fetch(`${nginx.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': a.token },
      body,
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toMatchObject({ error: { code: 413, status: 'INVALID_ARGUMENT' } });
  });

  it('a native request above the application limit passes nginx (the gateway takes up to its own limit)', async () => {
    // 12 MB of inline data: past nginx's 10m for application routes, within its 100m here.
    const data = Buffer.alloc(9 * 1024 * 1024, 7).toString('base64');
    const res = await fetch(`${nginx.url}/v1beta/models/${MODEL}:countTokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': a.token },
      body: JSON.stringify({ contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data } }] }] }),
    });
    await res.arrayBuffer();
    expect(res.status).not.toBe(413);
    const line = nginx.accessLog().find((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line?.request_length).toBeGreaterThan(12 * 1024 * 1024);
    expect(line?.upstream_status).toBe(String(res.status));
  });

  it("nginx's body limits equal the gateway's, so nginx answers every oversized request itself", () => {
    const conf = readFileSync('deploy/nginx/gateway.conf', 'utf8');
    const sizes = [...conf.matchAll(/client_max_body_size (\d+)m;/g)].map((m) => Number(m[1]) * 1024 * 1024);
    // Server level (application routes) first, then the native API's location.
    expect(sizes[0]).toBe(parseEnv({}).MAX_UPLOAD_SIZE);
    expect(sizes[1]).toBe(parseEnv({}).NATIVE_MAX_BODY_SIZE);
  });

  it('a WebSocket upgrade under /ws/ passes through to an instance, both ways', async () => {
    const ws = new WebSocket(`${nginx.url.replace('https:', 'wss:')}/ws/echo`, {
      dispatcher: agent,
      headers: { 'x-request-id': 'ws-test-1' },
    });
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send('hello through nginx'));
      ws.addEventListener('message', (e) => {
        messages.push(String(e.data));
        if (messages.length === 1) ws.send('x'.repeat(300));
        else ws.close(1000);
      });
      ws.addEventListener('close', () => resolve());
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    expect(messages).toEqual(['hello through nginx', 'x'.repeat(300)]);
    const req = upgrades.at(-1)!;
    expect(req.url).toBe('/ws/echo');
    expect(req.headers.upgrade).toBe('websocket');
    expect(req.headers.connection?.toLowerCase()).toBe('upgrade');
    expect(req.headers['x-forwarded-proto']).toBe('https');
    expect(req.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(req.headers['x-request-id']).toBe('ws-test-1');
  });

  it('TLS: 1.3 and 1.2 with forward-secret AEAD ciphers only; 1.1 and non-ECDHE ciphers refused', async () => {
    const handshake = (opts: Record<string, unknown>) =>
      new Promise<{ protocol: string | null; cipher: string }>((resolve, reject) => {
        const s = tlsConnect(
          { host: '127.0.0.1', port: nginx.httpsPort, servername: TLS_SERVERNAME, ca: TLS_CA, ...opts },
          () => {
            const r = { protocol: s.getProtocol(), cipher: s.getCipher().name };
            s.end();
            resolve(r);
          },
        );
        s.once('error', reject);
      });
    expect((await handshake({})).protocol).toBe('TLSv1.3');
    const v12 = await handshake({ maxVersion: 'TLSv1.2' });
    expect(v12.protocol).toBe('TLSv1.2');
    expect(v12.cipher).toMatch(/^ECDHE-(RSA|ECDSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    await expect(
      handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
    ).rejects.toThrow();
    await expect(
      handshake({ maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES128-SHA' }),
    ).rejects.toThrow();
  });

  it('plain HTTP only redirects to HTTPS', async () => {
    const res = await fetch(`${nginx.httpUrl}/v1beta/models/${MODEL}:generateContent`, {
      redirect: 'manual',
    });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toMatch(/^https:\/\/127\.0\.0\.1\/v1beta\/models\//);
  });

  it('security headers appear once on proxied answers; the gateway keeps its own CSP', async () => {
    const res = await fetch(`${nginx.url}/health`);
    expect(res.status).toBe(200);
    expect(res.headers.get('strict-transport-security')).toBe(HSTS);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(res.headers.get('server')).toBe('nginx');
  });

  it('passive health checks: with one instance down every request is still served, by the other', async () => {
    await b.close();
    bClosed = true;
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await generate(`one down ${i}`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      ids.push(res.headers.get('x-request-id')!);
    }
    const lines = nginx.accessLog().filter((l) => ids.includes(l.request_id as string));
    const aAddr = `127.0.0.1:${portOf(a)}`;
    const bAddr = `127.0.0.1:${portOf(b)}`;
    // Some requests were tried on b first (connection refused) and passed to a ...
    expect(lines.some((l) => l.upstream_addr === `${bAddr}, ${aAddr}`)).toBe(true);
    // ... until b's 3 failures took it out (max_fails=3): the last requests went to a directly.
    for (const l of lines.slice(-4)) expect(l.upstream_addr).toBe(aAddr);
    expect(lines.filter((l) => String(l.upstream_addr).includes(bAddr)).length).toBeLessThanOrEqual(3);
  });

  it('a burst from one address gets 429 from limit_req, in problem+json with Retry-After', async () => {
    // One HTTP/2 connection, 120 requests at once (rate 20 r/s, burst 40, nodelay).
    const session = h2connect(nginx.url, { ca: TLS_CA, servername: TLS_SERVERNAME });
    try {
      const answers = await Promise.all(
        Array.from(
          { length: 120 },
          () =>
            new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
              (resolve, reject) => {
                const req = session.request({ ':path': '/health' });
                let status = 0;
                let headers: Record<string, unknown> = {};
                let body = '';
                req.on('response', (h) => {
                  status = Number(h[':status']);
                  headers = h;
                });
                req.setEncoding('utf8');
                req.on('data', (d: string) => {
                  body += d;
                });
                req.on('end', () => resolve({ status, headers, body }));
                req.on('error', reject);
                req.end();
              },
            ),
        ),
      );
      const ok = answers.filter((x) => x.status === 200).length;
      const limited = answers.filter((x) => x.status === 429);
      expect(ok + limited.length).toBe(120);
      expect(ok).toBeGreaterThanOrEqual(20);
      expect(limited.length).toBeGreaterThanOrEqual(60);
      const first = limited[0]!;
      expect(first.headers['content-type']).toBe('application/problem+json');
      expect(first.headers['retry-after']).toBe('1');
      expect(first.headers['strict-transport-security']).toBe(HSTS);
      expect(JSON.parse(first.body)).toMatchObject({ status: 429, title: 'Too Many Requests' });
    } finally {
      session.close();
    }
    expect(nginx.errorLog()).toContain('limiting requests');
  });
});
