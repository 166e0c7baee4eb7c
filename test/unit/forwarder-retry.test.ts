import { Agent } from 'undici';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { HttpProblem } from '../../src/http/problem.ts';
import { KeyPool } from '../../src/pool/key-pool.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import {
  Forwarder,
  type StreamAnswer,
  type UnaryAnswer,
  type UpstreamAnswer,
  type UpstreamCall,
} from '../../src/upstream/forwarder.ts';
import { keyConfig } from '../helpers/keys.ts';
import {
  badRequest,
  emptyStream,
  hang,
  internalError,
  invalidKey,
  locationRefused,
  ok,
  overloaded,
  rateLimited,
  reset,
  type ScriptedUpstream,
  sseEvent,
  startScriptedUpstream,
  stream,
  streamCutAfterFirstEvent,
  streamCutBeforeFirstByte,
} from '../helpers/scripted-upstream.ts';

/**
 * The forwarder's retry rule, on a scripted upstream and a real key pool over the memory store:
 * which upstream answers are tried again on another key, how many attempts a call gets, what
 * the deadline cuts, and that a stream is retried only until its first byte.
 */
const MODEL = 'gemini-2.5-flash';
const agent = new Agent();
let upstream: ScriptedUpstream;

beforeEach(async () => {
  upstream = await startScriptedUpstream();
});
afterEach(async () => {
  await upstream.close();
});
afterAll(async () => {
  await agent.close();
});

/** A pool of `n` keys (each its own project), refusing at once when no key is free. */
async function poolOf(n: number) {
  const store = new MemoryStore();
  const pool = new KeyPool(store, {
    queueMaxWaitMs: 0,
    circuit: { failureThreshold: 5, cooldownMs: 30_000 },
  });
  await pool.setKeys(Array.from({ length: n }, (_, i) => keyConfig(`k${i + 1}`)));
  const state = async (keyId: string) => {
    const now = Date.now();
    return (await store.keyStates(now, pool.calendarAt(now).day)).find((s) => s.id === keyId)!;
  };
  return { pool, state };
}

function forwarder(pool: KeyPool, opts: { maxAttempts?: number; attemptTimeoutMs?: number } = {}) {
  let egressRefusals = 0;
  const f = new Forwarder({
    baseUrl: upstream.url,
    agent,
    pool,
    maxAttempts: opts.maxAttempts ?? 4,
    attemptTimeoutMs: opts.attemptTimeoutMs ?? 5_000,
    onEgressRefused: () => {
      egressRefusals += 1;
    },
  });
  return { f, egressRefusals: () => egressRefusals };
}

function unaryCall(over: Partial<UpstreamCall> = {}): UpstreamCall {
  return {
    method: 'POST',
    path: `/v1beta/models/${MODEL}:generateContent`,
    search: '',
    body: '{"contents":[{"parts":[{"text":"hi"}]}]}',
    model: MODEL,
    estimatedTokens: 5,
    stream: false,
    deadlineMs: Date.now() + 10_000,
    ...over,
  };
}

const streamCall = (over: Partial<UpstreamCall> = {}) =>
  unaryCall({
    path: `/v1beta/models/${MODEL}:streamGenerateContent`,
    search: '?alt=sse',
    stream: true,
    ...over,
  });

function unary(answer: UpstreamAnswer): UnaryAnswer {
  expect(answer.kind).toBe('unary');
  return answer as UnaryAnswer;
}

/** The problem a failed call is answered with. */
async function refusal(p: Promise<UpstreamAnswer>): Promise<HttpProblem> {
  const err = await p.then(
    (a) => new Error(`answered ${a.status}`),
    (e: unknown) => e,
  );
  return toProblem(err as GatewayError);
}

async function readStream(answer: StreamAnswer): Promise<string> {
  let out = answer.first.toString();
  for (let r = await answer.rest.next(); !r.done; r = await answer.rest.next()) out += r.value.toString();
  return out;
}

/** The distinct keys the upstream saw, in order. */
const keysSeen = () => [...new Set(upstream.seen.map((r) => r.apiKey))];

describe('which answers are retried on another key', () => {
  it.each([
    ['503 overloaded', overloaded],
    ['500 internal error', internalError],
    ['429 quota', () => rateLimited('30s')],
    ['400 invalid key', invalidKey],
    ['a connection cut before the answer', reset],
  ])('%s: retried on another key, whose answer is passed on', async (_name, reply) => {
    const { pool } = await poolOf(2);
    upstream.script(reply(), ok('second key'));
    const answer = unary(await forwarder(pool).f.forward(unaryCall()));
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toContain('second key');
    expect(answer.attempts).toBe(2);
    expect(upstream.seen).toHaveLength(2);
    expect(keysSeen()).toHaveLength(2);
    expect(answer.keyId).toBe(pool.keys.find((k) => k.apiKey === upstream.seen[1]!.apiKey)!.id);
  });

  it('the request’s own fault (400) is passed on as Google said it, without a retry', async () => {
    const { pool } = await poolOf(2);
    upstream.script(badRequest());
    const answer = unary(await forwarder(pool).f.forward(unaryCall()));
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body.toString()).error.status).toBe('INVALID_ARGUMENT');
    expect(answer.attempts).toBe(1);
    expect(upstream.seen).toHaveLength(1);
  });

  it('a refused egress location is not retried: no other key would be answered otherwise', async () => {
    const { pool } = await poolOf(3);
    upstream.script(locationRefused());
    const { f, egressRefusals } = forwarder(pool);
    const problem = await refusal(f.forward(unaryCall()));
    expect(problem.status).toBe(400);
    expect(problem.googleStatus).toBe('FAILED_PRECONDITION');
    expect(upstream.seen).toHaveLength(1);
    expect(egressRefusals()).toBe(1);
  });

  it('settles the key that failed: an invalid key is disabled, a 429 rests, an overload counts nothing against it', async () => {
    const { pool, state } = await poolOf(4);
    upstream.script(invalidKey(), rateLimited('30s'), overloaded(), ok());
    const answer = unary(await forwarder(pool).f.forward(unaryCall()));
    expect(answer.status).toBe(200);
    const idOf = (i: number) => pool.keys.find((k) => k.apiKey === upstream.seen[i]!.apiKey)!.id;
    expect(await state(idOf(0))).toMatchObject({ enabled: false, disabledReason: 'API_KEY_INVALID' });
    expect((await state(idOf(1))).restUntilMs).toBeGreaterThan(Date.now() + 20_000);
    expect(await state(idOf(2))).toMatchObject({ enabled: true, restUntilMs: null, consecutiveFailures: 0 });
  });
});

