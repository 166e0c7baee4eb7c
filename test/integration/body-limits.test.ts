import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { ApiError, GoogleGenAI } from '@google/genai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { linger } from '../../src/http/linger.ts';
import { type Stack, startStack } from '../helpers/stack.ts';

/**
 * Body limits like Google's: the native proxy takes bodies up to NATIVE_MAX_BODY_SIZE (100 MiB,
 * Google's inline limit), the application routes up to MAX_UPLOAD_SIZE; a client that sends more
 * always reads the 413 (the rest of its body is read and dropped before the connection closes,
 * as nginx's lingering close does), whatever kind of client it is.
 */

const MODEL = 'gemini-2.5-flash-lite';
const NATIVE = `/v1beta/models/${MODEL}:generateContent`;
const MIB = 1024 * 1024;

let big: Stack; // default limits
let small: Stack; // NATIVE_MAX_BODY_SIZE 4 MiB, MAX_UPLOAD_SIZE 1 MiB

beforeAll(async () => {
  big = await startStack({ keys: 2 });
  small = await startStack({
    keys: 2,
    fakeInstance: big.fake,
    env: { NATIVE_MAX_BODY_SIZE: String(4 * MIB), MAX_UPLOAD_SIZE: String(MIB) },
  });
});
afterAll(async () => {
  await small?.close();
  await big?.close();
  await big?.fake.close();
});

function inlineBody(bytes: number): string {
  return JSON.stringify({
    contents: [
      {
        parts: [
          { text: 'What is in this image?' },
          {
            inlineData: {
              mimeType: 'image/png',
              data: randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64'),
            },
          },
        ],
      },
    ],
  });
}

describe('request bodies as large as Google takes', { timeout: 120_000 }, () => {
  it('the native proxy forwards a 30 MB inline image by default, byte for byte', async () => {
    const body = inlineBody(30 * MIB);
    const r = await fetch(`${big.url}${NATIVE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': big.token },
      body,
    });
    expect(r.status, await r.clone().text()).toBe(200);
    await r.text();
    const sent = big.fake.stats.log.at(-1)!;
    const parts = (sent.body as { contents: Array<{ parts: Array<{ inlineData?: { data: string } }> }> })
      .contents[0]!.parts;
    expect(parts[1]!.inlineData!.data.length).toBe(
      JSON.parse(body).contents[0].parts[1].inlineData.data.length,
    );
  });

  it('MAX_UPLOAD_SIZE still limits the application routes', async () => {
    const r = await fetch(`${big.url}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${big.token}` },
      body: JSON.stringify({ prompt: 'x'.repeat(12 * MIB) }),
    });
    expect(r.status).toBe(413);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(((await r.json()) as { detail: string }).detail).toContain('MAX_UPLOAD_SIZE');
  });
});

describe('a body over the limit: the client reads the 413', { timeout: 120_000 }, () => {
  it('fetch (undici), with a Content-Length and chunked, reads the 413 in Google’s shape', async () => {
    const body = inlineBody(40 * MIB);
    const declared = await fetch(`${small.url}${NATIVE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': small.token },
      body,
    });
    expect(declared.status).toBe(413);
    expect(declared.headers.get('connection')).toBe('close');
    expect((await declared.json()) as unknown).toMatchObject({
      error: {
        code: 413,
        status: 'INVALID_ARGUMENT',
        message: `Request payload size exceeds the limit: ${4 * MIB} bytes.`,
      },
    });

    const bytes = Buffer.from(body);
    const chunked = await fetch(`${small.url}${NATIVE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': small.token },
      body: new ReadableStream({
        start(controller) {
          for (let at = 0; at < bytes.length; at += MIB) controller.enqueue(bytes.subarray(at, at + MIB));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { message: string } }).error.message).toContain(
      'exceeds the limit',
    );
  });

  it('@google/genai reads the 413 as an ApiError with Google’s message', async () => {
    const ai = new GoogleGenAI({ apiKey: small.token, httpOptions: { baseUrl: small.url } });
    const data = randomBytes(30 * MIB).toString('base64');
    const err = await ai.models
      .generateContent({
        model: MODEL,
        contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data } }] }],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(413);
    expect((err as ApiError).message).toContain('exceeds the limit');
  });

  it('a client that sends its whole body before reading (as Python requests does) reads the 413; the gateway keeps none of it', async () => {
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    }, 20);
    try {
      // 300 MB to the native route (limit 4 MiB): refused from its Content-Length, then drained.
      const native = await sendAllThenRead(small.url, NATIVE, 300 * MIB, { 'x-goog-api-key': small.token });
      expect(native.error).toBeNull();
      expect(native.status).toBe(413);
      expect(JSON.parse(native.body).error.message).toContain('exceeds the limit');
      // Chunked to an application route (limit 1 MiB): refused once 1 MiB has arrived.
      const app = await sendAllThenRead(
        small.url,
        '/v1/generate',
        64 * MIB,
        { authorization: `Bearer ${small.token}` },
        true,
      );
      expect(app.error).toBeNull();
      expect(app.status).toBe(413);
      expect(JSON.parse(app.body).status).toBe(413);
    } finally {
      clearInterval(sampler);
    }
    // What was sent is far more than what was ever held at once (the client reuses one 1 MiB chunk).
    expect(peak - baseline).toBeLessThan(100 * MIB);
  });
});

describe('lingering close is bounded', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((req, res) => {
      linger(req, { maxBytes: 2 * MIB, maxMs: 3000, idleMs: 300 });
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"error":"too large"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const open = () => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1').on('data', (d: string) => {
      received += d;
    });
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${100 * MIB}\r\n\r\n`);
    return { socket, closed, received: () => received };
  };

  it('the body goes on being read after the answer; a client that stops sending is cut off after the idle limit', async () => {
    const c = open();
    let failed: Error | null = null;
    c.socket.on('error', (e) => {
      failed = e;
    });
    // Sending goes on after the answer, with pauses shorter than the idle limit: all accepted.
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((r) => c.socket.write(Buffer.alloc(64 * 1024), () => r()));
      await new Promise((r) => setTimeout(r, 100));
    }
    await vi.waitFor(() => expect(c.received()).toContain('HTTP/1.1 413'));
    expect(c.socket.destroyed).toBe(false);
    expect(failed).toBeNull();
    // Then silence: the server closes.
    await c.closed;
    expect(c.received()).toContain('{"error":"too large"}');
  });

  it('a client that sends past the byte limit is cut off', async () => {
    const c = open();
    const chunk = Buffer.alloc(256 * 1024);
    let sent = 0;
    let cut = false;
    c.socket.on('close', () => {
      cut = true;
    });
    while (!cut && sent < 50 * MIB) {
      if (!c.socket.write(chunk)) await new Promise((r) => c.socket.once('drain', r).once('close', r));
      sent += chunk.length;
    }
    await c.closed;
    // Cut off past the 2 MiB limit (a few chunks in the kernel's buffers beyond it), long before 50 MiB.
    expect(sent).toBeGreaterThan(2 * MIB);
    expect(sent).toBeLessThan(50 * MIB);
    expect(c.received()).toContain('HTTP/1.1 413');
  });
});

