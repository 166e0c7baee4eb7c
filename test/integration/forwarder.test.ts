import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isKnownError, toProblem } from '../../src/http/errors.ts';
import { HttpProblem } from '../../src/http/problem.ts';
import { freePort } from '../../src/util/free-port.ts';
import { has } from '../helpers/global-setup.ts';
import { sample } from '../helpers/metrics.ts';
import { type Stack, stackPerTest, TEST_TOKEN } from '../helpers/stack.ts';

/**
 * The forwarder inside a whole gateway: deadlines of service calls, the answer when every attempt
 * failed, and what is counted (access log attempts, upstream outcome metrics, a store that is down).
 * Its retry rule alone, on a scripted upstream: test/unit/forwarder-*.test.ts.
 */

const MODEL = 'gemini-2.5-flash-lite';
const stack = stackPerTest();
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const json = { 'content-type': 'application/json' };
const body = (text: string) => JSON.stringify({ contents: [{ parts: [{ text }] }] });

function generate(s: Stack, headers: Record<string, string> = { 'x-goog-api-key': TEST_TOKEN }, text = 'hi') {
  return fetch(`${s.url}/v1beta/models/${MODEL}:generateContent`, {
    method: 'POST',
    headers: { ...json, ...headers },
    body: body(text),
  });
}

/** A forwarder call as an application service makes it: a deadline, and no request signal. */
function serviceCall(s: Stack, deadlineMs: number) {
  return s.gateway.deps.forwarder.forward({
    method: 'POST',
    path: `/v1beta/models/${MODEL}:generateContent`,
    search: '',
    body: body('service'),
    model: MODEL,
    estimatedTokens: 2,
    stream: false,
    deadlineMs,
  });
}

/** Settles to the promise's outcome (a failure as the problem answered), or to 'still pending' after a generous guard. */
function settleWithin<T>(p: Promise<T>, guardMs: number): Promise<T | HttpProblem | 'still pending'> {
  return Promise.race([
    p.catch((e: unknown) => (isKnownError(e) ? toProblem(e) : (e as HttpProblem))),
    new Promise<'still pending'>((r) => setTimeout(() => r('still pending'), guardMs).unref()),
  ]);
}

describe('forwarder: deadlines', () => {
  it('a call whose deadline has passed makes no upstream attempt and is a 504', async () => {
    const s = await stack();
    const err = await serviceCall(s, Date.now() - 1).catch((e: unknown) =>
      isKnownError(e) ? toProblem(e) : e,
    );
    expect(err).toBeInstanceOf(HttpProblem);
    expect(err).toMatchObject({ status: 504, googleStatus: 'DEADLINE_EXCEEDED' });
    expect(s.fake.stats.requests).toBe(0);
  });

  it('an attempt is cut at the deadline even when UPSTREAM_TIMEOUT_MS is longer', async () => {
    const s = await stack({ keys: 1, env: { UPSTREAM_TIMEOUT_MS: '60000' } });
    s.fake.script({ kind: 'hang' }, { times: 5 });
    const outcome = await settleWithin(serviceCall(s, Date.now() + 300), 10_000);
    expect(outcome).toBeInstanceOf(HttpProblem);
    expect(outcome).toMatchObject({ status: 504 });
  });

  it('a call that waited in line past its deadline is not sent: a 504, and the key is charged nothing', async () => {
    const s = await stack({ keys: 1, env: { QUEUE_MAX_WAIT_MS: '5000' } });
    // The only key rests for 1 s after a 429; the call below may wait for it, but its deadline is sooner.
    s.fake.script({ kind: 'rate_limit', retryDelay: '1s' }, { times: 1 });
    expect((await generate(s)).status).toBe(429);
    const sent = s.fake.stats.requests;
    const state = async () => {
      const now = Date.now();
      return (await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day))[0]!;
    };
    const before = await state();

    const outcome = await settleWithin(serviceCall(s, Date.now() + 300), 10_000);
    expect(outcome).toBeInstanceOf(HttpProblem);
    expect(outcome).toMatchObject({ status: 504 });
    expect(s.fake.stats.requests).toBe(sent);
    await vi.waitFor(async () => {
      const after = await state();
      expect(after.consecutiveFailures).toBe(0);
      expect(after.requestsThisMinute).toBe(before.requestsThisMinute);
      expect(after.lastError).toBe(before.lastError);
    });
  });

  it('at the deadline, an earlier overloaded answer is passed on rather than a 504', async () => {
    const s = await stack({ keys: 2 });
    s.fake.script({ kind: 'overloaded' }, { times: 1 });
    s.fake.script({ kind: 'hang' }, { times: 5 });
    const answer = await settleWithin(serviceCall(s, Date.now() + 500), 10_000);
    if (answer === 'still pending' || answer instanceof HttpProblem) throw new Error(`got ${String(answer)}`);
    expect(answer.kind).toBe('unary');
    expect(answer.status).toBe(503);
    expect(answer.kind === 'unary' && answer.body.toString('utf8')).toContain('overloaded');
    expect(s.fake.stats.requests).toBe(2);
  });
});