describe('the attempt limit', () => {
  it('stops at maxAttempts and passes on the last overloaded answer', async () => {
    const { pool } = await poolOf(5);
    upstream.script(overloaded(), overloaded(), overloaded(), ok('never asked'));
    const answer = unary(await forwarder(pool, { maxAttempts: 3 }).f.forward(unaryCall()));
    expect(answer.status).toBe(503);
    expect(upstream.seen).toHaveLength(3);
    expect(keysSeen()).toHaveLength(3);
  });

  it('tries each key once: with fewer keys than attempts, the last overloaded answer is passed on', async () => {
    const { pool } = await poolOf(2);
    upstream.script(overloaded(), overloaded(), ok('never asked'));
    const answer = unary(await forwarder(pool, { maxAttempts: 4 }).f.forward(unaryCall()));
    expect(answer.status).toBe(503);
    expect(upstream.seen).toHaveLength(2);
    expect(keysSeen()).toHaveLength(2);
    // The access log sees both attempts (the answer carries them, not 0).
    expect(answer.attempts).toBe(2);
  });

  it('when every key was rate limited, a 429 whose Retry-After is the earliest rest', async () => {
    const { pool } = await poolOf(2);
    upstream.script(rateLimited('40s'), rateLimited('10s'));
    const problem = await refusal(forwarder(pool).f.forward(unaryCall()));
    expect(problem.status).toBe(429);
    const retryAfter = Number(problem.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(9);
    expect(retryAfter).toBeLessThanOrEqual(10);
    expect(upstream.seen).toHaveLength(2);
  });

  it('when no attempt got an answer, a 502', async () => {
    const { pool } = await poolOf(2);
    upstream.script(reset(), reset());
    const problem = await refusal(forwarder(pool, { maxAttempts: 2 }).f.forward(unaryCall()));
    expect(problem.status).toBe(502);
    expect(upstream.seen).toHaveLength(2);
  });
});

describe('the deadline', () => {
  it('a call whose deadline has passed sends nothing: a 504', async () => {
    const { pool } = await poolOf(1);
    const problem = await refusal(forwarder(pool).f.forward(unaryCall({ deadlineMs: Date.now() - 1 })));
    expect(problem.status).toBe(504);
    expect(upstream.seen).toHaveLength(0);
  });

  it('cuts an attempt at the deadline, even when the attempt timeout is longer, and tries no other key', async () => {
    const { pool } = await poolOf(2);
    upstream.script(hang(), ok('too late'));
    const started = Date.now();
    const problem = await refusal(
      forwarder(pool, { attemptTimeoutMs: 60_000 }).f.forward(unaryCall({ deadlineMs: started + 300 })),
    );
    expect(problem.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(upstream.seen).toHaveLength(1);
  });

  it('at the deadline, an earlier overloaded answer is passed on rather than a 504', async () => {
    const { pool } = await poolOf(2);
    upstream.script(overloaded(), hang());
    const answer = unary(
      await forwarder(pool, { attemptTimeoutMs: 60_000 }).f.forward(
        unaryCall({ deadlineMs: Date.now() + 400 }),
      ),
    );
    expect(answer.status).toBe(503);
    expect(upstream.seen).toHaveLength(2);
  });
});

describe('streams: retried only until their first byte', () => {
  it.each([
    ['a connection cut before the first byte', streamCutBeforeFirstByte],
    ['a stream that ends empty', emptyStream],
    ['an error status (read whole, like a unary answer)', overloaded],
  ])('%s: retried on another key', async (_name, reply) => {
    const { pool } = await poolOf(2);
    upstream.script(reply(), stream('a', 'b'));
    const answer = await forwarder(pool).f.forward(streamCall());
    expect(answer.kind).toBe('stream');
    const s = answer as StreamAnswer;
    expect(await readStream(s)).toBe(sseEvent('a') + sseEvent('b'));
    s.finish('complete');
    expect(s.attempts).toBe(2);
    expect(keysSeen()).toHaveLength(2);
  });

  it('after the first byte a broken stream is not retried: the client gets the break', async () => {
    const { pool } = await poolOf(2);
    upstream.script(streamCutAfterFirstEvent('a'), stream('never asked'));
    const answer = await forwarder(pool).f.forward(streamCall());
    expect(answer.kind).toBe('stream');
    const s = answer as StreamAnswer;
    expect(s.attempts).toBe(1);
    expect(s.first.toString()).toBe(sseEvent('a'));
    await expect(readStream(s)).rejects.toThrow();
    s.finish('broken');
    expect(upstream.seen).toHaveLength(1);
  });
});
