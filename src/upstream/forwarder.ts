import type { Agent, Dispatcher } from 'undici';
import {
  ClientGone,
  DeadlineExceeded,
  EgressRefused,
  type GatewayError,
  PoolExhausted,
  StoreUnavailable,
  Unavailable,
  UpstreamUnreachable,
} from '../errors/gateway-errors.ts';
import { classifyUpstream, type Verdict } from '../pool/classify.ts';
import { bodyPromptTokenCount, StreamUsageReader } from '../pool/estimate.ts';
import { type KeyPool, type Lease, PoolExhaustedError, QueueAbortedError } from '../pool/key-pool.ts';
import type { Outcome, Pin } from '../store/types.ts';
import { StreamUsageMeter } from '../usage/read.ts';
import type { UsageObserver } from '../usage/recorder.ts';
import { type Abortable, onAbort, signalOf } from '../util/cancel.ts';
import { ResponseScrubber } from './response-scrub.ts';
import { requestWhole, type TransferError, type WholeAnswer } from './whole.ts';

export interface UpstreamCall {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
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
  /** Only keys of this project (a request that uses its resources), or only this key. */
  pin?: Pin;
  /**
   * Models to try, in order, when the pool cannot serve `model` within the wait (MODEL_FALLBACKS,
   * opt-in per request). The path names the model; it is rewritten for each.
   */
  fallbacks?: readonly string[];
  /** The gateway client the call is made for (usage accounting per client); never sent upstream. */
  client?: string;
}

interface Answer {
  /** The model that served (differs from the call's when a fallback served: x-gateway-model). */
  model: string;
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
/**
 * A started stream. Its lease settles exactly once, by itself: when the upstream ends
 * (complete), when it breaks (broken) or when the request's signal fires (client gone), also if
 * nobody ever reads it. Chunks come scrubbed of secrets (see ResponseScrubber).
 */
export interface StreamAnswer extends Answer {
  kind: 'stream';
  /** The first chunk, already received: once it goes out, the call is no longer retried. */
  first: Buffer;
  /** The chunks after the first; throws when the upstream breaks or the stream was finished. */
  rest: AsyncIterator<Buffer>;
  /**
   * Ends the stream for the gateway (its reader stops: it completed, broke, or the client went
   * away): stops the upstream transfer if it still runs and settles the lease, if that has not
   * happened yet. Any number of calls; the first end settles.
   */
  finish(end: StreamEnd): void;
  /** The client went away: finish('client_gone'). */
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
  /** Google refused the gateway's egress location (metric, warn log). */
  onEgressRefused?: () => void;
  /** Secrets (pool keys, client tokens) taken out of every answer passed on; none by default. */
  scrubber?: ResponseScrubber;
  /** Usage accounting (src/usage): told every call's answer and its usageMetadata. */
  usage?: UsageObserver;
}

const JSON_TYPE = 'application/json; charset=UTF-8';
const SUCCESS: Outcome = { kind: 'success' };
const UNCOUNTED: Outcome = { kind: 'unused' };
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
  /** Takes secrets out of upstream answers (also for routes that relay Google's answers themselves). */
  readonly scrubber: ResponseScrubber;

