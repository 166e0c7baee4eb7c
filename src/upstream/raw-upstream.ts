/**
 * Upstream calls whose bodies or answers are streams, or whose answer headers matter: file
 * uploads (the start of a resumable upload answers `x-goog-upload-url`; the bytes stream
 * through with backpressure) and downloads. The JSON calls of the Files and cached-contents
 * APIs go through the Forwarder like every other call.
 *
 * Like the Forwarder: a key is reserved from the pool (a budget model, a pin), sent in
 * x-goog-api-key only, the answer classified (src/pool/classify.ts) and the key settled. A
 * call whose body is a Buffer (or none) is retried on another key; one whose body is a stream
 * cannot be sent twice, so it gets one attempt.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Agent, Dispatcher } from 'undici';
import {
  ClientGone,
  PoolExhausted,
  StoreUnavailable,
  Unavailable,
  UpstreamUnreachable,
} from '../errors/gateway-errors.ts';
import { classifyUpstream } from '../pool/classify.ts';
import { type KeyPool, type Lease, PoolExhaustedError, QueueAbortedError } from '../pool/key-pool.ts';
import type { Pin } from '../store/types.ts';
import { type Abortable, signalOf } from '../util/cancel.ts';
import { egressRefused } from './forwarder.ts';
import type { ResponseScrubber } from './response-scrub.ts';

export interface RawCall {
  method: 'GET' | 'POST' | 'DELETE';
  /** Upstream path (the base URL's path is put in front) with its query, or an absolute upstream URL. */
  target: string;
  headers: Record<string, string>;
  body?: Buffer | Readable;
  /** Budget model ('' = the budget of calls for no model). */
  model: string;
  pin?: Pin;
  signal?: Abortable;
  deadlineMs: number;
  /** A 2xx answer's body is handed over as a stream (a download); otherwise it is read whole. */
  streamAnswer?: boolean;
}

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body read whole and scrubbed of secrets (every error, and 2xx unless streamAnswer). */
  body: Buffer | null;
  /** A 2xx answer's body with streamAnswer. */
  stream: Readable | null;
  keyId: string;
  project: string;
}

export interface RawUpstreamOptions {
  baseUrl: string;
  agent: Agent;
  pool: KeyPool;
  maxAttempts: number;
  attemptTimeoutMs: number;
  scrubber: ResponseScrubber;
  observer?: { attempt(keyId: string, model: string, outcome: string, durationMs: number): void };
  now?: () => number;
}

/** Error bodies larger than this are cut (Google's are a few kB). */
const MAX_ERROR_BODY = 1024 * 1024;

export class RawUpstream {
  private readonly o: RawUpstreamOptions;
  private readonly origin: string;
  private readonly basePath: string;
  private readonly now: () => number;

  constructor(options: RawUpstreamOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    const base = new URL(options.baseUrl);
    this.origin = base.origin;
    this.basePath = base.pathname.replace(/\/$/, '');
  }

  /** Where an absolute upstream URL goes: its path on the configured upstream origin. */
  pathOf(target: string): string {
    if (!/^https?:\/\//i.test(target)) return `${this.basePath}${target}`;
    const url = new URL(target);
    return `${url.pathname}${url.search}`;
  }

  /** A call with a key from the pool (retried on other keys while its body can be sent again). */
  async call(call: RawCall): Promise<RawAnswer> {
    const replayable = call.body === undefined || Buffer.isBuffer(call.body);
    const tried: string[] = [];
    let last: RawAnswer | null = null;
    let restUntil: number | null = null;
    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      if (this.now() >= call.deadlineMs) break;
      const lease = await this.lease(call, tried, restUntil);
      tried.push(lease.keyId);
      const outcome = await this.attempt(call, lease);
      if (outcome.kind === 'answer') return outcome.answer;
      if (outcome.restUntil !== undefined)
        restUntil = Math.min(restUntil ?? Number.POSITIVE_INFINITY, outcome.restUntil);
      if (outcome.passThrough) last = outcome.passThrough;
      if (!replayable) break;
    }
    if (last) return last;
    if (restUntil !== null) throw exhausted(restUntil, this.now());
    if (!replayable)
      throw new Unavailable('the upload could not be sent with the chosen key; send it again', {
        retryAfterSeconds: 1,
      });
    throw new UpstreamUnreachable('no key could complete the request');
  }

  /**
   * A call with a given key, outside the pool's budgets: the chunks of an upload continue the
   * session its start opened with that key (Google counts the upload as one call).
   */
  async direct(call: RawCall, keyId: string, apiKey: string): Promise<RawAnswer> {
    const started = this.now();
    let res: Dispatcher.ResponseData;
    try {
      res = await this.send(call, apiKey);
    } catch (err) {
      this.o.observer?.attempt(keyId, call.model, 'network_error', this.now() - started);
      if (call.signal?.aborted) throw new ClientGone();
      throw new UpstreamUnreachable(`the upstream upload failed (${codeOf(err)})`);
    }
    const body = await this.readWhole(res);
    this.o.observer?.attempt(
      keyId,
      call.model,
      res.statusCode < 300 ? 'success' : 'client_error',
      this.now() - started,
    );
    const project = this.o.pool.keys.find((k) => k.id === keyId)?.project ?? keyId;
    if (res.statusCode >= 300) {
      const verdict = classifyUpstream(res.statusCode, safeJson(body), this.now());
      // A refusal of the key itself may name it: never passed on.
      if (verdict.kind === 'disable')
        throw new UpstreamUnreachable(
          'Google refused the key this upload was started with; start the upload again',
        );
    }
    return { status: res.statusCode, headers: res.headers, body, stream: null, keyId, project };
  }

