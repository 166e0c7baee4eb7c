import type { Agent, Dispatcher } from 'undici';
import { HttpProblem } from '../http/problem.ts';
import { classifyUpstream, type Verdict } from '../pool/classify.ts';
import { bodyPromptTokenCount, lastPromptTokenCount } from '../pool/estimate.ts';
import { type KeyPool, type Lease, PoolExhaustedError, QueueAbortedError } from '../pool/key-pool.ts';
import type { Outcome } from '../store/types.ts';
import { type Abortable, signalOf } from '../util/cancel.ts';
import { requestWhole, type TransferError, type WholeAnswer } from './whole.ts';

export interface UpstreamCall {
  method: 'GET' | 'POST';
  /** Upstream path, e.g. /v1beta/models/gemini-2.5-flash:generateContent */
  path: string;
  /** Query string to forward ('' or '?alt=sse'); never contains a key. */
  search: string;
  body?: Buffer | string;
  /** Model the budget is for; '' = any key (listing models). */
  model: string;
  estimatedTokens: number;
  stream: boolean;
  /** Fires when the client goes away or the request's deadline passes. */
  signal?: Abortable;
  /** Absolute epoch-ms deadline for the whole call, retries included. */
  deadlineMs: number;
}

interface Answer {
  status: number;
  contentType: string;
  keyId: string | null;
  attempts: number;
  /** Time spent waiting on Google, all attempts together. */
  upstreamMs: number;
  queuedMs: number;
}
export interface UnaryAnswer extends Answer {
  kind: 'unary';
  body: Buffer;
}
export interface StreamAnswer extends Answer {
  kind: 'stream';
  /** The first chunk, already received: once it goes out, the call is no longer retried. */
  first: Buffer;
  rest: AsyncIterator<Buffer>;
  /**
   * Must be called exactly once: the stream completed, broke upstream (counts against the key),
   * or the client went away (neither the key's fault nor a success).
   */
  finish(end: StreamEnd): void;
  /** Stops the upstream transfer (client went away). */
  abort(): void;
}
export type UpstreamAnswer = UnaryAnswer | StreamAnswer;
export type StreamEnd = 'complete' | 'broken' | 'client_gone';

/** Receives one event per upstream attempt and per key reservation (metrics, logs). */
export interface AttemptObserver {
  attempt(keyId: string, model: string, outcome: string, durationMs: number): void;
  /** How long a reservation waited in line for its key. */
  observeQueueWait(ms: number): void;
}

export interface ForwarderOptions {
  baseUrl: string;
  agent: Agent;
  pool: KeyPool;
  maxAttempts: number;
  attemptTimeoutMs: number;
  now?: () => number;
  observer?: AttemptObserver;
}