  constructor(options: ForwarderOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    this.scrubber = options.scrubber ?? new ResponseScrubber();
    const base = new URL(options.baseUrl);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/$/, '');
  }

  /**
   * Sends the call; when the pool cannot serve its model within the wait and the call names
   * fallbacks, the next model is tried (its own budget, its own wait), and the answer says
   * which model served.
   */
  async forward(call: UpstreamCall): Promise<UpstreamAnswer> {
    const fallbacks = call.fallbacks ?? [];
    let current = call;
    for (let i = 0; ; i++) {
      try {
        const answer = await this.forwardModel(current);
        answer.model = current.model;
        // A stream reports its usage when it ends (streamAnswer).
        if (answer.kind === 'unary')
          this.o.usage?.answered(call.client, current.model, answer.status, answer.body);
        return answer;
      } catch (err) {
        const next = fallbacks[i];
        if (!isModelUnavailable(err) || next === undefined || this.now() >= call.deadlineMs) {
          // The recorder counts every failure but the client's leaving.
          this.o.usage?.failed(call.client, call.model, err instanceof ClientGone ? 499 : 500);
          throw err;
        }
        current = withModel(call, next);
      }
    }
  }

  private async forwardModel(call: UpstreamCall): Promise<UpstreamAnswer> {
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
        lease = await this.o.pool.acquire(call.model, call.estimatedTokens, tried, call.signal, call.pin);
      } catch (err) {
        if (err instanceof PoolExhaustedError) {
          // No untried key left: answer with what the tried ones said (an overload, a rest).
          if (err.retryAtMs === null && (lastRetryable || restUntil !== null)) break;
          throw exhausted(err.retryAtMs ?? restUntil, err.globalBackoff, call.model, this.now());
        }
        if (err instanceof QueueAbortedError) throw new ClientGone();
        // The store (Redis) failed: no key can be chosen safely, so none is used.
        throw new StoreUnavailable();
      }
      this.o.observer?.observeQueueWait(lease.queuedMs);
      if (call.signal?.aborted || this.now() >= call.deadlineMs) {
        // Its client left, or it waited past its deadline, before anything was sent: the key's
        // budget goes back.
        void this.o.pool.report(lease, { kind: 'unused' });
        if (this.now() < call.deadlineMs) throw new ClientGone();
        break;
      }
      queuedMs += lease.queuedMs;
      tried.push(lease.keyId);
      const started = this.now();
      const result = await this.attempt(call, lease, started);
      const elapsed = this.now() - started;
      upstreamMs += elapsed;

      if (result.kind === 'answer') {
        const a = result.answer;
        a.attempts = attempt;
        a.upstreamMs = upstreamMs;
        a.queuedMs = queuedMs;
        // A stream reports its attempt when it ends (streamAnswer).
        if (a.kind === 'unary') this.o.observer?.attempt(lease.keyId, call.model, result.outcome, elapsed);
        return a;
      }
      this.o.observer?.attempt(lease.keyId, call.model, result.outcome, elapsed);
      if (result.kind === 'client_gone') throw new ClientGone();
      if (result.kind === 'refused') {
        // Every key leaves through the same egress: no other key would be answered otherwise.
        this.o.onEgressRefused?.();
        throw egressRefused();
      }
      lastFailure = result.outcome;
      if (result.restUntil !== undefined)
        restUntil = Math.min(restUntil ?? Number.POSITIVE_INFINITY, result.restUntil);
      if (result.passThrough) lastRetryable = result.passThrough;
    }

    if (this.now() >= call.deadlineMs && !lastRetryable) {
      throw new DeadlineExceeded('the upstream did not answer within the request deadline');
    }
    if (lastRetryable) {
      // The last overloaded or failed answer goes to the client with what it took to get it.
      lastRetryable.attempts = tried.length;
      lastRetryable.upstreamMs = upstreamMs;
      lastRetryable.queuedMs = queuedMs;
      return lastRetryable;
    }
    if (restUntil !== null) throw exhausted(restUntil, false, call.model, this.now());
    throw new UpstreamUnreachable(`no key could complete the request (${lastFailure})`);
  }

  private async attempt(
    call: UpstreamCall,
    lease: Lease,
    started: number,
  ): Promise<
    | { kind: 'answer'; answer: UpstreamAnswer; outcome: string }
    | { kind: 'retry'; outcome: string; restUntil?: number; passThrough?: UnaryAnswer }
    | { kind: 'client_gone'; outcome: string }
    | { kind: 'refused'; outcome: string }
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
        return this.streamAnswer(call, lease, res, contentType, started);
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
    // Classified and counted from Google's own bytes; the client gets them without secrets.
    const answer: UnaryAnswer = {
      kind: 'unary',
      model: call.model,
      status: statusCode,
      contentType: this.scrubber.scrubText(whole.contentType ?? JSON_TYPE),
      body: this.scrubber.scrub(body),
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
    | { kind: 'retry'; outcome: string; restUntil?: number; passThrough?: UnaryAnswer }
    | { kind: 'refused'; outcome: string } {
    const pool = this.o.pool;
    switch (verdict.kind) {
      case 'success':
      case 'client_error':
        // The request's own fault: the key is fine; Google's answer goes back untouched. A
        // request Google counted in no quota (an unknown model) gives its reservation back.
        void pool.report(lease, verdict.kind === 'client_error' && verdict.uncounted ? UNCOUNTED : SUCCESS);
        return { kind: 'answer', answer, outcome: 'client_error' };
      case 'rest':
        void pool.report(lease, {
          kind: 'rest',
          untilMs: verdict.untilMs,
          reason: verdict.reason,
          model: verdict.model,
        });
        return {
          kind: 'retry',
          outcome: verdict.daily ? 'rate_limited_daily' : 'rate_limited',
          restUntil: verdict.untilMs,
        };
      case 'throttled':
        void pool.report(lease, { kind: 'rest', untilMs: verdict.untilMs, reason: verdict.reason });
        void pool.noteThrottled(lease.keyId);
        return { kind: 'retry', outcome: 'throttled', restUntil: verdict.untilMs };
      case 'egress_refused':
        // Google refuses where the gateway's requests come from, not the key: nothing to settle.
        void pool.report(lease, { kind: 'neutral' });
        return { kind: 'refused', outcome: 'egress_refused' };
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

  /**
   * Waits for the first body chunk before answering, so a stream that fails early is retried.
   * The answer settles its lease by itself (see StreamAnswer).
   */
  private async streamAnswer(
    call: UpstreamCall,
    lease: Lease,
    res: Dispatcher.ResponseData,
    contentType: string,
    started: number,
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
    // Usage and error events are read from Google's bytes, chunk boundaries notwithstanding.
    const usage = new StreamUsageReader();
    const errors = new ErrorEventWatch();
    usage.push(first.value);
    // The whole usage object (usage accounting), from the same bytes.
    const meter = this.o.usage ? new StreamUsageMeter() : null;
    meter?.push(first.value);
    errors.push(first.value);
    const scrub = this.scrubber.stream();
    let upstreamDone = false;
    let settled = false;
    let unsubscribe = noop;
    const settle = (end: StreamEnd): void => {
      if (settled) return;
      settled = true;
      unsubscribe();
      if (!upstreamDone) res.body.destroy();
      void pool.report(lease, streamOutcome(end, errors.seen, usage.promptTokens));
      const outcome = end === 'complete' ? 'success' : end === 'broken' ? 'stream_broken' : 'client_gone';
      this.o.observer?.attempt(lease.keyId, call.model, outcome, this.now() - started);
      this.o.usage?.streamed(call.client, call.model, meter?.usage, end === 'broken' || errors.seen);
    };
    const rest: AsyncIterator<Buffer> = {
      next: async () => {
        for (;;) {
          if (upstreamDone) return { done: true, value: undefined };
          let r: IteratorResult<Buffer>;
          try {
            r = await iterator.next();
          } catch (err) {
            settle(settled || call.signal?.aborted ? 'client_gone' : 'broken');
            throw err;
          }
          if (r.done) {
            upstreamDone = true;
            settle('complete');
            const held = scrub.end();
            return held.length > 0 ? { done: false, value: held } : r;
          }
          usage.push(r.value);
          meter?.push(r.value);
          errors.push(r.value);
          const out = scrub.push(r.value);
          if (out.length > 0) return { done: false, value: out };
        }
      },
    };
    const answer: StreamAnswer = {
      kind: 'stream',
      model: call.model,
      status: 200,
      contentType: this.scrubber.scrubText(contentType),
      first: scrub.push(first.value),
      rest,
      keyId: lease.keyId,
      attempts: 0,
      upstreamMs: 0,
      queuedMs: 0,
      finish: settle,
      abort: () => settle('client_gone'),
    };
    // The request's signal settles the stream even if nothing ever reads it (its client left
    // before the route's relay ran).
    if (call.signal) {
      if (call.signal.aborted) settle('client_gone');
      else unsubscribe = onAbort(call.signal, () => settle('client_gone'));
    }
    return { kind: 'answer', answer, outcome: 'success' };
  }
}

function noop(): void {}

/** Bytes of a chunk's end carried into the next one: `"error": {` cut in two is still seen. */
const ERROR_CARRY = 32;

/** Google reports a failure inside a started stream as an {"error": ...} event. */
class ErrorEventWatch {
  seen = false;
  private tail = '';

  push(chunk: Buffer): void {
    if (this.seen) return;
    // latin1: one char per byte, and the pattern is ASCII (multi-byte characters cannot match).
    const text = this.tail + chunk.toString('latin1');
    this.seen = IN_BAND_ERROR.test(text);
    this.tail = text.slice(-ERROR_CARRY);
  }
}

/** How a stream's end settles its key. */
function streamOutcome(end: StreamEnd, errorEvent: boolean, promptTokens: number | undefined): Outcome {
  // The client left: not the key's doing, but Google bills the prompt it received.
  if (end === 'client_gone') return { kind: 'neutral', actualTokens: promptTokens };
  if (end === 'broken') return { kind: 'failure', reason: 'STREAM_BROKEN', actualTokens: promptTokens };
  if (errorEvent) return { kind: 'failure', reason: 'STREAM_ERROR_EVENT', actualTokens: promptTokens };
  return { kind: 'success', actualTokens: promptTokens };
}

/** The client's answer when Google refuses the gateway's egress location. */
export function egressRefused(): EgressRefused {
  return new EgressRefused();
}

/** The pool cannot serve the model now (every key at its limit, resting, or none allowed it). */
class ModelUnavailable extends Unavailable {}
class ModelExhausted extends PoolExhausted {}

function isModelUnavailable(err: unknown): boolean {
  return err instanceof ModelUnavailable || err instanceof ModelExhausted;
}

/** The call for another model: the path's `models/{model}:` names it. */
function withModel(call: UpstreamCall, model: string): UpstreamCall {
  return { ...call, model, path: call.path.replace(/\/models\/[^/:]+:/, `/models/${model}:`) };
}

function exhausted(
  retryAtMs: number | null,
  globalBackoff: boolean,
  model: string,
  nowMs: number,
): GatewayError {
  if (retryAtMs === null) return new ModelUnavailable(`no enabled key can serve model "${model || 'any'}"`);
  const seconds = Math.max(1, Math.ceil((retryAtMs - nowMs) / 1000));
  return new ModelExhausted(
    globalBackoff
      ? `upstream is throttling the gateway; retry in ${seconds}s`
      : `every key is at its limit; retry in ${seconds}s`,
    seconds,
  );
}

function safeJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}
