import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FakeGemini, startFakeGemini } from '../../fake/fake-gemini.ts';
import { freePort } from '../../src/util/free-port.ts';
import { poolKeyValues, TEST_TOKEN } from '../helpers/stack.ts';

/** Signals to the real process (`node src/main.ts`): graceful shutdown on SIGTERM and SIGINT, reload on SIGHUP. */

const MODEL = 'gemini-2.5-flash-lite';
const children: ChildProcess[] = [];
const fakes: FakeGemini[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function startGateway(
  fake: FakeGemini,
  env: Record<string, string> = {},
): Promise<{
  child: ChildProcess;
  url: string;
  exit: Promise<{ code: number | null; signal: string | null }>;
  output: () => string;
}> {
  const port = await freePort();
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: process.cwd(),
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      PORT: String(port),
      SERVER_HOST: '127.0.0.1',
      GEMINI_BASE_URL: fake.url,
      GEMINI_API_KEYS: poolKeyValues(2).join(','),
      CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
      GLOBAL_RATE_LIMIT: '0',
      BURST_RATE_LIMIT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited early:\n${output}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`gateway did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, exit, output: () => output };
}

async function startStream(url: string) {
  const res = await fetch(`${url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
    method: 'POST',
    headers: { 'x-goog-api-key': TEST_TOKEN, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'tell me a long story' }] }] }),
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const first = await reader.read();
  let text = decoder.decode(first.value);
  const rest = (async () => {
    try {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value);
      return { text, complete: true };
    } catch {
      return { text, complete: false };
    }
  })();
  return { firstChunk: text, rest };
}

describe('graceful shutdown', () => {
  it('SIGTERM: a stream in flight arrives whole, new connections are refused, exit 0', async () => {
    const fake = await startFakeGemini({
      keys: poolKeyValues(2).map((apiKey) => ({ apiKey })),
      streamChunks: 5,
      chunkDelayMs: 250,
    });
    fakes.push(fake);
    const gw = await startGateway(fake, { SHUTDOWN_TIMEOUT_MS: '10000' });
    const stream = await startStream(gw.url);
    expect(stream.firstChunk).toContain('data: ');
    const signalledAt = Date.now();
    gw.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 150));
    await expect(fetch(`${gw.url}/health`)).rejects.toThrow();

    const { text, complete } = await stream.rest;
    expect(complete).toBe(true);
    expect(text.match(/^data: /gm)?.length).toBe(5);
    expect(text).toContain('"finishReason"');
    expect(text).not.toContain('"error"');

    const { code } = await gw.exit;
    expect(code, gw.output()).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(5000);
    expect(gw.output()).toContain('shutting down');
  });

  it('a request that arrives on an open connection during shutdown gets 503 and Connection: close', async () => {
    const fake = await startFakeGemini({
      keys: poolKeyValues(2).map((apiKey) => ({ apiKey })),
      streamChunks: 4,
      chunkDelayMs: 250,
    });
    fakes.push(fake);
    const gw = await startGateway(fake, { SHUTDOWN_TIMEOUT_MS: '10000' });
    const { port } = new URL(gw.url);
    // One connection: a stream, then (after SIGTERM) a second request pipelined behind it.
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (d: string) => {
      received += d;
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'a story' }] }] });
    const request = (path: string) =>
      `POST ${path} HTTP/1.1\r\nHost: gw\r\nx-goog-api-key: ${TEST_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    socket.write(request(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`));
    await vi.waitFor(() => expect(received).toContain('data: '), { timeout: 5000 });
    gw.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 150));
    socket.write(request(`/v1beta/models/${MODEL}:generateContent`));
    await closed; // the gateway closes the connection after its 503

    const second = received.slice(received.lastIndexOf('HTTP/1.1 '));
    expect(received.indexOf('HTTP/1.1 200')).toBe(0);
    expect(received.match(/"finishReason"/g)?.length).toBeGreaterThan(0);
    expect(second).toMatch(/^HTTP\/1\.1 503/);
    expect(second.toLowerCase()).toContain('connection: close');
    expect(second.toLowerCase()).toContain('retry-after: 1');
    expect(second).toContain('shutting down');
    // The 503 was answered without going upstream (the keys' verification calls list models).
    expect(
      fake.stats.log.filter((r) => r.path.includes('GenerateContent') || r.path.includes('generateContent')),
    ).toHaveLength(1);
    expect((await gw.exit).code, gw.output()).toBe(0);
  });

  it('SIGINT on an idle gateway exits 0 at once', async () => {
    const fake = await startFakeGemini({ keys: poolKeyValues(2).map((apiKey) => ({ apiKey })) });
    fakes.push(fake);
    const gw = await startGateway(fake);
    // A keep-alive connection left idle must not hold the shutdown up.
    expect((await fetch(`${gw.url}/health`)).status).toBe(200);
    const t = Date.now();
    gw.child.kill('SIGINT');
    const { code } = await gw.exit;
    expect(code, gw.output()).toBe(0);
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it('a stream longer than SHUTDOWN_TIMEOUT_MS is cut at the deadline (exit 1)', async () => {
    const fake = await startFakeGemini({
      keys: poolKeyValues(2).map((apiKey) => ({ apiKey })),
      streamChunks: 20,
      chunkDelayMs: 300,
    });
    fakes.push(fake);
    const gw = await startGateway(fake, { SHUTDOWN_TIMEOUT_MS: '500' });
    const stream = await startStream(gw.url);
    const t = Date.now();
    gw.child.kill('SIGTERM');
    const { code } = await gw.exit;
    expect(code, gw.output()).toBe(1);
    expect(Date.now() - t).toBeLessThan(3000);
    const { text } = await stream.rest;
    expect(text.match(/^data: /gm)?.length ?? 0).toBeLessThan(20);
  });
});

describe('SIGHUP', () => {
  it('re-reads API_KEYS_FILE', async () => {
    const fake = await startFakeGemini({});
    fakes.push(fake);
    // The keys file is a symlink to a file in another folder: editing the target is invisible to
    // the file watcher, so only the signal can make the gateway see it.
    const watched = mkdtempSync(join(tmpdir(), 'gg-hup-'));
    const hidden = mkdtempSync(join(tmpdir(), 'gg-hup-target-'));
    const target = join(hidden, 'keys.json');
    const entry = (id: string) => ({ id, api_key: `AIzaHup${id}000000000000000000000` });
    writeFileSync(target, JSON.stringify({ keys: [entry('one')] }));
    symlinkSync(target, join(watched, 'keys.json'));
    const gw = await startGateway(fake, { API_KEYS_FILE: join(watched, 'keys.json'), GEMINI_API_KEYS: '' });
    try {
      writeFileSync(target, JSON.stringify({ keys: [entry('one'), entry('two')] }));
      await new Promise((r) => setTimeout(r, 400));
      expect(gw.output()).not.toContain('"added":["two"]');
      gw.child.kill('SIGHUP');
      await vi.waitFor(
        () => expect(gw.output()).toMatch(/"source":"signal","added":\["two"\][^\n]*keys file reloaded/),
        {
          timeout: 5000,
        },
      );
      const health = (await (await fetch(`${gw.url}/health/detailed`)).json()) as {
        keys: { configured: number };
      };
      expect(health.keys.configured).toBe(2);
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exit;
      rmSync(watched, { recursive: true, force: true });
      rmSync(hidden, { recursive: true, force: true });
    }
  });
});