const JSON_TYPE = 'application/json; charset=UTF-8';
/** An error event in a stream: `"error": {` as a key (inside model text the quotes are escaped). */
const IN_BAND_ERROR = /"error"\s*:\s*\{/;

/**
 * Sends a call upstream through the key pool: reserve a key, send with that key in the
 * x-goog-api-key header, classify the answer, settle the key, and retry on another key while
 * attempts and the deadline allow. Streams are retried only until their first byte.
 */
export class Forwarder {
  private readonly o: ForwarderOptions;
  private readonly now: () => number;
  private readonly origin: string;
  private readonly basePath: string;

  constructor(options: ForwarderOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    const base = new URL(options.baseUrl);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/$/, '');
  }

  async forward(call: UpstreamCall): Promise<UpstreamAnswer> {
    const tried: string[] = [];
    let upstreamMs = 0;
    let queuedMs = 0;
    let lastRetryable: UnaryAnswer | null = null;
    let restUntil: number | null = null;
    let lastFailure = 'upstream unreachable';

    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      if (this.now() >= call.deadlineMs) break;
      let lease: Lease;
      try {
        lease = await this.o.pool.acquire(call.model, call.estimatedTokens, tried, call.signal);
      } catch (err) {
        if (err instanceof PoolExhaustedError) {
          // No untried key left: answer with what the tried ones said (an overload, a rest).
          if (err.retryAtMs === null && (lastRetryable || restUntil !== null)) break;
          throw exhausted(err.retryAtMs ?? restUntil, err.globalBackoff, call.model, this.now());
        }
        if (err instanceof QueueAbortedError) throw new HttpProblem(499, 'client closed the request');
        // The store (Redis) failed: no key can be chosen safely, so none is used.
        throw new HttpProblem(503, 'the gateway cannot reach its state store; retry shortly', {
          headers: { 'retry-after': '1' },
          googleStatus: 'UNAVAILABLE',
        });
      }
      this.o.observer?.observeQueueWait(lease.queuedMs);
      if (this.now() >= call.deadlineMs) {
        // It waited in line past its deadline (a caller without a request signal): not sent.
        void this.o.pool.report(lease, { kind: 'unused' });
        break;
      }
      queuedMs += lease.queuedMs;
      tried.push(lease.keyId);
      const started = this.now();
      const result = await this.attempt(call, lease);
      const elapsed = this.now() - started;
      upstreamMs += elapsed;

      if (result.kind === 'answer') {
        const a = result.answer;
        a.attempts = attempt;
        a.upstreamMs = upstreamMs;
        a.queuedMs = queuedMs;
        if (a.kind === 'stream') {
          const inner = a.finish;
          a.finish = (end) => {
            inner(end);
            const outcome =
              end === 'complete' ? 'success' : end === 'broken' ? 'stream_broken' : 'client_gone';
            this.o.observer?.attempt(lease.keyId, call.model, outcome, this.now() - started);
          };
        } else {
          this.o.observer?.attempt(lease.keyId, call.model, result.outcome, elapsed);
        }
        return a;
      }
      this.o.observer?.attempt(lease.keyId, call.model, result.outcome, elapsed);
      if (result.kind === 'client_gone') throw new HttpProblem(499, 'client closed the request');
      lastFailure = result.outcome;
      if (result.restUntil !== undefined)
        restUntil = Math.min(restUntil ?? Number.POSITIVE_INFINITY, result.restUntil);
      if (result.passThrough) lastRetryable = result.passThrough;
    }

    if (this.now() >= call.deadlineMs && !lastRetryable) {
      throw new HttpProblem(504, 'the upstream did not answer within the request deadline', {
        googleStatus: 'DEADLINE_EXCEEDED',
      });
    }
    if (lastRetryable) return lastRetryable;
    if (restUntil !== null) throw exhausted(restUntil, false, call.model, this.now());
    throw new HttpProblem(502, `no key could complete the request (${lastFailure})`, {
      googleStatus: 'UNAVAILABLE',
    });
  }

  private async attempt(
    call: UpstreamCall,
    lease: Lease,
  ): Promise<
    | { kind: 'answer'; answer: UpstreamAnswer; outcome: string }
    | { kind: 'retry'; outcome: string; restUntil?: number; passThrough?: UnaryAnswer }
    | { kind: 'client_gone'; outcome: string }
  > {
    const pool = this.o.pool;
    // The attempt's time limit is undici's own: the answer's headers within the attempt budget
    // (capped by the request's deadline), then no silence longer than UPSTREAM_TIMEOUT_MS
    // between body chunks. The request's signal (client gone, deadline) aborts the call.
    const budget = Math.max(1, Math.min(this.o.attemptTimeoutMs, call.deadlineMs - this.now()));
    const options: Dispatcher.RequestOptions = {
      origin: this.origin,
      path: `${this.basePath}${call.path}${call.search}`,
      method: call.method,
      headers:
        call.body !== undefined
          ? { 'x-goog-api-key': lease.apiKey, 'content-type': 'application/json' }
          : { 'x-goog-api-key': lease.apiKey },
      body: call.body,
      headersTimeout: budget,
      bodyTimeout: this.o.attemptTimeoutMs,
    };
    let whole: WholeAnswer;
    if (call.stream) {
      let res: Dispatcher.ResponseData;
      try {
        res = await this.o.agent.request({ ...options, signal: signalOf(call.signal) });
      } catch (err) {
        return this.failedTransfer(call, lease, err, 'NETWORK_ERROR');
      }
      const contentType = String(res.headers['content-type'] ?? JSON_TYPE);
      if (res.statusCode >= 200 && res.statusCode < 300)
        return this.streamAnswer(call, lease, res, contentType);
      // An error answer to a stream request is read whole, like any other.
      try {
        whole = { statusCode: res.statusCode, contentType, body: Buffer.from(await res.body.arrayBuffer()) };
      } catch (err) {
        return this.failedTransfer(call, lease, err, 'BODY_ERROR');
      }
    } else {
      try {
        whole = await requestWhole(this.o.agent, options, call.signal);
      } catch (err) {
        const transfer = err as TransferError;
        return this.failedTransfer(
          call,
          lease,
          transfer.cause,
          transfer.afterHeaders ? 'BODY_ERROR' : 'NETWORK_ERROR',
        );
      }
    }

    const { statusCode, body } = whole;
    const answer: UnaryAnswer = {
      kind: 'unary',
      status: statusCode,
      contentType: whole.contentType ?? JSON_TYPE,
      body,
      keyId: lease.keyId,
      attempts: 0,
      upstreamMs: 0,
      queuedMs: 0,
    };
    if (statusCode >= 200 && statusCode < 300) {
      void pool.report(lease, { kind: 'success', actualTokens: bodyPromptTokenCount(body) });
      return { kind: 'answer', answer, outcome: 'success' };
    }
    const verdict = classifyUpstream(statusCode, safeJson(body), this.now());
    return this.settleFailure(lease, verdict, answer);
  }

  /** An attempt that broke before its answer was whole: the client left, it timed out, or the transfer failed. */
  private failedTransfer(
    call: UpstreamCall,
    lease: Lease,
    err: unknown,
    otherwise: string,
  ): { kind: 'retry' | 'client_gone'; outcome: string } {
    if (call.signal?.aborted) {
      void this.o.pool.report(lease, { kind: 'neutral' });
      return { kind: 'client_gone', outcome: 'client_gone' };
    }
    const code = (err as { code?: unknown } | null)?.code;
    const reason =
      code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'TIMEOUT' : otherwise;
    void this.o.pool.report(lease, { kind: 'failure', reason });
    return { kind: 'retry', outcome: reason.toLowerCase() };
  }

  private settleFailure(
    lease: Lease,
    verdict: Verdict,
    answer: UnaryAnswer,
  ):
    | { kind: 'answer'; answer: UpstreamAnswer; outcome: string }
    | { kind: 'retry'; outcome: string; restUntil?: number; passThrough?: UnaryAnswer } {
    const pool = this.o.pool;
    switch (verdict.kind) {
      case 'success':
      case 'client_error':
        // The request's own fault: the key is fine; Google's answer goes back untouched.
        void pool.report(lease, { kind: 'success' });
        return { kind: 'answer', answer, outcome: 'client_error' };
      case 'rest':
        void pool.report(lease, { kind: 'rest', untilMs: verdict.untilMs, reason: verdict.reason });
        return {
          kind: 'retry',
          outcome: verdict.daily ? 'rate_limited_daily' : 'rate_limited',
          restUntil: verdict.untilMs,
        };
      case 'throttled':
        void pool.report(lease, { kind: 'rest', untilMs: verdict.untilMs, reason: verdict.reason });
        void pool.noteThrottled(lease.keyId);
        return { kind: 'retry', outcome: 'throttled', restUntil: verdict.untilMs };
      case 'disable':
        // The body may name the key (e.g. "Consumer 'api_key:…' has been suspended"): never passed on.
        void pool.report(lease, { kind: 'disable', reason: verdict.reason });
        return { kind: 'retry', outcome: 'key_disabled' };
      case 'retry':
        void pool.report(
          lease,
          verdict.circuit
            ? { kind: 'failure', reason: verdict.reason }
            : { kind: 'neutral', reason: verdict.reason },
        );
        return {
          kind: 'retry',
          outcome: verdict.circuit ? 'server_error' : 'overloaded',
          passThrough: answer,
        };
    }
  }

  /** Waits for the first body chunk before answering, so a stream that fails early is retried. */
  private async streamAnswer(
    call: UpstreamCall,
    lease: Lease,
    res: Dispatcher.ResponseData,
    contentType: string,
  ): Promise<
    | { kind: 'answer'; answer: StreamAnswer; outcome: string }
    | { kind: 'retry' | 'client_gone'; outcome: string }
  > {
    const pool = this.o.pool;
    const iterator = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    let first: IteratorResult<Buffer>;
    try {
      first = await iterator.next();
    } catch (err) {
      return this.failedTransfer(call, lease, err, 'STREAM_ERROR');
    }
    if (first.done || first.value.length === 0) {
      void pool.report(lease, { kind: 'failure', reason: 'EMPTY_STREAM' });
      return { kind: 'retry', outcome: 'empty_stream' };
    }
    // From here on the stream belongs to the client (bodyTimeout still ends a stalled stream).
    const firstText = first.value.toString('utf8');
    let promptTokens = lastPromptTokenCount(firstText);
    // Google reports a failure inside a started stream as an {"error": ...} event.
    let errorEvent = IN_BAND_ERROR.test(firstText);
    let finished = false;
    const rest: AsyncIterator<Buffer> = {
      next: async () => {
        const r = await iterator.next();
        if (!r.done) {
          const text = r.value.toString('utf8');
          promptTokens = lastPromptTokenCount(text) ?? promptTokens;
          if (!errorEvent && IN_BAND_ERROR.test(text)) errorEvent = true;
        }
        return r;
      },
    };
    const answer: StreamAnswer = {
      kind: 'stream',
      status: 200,
      contentType,
      first: first.value,
      rest,
      keyId: lease.keyId,
      attempts: 0,
      upstreamMs: 0,
      queuedMs: 0,
      finish: (end) => {
        if (finished) return;
        finished = true;
        void pool.report(lease, streamOutcome(end, errorEvent, promptTokens));
      },
      abort: () => res.body.destroy(),
    };
    return { kind: 'answer', answer, outcome: 'success' };
  }
}

