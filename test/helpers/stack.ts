import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterEach } from 'vitest';
import { type FakeGemini, type FakeGeminiOptions, startFakeGemini } from '../../fake/fake-gemini.ts';
import { buildGateway, type Gateway } from '../../src/app/build.ts';
import { loggerOptions } from '../../src/observability/logger.ts';

export interface StackOptions {
  /** Gateway settings (override the defaults below). */
  env?: Record<string, string>;
  /** Number of pool keys (fake keys pool-key-1..n). Default 3. */
  keys?: number;
  /** Options for the fake Gemini (its `keys` default to the pool keys). */
  fake?: Partial<FakeGeminiOptions>;
  /** Reuse a running fake instead of starting one. */
  fakeInstance?: FakeGemini;
  /** Collect log lines (JSON strings) instead of discarding them. */
  logLines?: string[];
  /** Extra routes a test adds to the gateway before it starts listening. */
  routes?: (app: FastifyInstance) => void;
}

export interface Stack {
  url: string;
  token: string;
  fake: FakeGemini;
  gateway: Gateway;
  close(): Promise<void>;
}

export const TEST_TOKEN = 'test-client-token-0123456789';

export function poolKeyValues(n: number): string[] {
  return Array.from(
    { length: n },
    (_, i) => `AIzaFakePoolKey${String(i + 1).padStart(3, '0')}xxxxxxxxxxxxxxxxx`,
  );
}

/** The fake Gemini and a gateway wired to it, both on 127.0.0.1 with ephemeral ports. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const n = opts.keys ?? 3;
  const values = poolKeyValues(n);
  const fake =
    opts.fakeInstance ??
    (await startFakeGemini({ keys: values.map((apiKey) => ({ apiKey })), ...opts.fake }));
  // Embedded-mode files (usage history) go to a directory of the stack's own, unless the test names one.
  const dataDir = opts.env?.DATA_DIR ? null : mkdtempSync(join(tmpdir(), 'gg-data-'));
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    ...(dataDir ? { DATA_DIR: dataDir } : {}),
    LOG_LEVEL: opts.logLines ? 'info' : 'silent',
    GEMINI_BASE_URL: fake.url,
    GEMINI_API_KEYS: values.join(','),
    CLIENT_API_KEYS_MAP: `${TEST_TOKEN}:tests`,
    QUEUE_MAX_WAIT_MS: '2000',
    // Caller rate limits off unless a test sets them: tests fire bursts from one IP.
    GLOBAL_RATE_LIMIT: '0',
    BURST_RATE_LIMIT: '0',
    // Key verification (models.list calls at start) off unless a test sets it: it would add
    // calls to the fake's counts and consume its scripted failures.
    VERIFY_KEYS: 'false',
    ...opts.env,
  };
  const logger = opts.logLines
    ? pino(loggerOptions({ LOG_LEVEL: 'info', NODE_ENV: 'test' }), {
        write: (line: string) => {
          opts.logLines!.push(line);
        },
      })
    : pino({ level: 'silent' });
  const gateway = await buildGateway(env, { logger });
  opts.routes?.(gateway.app);
  await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  const address = gateway.app.server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    token: TEST_TOKEN,
    fake,
    gateway,
    async close() {
      await gateway.close();
      if (!opts.fakeInstance) await fake.close();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * startStack for one test file: every stack started through the returned function is closed
 * after each test. `defaults` are merged under each call's options (env merged key by key).
 */
export function stackPerTest(defaults: StackOptions = {}): (opts?: StackOptions) => Promise<Stack> {
  const stacks: Stack[] = [];
  afterEach(async () => {
    await Promise.all(stacks.splice(0).map((s) => s.close()));
  });
  return async (opts: StackOptions = {}) => {
    const s = await startStack({ ...defaults, ...opts, env: { ...defaults.env, ...opts.env } });
    stacks.push(s);
    return s;
  };
}

/**
 * Two instances of one deployment: gateways A and B on one fake and one Redis state (under a
 * fresh prefix). `start` is the test file's own stack starter; `opts` apply to both.
 */
export async function sharedRedisPair(
  start: (opts: StackOptions) => Promise<Stack>,
  redisUrl: string,
  opts: StackOptions = {},
): Promise<[Stack, Stack]> {
  const env = { REDIS_URL: redisUrl, STATE_PREFIX: `pair:${randomUUID()}:`, ...opts.env };
  const a = await start({ ...opts, env });
  const b = await start({ ...opts, env, fakeInstance: a.fake });
  return [a, b];
}

/** A native generateContent call on the stack's gemini-2.5-flash-lite, with the test client token. */
export function generateText(s: Stack, text = 'hi'): Promise<Response> {
  return generateWith(s, { 'x-goog-api-key': TEST_TOKEN }, text);
}

/** The same call with the client's credentials in `headers` (or none). */
export function generateWith(s: Stack, headers: Record<string, string>, text = 'hi'): Promise<Response> {
  return fetch(`${s.url}/v1beta/models/gemini-2.5-flash-lite:generateContent`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
  });
}

// biome-ignore lint/suspicious/noExplicitAny: application answers are inspected dynamically in tests
type Json = any;

/**
 * A POST to an application endpoint with the stack's client token: a FormData body as
 * multipart, anything else as JSON. Returns the answer with its status, X-Cache and JSON body.
 */
export async function postApp(
  stack: Stack,
  path: string,
  body: FormData | unknown,
  headers: Record<string, string> = {},
) {
  const isForm = body instanceof FormData;
  const res = await fetch(`${stack.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stack.token}`,
      ...(isForm ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: isForm ? body : JSON.stringify(body),
  });
  return { res, status: res.status, xcache: res.headers.get('x-cache'), json: (await res.json()) as Json };
}
