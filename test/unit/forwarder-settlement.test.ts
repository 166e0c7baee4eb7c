import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/errors/gateway-errors.ts';
import { toProblem } from '../../src/http/errors.ts';
import type { KeyPool, Lease } from '../../src/pool/key-pool.ts';
import type { Outcome } from '../../src/store/types.ts';
import { Forwarder, type StreamAnswer, type UpstreamCall } from '../../src/upstream/forwarder.ts';
import { ResponseScrubber } from '../../src/upstream/response-scrub.ts';
import { Cancellation } from '../../src/util/cancel.ts';

/**
 * The forwarder's side of lease settlement: a stream answer settles its lease exactly once, by
 * itself, however it ends; a lease whose client left before anything was sent is given back;
 * what goes to the client is scrubbed of secrets.
 */
const KEY = 'AIzaUnitTestPoolKey0123456789abcdefghij';
const gap = () => new Promise((r) => setTimeout(r, 25));

/** Handlers by path; each test sets what the upstream does. */
let route: (req: IncomingMessage, res: ServerResponse) => void;
let server: Server;
let baseUrl: string;
let closedEarly: boolean;
const agent = new Agent();

beforeAll(async () => {
  server = createServer((req, res) => {
    res.once('close', () => {
      if (!res.writableFinished) closedEarly = true;
    });
    req.resume();
    req.on('end', () => route(req, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

interface Pool {
  pool: KeyPool;
  reports: Outcome[];
  acquired: number;
}

/** A pool of one key that records every report (the forwarder needs only acquire and report). */
function onePool(onAcquire?: () => void): Pool {
  const p: Pool = { pool: undefined as unknown as KeyPool, reports: [], acquired: 0 };
  p.pool = {
    acquire: async (): Promise<Lease> => {
      p.acquired += 1;
      onAcquire?.();
      return {
        keyId: 'k1',
        apiKey: KEY,
        queuedMs: 0,
        reservation: {
          keyId: 'k1',
          project: 'p1',
          model: 'm',
          tokenSlot: 0,
          tokens: 5,
          probe: false,
          clean: true,
          atMs: 0,
          day: '2026-01-01',
        },
      };
    },
    report: async (_lease: Lease, outcome: Outcome) => {
      p.reports.push(outcome);
    },
    noteThrottled: async () => {},
  } as unknown as KeyPool;
  return p;
}

function forwarder(pool: KeyPool, secrets: string[] = [KEY]): Forwarder {
  return new Forwarder({
    baseUrl,
    agent,
    pool,
    maxAttempts: 1,
    attemptTimeoutMs: 5_000,
    scrubber: new ResponseScrubber(secrets),
  });
}

function streamCall(signal?: Cancellation): UpstreamCall {
  return {
    method: 'POST',
    path: '/v1beta/models/m:streamGenerateContent',
    search: '?alt=sse',
    body: '{}',
    model: 'm',
    estimatedTokens: 5,
    stream: true,
    signal,
    deadlineMs: Date.now() + 10_000,
  };
}

const event = (prompt: number, text: string) =>
  `data: {"candidates":[{"content":{"parts":[{"text":"${text}"}]}}],"usageMetadata":{"promptTokenCount": ${prompt}}}\r\n\r\n`;

async function readRest(answer: StreamAnswer): Promise<string> {
  let out = answer.first.toString();
  for (let r = await answer.rest.next(); !r.done; r = await answer.rest.next()) out += r.value.toString();
  return out;
}

beforeEach(() => {
  closedEarly = false;
});

describe('a stream answer settles its lease exactly once, by itself', () => {
  it('when it completes, with a promptTokenCount cut across chunks read whole', async () => {
    route = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const last = event(1234, 'b');
      const cut = last.indexOf('1234') + 2;
      res.write(event(1234, 'a'));
      await gap();
      res.write(last.slice(0, cut));
      await gap();
      res.end(last.slice(cut));
    };
    const p = onePool();
    const answer = (await forwarder(p.pool).forward(streamCall())) as StreamAnswer;
    expect(await readRest(answer)).toBe(event(1234, 'a') + event(1234, 'b'));
    answer.finish('complete');
    answer.finish('client_gone');
    answer.abort();
    expect(p.reports).toEqual([{ kind: 'success', actualTokens: 1234 }]);
  });

  it('when its client leaves before anything read it: neutral, with the prompt count it carried', async () => {
    route = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event(321, 'a'));
      // …and more later, which nobody will read.
    };
    const p = onePool();
    const cancellation = new Cancellation();
    const answer = (await forwarder(p.pool).forward(streamCall(cancellation))) as StreamAnswer;
    expect(p.reports).toEqual([]);
    cancellation.abort(new Error('client closed the connection'));
    expect(p.reports).toEqual([{ kind: 'neutral', actualTokens: 321 }]);
    // The upstream transfer stops too.
    await expect.poll(() => closedEarly).toBe(true);
    answer.finish('broken');
    expect(p.reports).toHaveLength(1);
  });

  it('when the upstream breaks: a failure, with the prompt count it carried', async () => {
    route = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event(77, 'a'));
      await gap();
      res.socket?.destroy();
    };
    const p = onePool();
    const answer = (await forwarder(p.pool).forward(streamCall(new Cancellation()))) as StreamAnswer;
    await expect(readRest(answer)).rejects.toThrow();
    // Settled by the failed read itself, before any reader says how it ended.
    expect(p.reports).toEqual([{ kind: 'failure', reason: 'STREAM_BROKEN', actualTokens: 77 }]);
    answer.finish('broken');
    expect(p.reports).toHaveLength(1);
  });

  it('passes chunks on scrubbed, a key cut across two chunks included', async () => {
    route = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const e = event(9, `the key is ${KEY}`);
      const cut = e.indexOf(KEY) + 10;
      res.write(e.slice(0, cut));
      await gap();
      res.end(e.slice(cut));
    };
    const p = onePool();
    const answer = (await forwarder(p.pool).forward(streamCall())) as StreamAnswer;
    expect(await readRest(answer)).toBe(event(9, 'the key is [REDACTED]'));
    expect(p.reports).toEqual([{ kind: 'success', actualTokens: 9 }]);
  });
});