/** How a stream's end settles its key. */
function streamOutcome(end: StreamEnd, errorEvent: boolean, promptTokens: number | undefined): Outcome {
  if (end === 'client_gone') return { kind: 'neutral' };
  if (end === 'broken') return { kind: 'failure', reason: 'STREAM_BROKEN', actualTokens: promptTokens };
  if (errorEvent) return { kind: 'failure', reason: 'STREAM_ERROR_EVENT', actualTokens: promptTokens };
  return { kind: 'success', actualTokens: promptTokens };
}

function exhausted(
  retryAtMs: number | null,
  globalBackoff: boolean,
  model: string,
  nowMs: number,
): HttpProblem {
  if (retryAtMs === null) {
    return new HttpProblem(503, `no enabled key can serve model "${model || 'any'}"`, {
      googleStatus: 'UNAVAILABLE',
    });
  }
  const seconds = Math.max(1, Math.ceil((retryAtMs - nowMs) / 1000));
  return new HttpProblem(
    429,
    globalBackoff
      ? `upstream is throttling the gateway; retry in ${seconds}s`
      : `every key is at its limit; retry in ${seconds}s`,
    {
      headers: { 'retry-after': String(seconds) },
      googleStatus: 'RESOURCE_EXHAUSTED',
      extra: { retry_after_seconds: seconds },
    },
  );
}

function safeJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}
