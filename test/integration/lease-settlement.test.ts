import type { FastifyRequest } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import type { AcquireResult } from '../../src/store/types.ts';
import { type Stack, stackPerTest } from '../helpers/stack.ts';

/**
 * Every key lease settles exactly once, with the best token count known: a request whose
 * client left before anything was sent gives its reservation back; a stream settles however it
 * ends, also when its client left before the first read; a stream's usage is read across chunk
 * boundaries, and an aborted stream settles with the prompt count its chunks carried.
 */
const start = stackPerTest({ keys: 1 });
const MODEL = 'gemini-2.5-flash-lite';

async function keyState(s: Stack) {
  const now = Date.now();
  const states = await s.gateway.store.keyStates(now, s.gateway.pool.calendarAt(now).day);
  return states.find((k) => k.id === s.gateway.pool.keys[0]!.id)!;
}

function call(s: Stack, method: string, text: string, signal?: AbortSignal): Promise<Response> {
  const search = method === 'streamGenerateContent' ? '?alt=sse' : '';
  return fetch(`${s.url}/v1beta/models/${MODEL}:${method}${search}`, {
    method: 'POST',
    headers: { 'x-goog-api-key': s.token, 'content-type': 'application/json' },
    body: JSON.stringify({ contents: [{ parts: [{ text }] }] }),
    signal,
  });
}

/** The usageMetadata.promptTokenCount of the last SSE event in `text`. */
function lastPromptCount(text: string): number {
  const events = text.split('\r\n\r\n').filter((e) => e.startsWith('data: '));
  return JSON.parse(events.at(-1)!.slice(6)).usageMetadata.promptTokenCount;
}

/** Resolves when the request reaches the gateway's onSend (headers not sent), which then waits for its client to leave. */
function holdStreamsAtSend(): { reached: Promise<void>; install: (app: Stack['gateway']['app']) => void } {
  let reached!: () => void;
  const promise = new Promise<void>((r) => {
    reached = r;
  });
  return {
    reached: promise,
    install: (app) =>
      app.addHook('onSend', async (request, reply, payload) => {
        if (!request.url.includes(':streamGenerateContent')) return payload;
        reached();
        if (!reply.raw.destroyed) await new Promise((r) => reply.raw.once('close', r));
        return payload;
      }),
  };
}

describe('a client that leaves before anything was sent', () => {
  it('gives the reservation back when it leaves while its key is being reserved', async () => {
    let request: FastifyRequest | undefined;
    const s = await start({
      routes: (app) =>
        app.addHook('onRequest', async (req) => {
          request = req;
        }),
    });
    // The store's acquire reserves the key, then (like a slow Redis round trip) answers only
    // once the client has gone.
    const store = s.gateway.store;
    const acquire = store.acquire.bind(store);
    let reserved!: () => void;
    const inFlight = new Promise<void>((r) => {
      reserved = r;
    });
    store.acquire = async (req): Promise<AcquireResult> => {
      const result = await acquire(req);
      reserved();
      await new Promise<void>((r) => request!.cancellation!.onAbort(() => r()));
      return result;
    };

    const controller = new AbortController();
    const pending = call(s, 'generateContent', 'hello', controller.signal).catch(() => undefined);
    await inFlight;
    expect((await keyState(s)).requestsThisMinute).toBe(1);
    controller.abort();
    await pending;

    await vi.waitFor(async () => expect((await keyState(s)).requestsThisMinute).toBe(0));
    expect((await keyState(s)).requestsToday).toBe(0);
    expect(s.fake.stats.requests).toBe(0);
  });
});

describe('a stream settles however it ends', () => {
  it('releases a half-open key’s probe when its client leaves before the first read', async () => {
    const hold = holdStreamsAtSend();
    const s = await start({
      env: {
        CIRCUIT_FAILURE_THRESHOLD: '1',
        CIRCUIT_COOLDOWN_MS: '50',
        MAX_ATTEMPTS: '1',
        QUEUE_MAX_WAIT_MS: '0',
      },
      routes: hold.install,
    });
    // One failure opens the key's circuit; after the cooldown it is half-open: one probe at a time.
    s.fake.script({ kind: 'internal' }, { method: ':generateContent' });
    expect((await call(s, 'generateContent', 'fail')).status).toBeGreaterThanOrEqual(500);
    await vi.waitFor(async () => expect((await keyState(s)).circuit).toBe('half_open'));

    // The probe: a stream whose client leaves after the gateway has the first chunk, before the
    // body is ever read.
    const controller = new AbortController();
    const pending = call(s, 'streamGenerateContent', 'probe', controller.signal).catch(() => undefined);
    await hold.reached;
    controller.abort();
    await pending;

    // The probe lease is released at once (not after its 30 s lease): the key can be reserved.
    const pool = s.gateway.pool;
    await vi.waitFor(async () => {
      const lease = await pool.acquire(MODEL, 1, []);
      await pool.report(lease, { kind: 'unused' });
    });
    // And a request gets it, which closes the circuit.
    expect((await call(s, 'generateContent', 'after')).status).toBe(200);
    expect((await keyState(s)).circuit).toBe('closed');
  });

  it('settles a promptTokenCount cut across two chunks to the whole number', async () => {
    const s = await start({ fake: { streamChunks: 3 } });
    s.fake.script({ kind: 'split_usage' }, { method: 'streamGenerateContent' });
    // About 100 tokens: the count has digits to cut.
    const res = await call(s, 'streamGenerateContent', 'word '.repeat(80));
    const text = await res.text();
    expect(res.status).toBe(200);
    const billed = lastPromptCount(text);
    expect(billed).toBeGreaterThanOrEqual(10);
    await vi.waitFor(async () => expect((await keyState(s)).tokensThisMinute).toBe(billed));
  });

  it('settles a stream its client left mid-way with the prompt count it carried, not the estimate', async () => {
    // Google bills three times the gateway's estimate; the chunks come slowly.
    const s = await start({ fake: { textTokenRatio: 3, chunkDelayMs: 300, streamChunks: 5 } });
    const controller = new AbortController();
    const res = await call(s, 'streamGenerateContent', 'word '.repeat(80), controller.signal);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const billed = lastPromptCount(first);
    const estimated = (await keyState(s)).tokensThisMinute;
    expect(billed).toBeGreaterThan(estimated);
    controller.abort();

    await vi.waitFor(async () => expect((await keyState(s)).tokensThisMinute).toBe(billed));
    // Neither the key's fault nor a success.
    expect((await keyState(s)).consecutiveFailures).toBe(0);
  });
});