describe('unary answers and leases never used', () => {
  it('scrubs a unary body and an error body, and counts tokens from the bytes as they came', async () => {
    route = (req, res) => {
      if (req.url?.includes('fail')) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ error: { code: 400, message: `bad key ${KEY}`, status: 'INVALID_ARGUMENT' } }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"text":"${KEY}","usageMetadata":{"promptTokenCount":12}}`);
    };
    const p = onePool();
    const call = { ...streamCall(), stream: false, path: '/v1beta/models/m:generateContent', search: '' };
    const ok = await forwarder(p.pool).forward(call);
    expect(ok.kind === 'unary' && ok.body.toString()).toBe(
      '{"text":"[REDACTED]","usageMetadata":{"promptTokenCount":12}}',
    );
    const bad = await forwarder(p.pool).forward({ ...call, path: '/v1beta/models/m:fail' });
    expect(bad.status).toBe(400);
    expect(bad.kind === 'unary' && JSON.parse(bad.body.toString()).error.message).toBe('bad key [REDACTED]');
  });

  it('gives the lease back (unused) and answers 499 when the client left while its key was reserved', async () => {
    let requests = 0;
    route = (_req, res) => {
      requests += 1;
      res.end('{}');
    };
    const cancellation = new Cancellation();
    // The client leaves while the pool's acquire is under way.
    const p = onePool(() => cancellation.abort(new Error('client closed the connection')));
    const call = { ...streamCall(cancellation), stream: false, search: '' };
    const err = toProblem(
      (await forwarder(p.pool)
        .forward(call)
        .catch((e: unknown) => e)) as GatewayError,
    );
    expect(err.status).toBe(499);
    expect(p.reports).toEqual([{ kind: 'unused' }]);
    expect(requests).toBe(0);
  });
});