  private async lease(call: RawCall, tried: string[], restUntil: number | null): Promise<Lease> {
    try {
      return await this.o.pool.acquire(call.model, 0, tried, call.signal, call.pin);
    } catch (err) {
      if (err instanceof PoolExhaustedError) {
        const at = err.retryAtMs ?? restUntil;
        if (at === null) throw new Unavailable('no enabled key can serve this request');
        throw exhausted(at, this.now(), err.globalBackoff);
      }
      if (err instanceof QueueAbortedError) throw new ClientGone();
      throw new StoreUnavailable();
    }
  }

  private send(call: RawCall, apiKey: string): Promise<Dispatcher.ResponseData> {
    const budget = Math.max(1, Math.min(this.o.attemptTimeoutMs, call.deadlineMs - this.now()));
    return this.o.agent.request({
      origin: this.origin,
      path: this.pathOf(call.target),
      method: call.method,
      headers: { ...call.headers, 'x-goog-api-key': apiKey },
      body: call.body,
      // While a body is being sent under backpressure undici refreshes this timer: it bounds
      // silence, not the length of an upload.
      headersTimeout: budget,
      bodyTimeout: this.o.attemptTimeoutMs,
      signal: signalOf(call.signal),
    });
  }

  private async attempt(
    call: RawCall,
    lease: Lease,
  ): Promise<
    { kind: 'answer'; answer: RawAnswer } | { kind: 'retry'; restUntil?: number; passThrough?: RawAnswer }
  > {
    const pool = this.o.pool;
    const started = this.now();
    const observe = (outcome: string) =>
      this.o.observer?.attempt(lease.keyId, call.model, outcome, this.now() - started);
    const project = lease.reservation.project;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.send(call, lease.apiKey);
    } catch (err) {
      if (call.signal?.aborted) {
        void pool.report(lease, { kind: 'neutral' });
        observe('client_gone');
        throw new ClientGone();
      }
      const code = codeOf(err);
      const reason = code === 'UND_ERR_HEADERS_TIMEOUT' ? 'TIMEOUT' : 'NETWORK_ERROR';
      void pool.report(lease, { kind: 'failure', reason });
      observe(reason.toLowerCase());
      return { kind: 'retry' };
    }
    if (res.statusCode >= 200 && res.statusCode < 300) {
      void pool.report(lease, { kind: 'success' });
      observe('success');
      const stream = call.streamAnswer ? (res.body as unknown as Readable) : null;
      const body = stream ? null : await this.readWhole(res);
      return {
        kind: 'answer',
        answer: { status: res.statusCode, headers: res.headers, body, stream, keyId: lease.keyId, project },
      };
    }
    const body = await this.readWhole(res);
    const answer: RawAnswer = {
      status: res.statusCode,
      headers: res.headers,
      body,
      stream: null,
      keyId: lease.keyId,
      project,
    };
    const verdict = classifyUpstream(res.statusCode, safeJson(body), this.now());
    switch (verdict.kind) {
      case 'success':
      case 'client_error':
        void pool.report(lease, { kind: 'success' });
        observe('client_error');
        return { kind: 'answer', answer };
      case 'rest':
        void pool.report(lease, {
          kind: 'rest',
          untilMs: verdict.untilMs,
          reason: verdict.reason,
          model: verdict.model,
        });
        observe('rate_limited');
        return { kind: 'retry', restUntil: verdict.untilMs };
      case 'throttled':
        void pool.report(lease, { kind: 'rest', untilMs: verdict.untilMs, reason: verdict.reason });
        void pool.noteThrottled(lease.keyId);
        observe('throttled');
        return { kind: 'retry', restUntil: verdict.untilMs };
      case 'egress_refused':
        void pool.report(lease, { kind: 'neutral' });
        observe('egress_refused');
        throw egressRefused();
      case 'disable':
        void pool.report(lease, { kind: 'disable', reason: verdict.reason });
        observe('key_disabled');
        return { kind: 'retry' };
      case 'retry':
        void pool.report(
          lease,
          verdict.circuit
            ? { kind: 'failure', reason: verdict.reason }
            : { kind: 'neutral', reason: verdict.reason },
        );
        observe(verdict.circuit ? 'server_error' : 'overloaded');
        return { kind: 'retry', passThrough: answer };
    }
  }

  /** A (small) answer body, scrubbed of secrets; the rest of an overlong one is dropped. */
  private async readWhole(res: Dispatcher.ResponseData): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (size >= MAX_ERROR_BODY) continue;
        chunks.push(chunk);
        size += chunk.length;
      }
    } catch {
      /* what arrived is what there is */
    }
    return this.o.scrubber.scrub(Buffer.concat(chunks));
  }
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'network error';
}

function safeJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function exhausted(retryAtMs: number, nowMs: number, globalBackoff = false): PoolExhausted {
  const seconds = Math.max(1, Math.ceil((retryAtMs - nowMs) / 1000));
  return new PoolExhausted(
    globalBackoff
      ? `upstream is throttling the gateway; retry in ${seconds}s`
      : `every key that can serve this request is at its limit; retry in ${seconds}s`,
    seconds,
  );
}