describe('forwarder: answers and accounting', () => {
  it('when every attempt was rate limited, Retry-After is the earliest rest, not the latest', async () => {
    const s = await stack({ keys: 2, env: { MAX_ATTEMPTS: '2' } });
    const [a, b] = s.gateway.pool.keys.map((k) => k.apiKey);
    s.fake.script({ kind: 'rate_limit', retryDelay: '10s' }, { apiKey: a });
    s.fake.script({ kind: 'rate_limit', retryDelay: '40s' }, { apiKey: b });
    const res = await generate(s);
    expect(res.status).toBe(429);
    expect(s.fake.stats.requests).toBe(2);
    const retry = Number(res.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(10);
    expect(await res.json()).toMatchObject({ error: { code: 429, status: 'RESOURCE_EXHAUSTED' } });
  });

  it('an exhausted pool behind an application route is a 429 problem with retry_after_seconds', async () => {
    const s = await stack({ keys: 1, env: { DEFAULT_RPM: '1', QUEUE_MAX_WAIT_MS: '0' } });
    const call = (prompt: string) =>
      fetch(`${s.url}/v1/generate`, {
        method: 'POST',
        headers: { ...json, 'x-goog-api-key': TEST_TOKEN },
        body: JSON.stringify({ prompt }),
      });
    expect((await call('first')).status).toBe(200);
    const refused = await call('second');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    const retry = Number(refused.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toMatchObject({ status: 429, retry_after_seconds: retry });
  });

  it('the access log counts every upstream attempt of a retried request', async () => {
    const lines: string[] = [];
    const s = await stack({ keys: 2, logLines: lines });
    s.fake.script({ kind: 'overloaded' }, { times: 1 });
    const res = await generate(s, { 'x-goog-api-key': TEST_TOKEN, 'x-request-id': 'retried-once' });
    expect(res.status).toBe(200);
    await vi.waitFor(() => {
      const line = lines
        .map((l) => JSON.parse(l))
        .find((l) => l.request_id === 'retried-once' && l.msg === 'request');
      expect(line).toMatchObject({ status: 200, attempts: 2 });
    });
  });

  it('upstream attempt metrics label a broken stream and a departed client apart', async () => {
    const s = await stack({ keys: 1, fake: { streamChunks: 5, chunkDelayMs: 100 } });
    const stream = (signal?: AbortSignal) =>
      fetch(`${s.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, {
        method: 'POST',
        headers: { ...json, 'x-goog-api-key': TEST_TOKEN },
        body: body('stream'),
        signal,
      });
    // Two streams break upstream, one client leaves: the counts tell the outcomes apart.
    s.fake.script({ kind: 'midstream_break' }, { method: 'streamGenerateContent', times: 2 });
    for (let i = 0; i < 2; i++) await (await stream()).text();

    const controller = new AbortController();
    const res = await stream(controller.signal);
    await res.body!.getReader().read();
    controller.abort();

    await vi.waitFor(async () => {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      const outcome = (o: string) => sample(text, 'gateway_upstream_requests_total', { outcome: o });
      expect(outcome('stream_broken')).toBe(2);
      expect(outcome('client_gone')).toBe(1);
    });
  });

  it.skipIf(!has('redis-server'))(
    'when the state store is down, the answer is a 503 with Retry-After and no key is used',
    async () => {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'gg-forwarder-redis-'));
      const redis: ChildProcess = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
        { stdio: 'ignore' },
      );
      cleanups.push(() => {
        redis.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      });
      const url = `redis://127.0.0.1:${port}`;
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      await vi.waitFor(
        async () => {
          probe.disconnect();
          await probe.connect();
          await probe.ping();
        },
        { timeout: 10_000, interval: 100 },
      );
      probe.disconnect();
      // closed: the store down is a 503 (local, the default, serves shares: redis-failover.test.ts).
      const s = await stack({ env: { REDIS_URL: url, STORE_FAILURE_MODE: 'closed' } });
      expect((await generate(s)).status).toBe(200);
      const exited = new Promise((r) => redis.once('exit', r));
      redis.kill('SIGKILL');
      await exited;
      const requests = s.fake.stats.requests;
      const res = await generate(s);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(await res.json()).toMatchObject({ error: { code: 503, status: 'UNAVAILABLE' } });
      expect(s.fake.stats.requests).toBe(requests);
    },
  );
});