/**
 * Writes a request with a `bytes`-long body (in 1 MiB writes, each after the last has drained,
 * never reading), then reads the answer: what a client does that reads only once it has sent.
 */
async function sendAllThenRead(
  base: string,
  path: string,
  bytes: number,
  headers: Record<string, string>,
  chunked = false,
): Promise<{ status: number; body: string; error: Error | null }> {
  const { hostname, port } = new URL(base);
  const socket: Socket = connect(Number(port), hostname);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  let error: Error | null = null;
  socket.on('error', (e) => {
    error ??= e;
  });
  // The response is collected but not looked at until everything is sent.
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => received.push(d));
  socket.pause();
  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  const head = [
    `POST ${path} HTTP/1.1`,
    'Host: gateway',
    'Content-Type: application/json',
    chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${bytes}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const write = (data: Buffer | string) =>
    new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      if (socket.write(data)) resolve();
      else socket.once('drain', () => resolve()).once('close', () => resolve());
    });
  await write(head);
  const chunk = Buffer.alloc(MIB, 0x61);
  const frame = (b: Buffer) =>
    chunked ? Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]) : b;
  const prefix = Buffer.from(chunked ? '{"prompt":"' : '{"contents":[{"parts":[{"text":"');
  await write(frame(prefix));
  // Exactly `bytes` in all (a byte more would start another request on the connection).
  for (let sent = prefix.length; sent < bytes && !error && !socket.destroyed; sent += MIB)
    await write(frame(chunk.subarray(0, Math.min(MIB, bytes - sent))));
  if (chunked) await write('0\r\n\r\n');
  socket.resume();
  await vi
    .waitFor(() => expect(Buffer.concat(received).toString('latin1')).toMatch(/\r\n\r\n[\s\S]*\}$/), {
      timeout: 10_000,
    })
    .catch(() => {});
  socket.end();
  await ended;
  const text = Buffer.concat(received).toString('utf8');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return { status, body: decodeChunked(text, body), error };
}

function decodeChunked(text: string, body: string): string {
  if (!/transfer-encoding: chunked/i.test(text.slice(0, text.indexOf('\r\n\r\n')))) return body;
  let out = '';
  let rest = body;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const size = Number.parseInt(rest.slice(0, nl), 16);
    if (!size) return out;
    out += rest.slice(nl + 2, nl + 2 + size);
    rest = rest.slice(nl + 2 + size + 2);
  }
}
